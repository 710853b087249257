//! `tracker <tracker_info.txt> <n> [--data-dir DIR] [--cluster-key FILE]`
//! (or `--config FILE`), `tracker keygen FILE`, `tracker fingerprint`,
//! `tracker completions SHELL` and `tracker man`: arguments ([`cli`]), the
//! cluster key, logging and signals; the work is in the library.

mod cli;
mod config;
mod manual;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use cli::Args;
use p2p_link::ClusterKey;
use proto::tracker_info;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
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

/// Descriptors kept out of the connection budget: listeners, the store,
/// logs, outgoing links to the other trackers.
const RESERVED_FILES: u64 = 256;

#[derive(Debug, Subcommand)]
pub(crate) enum KeyCommand {
    /// Writes a new cluster key to FILE (mode 0600, never overwrites) and
    /// prints its fingerprint.
    Keygen {
        /// Where to write the key; an existing file is never overwritten.
        file: PathBuf,
    },
    /// Prints the fingerprint of a cluster key, for tracker_info.txt.
    Fingerprint {
        /// The key file.
        #[arg(long, value_name = "FILE", required_unless_present = "data_dir")]
        cluster_key: Option<PathBuf>,
        /// A single tracker's data directory (its `cluster.key`).
        #[arg(long, value_name = "DIR", conflicts_with = "cluster_key")]
        data_dir: Option<PathBuf>,
    },
}

/// Where a single tracker keeps the key it made.
const CLUSTER_KEY_FILE: &str = "cluster.key";

