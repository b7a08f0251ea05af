//! The SVG charts. The main one: one column of panels per fixture file; the top row plots
//! requests/s against connections, the bottom row server CPU µs per request. One line per server
//! (uring, epoll, nginx's better sendfile setting, lighttpd, h2o, the two floors) through the
//! medians; on the top row every round's figure is a faint dot so the spread is visible.
//!
//! The cost chart (`…-cost.svg`), one column per fixture: the top row draws syscalls per request
//! from the strace pass, one bar per server; the bottom row server CPU µs per request split into
//! user time (solid) and kernel time (faded, stacked on top), grouped by connection count.

use std::path::Path;

use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;

use std::collections::BTreeMap;

use crate::report::{Cell, Column, Lab, Shown, rate};
use crate::servers::Contender;

const WIDTH: u32 = 540;
const HEIGHT: u32 = 400;
/// Panel width of the cost chart (more bars per panel).
const COST_WIDTH: u32 = 760;

fn colour(col: Column) -> RGBColor {
    match col {
        Column::Uring => RGBColor(31, 119, 180),
        Column::Epoll => RGBColor(255, 127, 14),
        Column::Nginx => RGBColor(44, 160, 44),
        Column::Lighttpd => RGBColor(148, 103, 189),
        Column::H2o => RGBColor(140, 86, 75),
        Column::FloorUring => RGBColor(80, 80, 80),
        Column::FloorEpoll => RGBColor(170, 170, 170),
    }
}

fn contender_colour(c: Contender) -> RGBColor {
    match c {
        Contender::Uring => colour(Column::Uring),
        Contender::Epoll => colour(Column::Epoll),
        Contender::NginxSendfileOn => colour(Column::Nginx),
        Contender::NginxSendfileOff => RGBColor(23, 190, 207),
        Contender::Lighttpd => colour(Column::Lighttpd),
        Contender::H2o => colour(Column::H2o),
        Contender::FloorUring => colour(Column::FloorUring),
        Contender::FloorEpoll => colour(Column::FloorEpoll),
    }
}

/// What a row of panels plots.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Metric {
    ReqPerSec,
    CpuPerReq,
}

impl Metric {
    fn value(self, cell: &Cell) -> Option<f64> {
        match self {
            Metric::ReqPerSec => Some(cell.req_s),
            Metric::CpuPerReq => cell.cpu_us,
        }
        .filter(|v| v.is_finite())
    }

    /// Every round's figure (only kept for req/s).
    fn rounds(self, cell: &Cell) -> &[f64] {
        match self {
            Metric::ReqPerSec => &cell.all_req_s,
            Metric::CpuPerReq => &[],
        }
    }

    fn desc(self) -> &'static str {
        match self {
            Metric::ReqPerSec => "requests/s (higher is better)",
            Metric::CpuPerReq => "server CPU µs per request (lower is better)",
        }
    }
}

/// Writes the chart to `path`.
pub fn write_svg(lab: &Lab, path: &Path) -> Result<(), String> {
    draw(lab, path).map_err(|e| format!("chart {}: {e}", path.display()))
}

fn draw(lab: &Lab, path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let panels = lab.fixtures.len().max(1);
    let root = SVGBackend::new(path, (WIDTH * panels as u32, 2 * HEIGHT + 50)).into_drawing_area();
    root.fill(&WHITE)?;
    let m = &lab.setup.machine;
    let root = root.titled(
        &format!(
            "uring-httpd lab {}: medians of {} round(s) × {} s, 1 worker each — kernel {}, {}, {} cores",
            m.date, lab.setup.rounds, lab.setup.duration_s, m.kernel, m.cpu, m.cores
        ),
        ("sans-serif", 22),
    )?;
    let shown = lab.shown();
    let areas = root.split_evenly((2, panels));
    for (row, metric) in [Metric::ReqPerSec, Metric::CpuPerReq]
        .into_iter()
        .enumerate()
    {
        for f in 0..lab.fixtures.len() {
            panel(&areas[row * panels + f], lab, &shown, f, metric)?;
        }
    }
    root.present()?;
    Ok(())
}

