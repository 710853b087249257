//! `p2pd`: parse the command line, set up logging and signals, run the daemon.

use anyhow::Context;
use clap::Parser;
use std::io::IsTerminal;
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

fn main() -> std::process::ExitCode {
    let cli = p2pd::Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Colours only on a terminal: under systemd or `2>log` they are noise.
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: p2pd::Cli) -> anyhow::Result<()> {
    let options = cli.into_options()?;
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let result = rt.block_on(async {
        let shutdown = CancellationToken::new();
        let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
        let trigger = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
            tracing::info!("signal received; stopping (send another to exit at once)");
            trigger.cancel();
            tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
            eprintln!("error: second signal; exiting without a clean stop");
            std::process::exit(130);
        });
        p2pd::run(options, shutdown)
            .await
            .map_err(anyhow::Error::from)
    });
    // Blocking threads (a hash of a huge file) must not hold the exit hostage.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    result
}
