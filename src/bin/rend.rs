//! The proxy: read the configuration (flags, REND_* environment, --config
//! file), run until SIGTERM or SIGINT, exit 0.

use std::io::{IsTerminal, Write};

use tokio::signal::unix::{signal, SignalKind};

fn main() -> std::process::ExitCode {
    // Every value is checked here, before anything starts.
    let config = rend::config::Config::load();
    if config.print_config {
        let mut out = std::io::stdout().lock();
        return match out
            .write_all(config.to_toml().as_bytes())
            .and_then(|()| out.flush())
        {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("rend: cannot print the configuration: {e}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    // This thread accepts connections, handles signals and serves metrics;
    // worker threads (app::run starts them) serve the connections.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("rend: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let (mut term, mut int) = match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(t), Ok(i)) => (t, i),
            (Err(e), _) | (_, Err(e)) => {
                eprintln!("rend: cannot install signal handlers: {e}");
                return Err(());
            }
        };
        let shutdown = async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            tracing::info!("signal received: shutting down");
        };
        rend::app::run(config, shutdown).await.map_err(|e| {
            tracing::error!("{e}");
        })
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(()) => std::process::ExitCode::FAILURE,
    }
}

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
