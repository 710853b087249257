//! argv → one [`CtlRequest`].
//!
//! clap owns usage (exit 2): unknown commands, wrong argument counts, unknown
//! flags. Values clap accepts as strings are validated here with proto's
//! newtypes, so a well-formed command with a bad value is refused with
//! `invalid_argument` (exit 1) before the daemon is contacted.

use clap::{Parser, Subcommand};
use proto::ctl::CtlRequest;
use proto::{ErrorCode, FileName, GroupId, UserId, WireError};
use std::ffi::OsString;
use std::io::{BufRead, IsTerminal};
use std::path::{Path, PathBuf};

const EXAMPLES_AND_EXIT_STATUS: &str = "\
EXAMPLES:
  p2pctl create_user alice            # prompts for the password twice
  p2pctl login alice
  p2pctl create_group friends
  p2pctl upload_file ./notes.pdf friends
  p2pctl list_files friends
  p2pctl download_file friends notes.pdf ~/Downloads
  p2pctl --json status | jq -r .user

Every command also answers to its kebab-case name (create-user = create_user).

EXIT STATUS:
  0  success
  1  the command was refused or failed (a sentence on stderr starting 'error:'),
     including a well-formed command with an invalid value (code invalid_argument)
  2  bad usage: unknown command, wrong number of arguments, unknown flag
  3  no daemon answers on the control socket (the message says how to start one)

