//! `p2pd`: parse the command line, set up logging and signals, run the
//! daemon; or print its completions or man page.

use anyhow::Context;
use clap::Parser;
use tokio_util::sync::CancellationToken;

fn main() -> std::process::ExitCode {
    let mut cli = p2pd::Cli::parse();
    if let Some(tool) = cli.command.take() {
        return match p2pd::manual::run(tool, &mut std::io::stdout().lock()) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            // `p2pd man | head`: the reader has what it wanted.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    proto::service::init_logging("info");
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
        proto::service::stop_on_signals(shutdown.clone())
            .context("installing the signal handlers")?;
        p2pd::run(options, shutdown)
            .await
            .map_err(anyhow::Error::from)
    });
    // Blocking threads (a hash of a huge file) must not hold the exit hostage.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    result
}