fn panel(
    area: &DrawingArea<SVGBackend, plotters::coord::Shift>,
    lab: &Lab,
    shown: &BTreeMap<(usize, usize, Column), Shown>,
    f: usize,
    metric: Metric,
) -> Result<(), Box<dyn std::error::Error>> {
    let fx = &lab.fixtures[f];
    let concs = &lab.setup.concurrencies;
    let mut top: f64 = 0.0;
    for ((ff, _, _), s) in shown {
        if *ff == f {
            let v = metric.value(&s.cell).unwrap_or(0.0);
            let r = metric.rounds(&s.cell).iter().copied().fold(0.0, f64::max);
            top = top.max(v).max(r);
        }
    }
    // Head room for the legend.
    let top = if top.is_finite() && top > 0.0 {
        top * 1.5
    } else {
        1.0
    };
    // Plotters' integer ranges are inclusive: n values need 0..n-1.
    let last = concs.len().saturating_sub(1) as i32;
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!("{} — {}", fx.label, metric.desc()),
            ("sans-serif", 17),
        )
        .margin(14)
        .x_label_area_size(44)
        .y_label_area_size(70)
        .build_cartesian_2d((0..last).into_segmented(), 0.0..top)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .y_max_light_lines(1)
        .x_desc("connections")
        .x_labels(concs.len())
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => concs
                .get(*i as usize)
                .map_or(String::new(), |c| c.to_string()),
            SegmentValue::Last => String::new(),
        })
        .y_label_formatter(&|v| rate(*v))
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 15))
        .draw()?;
    for col in Column::ALL {
        let colour = colour(col);
        let mut line = Vec::new();
        let mut dots = Vec::new();
        for (i, c) in concs.iter().enumerate() {
            let Some(s) = shown.get(&(f, *c, col)) else {
                continue;
            };
            let x = SegmentValue::CenterOf(i as i32);
            if let Some(v) = metric.value(&s.cell) {
                line.push((x.clone(), v));
            }
            dots.extend(metric.rounds(&s.cell).iter().map(|r| (x.clone(), *r)));
        }
        if line.is_empty() {
            continue;
        }
        let label = if col == Column::Nginx {
            "nginx (best of sendfile on/off)"
        } else {
            col.label()
        };
        chart
            .draw_series(LineSeries::new(line.clone(), colour.stroke_width(3)))?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], colour.stroke_width(3))
            });
        chart.draw_series(line.into_iter().map(|p| Circle::new(p, 5, colour.filled())))?;
        chart.draw_series(
            dots.into_iter()
                .map(|p| Circle::new(p, 3, colour.mix(0.4).filled())),
        )?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.4))
        .label_font(("sans-serif", 15))
        .draw()?;
    Ok(())
}

/// Writes the cost chart (syscalls per request; user and kernel CPU per request) to `path`.
pub fn write_cost_svg(lab: &Lab, path: &Path) -> Result<(), String> {
    draw_cost(lab, path).map_err(|e| format!("chart {}: {e}", path.display()))
}

fn draw_cost(lab: &Lab, path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let panels = lab.fixtures.len().max(1);
    let root =
        SVGBackend::new(path, (COST_WIDTH * panels as u32, 2 * HEIGHT + 50)).into_drawing_area();
    root.fill(&WHITE)?;
    let m = &lab.setup.machine;
    let root = root.titled(
        &format!(
            "lab {}: server cost per request (medians, {} cores)",
            m.date, m.cores
        ),
        ("sans-serif", 22),
    )?;
    let areas = root.split_evenly((2, panels));
    let cells = lab.cells();
    for f in 0..lab.fixtures.len() {
        syscall_panel(&areas[f], lab, f)?;
        split_panel(&areas[panels + f], lab, &cells, f)?;
    }
    root.present()?;
    Ok(())
}