With --json, stdout holds exactly one JSON document, also on failure:
  {\"ok\": false, \"code\": \"<code>\", \"error\": \"<sentence>\"} (code usage for bad usage)";

/// Control the local p2pshare daemon (p2pd): one command per invocation.
#[derive(Debug, Parser)]
#[command(
    name = "p2pctl",
    version,
    about,
    max_term_width = 100,
    after_help = EXAMPLES_AND_EXIT_STATUS
)]
pub struct Cli {
    /// The daemon's state directory; its control socket is DIR/p2pd.sock
    /// [default: the platform data directory]
    #[arg(long, env = "P2P_HOME", value_name = "DIR", global = true)]
    pub home: Option<PathBuf>,
    /// Print exactly one JSON document on stdout (also for errors)
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// The daemon's commands, and two that only describe p2pctl itself.
#[derive(Debug, Subcommand)]
pub enum Command {
    #[command(flatten)]
    Daemon(DaemonCommand),
    /// Print a shell completion script on stdout (no daemon needed)
    #[command(after_help = "EXAMPLES:\n  \
        p2pctl completions bash > ~/.local/share/bash-completion/completions/p2pctl\n  \
        p2pctl completions zsh > ~/.zfunc/_p2pctl\n  \
        p2pctl completions fish > ~/.config/fish/completions/p2pctl.fish")]
    Completions {
        /// The shell to complete for
        shell: clap_complete::Shell,
    },
    /// Print the man page on stdout, or write every page into a directory (no daemon needed)
    #[command(after_help = "EXAMPLES:\n  \
        p2pctl man | man -l -\n  \
        p2pctl man --dir ~/.local/share/man/man1")]
    Man {
        /// Write p2pctl.1 and one p2pctl-<command>.1 per command into DIR instead
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

const USER_ID: &str = "A user name: 1 to 64 of A-Z a-z 0-9 _ . -";
const GROUP_ID: &str = "A group name: 1 to 64 of A-Z a-z 0-9 _ . -";

/// One variant per SPEC command, named as SPEC names it; each also answers
/// to its kebab-case spelling, since that is what most CLIs use.
#[derive(Debug, Subcommand)]
#[command(rename_all = "snake_case")]
pub enum DaemonCommand {
    /// Create an account (the password is prompted for when omitted; `-` reads it from stdin)
    #[command(
        alias = "create-user",
        after_help = "EXAMPLES:\n  p2pctl create_user alice\n  \
            printf '%s\\n' \"$PW\" | p2pctl create_user alice -"
    )]
    CreateUser {
        #[arg(help = USER_ID)]
        user_id: String,
        /// The password; omitted: prompted for on a terminal, else one line of stdin; `-`: one line of stdin
        #[arg(allow_hyphen_values = true)]
        password: Option<String>,
    },
    /// Log this daemon in (the password is prompted for when omitted; `-` reads it from stdin)
    #[command(after_help = "EXAMPLES:\n  p2pctl login alice\n  \
            p2pctl login alice - < ~/.p2pshare-password")]
    Login {
        #[arg(help = USER_ID)]
        user_id: String,
        /// The password; omitted: prompted for on a terminal, else one line of stdin; `-`: one line of stdin
        #[arg(allow_hyphen_values = true)]
        password: Option<String>,
    },
    /// Create a group; you become its owner and first member
    #[command(alias = "create-group")]
    CreateGroup {
        #[arg(help = GROUP_ID)]
        group_id: String,
    },
    /// Ask to join a group (its owner accepts with accept_request)
    #[command(alias = "join-group")]
    JoinGroup {
        #[arg(help = GROUP_ID)]
        group_id: String,
    },
    /// Leave a group; your files in it stop being shared by you
    #[command(alias = "leave-group")]
    LeaveGroup {
        #[arg(help = GROUP_ID)]
        group_id: String,
    },
    /// Pending join requests of a group you own
    #[command(
        alias = "list-requests",
        after_long_help = "JSON (--json):\n  [\"bob\", \"carol\"]"
    )]
    ListRequests {
        /// A group you own
        group_id: String,
    },
    /// Accept a user's join request
    #[command(alias = "accept-request")]
    AcceptRequest {
        /// A group you own
        group_id: String,
        /// The user whose request list_requests shows
        user_id: String,
    },
    /// Every group in the network, its owner and member count
    #[command(
        alias = "list-groups",
        after_long_help = "JSON (--json):\n  [{\"group\": \"g1\", \"owner\": \"alice\", \"members\": 2}]"
    )]
    ListGroups,
    /// Files shared in a group: name, size, SHA-1, holders, online holders
    #[command(
        alias = "list-files",
        after_long_help = "On a terminal: a header, aligned columns, human sizes and short SHA-1s.\n\
            Piped: no header, tab-separated, sizes in bytes, full SHA-1s.\n\n\
            JSON (--json):\n  \
            [{\"name\": \"f.iso\", \"size\": 123, \"sha1\": \"<40 hex>\", \"holders\": 2, \"online\": 1}]\n  \
            holders: users holding the complete file; online: those of them logged in now"
    )]
    ListFiles {
        /// A group you are a member of
        group_id: String,
    },
    /// Share a file with a group (served from where it lies, not copied)
    #[command(
        alias = "upload-file",
        after_help = "EXAMPLES:\n  p2pctl upload_file ./holiday.mp4 friends"
    )]
    UploadFile {
        // OsString, not PathBuf: clap refuses an empty PathBuf as bad usage,
        // and SPEC makes a bad value `invalid_argument` (exit 1).
        /// The file to share, relative to the current directory; it is listed under its base name
        file_path: OsString,
        /// A group you are a member of
        group_id: String,
    },
    /// Download a file of a group to a directory or a file path
    #[command(
        alias = "download-file",
        after_help = "EXAMPLES:\n  \
            p2pctl download_file friends holiday.mp4 ~/Videos\n  \
            p2pctl download_file friends holiday.mp4 ./copy.mp4 --detach\n  \
            p2pctl show_downloads --watch"
    )]
    DownloadFile {
        /// A group you are a member of
        group_id: String,
        /// The file's name as list_files shows it
        file_name: OsString,
        /// An existing directory (the file keeps its name) or a new file's path; never overwritten
        destination_path: OsString,
        /// Return at once; the daemon carries on (see show_downloads)
        #[arg(long)]
        detach: bool,
    },
    /// Downloads of this daemon and how far they are
    #[command(
        alias = "show-downloads",
        after_long_help = "Lines start with [D] [group] name (in progress or paused), [C] (complete)\n\
            or [F] (failed). On a terminal: a header, then percent, done/size, rate, ETA, state,\n\
            destination and reason, aligned. Piped: tab-separated, no header: the [X] [group] name\n\
            prefix, percent, bytes done, size, rate in bytes/s, state, destination, reason.\n\n\
            JSON (--json):\n  \
            [{\"group\": \"g1\", \"name\": \"f.iso\", \"state\": \"downloading|complete|failed|paused\", \"bytes_done\": 0, \"size\": 123, \"path\": \"/abs/f.iso\", \"peers\": [{\"user\": \"bob\", \"bytes\": 0}]}]\n  \
            peers: every peer this download has received verified bytes from, with how many;\n  \
            a paused or failed download also has \"reason\": \"<human sentence>\"\n\n\
            EXAMPLES:\n  p2pctl show_downloads --watch && echo all done"
    )]
    ShowDownloads {
        /// Redraw until every download is complete or failed (Ctrl-C stops watching); piped or
        /// with --json: wait, then print the final listing once
        #[arg(long)]
        watch: bool,
        /// Seconds between two looks with --watch
        #[arg(long, value_name = "SECS", default_value_t = 1, requires = "watch",
              value_parser = clap::value_parser!(u64).range(1..=3600))]
        interval: u64,
    },
    /// Stop serving a file
    #[command(alias = "stop-share")]
    StopShare {
        /// A group you share the file in
        group_id: String,
        /// The file's name as list_files shows it
        file_name: OsString,
    },
    /// Stop sharing everything and pause downloads until the next login
    Logout,
    /// Who is logged in, the tracker in use, the peer address, counts
    #[command(after_long_help = "JSON (--json):\n  \
            {\"user\": \"alice\" or null, \"tracker\": \"IP:PORT\" or null, \"listen\": \"IP:PORT\", \"shares\": 3, \"downloads\": 1, \"uploaded\": 0}\n  \
            uploaded: piece bytes this daemon has served to peers since it started")]
    Status,
}

