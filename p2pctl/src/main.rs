//! p2pctl: argv → one request to the local p2pd → printed answer → exit status.
//!
//! - [`cli`]: clap definition (usage errors exit 2) and value validation.
//! - [`client`]: the control-socket exchange.
//! - [`render`]: human and `--json` output, and the exit-status mapping.
//! - [`progress`]: bars on stderr fed by the daemon's progress frames.

mod cli;
mod client;
mod progress;
mod render;

use clap::Parser;
use proto::ctl::{CtlReply, CtlRequest};
use proto::{ErrorCode, WireError};
use render::Outcome;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        // --help and --version are "errors" printed on stdout: exit 0.
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(render::EXIT_USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let outcome = refuse(
                cli.json,
                WireError::new(ErrorCode::Io, format!("cannot start the runtime: {e}")),
            );
            return ExitCode::from(render::exit_status(&outcome));
        }
    };
    let outcome = runtime.block_on(run(cli));
    ExitCode::from(render::exit_status(&outcome))
}

/// Write to stdout, ignoring a closed pipe (`p2pctl list_files g | head -1`).
fn out(text: &str) {
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

fn err(text: &str) {
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// Report a refusal: the `error:` line on stderr, and in `--json` mode the
/// failure document on stdout.
fn refuse(json: bool, e: WireError) -> Outcome {
    err(&render::error_line(&e.message));
    if json {
        out(&render::json_error(&e));
    }
    Outcome::Refused(e)
}

/// `'it''s'`-style quoting for a path shown as a command to copy.
fn shell_quote(path: &Path) -> String {
    let s = path.display().to_string();
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/_.,:+@%=-".contains(c))
    {
        s
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

fn no_daemon(json: bool, home: &Path, socket: &Path) -> Outcome {
    let message = format!(
        "no p2pd answers on {}; start one with: p2pd --home {}",
        socket.display(),
        shell_quote(home)
    );
    err(&render::error_line(&message));
    if json {
        out(&render::json_error(&WireError::new(ErrorCode::Io, message)));
    }
    Outcome::NoDaemon
}

async fn run(cli: cli::Cli) -> Outcome {
    let json = cli.json;
    let mut prepared = match cli.command.prepare() {
        Ok(p) => p,
        Err(e) => return refuse(json, e),
    };
    let home = match cli::home_dir(cli.home.as_deref()) {
        Ok(h) => h,
        Err(e) => return refuse(json, e),
    };
    let socket = proto::dirs::socket_path(&home);
    // Do not ask for a password nobody will read.
    if prepared.password.is_some() && !socket.exists() {
        return no_daemon(json, &home, &socket);
    }
    if let Err(e) = prepared.fill_password() {
        return refuse(json, e);
    }

    let streaming = prepared.streams();
    let request = prepared.request;
    let waits_for_download = matches!(request, CtlRequest::DownloadFile { detach: false, .. });
    let kind = match request {
        CtlRequest::UploadFile { .. } => progress::Kind::Upload,
        _ => progress::Kind::Download,
    };
    let mut view = progress::ProgressView::new(kind, !json && std::io::stderr().is_terminal());

    let result = if waits_for_download {
        // Ctrl-C detaches: closing the socket leaves the download to the daemon.
        tokio::select! {
            r = client::request(&socket, request, streaming, |p| view.tick(p)) => Some(r),
            _ = tokio::signal::ctrl_c() => None,
        }
    } else {
        Some(client::request(&socket, request, streaming, |p| view.tick(p)).await)
    };
    view.finish();

    match result {
        None => {
            err("\ndownload continues in the daemon; see p2pctl show_downloads\n");
            Outcome::Interrupted
        }
        Some(Ok(CtlReply::Error(e))) => refuse(json, e),
        Some(Ok(reply)) => {
            if json {
                out(&render::json(&reply));
            } else {
                out(&render::human(&reply, std::io::stdout().is_terminal()));
            }
            Outcome::Success
        }
        Some(Err(client::ClientError::NoDaemon { .. })) => no_daemon(json, &home, &socket),
        Some(Err(e)) => refuse(json, e.to_wire()),
    }
}
