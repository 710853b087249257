//! `tracker <tracker_info.txt> <n> [--data-dir DIR]`: arguments, logging and
//! signals; the work is in the library.

use anyhow::{bail, Context};
use clap::Parser;
use proto::tracker_info;
use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracker::raft::{Cluster, ClusterOptions};
use tracker::server::{self, ServerOptions};

/// See the workspace Cargo.toml: glibc's malloc kept freed argon2 blocks
/// and reply buffers in per-thread arenas (RSS ~440 MiB after 2,000 logins).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How long Raft may take to stop at exit.
const RAFT_STOP_DEADLINE: Duration = Duration::from_secs(5);

/// The p2pshare tracker: accounts, groups, and who holds which file.
///
/// Stops cleanly on SIGTERM, SIGINT, or `quit` typed on stdin.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// File listing the trackers, one `IP:PORT` (or `IP PORT`) per line.
    tracker_info: PathBuf,
    /// Which tracker of the file this is (1-based line, not counting blank
    /// lines and comments).
    n: u32,
    /// Directory of the durable state [default: the platform data directory,
    /// `tracker-<n>`].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Raft log entries between snapshots; older entries are then purged.
    #[arg(long, value_name = "N", default_value_t = tracker::raft::SNAPSHOT_EVERY_ENTRIES,
          value_parser = clap::value_parser!(u64).range(1..))]
    snapshot_every: u64,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracker::data_dir::restrict_umask();
    let args = Args::parse();
    proto::service::init_logging("info");
    match serve(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let addrs = tracker_info::read(&args.tracker_info).context("bad tracker info file")?;
    let addr = tracker_info::nth(&addrs, args.n)
        .with_context(|| format!("in {}", args.tracker_info.display()))?;
    match addrs.len() {
        1 => tracing::info!("single tracker (one line in tracker_info.txt): no replication"),
        2 => tracing::warn!(
            "2 trackers: Raft needs a majority (2 of 2), so losing either one pauses all \
             writes until it is back (reads go on); run 3 or 5 trackers to survive failures"
        ),
        n => tracing::info!(
            "{n} trackers form one Raft cluster; writes need {} of them up",
            n / 2 + 1
        ),
    }
    let data_dir = match args.data_dir {
        Some(dir) => dir,
        None => match proto::dirs::default_tracker_dir(args.n) {
            Some(dir) => dir,
            None => bail!("cannot find a home directory for the data; pass --data-dir DIR"),
        },
    };

    // Bind first: a port in use is the likelier mistake, and failing on it
    // must not touch the data directory.
    let listener = TcpListener::bind(addr).await.with_context(|| {
        format!(
            "cannot listen on {addr} (tracker {} of {})",
            args.n,
            args.tracker_info.display()
        )
    })?;
    let stop = CancellationToken::new();
    let options = ClusterOptions {
        node: u64::from(args.n),
        trackers: addrs,
        snapshot_every: args.snapshot_every,
    };
    let cluster = Cluster::start(options, &data_dir, stop.child_token())
        .await
        .with_context(|| format!("cannot open the tracker's data in {}", data_dir.display()))?;

    proto::service::stop_on_signals(stop.clone()).context("cannot install signal handlers")?;
    watch_stdin(stop.clone());

    tracing::info!(
        "tracker {} listening on {addr}, data in {}",
        args.n,
        data_dir.display()
    );
    let options = ServerOptions {
        node: args.n,
        ..ServerOptions::default()
    };
    let served = server::run(listener, cluster.clone(), options, stop.cancelled_owned()).await;
    served.context("graceful stop did not finish")?;
    tokio::time::timeout(RAFT_STOP_DEADLINE, cluster.raft.shutdown())
        .await
        .context("Raft did not stop in time")?
        .context("Raft stopped with an error")?;
    tracing::info!("tracker {} stopped", args.n);
    Ok(())
}

/// `quit` on stdin stops the tracker; end of input does not (tests run it
/// with stdin from /dev/null). A plain thread: a blocking read would keep a
/// tokio runtime from shutting down, a detached thread does not.
fn watch_stdin(stop: CancellationToken) {
    let spawned = std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            for line in std::io::stdin().lock().lines() {
                match line {
                    Ok(l) if l.trim() == "quit" => {
                        tracing::info!("quit read on stdin; stopping");
                        stop.cancel();
                        return;
                    }
                    Ok(_) => {}
                    Err(_) => return,
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot watch stdin; `quit` will not work");
    }
}