fn invalid(message: impl Into<String>) -> WireError {
    WireError::new(ErrorCode::InvalidArgument, message)
}

fn user(s: &str) -> Result<UserId, WireError> {
    UserId::try_from(s).map_err(|e| invalid(e.to_string()))
}

fn group(s: &str) -> Result<GroupId, WireError> {
    GroupId::try_from(s).map_err(|e| invalid(e.to_string()))
}

fn file_name(s: &OsString) -> Result<FileName, WireError> {
    let s = s
        .to_str()
        .ok_or_else(|| invalid(format!("file name {s:?} is not valid UTF-8")))?;
    FileName::try_from(s).map_err(|e| invalid(e.to_string()))
}

/// Make `path` absolute against p2pctl's working directory, without touching
/// the file system (a destination need not exist; symlinks stay as given).
///
/// # Errors
/// `invalid_argument` for an empty or non-UTF-8 path (the wire is JSON),
/// `io` if the working directory is unknown.
pub fn absolute(path: &Path) -> Result<PathBuf, WireError> {
    if path.as_os_str().is_empty() {
        return Err(invalid("the path must not be empty"));
    }
    let abs = std::path::absolute(path).map_err(|e| {
        WireError::new(
            ErrorCode::Io,
            format!("cannot resolve {}: {e}", path.display()),
        )
    })?;
    if abs.to_str().is_none() {
        return Err(invalid(format!("path {abs:?} is not valid UTF-8")));
    }
    Ok(abs)
}

/// Where the password of `create_user` / `login` comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordSource {
    Given(String),
    /// `-`, or omitted while stdin is not a terminal: one line of stdin.
    StdinLine,
    /// Omitted on a terminal: ask without echo.
    Prompt {
        confirm: bool,
    },
}