/// Syscalls per request of every server for fixture `f`, one bar each.
fn syscall_panel(
    area: &DrawingArea<SVGBackend, plotters::coord::Shift>,
    lab: &Lab,
    f: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let bars: Vec<(Contender, f64)> = lab
        .setup
        .contenders
        .iter()
        .filter_map(|&c| {
            let p = lab
                .syscalls
                .iter()
                .find(|p| p.contender == c && p.fixture == f)?;
            Some((c, p.per_request()?))
        })
        .collect();
    let top = bars.iter().map(|b| b.1).fold(0.0, f64::max);
    let top = if top > 0.0 { top * 1.25 } else { 1.0 };
    let n = bars.len().max(1) as i32;
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!(
                "{} — syscalls per request (strace pass, {} conns; lower is better)",
                lab.fixtures[f].label, lab.setup.strace_connections
            ),
            ("sans-serif", 17),
        )
        .margin(14)
        .x_label_area_size(44)
        .y_label_area_size(60)
        .build_cartesian_2d((0..n - 1).into_segmented(), 0.0..top)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .y_max_light_lines(1)
        .x_labels(bars.len().max(1))
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => bars
                .get(*i as usize)
                .map_or(String::new(), |b| b.0.label().to_string()),
            SegmentValue::Last => String::new(),
        })
        .y_label_formatter(&|v| format!("{v:.1}"))
        .label_style(("sans-serif", 13))
        .axis_desc_style(("sans-serif", 15))
        .draw()?;
    for (i, (c, v)) in bars.iter().enumerate() {
        chart.draw_series(
            Histogram::vertical(&chart)
                .style(contender_colour(*c).filled())
                .margin(6)
                .data([(i as i32, *v)]),
        )?;
        chart.draw_series(std::iter::once(Text::new(
            format!("{v:.2}"),
            (SegmentValue::CenterOf(i as i32), *v + top * 0.02),
            ("sans-serif", 13),
        )))?;
    }
    Ok(())
}

/// User (solid) and kernel (faded, on top) CPU µs per request, grouped by connection count.
fn split_panel(
    area: &DrawingArea<SVGBackend, plotters::coord::Shift>,
    lab: &Lab,
    cells: &BTreeMap<(Contender, usize, usize), Cell>,
    f: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let concs = &lab.setup.concurrencies;
    let shown: Vec<Contender> = lab
        .setup
        .contenders
        .iter()
        .copied()
        .filter(|&c| concs.iter().any(|&n| cells.contains_key(&(c, f, n))))
        .collect();
    let k = shown.len().max(1);
    // Bar x = group * (k + 1) + position: one empty slot between groups.
    let slots = (concs.len() * (k + 1)).max(2) as i32;
    let split = |c: Contender, n: usize| {
        let cell = cells.get(&(c, f, n))?;
        Some((cell.user_us?, cell.sys_us?))
    };
    let mut top: f64 = 0.0;
    for &c in &shown {
        for &n in concs {
            if let Some((u, s)) = split(c, n) {
                top = top.max(u + s);
            }
        }
    }
    // Head room for the legend (one line per server).
    let top = if top > 0.0 { top * 2.0 } else { 1.0 };
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!(
                "{} — server CPU µs per request: user (solid) + kernel (faded)",
                lab.fixtures[f].label
            ),
            ("sans-serif", 17),
        )
        .margin(14)
        .x_label_area_size(44)
        .y_label_area_size(60)
        .build_cartesian_2d((0..slots - 1).into_segmented(), 0.0..top)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .y_max_light_lines(1)
        .x_desc("connections")
        .x_labels(slots as usize)
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => {
                let (g, pos) = (*i as usize / (k + 1), *i as usize % (k + 1));
                if pos == k / 2 {
                    concs.get(g).map_or(String::new(), |c| c.to_string())
                } else {
                    String::new()
                }
            }
            SegmentValue::Last => String::new(),
        })
        .y_label_formatter(&|v| format!("{v:.1}"))
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 15))
        .draw()?;
    for (j, &c) in shown.iter().enumerate() {
        let colour = contender_colour(c);
        let data: Vec<(i32, f64, f64)> = concs
            .iter()
            .enumerate()
            .filter_map(|(g, &n)| {
                let (u, s) = split(c, n)?;
                Some(((g * (k + 1) + j) as i32, u, s))
            })
            .collect();
        if data.is_empty() {
            continue;
        }
        chart
            .draw_series(
                Histogram::vertical(&chart)
                    .style(colour.filled())
                    .margin(1)
                    .data(data.iter().map(|&(x, u, _)| (x, u))),
            )?
            .label(c.label())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], colour.filled()));
        let bases: BTreeMap<i32, f64> = data.iter().map(|&(x, u, _)| (x, u)).collect();
        chart.draw_series(
            Histogram::vertical(&chart)
                .style(colour.mix(0.4).filled())
                .margin(1)
                .baseline_func(move |x: &SegmentValue<i32>| match x {
                    SegmentValue::Exact(i) | SegmentValue::CenterOf(i) => {
                        bases.get(i).copied().unwrap_or(0.0)
                    }
                    SegmentValue::Last => 0.0,
                })
                .data(data.iter().map(|&(x, u, s)| (x, u + s))),
        )?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.4))
        .label_font(("sans-serif", 13))
        .draw()?;
    Ok(())
}