fn main() -> ExitCode {
    // Before anything creates a file: the key, the store, the logs.
    tracker::data_dir::restrict_umask();
    no_transparent_huge_pages();
    let result = match cli::Cli::parse().action() {
        Ok(cli::Action::Key(command)) => key_command(command),
        Ok(cli::Action::Tool(tool)) => {
            manual::print(|out| manual::run(tool, out)).map_err(Into::into)
        }
        Ok(cli::Action::Serve(args)) => run(*args),
        Err(e) => Err(e.into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Turns transparent huge pages off for this process. The tracker's heap
/// is many small long-lived allocations (piece lists, map nodes) between
/// short-lived ones; backed by 2 MiB pages, a page stays whole while any
/// of it is in use, and faulting one in zeroes 2 MiB on the writer's path.
/// Measured with `cargo bench -p tracker --bench load -- --trackers 3
/// --write-rate 2000`: 35-60 MiB of each tracker's RSS were huge pages,
/// and without them the peak RSS fell by ~25 MiB and the write p99 and
/// max dropped too (README, performance). Applies whether the system's
/// THP mode is `always` or `madvise`.
fn no_transparent_huge_pages() {
    if let Err(e) = rustix::thread::disable_transparent_huge_pages(true) {
        // Only memory, not correctness: say so and go on.
        eprintln!("warning: cannot turn off transparent huge pages: {e}");
    }
}

fn key_command(command: KeyCommand) -> anyhow::Result<()> {
    match command {
        KeyCommand::Keygen { file } => {
            let key = ClusterKey::generate()?;
            key.save_new(&file)?;
            println!("{}", key.fingerprint());
            eprintln!(
                "cluster key written to {} (mode 0600). Copy it to every tracker host, start \
                 each tracker with --cluster-key FILE, and put the fingerprint above after \
                 each address of tracker_info.txt.",
                file.display()
            );
        }
        KeyCommand::Fingerprint {
            cluster_key,
            data_dir,
        } => {
            let path = match (cluster_key, data_dir) {
                (Some(file), _) => file,
                (None, Some(dir)) => dir.join(CLUSTER_KEY_FILE),
                (None, None) => bail!("pass --cluster-key FILE or --data-dir DIR"),
            };
            println!("{}", ClusterKey::load(&path)?.fingerprint());
        }
    }
    Ok(())
}

#[tokio::main]
async fn run(args: Args) -> anyhow::Result<()> {
    proto::service::init_logging("info");
    serve(args).await
}

async fn serve(args: Args) -> anyhow::Result<()> {
    // clap makes both present when there is no subcommand.
    let (Some(info_path), Some(n)) = (args.tracker_info, args.n) else {
        bail!("usage: tracker <tracker_info.txt> <n>");
    };
    let info = tracker_info::read(&info_path).context("bad tracker info file")?;
    let addrs = info.trackers.clone();
    let addr =
        tracker_info::nth(&addrs, n).with_context(|| format!("in {}", info_path.display()))?;
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
        None => match proto::dirs::default_tracker_dir(n) {
            Some(dir) => dir,
            None => bail!("cannot find a home directory for the data; pass --data-dir DIR"),
        },
    };
    let cluster_key = Arc::new(cluster_key(
        args.cluster_key.as_deref(),
        &info,
        &info_path,
        &data_dir,
    )?);
    tracing::info!("cluster identity {}", cluster_key.fingerprint());

    // Bind first: a port in use is the likelier mistake, and failing on it
    // must not touch the data directory.
    let listener = TcpListener::bind(addr).await.with_context(|| {
        format!(
            "cannot listen on {addr} (tracker {} of {})",
            n,
            info_path.display()
        )
    })?;
    let stop = CancellationToken::new();
    let options = ClusterOptions {
        node: u64::from(n),
        trackers: addrs,
        snapshot_every: args.snapshot_every,
        cluster_key,
    };
    let cluster = Cluster::start(options, &data_dir, stop.child_token())
        .await
        .with_context(|| format!("cannot open the tracker's data in {}", data_dir.display()))?;

    proto::service::stop_on_signals(stop.clone()).context("cannot install signal handlers")?;
    watch_stdin(stop.clone());

    tracing::info!(
        "tracker {} listening on {addr}, data in {}",
        n,
        data_dir.display()
    );
    let open_files = match proto::admission::raise_open_files_limit() {
        Ok(limit) => limit,
        Err(e) => {
            tracing::warn!("cannot raise the open-files limit: {e}");
            None
        }
    };
    let budget = proto::admission::connection_budget(
        open_files,
        RESERVED_FILES,
        server::DEFAULT_MAX_CONNECTIONS,
    );
    let options = ServerOptions {
        node: n,
        caps: tracker::state::Caps {
            groups: args.max_groups,
            ..tracker::state::Caps::default()
        },
        idle_timeout: Duration::from_secs(args.idle_timeout),
        max_connections: args.max_connections.unwrap_or(budget),
        max_connections_per_source: args.max_connections_per_ip,
        ..ServerOptions::default()
    };
    tracing::info!(
        "at most {} connections, {} per IP address; idle ones closed after {} s",
        options.max_connections,
        options.max_connections_per_source,
        args.idle_timeout
    );
    proto::service::notify_ready();
    let served = server::run(listener, cluster.clone(), options, stop.cancelled_owned()).await;
    served.context("graceful stop did not finish")?;
    tokio::time::timeout(RAFT_STOP_DEADLINE, cluster.raft.shutdown())
        .await
        .context("Raft did not stop in time")?
        .context("Raft stopped with an error")?;
    tracing::info!("tracker {} stopped", n);
    Ok(())
}

/// The key this tracker runs with: `--cluster-key FILE`, or a single
/// tracker's own `DATA_DIR/cluster.key` (made on first start). It must match
/// the fingerprint of tracker_info.txt, if the file has one.
fn cluster_key(
    file: Option<&Path>,
    info: &tracker_info::TrackerInfo,
    info_path: &Path,
    data_dir: &Path,
) -> anyhow::Result<ClusterKey> {
    let key = match file {
        Some(file) => ClusterKey::load(file)?,
        None if info.trackers.len() > 1 => bail!(
            "{} lists {} trackers: a cluster needs one shared key. Make it with \
             `tracker keygen cluster.key`, copy the file to every tracker host, and start \
             each tracker with --cluster-key cluster.key",
            info_path.display(),
            info.trackers.len()
        ),
        None => {
            tracker::data_dir::prepare(data_dir)
                .with_context(|| format!("cannot prepare {}", data_dir.display()))?;
            ClusterKey::load_or_create(&data_dir.join(CLUSTER_KEY_FILE))?
        }
    };
    if let Some(pinned) = &info.fingerprint {
        let fingerprint = key.fingerprint().to_string();
        if *pinned != fingerprint {
            bail!(
                "this cluster key's fingerprint is {fingerprint}, but {} names {pinned}: \
                 wrong key file, or an outdated tracker_info.txt",
                info_path.display()
            );
        }
    }
    Ok(key)
}

/// How often the stdin watcher looks again whether it may read.
const STDIN_POLL: Duration = Duration::from_millis(200);

/// `quit` typed on the terminal stops the tracker. Stdin is read only while
/// it is a terminal and this process is in its foreground: a background
/// process reading its terminal is stopped by SIGTTIN (`tracker … &` froze
/// an interactive shell's walkthrough with `Stopped (tty input)`), and a
/// stdin that is not a terminal (a pipe, /dev/null, systemd) is never read.
/// So it waits for input with `poll` (which never stops a process) and
/// checks the foreground again before each read; a job moved to the
/// background later (Ctrl-Z, `bg`) stops reading from then on. A plain
/// thread: a blocking wait would keep a tokio runtime from shutting down,
/// a detached thread does not.
fn watch_stdin(stop: CancellationToken) {
    if !std::io::stdin().is_terminal() {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            let mut line = Vec::new();
            while !stop.is_cancelled() {
                match read_foreground_stdin(&mut line) {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(e) => {
                        tracing::debug!("stdin no longer readable ({e}); `quit` is off");
                        return;
                    }
                }
                while let Some(end) = line.iter().position(|&b| b == b'\n') {
                    let typed: Vec<u8> = line.drain(..=end).collect();
                    if String::from_utf8_lossy(&typed).trim() == "quit" {
                        tracing::info!("quit read on stdin; stopping");
                        proto::service::notify_stopping();
                        stop.cancel();
                        return;
                    }
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot watch stdin; `quit` will not work");
    }
}

/// Waits up to [`STDIN_POLL`] for input and reads what there is into `line`
/// if this process is the terminal's foreground. False at end of input.
fn read_foreground_stdin(line: &mut Vec<u8>) -> std::io::Result<bool> {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let stdin = std::io::stdin();
    let timeout = Timespec::try_from(STDIN_POLL).unwrap_or(Timespec {
        tv_sec: 0,
        tv_nsec: 200_000_000,
    });
    let ready = {
        let mut fds = [PollFd::new(&stdin, PollFlags::IN)];
        match poll(&mut fds, Some(&timeout)) {
            // A signal (SIGHUP, a stop and continue) is no reason to give
            // up on the terminal.
            Err(rustix::io::Errno::INTR) => return Ok(true),
            r => r?,
        };
        !fds[0].revents().is_empty()
    };
    if !ready || !in_foreground(&stdin) {
        // In the background the shell gets what is typed; sleep instead of
        // spinning on a readable terminal that is not ours to read.
        if ready {
            std::thread::sleep(STDIN_POLL);
        }
        return Ok(true);
    }
    let mut buf = [0u8; 1024];
    let n = match rustix::io::read(&stdin, &mut buf) {
        Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN) => return Ok(true),
        r => r?,
    };
    line.extend_from_slice(&buf[..n]);
    // A line longer than any command is not one: keep memory bounded.
    if line.len() > 4096 {
        line.clear();
    }
    Ok(n > 0)
}

/// This process's group is the foreground of the terminal on `stdin`.
fn in_foreground(stdin: &std::io::Stdin) -> bool {
    rustix::termios::tcgetpgrp(stdin).is_ok_and(|fg| fg == rustix::process::getpgrp())
}