impl PasswordSource {
    fn choose(arg: &Option<String>, confirm: bool) -> Self {
        match arg.as_deref() {
            Some("-") => PasswordSource::StdinLine,
            Some(p) => PasswordSource::Given(p.to_owned()),
            None if std::io::stdin().is_terminal() => PasswordSource::Prompt { confirm },
            None => PasswordSource::StdinLine,
        }
    }

    /// # Errors
    /// `invalid_argument` when stdin ends before a line or the two prompted
    /// passwords differ; `io` when the terminal cannot be read.
    pub fn read(self, user: &UserId) -> Result<String, WireError> {
        match self {
            PasswordSource::Given(p) => Ok(p),
            PasswordSource::StdinLine => read_password_line(&mut std::io::stdin().lock()),
            PasswordSource::Prompt { confirm } => {
                let io = |e: std::io::Error| {
                    WireError::new(ErrorCode::Io, format!("cannot read the password: {e}"))
                };
                let first =
                    rpassword::prompt_password(format!("Password for {user}: ")).map_err(io)?;
                if confirm {
                    let again = rpassword::prompt_password("Repeat the password: ").map_err(io)?;
                    if again != first {
                        return Err(invalid("the two passwords differ"));
                    }
                }
                Ok(first)
            }
        }
    }
}

/// One line of `r` without its line ending.
///
/// # Errors
/// `invalid_argument` if `r` ends before any byte; `io` on a read error.
pub fn read_password_line(r: &mut impl BufRead) -> Result<String, WireError> {
    let mut line = String::new();
    let n = r.read_line(&mut line).map_err(|e| {
        WireError::new(
            ErrorCode::Io,
            format!("cannot read the password from stdin: {e}"),
        )
    })?;
    if n == 0 {
        return Err(invalid(
            "no password given: pass it as an argument, '-' with a line on stdin, or run on a terminal",
        ));
    }
    if line.ends_with('\n') {
        line.pop();
        if line.ends_with('\r') {
            line.pop();
        }
    }
    Ok(line)
}

/// A validated command, ready to send once its password (if any) is read.
#[derive(Debug)]
pub struct Prepared {
    pub request: CtlRequest,
    /// For `create_user` / `login`: fill `password` from here before sending.
    pub password: Option<PasswordSource>,
}

impl Prepared {
    fn plain(request: CtlRequest) -> Self {
        Prepared {
            request,
            password: None,
        }
    }

    /// True when the daemon answers with progress frames and the reply has no
    /// overall deadline.
    pub fn streams(&self) -> bool {
        matches!(
            self.request,
            CtlRequest::UploadFile { .. } | CtlRequest::DownloadFile { detach: false, .. }
        )
    }

    /// Read the password, if this command needs one, into the request.
    ///
    /// # Errors
    /// As [`PasswordSource::read`].
    pub fn fill_password(&mut self) -> Result<(), WireError> {
        let Some(source) = self.password.take() else {
            return Ok(());
        };
        match &mut self.request {
            CtlRequest::CreateUser { user, password } | CtlRequest::Login { user, password } => {
                *password = source.read(user)?;
            }
            _ => {}
        }
        Ok(())
    }
}

