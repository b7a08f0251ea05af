//! The counters as Prometheus metrics: a `prometheus-client` collector that reads the per-worker
//! atomics of [`crate::stats`] (and the log writer's counters) at scrape time, and the crate's
//! encoder, which writes the OpenMetrics text format that Prometheus scrapes.
//!
//! Nothing here runs on the request path: workers keep counting into their own atomics, and a
//! scrape reads them. That is also why the duration histogram is not prometheus-client's
//! `Histogram` (which locks a mutex on every observation): the buckets are plain atomics per
//! worker, summed here and handed to the encoder as they are.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

use crate::Shared;
use crate::stats::{DURATION_BOUNDS_US, Snapshot};

/// The content type of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Every metric of the server, ready to be rendered at each scrape.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
}

impl Metrics {
    /// The metrics of `shared`'s server.
    pub fn new(shared: Arc<Shared>) -> Metrics {
        let mut registry = Registry::default();
        registry.register(
            "uring_httpd_build",
            "The version of uring-httpd",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        registry.register(
            "uring_httpd_engine",
            "The I/O engine serving connections",
            Info::new(vec![("engine", shared.stats.engine)]),
        );
        registry.register_collector(Box::new(Counters { shared }));
        Metrics { registry }
    }

    /// The metrics as they are now, in the OpenMetrics text format.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8192);
        // Writing to a String cannot fail; an encoder error would be a bug in the names.
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!("encoding the metrics failed: {e}");
        }
        out
    }
}

/// Reads the counters at scrape time.
#[derive(Debug)]
struct Counters {
    shared: Arc<Shared>,
}

/// What a per-worker family is called and how it reads.
struct Family<'a> {
    name: &'a str,
    help: &'a str,
    unit: Option<Unit>,
    kind: MetricType,
}

/// A metric family with one series per worker, labelled `worker="<index>"`.
fn per_worker<M: EncodeMetric>(
    enc: &mut DescriptorEncoder,
    f: Family<'_>,
    values: impl Iterator<Item = M>,
) -> fmt::Result {
    let mut family = enc.encode_descriptor(f.name, f.help, f.unit.as_ref(), f.kind)?;
    for (i, value) in values.enumerate() {
        let worker = i.to_string();
        let labels = [("worker", worker.as_str())];
        value.encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// One metric without labels.
fn single<M: EncodeMetric>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    m: M,
) -> fmt::Result {
    m.encode(enc.encode_descriptor(name, help, None, m.metric_type())?)
}

impl Collector for Counters {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let stats = &self.shared.stats;
        let per: Vec<Snapshot> = stats.workers.iter().map(|w| w.read()).collect();
        let counter = |f: fn(&Snapshot) -> u64| per.iter().map(move |s| ConstCounter::new(f(s)));
        let gauge = |f: fn(&Snapshot) -> u64| per.iter().map(move |s| ConstGauge::new(f(s) as i64));

        let mut requests = enc.encode_descriptor(
            "uring_httpd_requests",
            "Responses by status class and worker (the admin listener's own are not counted)",
            None,
            MetricType::Counter,
        )?;
        for (i, s) in per.iter().enumerate() {
            let worker = i.to_string();
            for (class, n) in s.requests.iter().enumerate() {
                let code = format!("{}xx", class + 1);
                let labels = [("code", code.as_str()), ("worker", worker.as_str())];
                ConstCounter::new(*n).encode(requests.encode_family(&labels)?)?;
            }
        }
        per_worker(
            &mut enc,
            Family {
                name: "uring_httpd_sent",
                help: "Bytes put on the wire, heads and bodies",
                unit: Some(Unit::Bytes),
                kind: MetricType::Counter,
            },
            counter(|s| s.bytes_sent),
        )?;
        per_worker(
            &mut enc,
            Family {
                name: "uring_httpd_connections_accepted",
                help: "Connections accepted",
                unit: None,
                kind: MetricType::Counter,
            },
            counter(|s| s.accepted),
        )?;
        per_worker(
            &mut enc,
            Family {
                name: "uring_httpd_connections_open",
                help: "Connections open now",
                unit: None,
                kind: MetricType::Gauge,
            },
            gauge(|s| s.open),
        )?;
        per_worker(
            &mut enc,
            Family {
                name: "uring_httpd_cache_hits",
                help: "Requests answered from the worker's file cache",
                unit: None,
                kind: MetricType::Counter,
            },
            counter(|s| s.cache_hits),
        )?;
        per_worker(
            &mut enc,
            Family {
                name: "uring_httpd_cache_misses",
                help: "Requests that looked in the file cache and opened the file",
                unit: None,
                kind: MetricType::Counter,
            },
            counter(|s| s.cache_misses),
        )?;
        per_worker(
            &mut enc,
            Family {
                name: "uring_httpd_cache",
                help: "Memory the worker's file cache holds, as counted against its budget",
                unit: Some(Unit::Bytes),
                kind: MetricType::Gauge,
            },
            gauge(|s| s.cache_bytes),
        )?;

        let mut all = Snapshot::default();
        per.iter().for_each(|s| all.add(s));
        let bounds = DURATION_BOUNDS_US
            .iter()
            .map(|&us| us as f64 / 1e6)
            .chain([f64::INFINITY]);
        let buckets: Vec<(f64, u64)> = bounds.zip(all.durations).collect();
        let count = all.durations.iter().sum();
        let sum = all.duration_sum_ns as f64 / 1e9;
        enc.encode_descriptor(
            "uring_httpd_request_duration",
            "Time from a request's first byte to its response's last byte sent",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?
        .encode_histogram::<NoLabelSet>(sum, count, &buckets, None)?;

        let log = self.shared.log.counters();
        single(
            &mut enc,
            "uring_httpd_log_lines_written",
            "Access-log lines written",
            ConstCounter::new(log.written.load(Relaxed)),
        )?;
        single(
            &mut enc,
            "uring_httpd_log_lines_dropped",
            "Access-log records dropped because the queue was full (the writer was behind)",
            ConstCounter::new(log.dropped.load(Relaxed)),
        )?;
        single(
            &mut enc,
            "uring_httpd_log_lines_failed",
            "Access-log lines lost because writing them failed",
            ConstCounter::new(log.failed.load(Relaxed)),
        )?;
        single(
            &mut enc,
            "uring_httpd_ready",
            "1 while every worker is serving (what /readyz answers 200 to)",
            ConstGauge::new(i64::from(stats.ready())),
        )?;
        single(
            &mut enc,
            "uring_httpd_config_generation",
            "1 at start, one more at each configuration reload that was applied",
            ConstGauge::new(self.shared.current().generation as i64),
        )?;
        Ok(())
    }
}
