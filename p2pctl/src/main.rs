//! p2pctl: argv → one request to the local p2pd → printed answer → exit status.
//!
//! - [`cli`]: clap definition (usage errors exit 2) and value validation.
//! - [`client`]: the control-socket exchange.
//! - [`render`]: human and `--json` output, and the exit-status mapping.
//! - [`progress`]: bars on stderr fed by the daemon's progress frames.
//! - [`watch`]: `show_downloads --watch`.
//! - [`docs`]: `completions` and `man`, which need no daemon.

mod cli;
mod client;
mod docs;
mod progress;
mod render;
mod watch;

use clap::Parser;
use cli::{Command, DaemonCommand};
use proto::ctl::{CtlReply, CtlRequest};
use proto::{ErrorCode, WireError};
use render::Outcome;
use std::ffi::OsString;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

/// True when `--json` is on the command line as a flag (not after `--`):
/// what a script asked for even when clap could not make sense of the rest.
fn json_requested(argv: &[OsString]) -> bool {
    argv.iter()
        .skip(1)
        .take_while(|a| *a != "--")
        .any(|a| a == "--json")
}

/// clap's refusal: its message on stderr, exit 2, and under `--json` the one
/// failure document with code `usage`. `--help` and `--version` are
/// "errors" clap prints on stdout: exit 0, as they are.
fn usage_error(e: &clap::Error, json: bool) -> ExitCode {
    let _ = e.print();
    if !e.use_stderr() {
        return ExitCode::SUCCESS;
    }
    if json {
        // StyledStr's Display is plain text: no ANSI, whatever the terminal.
        out(&render::json_usage_error(&usage_sentence(
            &e.render().to_string(),
        )));
    }
    ExitCode::from(render::EXIT_USAGE)
}

/// clap's first paragraph on one line, without its `error: ` (the JSON
/// `error` is a sentence, like every other code's): "the following required
/// arguments were not provided: <GROUP_ID>".
fn usage_sentence(clap_text: &str) -> String {
    let first: Vec<&str> = clap_text
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect();
    let joined = first.join(" ");
    let sentence = joined.strip_prefix("error: ").unwrap_or(&joined);
    if sentence.is_empty() {
        "bad usage".to_owned()
    } else {
        sentence.to_owned()
    }
}

/// `completions` and `man`: printed from the clap definition alone. What
/// they print is the script or page, `--json` or not; only `man --dir`,
/// which prints nothing else, answers `--json` with a document.
fn describe(command: &Command, json: bool) -> Option<ExitCode> {
    let mut stdout = std::io::stdout().lock();
    let written = match command {
        Command::Completions { shell } => {
            docs::completions(*shell, &mut stdout);
            Ok(())
        }
        Command::Man { dir: None } => docs::man_page(&mut stdout),
        Command::Man { dir: Some(dir) } => docs::man_pages_to(dir).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("cannot write into {}: {e}", dir.display()),
            )
        }),
        Command::Daemon(_) => return None,
    };
    drop(stdout);
    Some(match written {
        Ok(()) => {
            if let (true, Command::Man { dir: Some(dir) }) = (json, command) {
                out(&render::json(&CtlReply::Ok {
                    message: format!("wrote the man pages into {}", dir.display()),
                }));
            }
            ExitCode::SUCCESS
        }
        // A closed pipe (`p2pctl man | head`) is not a failure.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            let outcome = refuse(json, WireError::new(ErrorCode::Io, e.to_string()));
            ExitCode::from(render::exit_status(&outcome))
        }
    })
}

fn main() -> ExitCode {
    let argv: Vec<OsString> = std::env::args_os().collect();
    let cli = match cli::Cli::try_parse_from(&argv) {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e, json_requested(&argv)),
    };
    if let Some(code) = describe(&cli.command, cli.json) {
        return code;
    }
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
    let Command::Daemon(command) = &cli.command else {
        // `describe` answered the others before the runtime started.
        return Outcome::Success;
    };
    let mut prepared = match command.prepare() {
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

    if let DaemonCommand::ShowDownloads {
        watch: true,
        interval,
    } = command
    {
        let tty = !json && std::io::stdout().is_terminal();
        let watching = watch::watch(&socket, Duration::from_secs(*interval), tty);
        let result = tokio::select! {
            r = watching => Some(r),
            _ = tokio::signal::ctrl_c() => None,
        };
        return answer(json, &home, &socket, result);
    }

    let streaming = prepared.streams();
    let request = prepared.request;
    let waits_for_download = matches!(request, CtlRequest::DownloadFile { detach: false, .. });
    let kind = match request {
        CtlRequest::UploadFile { .. } => progress::Kind::Upload,
        _ => progress::Kind::Download,
    };
    let name = match &request {
        CtlRequest::DownloadFile { name, .. } => name.to_string(),
        CtlRequest::UploadFile { path, .. } => path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        _ => String::new(),
    };
    let mut view =
        progress::ProgressView::new(kind, name, !json && std::io::stderr().is_terminal());

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
    if result.is_none() {
        err("\ndownload continues in the daemon; see p2pctl show_downloads\n");
    }
    answer(json, &home, &socket, result)
}

/// Print the daemon's final reply (or why there is none); `None` is Ctrl-C.
fn answer(
    json: bool,
    home: &Path,
    socket: &Path,
    result: Option<Result<CtlReply, client::ClientError>>,
) -> Outcome {
    match result {
        None => Outcome::Interrupted,
        Some(Ok(CtlReply::Error(e))) => refuse(json, e),
        Some(Ok(reply)) => {
            if json {
                out(&render::json(&reply));
            } else {
                out(&render::human(&reply, std::io::stdout().is_terminal()));
            }
            Outcome::Success
        }
        Some(Err(client::ClientError::NoDaemon { .. })) => no_daemon(json, home, socket),
        Some(Err(e)) => refuse(json, e.to_wire()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_flag_found_anywhere_before_a_double_dash() {
        let argv = |a: &[&str]| a.iter().map(OsString::from).collect::<Vec<_>>();
        assert!(json_requested(&argv(&["p2pctl", "--json", "bogus"])));
        assert!(json_requested(&argv(&["p2pctl", "bogus", "x", "--json"])));
        assert!(!json_requested(&argv(&["p2pctl", "bogus"])));
        assert!(!json_requested(&argv(&["p2pctl", "x", "--", "--json"])));
        assert!(
            !json_requested(&argv(&["--json"])),
            "argv[0] is the program"
        );
    }

    #[test]
    fn usage_sentence_is_clap_first_paragraph() {
        assert_eq!(
            usage_sentence(
                "error: the following required arguments were not provided:\n  <GROUP_ID>\n\nUsage: p2pctl x\n"
            ),
            "the following required arguments were not provided: <GROUP_ID>"
        );
        assert_eq!(
            usage_sentence("error: unrecognized subcommand 'x'\n\n  tip: ...\n"),
            "unrecognized subcommand 'x'"
        );
        assert_eq!(usage_sentence(""), "bad usage");
    }
}