impl DaemonCommand {
    /// Validate every value and build the request.
    ///
    /// # Errors
    /// `invalid_argument` for an id, file name or path the daemon would refuse.
    pub fn prepare(&self) -> Result<Prepared, WireError> {
        Ok(match self {
            DaemonCommand::CreateUser { user_id, password } => Prepared {
                request: CtlRequest::CreateUser {
                    user: user(user_id)?,
                    password: String::new(),
                },
                password: Some(PasswordSource::choose(password, true)),
            },
            DaemonCommand::Login { user_id, password } => Prepared {
                request: CtlRequest::Login {
                    user: user(user_id)?,
                    password: String::new(),
                },
                password: Some(PasswordSource::choose(password, false)),
            },
            DaemonCommand::CreateGroup { group_id } => Prepared::plain(CtlRequest::CreateGroup {
                group: group(group_id)?,
            }),
            DaemonCommand::JoinGroup { group_id } => Prepared::plain(CtlRequest::JoinGroup {
                group: group(group_id)?,
            }),
            DaemonCommand::LeaveGroup { group_id } => Prepared::plain(CtlRequest::LeaveGroup {
                group: group(group_id)?,
            }),
            DaemonCommand::ListRequests { group_id } => Prepared::plain(CtlRequest::ListRequests {
                group: group(group_id)?,
            }),
            DaemonCommand::AcceptRequest { group_id, user_id } => {
                Prepared::plain(CtlRequest::AcceptRequest {
                    group: group(group_id)?,
                    user: user(user_id)?,
                })
            }
            DaemonCommand::ListGroups => Prepared::plain(CtlRequest::ListGroups),
            DaemonCommand::ListFiles { group_id } => Prepared::plain(CtlRequest::ListFiles {
                group: group(group_id)?,
            }),
            DaemonCommand::UploadFile {
                file_path,
                group_id,
            } => {
                let group = group(group_id)?;
                let path = absolute(Path::new(file_path))?;
                // The file is registered under its base name: refuse early what
                // the daemon would refuse anyway (`..`, a trailing `/`, ...).
                let base = path
                    .file_name()
                    .ok_or_else(|| invalid(format!("{file_path:?} does not name a file")))?;
                file_name(&base.to_owned())?;
                Prepared::plain(CtlRequest::UploadFile { path, group })
            }
            DaemonCommand::DownloadFile {
                group_id,
                file_name: name,
                destination_path,
                detach,
            } => Prepared::plain(CtlRequest::DownloadFile {
                group: group(group_id)?,
                name: file_name(name)?,
                dest: absolute(Path::new(destination_path))?,
                detach: *detach,
            }),
            DaemonCommand::ShowDownloads { .. } => Prepared::plain(CtlRequest::ShowDownloads),
            DaemonCommand::StopShare {
                group_id,
                file_name: name,
            } => Prepared::plain(CtlRequest::StopShare {
                group: group(group_id)?,
                name: file_name(name)?,
            }),
            DaemonCommand::Logout => Prepared::plain(CtlRequest::Logout),
            DaemonCommand::Status => Prepared::plain(CtlRequest::Status),
        })
    }
}

