//! The `uring-httpd` command: parse the command line, load the config, start the server, then
//! take signals until one stops it (see [`uring_httpd::signals`]): SIGHUP reloads the
//! configuration ([`uring_httpd::reload`]), SIGUSR1 reopens the access log (log rotation),
//! SIGINT, SIGTERM and SIGQUIT shut down gracefully, every other one is logged and ignored.
//!
//! Exit codes, chosen here and nowhere else: 0 after a clean shutdown; 1 when the server cannot
//! start ([`StartError`]) or access-log lines were lost; 2 for a configuration error; 3 when a
//! worker stopped unexpectedly while serving.
//!
//! `uring-httpd probe` is the health check (see [`uring_httpd::probe`]); its own exit codes are
//! documented there.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use uring_httpd::config::{self, EngineChoice, Overrides};
use uring_httpd::reload::{Reloader, SetLevel};
use uring_httpd::server::{self, StartError};
use uring_httpd::signals::{self, Action, Signals};

/// A static-file HTTP/1.1 server for Linux on io_uring.
#[derive(Parser, Debug)]
#[command(version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Config file [default: $URING_HTTPD_CONFIG, else ./uring.toml, else built-in defaults].
    /// Each option below also has a URING_HTTPD_* variable; the command line wins.
    #[arg(short, long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Address or host name to listen on, e.g. 127.0.0.1, ::, localhost (overrides server.host).
    #[arg(long)]
    host: Option<String>,
    /// Port to listen on; 0 picks a free one (overrides server.port).
    #[arg(short, long)]
    port: Option<u16>,
    /// Directory to serve, relative to the current directory (overrides files.root).
    #[arg(short, long, value_name = "DIR")]
    root: Option<PathBuf>,
    /// Worker threads, 0 for one per CPU (overrides server.workers).
    #[arg(short, long)]
    workers: Option<usize>,
    /// I/O engine (overrides server.engine).
    #[arg(short, long, value_enum)]
    engine: Option<EngineChoice>,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Health check: GET a URL (by default this server's own) and exit 0 on a 2xx or 3xx answer,
    /// 1 with the reason otherwise, 2 for an unusable URL.
    Probe(uring_httpd::probe::ProbeArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Probe(args)) = cli.command {
        return uring_httpd::probe::run(args);
    }
    let overrides = Overrides {
        host: cli.host,
        port: cli.port,
        root: cli.root,
        workers: cli.workers,
        engine: cli.engine,
    };
    let loaded = match config::env::load_layered(cli.config.clone(), &overrides) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("uring-httpd: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    let set_level = init_tracing(&loaded.config.log.level);
    if let Some(note) = &loaded.host_note {
        tracing::info!("{note}");
    }

    // Block the signals before any thread starts, so every thread inherits the mask and the
    // signals wait here for sigwait instead of killing the process mid-response.
    let signals = match Signals::block() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("uring-httpd: cannot block signals: {e}");
            return ExitCode::FAILURE;
        }
    };

    let (root, workers, source) = (loaded.root.clone(), loaded.workers, loaded.source.clone());
    let mut reloader = Reloader::new(cli.config, overrides, loaded.clone(), set_level);
    let mut running = match server::start(loaded) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("uring-httpd: {e}");
            return ExitCode::from(start_error_code(&e));
        }
    };
    if let Some(addr) = running.admin_addr() {
        tracing::info!("admin listener on http://{addr}/ (/metrics, /healthz, /readyz)");
        if !addr.ip().is_loopback() {
            tracing::warn!(
                "the admin listener is not on a loopback address: whoever reaches {addr} reads \
                 the metrics"
            );
        }
    }
    tracing::info!(
        "uring-httpd {} listening on http://{}/ (engine {}, {} workers, root {}, config {})",
        env!("CARGO_PKG_VERSION"),
        running.addr,
        running.engine,
        workers,
        root.display(),
        source
    );

    loop {
        let sig = match signals.wait() {
            Ok(sig) => sig,
            Err(e) => {
                tracing::error!("waiting for signals failed ({e}); stopping");
                break;
            }
        };
        let name = signals::name(sig);
        match signals::action(sig) {
            Action::Stop => {
                tracing::info!("{name}: finishing in-flight responses");
                break;
            }
            Action::ReopenLog => running.reopen_log(),
            Action::Reload => match reloader.reload(&mut running) {
                Ok(restart) => {
                    for r in restart {
                        tracing::warn!("needs a restart: {r}");
                    }
                    tracing::info!("configuration reloaded from {}", reloader.source());
                }
                Err(e) => tracing::error!(
                    "{name}: configuration not reloaded, the running one stays in force: {e}"
                ),
            },
            Action::Ignore(Some(why)) => tracing::warn!("{name} ignored: {why}"),
            Action::Ignore(None) => tracing::warn!("{name} ignored"),
        }
    }
    let died = running.worker_died();
    match running.shutdown() {
        Ok(_) if died => {
            eprintln!("uring-httpd: a worker stopped unexpectedly; see the error above");
            ExitCode::from(3)
        }
        Ok((s, lines)) => {
            tracing::info!(
                "stopped: {} connections, {} requests, {} bytes sent, {} log lines",
                s.accepted,
                s.total_requests(),
                s.bytes_sent,
                lines
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("uring-httpd: access log: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The exit code of each start-up failure.
fn start_error_code(e: &StartError) -> u8 {
    match e {
        StartError::Engine(_)
        | StartError::Settings(_)
        | StartError::Log(_)
        | StartError::Listen(_)
        | StartError::Thread(..)
        | StartError::Worker(_)
        | StartError::WorkerLost
        | StartError::Admin(_) => 1,
    }
}

/// Sets up the diagnostics on stderr at `level` (or as `RUST_LOG` says), and returns how a
/// reload changes the level (it does not override `RUST_LOG`).
fn init_tracing(level: &str) -> SetLevel {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{EnvFilter, reload};
    let from_env = EnvFilter::try_from_default_env().ok();
    let fixed = from_env.is_some();
    let filter = from_env.unwrap_or_else(|| EnvFilter::new(level));
    let (filter, handle) = reload::Layer::new(filter);
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    tracing_subscriber::registry().with(filter).with(fmt).init();
    Box::new(move |level: &str| {
        if !fixed {
            let _ = handle.reload(EnvFilter::new(level));
        }
    })
}