/// The home directory: `--home`, else `P2P_HOME` (both via clap), else the
/// platform data directory, the same default as p2pd's.
///
/// # Errors
/// `invalid_argument` when there is no platform data directory (no `$HOME`).
pub fn home_dir(given: Option<&Path>) -> Result<PathBuf, WireError> {
    match given {
        Some(h) if !h.as_os_str().is_empty() => Ok(h.to_path_buf()),
        _ => proto::dirs::default_home()
            .ok_or_else(|| invalid("no platform data directory (is $HOME set?); pass --home DIR")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::error::ErrorKind;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("p2pctl").chain(args.iter().copied()))
    }

    fn daemon(cli: &Cli) -> &DaemonCommand {
        match &cli.command {
            Command::Daemon(d) => d,
            other => panic!("not a daemon command: {other:?}"),
        }
    }

    /// The request a command line becomes (passwords given, so no prompt).
    fn request(args: &[&str]) -> CtlRequest {
        let cli = parse(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        daemon(&cli).prepare().unwrap().request
    }

    #[test]
    fn kebab_case_aliases_make_the_same_request() {
        for args in [
            &["create_user", "alice", "pw"][..],
            &["create_group", "g"],
            &["join_group", "g"],
            &["leave_group", "g"],
            &["list_requests", "g"],
            &["accept_request", "g", "bob"],
            &["list_groups"],
            &["list_files", "g"],
            &["upload_file", "f", "g"],
            &["download_file", "g", "f", "d", "--detach"],
            &["download_file", "g", "f", "d"],
            &["show_downloads"],
            &["stop_share", "g", "f"],
        ] {
            let kebab = args[0].replace('_', "-");
            assert_ne!(kebab, args[0]);
            let mut aliased = args.to_vec();
            aliased[0] = &kebab;
            assert_eq!(
                format!("{:?}", request(args)),
                format!("{:?}", request(&aliased)),
                "{args:?}"
            );
        }
    }

    #[test]
    fn every_daemon_command_with_an_underscore_has_its_kebab_alias() {
        use clap::CommandFactory;
        let cmd = Cli::command();
        for sub in cmd.get_subcommands() {
            let name = sub.get_name();
            if name.contains('_') {
                let kebab = name.replace('_', "-");
                assert!(
                    sub.get_all_aliases().any(|a| a == kebab),
                    "{name} lacks the alias {kebab}"
                );
            }
        }
    }

    #[test]
    fn every_argument_is_described() {
        use clap::CommandFactory;
        let cmd = Cli::command();
        for sub in cmd.get_subcommands() {
            for arg in sub.get_arguments() {
                assert!(
                    arg.get_help()
                        .is_some_and(|h| !h.to_string().trim().is_empty()),
                    "{} {}: no description",
                    sub.get_name(),
                    arg.get_id()
                );
            }
        }
    }

    #[test]
    fn long_help_of_the_listings_has_spec_json_shapes_verbatim() {
        use clap::CommandFactory;
        let mut cmd = Cli::command();
        for (name, shape) in [
            (
                "list_groups",
                r#"[{"group": "g1", "owner": "alice", "members": 2}]"#,
            ),
            ("list_requests", r#"["bob", "carol"]"#),
            (
                "list_files",
                r#"[{"name": "f.iso", "size": 123, "sha1": "<40 hex>", "holders": 2, "online": 1}]"#,
            ),
            (
                "show_downloads",
                r#"[{"group": "g1", "name": "f.iso", "state": "downloading|complete|failed|paused", "bytes_done": 0, "size": 123, "path": "/abs/f.iso", "peers": [{"user": "bob", "bytes": 0}]}]"#,
            ),
            (
                "status",
                r#"{"user": "alice" or null, "tracker": "IP:PORT" or null, "listen": "IP:PORT", "shares": 3, "downloads": 1, "uploaded": 0}"#,
            ),
        ] {
            let sub = cmd.find_subcommand_mut(name).expect(name);
            let help = sub.render_long_help().to_string();
            assert!(help.contains(shape), "{name}:\n{help}");
        }
    }

    #[test]
    fn watch_and_interval() {
        let cli = parse(&["show_downloads", "--watch", "--interval", "3"]).unwrap();
        match daemon(&cli) {
            DaemonCommand::ShowDownloads { watch, interval } => {
                assert!(*watch);
                assert_eq!(*interval, 3);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            parse(&["show_downloads", "--interval", "3"])
                .unwrap_err()
                .exit_code(),
            2,
            "--interval means nothing without --watch"
        );
        assert!(parse(&["show_downloads", "--watch", "--interval", "0"]).is_err());
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn commands_have_spec_names() {
        for args in [
            &["create_user", "alice", "pw"][..],
            &["login", "alice"],
            &["create_group", "g"],
            &["join_group", "g"],
            &["leave_group", "g"],
            &["list_requests", "g"],
            &["accept_request", "g", "bob"],
            &["list_groups"],
            &["list_files", "g"],
            &["upload_file", "f", "g"],
            &["download_file", "g", "f", "d", "--detach"],
            &["show_downloads"],
            &["stop_share", "g", "f"],
            &["logout"],
            &["status"],
        ] {
            parse(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        }
    }

    #[test]
    fn usage_errors_are_clap_errors() {
        for args in [
            &["no_such_command"][..],
            &["create_group"],
            &["create_group", "g", "extra"],
            &["status", "--bogus"],
            &[],
        ] {
            let e = parse(args).expect_err(&format!("{args:?}"));
            assert_eq!(e.exit_code(), 2, "{args:?}: {e}");
        }
        assert_eq!(
            parse(&["--help"]).unwrap_err().kind(),
            ErrorKind::DisplayHelp
        );
        assert_eq!(parse(&["--version"]).unwrap_err().exit_code(), 0);
    }

    #[test]
    fn global_flags_anywhere() {
        let cli = parse(&["status", "--json", "--home", "/tmp/h"]).unwrap();
        assert!(cli.json);
        assert_eq!(cli.home.as_deref(), Some(Path::new("/tmp/h")));
        let cli = parse(&["--json", "list_groups"]).unwrap();
        assert!(cli.json);
    }

    #[test]
    fn password_may_start_with_a_hyphen_and_dash_means_stdin() {
        let cli = parse(&["login", "alice", "-secret"]).unwrap();
        match cli.command {
            Command::Daemon(DaemonCommand::Login { password, .. }) => {
                assert_eq!(password.as_deref(), Some("-secret"))
            }
            other => panic!("{other:?}"),
        }
        let cli = parse(&["login", "alice", "-"]).unwrap();
        let prepared = daemon(&cli).prepare().unwrap();
        assert_eq!(prepared.password, Some(PasswordSource::StdinLine));
    }

    #[test]
    fn json_after_an_omitted_password_is_a_flag() {
        let cli = parse(&["login", "alice", "--json"]).unwrap();
        assert!(cli.json);
    }

    #[test]
    fn bad_values_are_invalid_argument() {
        for args in [
            &["create_group", "../x"][..],
            &["create_user", "a b", "pw"],
            &["accept_request", "g", "/etc/passwd"],
            &["download_file", "g", "../x", "/tmp"],
            &["download_file", "g", "..", "/tmp"],
            &["stop_share", "g", "a\\b"],
            &["upload_file", "/tmp/..", "g"],
            &["upload_file", "", "g"],
            &["download_file", "g", "f", ""],
        ] {
            let cli = parse(args).unwrap();
            let e = daemon(&cli).prepare().expect_err(&format!("{args:?}"));
            assert_eq!(e.code, ErrorCode::InvalidArgument, "{args:?}");
        }
        let long = "x".repeat(65);
        let cli = parse(&["join_group", &long]).unwrap();
        assert!(daemon(&cli).prepare().is_err());
    }

    #[test]
    fn paths_become_absolute_against_the_working_directory() {
        let cli = parse(&["download_file", "g", "my file.iso", "dl/out", "--detach"]).unwrap();
        let cwd = std::env::current_dir().unwrap();
        match daemon(&cli).prepare().unwrap().request {
            CtlRequest::DownloadFile {
                dest, name, detach, ..
            } => {
                assert_eq!(dest, cwd.join("dl/out"));
                assert_eq!(name.as_str(), "my file.iso");
                assert!(detach);
            }
            other => panic!("{other:?}"),
        }
        let cli = parse(&["upload_file", "./f.bin", "g"]).unwrap();
        let prepared = daemon(&cli).prepare().unwrap();
        assert!(prepared.streams());
        match prepared.request {
            CtlRequest::UploadFile { path, .. } => assert_eq!(path, cwd.join("f.bin")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn password_line_strips_the_line_ending_only() {
        let mut r = &b" pw with spaces \r\nnext\n"[..];
        assert_eq!(read_password_line(&mut r).unwrap(), " pw with spaces ");
        let mut r = &b"last"[..];
        assert_eq!(read_password_line(&mut r).unwrap(), "last");
        let mut r = &b""[..];
        assert_eq!(
            read_password_line(&mut r).unwrap_err().code,
            ErrorCode::InvalidArgument
        );
    }

    #[test]
    fn explicit_home_wins() {
        assert_eq!(
            home_dir(Some(Path::new("/x/y"))).unwrap(),
            PathBuf::from("/x/y")
        );
    }
}
