//! What p2pctl prints: pure functions from a reply to text.
//!
//! Human output: an action prints its message; a listing prints one item per
//! line with tab-separated columns, and a header line only on a terminal.
//! `--json`: exactly one document, SPEC.md's shapes (the proto listing types
//! serialise as SPEC wants them, so they are printed as they arrive).

use proto::ctl::{CtlReply, DownloadInfo, DownloadState, FileInfo, GroupInfo, StatusInfo};
use proto::units::{Bytes, Rate};
use proto::{UserId, WireError};
use serde::Serialize;

/// Exit statuses of SPEC.md.
pub const EXIT_OK: u8 = 0;
pub const EXIT_REFUSED: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_NO_DAEMON: u8 = 3;
/// 128 + SIGINT, as a shell reports an interrupted command.
pub const EXIT_INTERRUPTED: u8 = 130;

/// How an invocation ended, and so its exit status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// Refused by the daemon, or refused locally before asking it (an
    /// invalid value), or the exchange with it failed.
    Refused(WireError),
    /// Nothing listens on the control socket.
    NoDaemon,
    /// Ctrl-C while waiting; the daemon carries on.
    Interrupted,
}

/// The one mapping from outcome (and so from every `ErrorCode`) to an exit
/// status: every refusal is 1, whatever its code.
pub fn exit_status(outcome: &Outcome) -> u8 {
    match outcome {
        Outcome::Success => EXIT_OK,
        Outcome::Refused(_) => EXIT_REFUSED,
        Outcome::NoDaemon => EXIT_NO_DAEMON,
        Outcome::Interrupted => EXIT_INTERRUPTED,
    }
}

#[derive(Serialize)]
struct JsonOk<'a> {
    ok: bool,
    message: &'a str,
}

#[derive(Serialize)]
struct JsonError<'a> {
    ok: bool,
    code: &'a str,
    error: &'a str,
}

fn to_json<T: Serialize + ?Sized>(v: &T) -> String {
    // Serialising our own plain structs cannot fail: no maps with non-string
    // keys, no failing Serialize impls.
    serde_json::to_string(v).expect("reply types serialise to JSON")
}

/// The `--json` document of a final reply, with its newline. A
/// [`CtlReply::Error`] renders as the failure document.
pub fn json(reply: &CtlReply) -> String {
    let body = match reply {
        CtlReply::Ok { message } => to_json(&JsonOk { ok: true, message }),
        CtlReply::Groups { groups } => to_json(groups),
        CtlReply::Requests { users } => to_json(users),
        CtlReply::Files { files } => to_json(files),
        CtlReply::Downloads { downloads } => to_json(downloads),
        CtlReply::Status(status) => to_json(status),
        // Never printed: progress is drawn on stderr or not at all. Rendered
        // anyway so this function is total.
        CtlReply::Progress(p) => to_json(p),
        CtlReply::Error(e) => return json_error(e),
    };
    body + "\n"
}

/// `{"ok": false, "code": "...", "error": "..."}` and a newline.
pub fn json_error(e: &WireError) -> String {
    to_json(&JsonError {
        ok: false,
        code: e.code.as_str(),
        error: &e.message,
    }) + "\n"
}

/// The `--json` document of bad usage: code `usage`, which is no daemon
/// code since the daemon never sees such a command line.
pub fn json_usage_error(message: &str) -> String {
    to_json(&JsonError {
        ok: false,
        code: "usage",
        error: message,
    }) + "\n"
}

/// The stderr line of any failure, with its newline.
pub fn error_line(message: &str) -> String {
    format!("error: {message}\n")
}

/// Human output of a final reply for stdout; `tty` adds header lines.
/// A [`CtlReply::Error`] renders as nothing here (it goes to stderr).
pub fn human(reply: &CtlReply, tty: bool) -> String {
    match reply {
        CtlReply::Ok { message } => format!("{message}\n"),
        CtlReply::Groups { groups } => groups_table(groups, tty),
        CtlReply::Requests { users } => requests_table(users, tty),
        CtlReply::Files { files } => files_table(files, tty),
        CtlReply::Downloads { downloads } => downloads_table(downloads, tty),
        CtlReply::Status(status) => status_lines(status, tty),
        CtlReply::Progress(_) | CtlReply::Error(_) => String::new(),
    }
}

/// A listing: piped, one tab-separated line per item and no header (what
/// scripts cut and awk); on a terminal, a header and aligned columns, or a
/// note when there is nothing, so an empty listing does not look like a hang.
fn table(header: &[&str], empty_note: &str, rows: Vec<Vec<String>>, tty: bool) -> String {
    if !tty {
        return rows.iter().map(|r| r.join("\t") + "\n").collect();
    }
    if rows.is_empty() {
        return format!("({empty_note})\n");
    }
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::NOTHING);
    t.set_header(header.iter().copied());
    t.add_rows(rows);
    for column in t.column_iter_mut() {
        column.set_padding((0, 2));
    }
    // The last column is padded too: no trailing blanks on a line.
    t.lines().map(|l| l.trim_end().to_owned() + "\n").collect()
}

/// The first 12 hex digits: enough to tell files apart by eye.
pub const SHORT_SHA1: usize = 12;

pub fn groups_table(groups: &[GroupInfo], tty: bool) -> String {
    let rows = groups
        .iter()
        .map(|g| {
            vec![
                g.group.to_string(),
                g.owner.to_string(),
                g.members.to_string(),
            ]
        })
        .collect();
    table(&["GROUP", "OWNER", "MEMBERS"], "no groups", rows, tty)
}

pub fn requests_table(users: &[UserId], tty: bool) -> String {
    let rows = users.iter().map(|u| vec![u.to_string()]).collect();
    table(&["USER"], "no pending join requests", rows, tty)
}

pub fn files_table(files: &[FileInfo], tty: bool) -> String {
    let rows = files
        .iter()
        .map(|f| {
            let sha1 = f.sha1.to_string();
            let (size, sha1) = if tty {
                (Bytes(f.size).to_string(), sha1[..SHORT_SHA1].to_owned())
            } else {
                (f.size.to_string(), sha1)
            };
            vec![
                one_line(f.name.as_str()),
                size,
                sha1,
                f.holders.to_string(),
                f.online.to_string(),
            ]
        })
        .collect();
    table(
        &["NAME", "SIZE", "SHA1", "HOLDERS", "ONLINE"],
        "no files shared in this group",
        rows,
        tty,
    )
}

/// `[D]` in progress (paused included), `[C]` complete, `[F]` failed.
pub fn state_letter(state: DownloadState) -> &'static str {
    match state {
        DownloadState::Downloading | DownloadState::Paused => "D",
        DownloadState::Complete => "C",
        DownloadState::Failed => "F",
    }
}

pub fn state_word(state: DownloadState) -> &'static str {
    match state {
        DownloadState::Downloading => "downloading",
        DownloadState::Complete => "complete",
        DownloadState::Failed => "failed",
        DownloadState::Paused => "paused",
    }
}

/// True once a download will not change by itself any more.
pub fn finished(state: DownloadState) -> bool {
    matches!(state, DownloadState::Complete | DownloadState::Failed)
}

/// Whole percent, rounded down so 100% means done. An empty file is 100%.
pub fn percent(bytes_done: u64, size: u64) -> u64 {
    if size == 0 {
        return 100;
    }
    (u128::from(bytes_done.min(size)) * 100 / u128::from(size)) as u64
}

/// Control characters (a daemon's sentence, a hostile name) as spaces: one
/// item stays one line, and nothing reaches the terminal as an escape.
pub fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The columns of one download. SPEC's `[D] [group] name` comes first.
/// Piped: percent, bytes done, size, rate in bytes/s, state, destination,
/// reason. On a terminal the same with human sizes, and an ETA.
pub fn download_row(d: &DownloadInfo, tty: bool) -> Vec<String> {
    let mut row = vec![
        format!(
            "[{}] [{}] {}",
            state_letter(d.state),
            d.group,
            one_line(d.name.as_str())
        ),
        format!("{}%", percent(d.bytes_done, d.size)),
    ];
    if tty {
        row.push(format!("{}/{}", Bytes(d.bytes_done), Bytes(d.size)));
        let moving = d.state == DownloadState::Downloading && d.rate > 0;
        row.push(if moving {
            Rate(d.rate).to_string()
        } else {
            String::new()
        });
        let eta = eta(d.size.saturating_sub(d.bytes_done), d.rate).filter(|_| moving);
        row.push(eta.unwrap_or_default());
    } else {
        row.push(d.bytes_done.to_string());
        row.push(d.size.to_string());
        row.push(d.rate.to_string());
    }
    row.push(state_word(d.state).to_owned());
    row.push(one_line(&d.path.display().to_string()));
    row.push(d.error.as_deref().map(one_line).unwrap_or_default());
    row
}

pub fn downloads_table(downloads: &[DownloadInfo], tty: bool) -> String {
    let rows = downloads.iter().map(|d| download_row(d, tty)).collect();
    let mut out = table(
        &[
            "DOWNLOAD",
            "DONE",
            "BYTES",
            "RATE",
            "ETA",
            "STATE",
            "DESTINATION",
            "REASON",
        ],
        "no downloads",
        rows,
        tty,
    );
    if !tty {
        // No reason: no trailing empty column, as before reasons existed.
        out = out
            .lines()
            .map(|l| l.strip_suffix('\t').unwrap_or(l).to_owned() + "\n")
            .collect();
    }
    out
}

/// `name: value` lines; `uploaded` in binary units on a terminal, in bytes
/// when piped.
pub fn status_lines(s: &StatusInfo, tty: bool) -> String {
    let user = s
        .user
        .as_ref()
        .map_or_else(|| "(not logged in)".to_owned(), |u| u.to_string());
    let tracker = s.tracker.as_deref().unwrap_or("(not connected)");
    format!(
        "user: {user}\ntracker: {tracker}\nlisten: {}\nshares: {}\ndownloads: {}\nuploaded: {}\n",
        s.listen,
        s.shares,
        s.downloads,
        if tty {
            Bytes(s.uploaded).to_string()
        } else {
            s.uploaded.to_string()
        }
    )
}

/// Remaining time at `rate`: `45s`, `3m 05s`, `2h 07m`; `None` when unknown.
pub fn eta(remaining: u64, bytes_per_sec: u64) -> Option<String> {
    if bytes_per_sec == 0 {
        return None;
    }
    let secs = remaining.div_ceil(bytes_per_sec);
    Some(if secs < 60 {
        format!("{secs}s")
    } else if secs < 3600 {
        format!("{}m {:02}s", secs / 60, secs % 60)
    } else {
        format!("{}h {:02}m", secs / 3600, secs % 3600 / 60)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::ctl::PeerBytes;
    use proto::ErrorCode;
    use serde_json::{json, Value};

    fn group_info() -> GroupInfo {
        GroupInfo {
            group: "g1".parse().unwrap(),
            owner: "alice".parse().unwrap(),
            members: 2,
        }
    }

    fn file_info() -> FileInfo {
        FileInfo {
            name: "my file.iso".parse().unwrap(),
            size: 123,
            // SHA-1 of the empty file.
            sha1: "da39a3ee5e6b4b0d3255bfef95601890afd80709".parse().unwrap(),
            holders: 2,
            online: 1,
        }
    }

    fn download(state: DownloadState, bytes_done: u64, rate: u64) -> DownloadInfo {
        DownloadInfo {
            group: "g1".parse().unwrap(),
            name: "f.iso".parse().unwrap(),
            state,
            bytes_done,
            size: 1000,
            path: "/abs/f.iso".into(),
            peers: vec![PeerBytes {
                user: "bob".parse().unwrap(),
                bytes: bytes_done,
            }],
            rate,
            error: None,
        }
    }

    fn status(user: Option<&str>) -> StatusInfo {
        StatusInfo {
            user: user.map(|u| u.parse().unwrap()),
            tracker: Some("127.0.0.1:7600".into()),
            listen: "127.0.0.1:40000".into(),
            shares: 3,
            downloads: 1,
            uploaded: 4096,
        }
    }

    fn parse(s: &str) -> Value {
        assert!(s.ends_with('\n') && s.matches('\n').count() == 1, "{s:?}");
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn exit_statuses() {
        assert_eq!(exit_status(&Outcome::Success), 0);
        for code in ErrorCode::ALL {
            assert_eq!(exit_status(&Outcome::Refused(WireError::new(code, "x"))), 1);
        }
        assert_eq!(exit_status(&Outcome::NoDaemon), 3);
        assert_eq!(exit_status(&Outcome::Interrupted), 130);
        assert_eq!(EXIT_USAGE, 2);
    }

    #[test]
    fn json_action_and_error_shapes() {
        let ok = CtlReply::Ok {
            message: "group g1 created".into(),
        };
        assert_eq!(
            json(&ok),
            "{\"ok\":true,\"message\":\"group g1 created\"}\n"
        );
        let err = CtlReply::error(ErrorCode::UserExists, "user alice already exists");
        assert_eq!(
            json(&err),
            "{\"ok\":false,\"code\":\"user_exists\",\"error\":\"user alice already exists\"}\n"
        );
        assert_eq!(
            parse(&json_error(&WireError::new(ErrorCode::Io, "no p2pd"))),
            json!({"ok": false, "code": "io", "error": "no p2pd"})
        );
    }

    #[test]
    fn json_listing_shapes() {
        let groups = CtlReply::Groups {
            groups: vec![group_info()],
        };
        assert_eq!(
            parse(&json(&groups)),
            json!([{"group": "g1", "owner": "alice", "members": 2}])
        );
        let requests = CtlReply::Requests {
            users: vec!["bob".parse().unwrap(), "carol".parse().unwrap()],
        };
        assert_eq!(json(&requests), "[\"bob\",\"carol\"]\n");
        let files = CtlReply::Files {
            files: vec![file_info()],
        };
        assert_eq!(
            parse(&json(&files)),
            json!([{"name": "my file.iso", "size": 123,
                "sha1": "da39a3ee5e6b4b0d3255bfef95601890afd80709", "holders": 2, "online": 1}])
        );
        let downloads = CtlReply::Downloads {
            downloads: vec![download(DownloadState::Paused, 10, 0)],
        };
        let v = parse(&json(&downloads));
        assert_eq!(v[0]["group"], "g1");
        assert_eq!(v[0]["name"], "f.iso");
        assert_eq!(v[0]["state"], "paused");
        assert_eq!(v[0]["bytes_done"], 10);
        assert_eq!(v[0]["size"], 1000);
        assert_eq!(v[0]["path"], "/abs/f.iso");
        assert_eq!(v[0]["peers"], json!([{"user": "bob", "bytes": 10}]));
        assert_eq!(
            parse(&json(&CtlReply::Downloads { downloads: vec![] })),
            json!([])
        );
        assert_eq!(
            parse(&json(&CtlReply::Status(status(None)))),
            json!({"user": null, "tracker": "127.0.0.1:7600", "listen": "127.0.0.1:40000",
                "shares": 3, "downloads": 1, "uploaded": 4096})
        );
        assert_eq!(
            parse(&json(&CtlReply::Status(status(Some("alice")))))["user"],
            "alice"
        );
    }

    #[test]
    fn human_action_prints_the_message() {
        let ok = CtlReply::Ok {
            message: "logged in as alice".into(),
        };
        assert_eq!(human(&ok, false), "logged in as alice\n");
        assert_eq!(human(&ok, true), "logged in as alice\n");
        assert_eq!(error_line("no such group g9"), "error: no such group g9\n");
    }

    #[test]
    fn piped_lists_are_raw_and_tab_separated_without_header() {
        let groups = CtlReply::Groups {
            groups: vec![group_info()],
        };
        assert_eq!(human(&groups, false), "g1\talice\t2\n");
        let requests = CtlReply::Requests {
            users: vec!["bob".parse().unwrap(), "carol".parse().unwrap()],
        };
        assert_eq!(human(&requests, false), "bob\ncarol\n");
        let files = CtlReply::Files {
            files: vec![file_info()],
        };
        assert_eq!(
            human(&files, false),
            "my file.iso\t123\tda39a3ee5e6b4b0d3255bfef95601890afd80709\t2\t1\n"
        );
    }

    #[test]
    fn terminal_lists_have_a_header_aligned_columns_and_human_sizes() {
        let mut big = file_info();
        big.name = "b".parse().unwrap();
        big.size = 3 << 19;
        let files = CtlReply::Files {
            files: vec![file_info(), big],
        };
        assert_eq!(
            human(&files, true),
            "NAME         SIZE      SHA1          HOLDERS  ONLINE\n\
             my file.iso  123 B     da39a3ee5e6b  2        1\n\
             b            1.50 MiB  da39a3ee5e6b  2        1\n"
        );
        let groups = CtlReply::Groups {
            groups: vec![group_info()],
        };
        assert_eq!(
            human(&groups, true),
            "GROUP  OWNER  MEMBERS\ng1     alice  2\n"
        );
        let requests = CtlReply::Requests {
            users: vec!["bob".parse().unwrap()],
        };
        assert_eq!(human(&requests, true), "USER\nbob\n");
        for reply in [files, groups, requests] {
            assert!(!human(&reply, true).contains('\x1b'), "no colours");
            assert!(!human(&reply, true).contains('\t'));
        }
    }

    #[test]
    fn empty_lists_print_nothing_off_a_terminal() {
        for reply in [
            CtlReply::Groups { groups: vec![] },
            CtlReply::Requests { users: vec![] },
            CtlReply::Files { files: vec![] },
            CtlReply::Downloads { downloads: vec![] },
        ] {
            assert_eq!(human(&reply, false), "");
            let shown = human(&reply, true);
            assert!(
                shown.starts_with("(no ") && shown.ends_with(")\n"),
                "{shown}"
            );
        }
    }

    #[test]
    fn piped_download_lines_start_with_the_spec_prefix_then_raw_columns() {
        let downloads = |d: DownloadInfo| human(&CtlReply::Downloads { downloads: vec![d] }, false);
        assert_eq!(
            downloads(download(DownloadState::Downloading, 420, 12_345_678)),
            "[D] [g1] f.iso\t42%\t420\t1000\t12345678\tdownloading\t/abs/f.iso\n"
        );
        assert_eq!(
            downloads(download(DownloadState::Paused, 999, 0)),
            "[D] [g1] f.iso\t99%\t999\t1000\t0\tpaused\t/abs/f.iso\n"
        );
        assert_eq!(
            downloads(download(DownloadState::Complete, 1000, 0)),
            "[C] [g1] f.iso\t100%\t1000\t1000\t0\tcomplete\t/abs/f.iso\n"
        );
        let mut failed = download(DownloadState::Failed, 0, 0);
        failed.error = Some("whole-file SHA-1\nmismatch".into());
        assert_eq!(
            downloads(failed),
            "[F] [g1] f.iso\t0%\t0\t1000\t0\tfailed\t/abs/f.iso\twhole-file SHA-1 mismatch\n"
        );
    }

    #[test]
    fn terminal_download_lines_have_sizes_rate_eta_and_destination() {
        let mut moving = download(DownloadState::Downloading, 450 << 10, 100 << 10);
        moving.size = 1000 << 10;
        let mut paused = download(DownloadState::Paused, 0, 0);
        paused.error = Some("no holder online".into());
        let table = human(
            &CtlReply::Downloads {
                downloads: vec![moving, paused],
            },
            true,
        );
        assert_eq!(
            table,
            "DOWNLOAD        DONE  BYTES                   RATE          ETA  STATE        DESTINATION  REASON\n\
             [D] [g1] f.iso  45%   450.00 KiB/1000.00 KiB  100.00 KiB/s  6s   downloading  /abs/f.iso\n\
             [D] [g1] f.iso  0%    0 B/1000 B                                 paused       /abs/f.iso   no holder online\n"
        );
    }

    #[test]
    fn status_lines_exact() {
        assert_eq!(
            human(&CtlReply::Status(status(Some("alice"))), false),
            "user: alice\ntracker: 127.0.0.1:7600\nlisten: 127.0.0.1:40000\nshares: 3\ndownloads: 1\nuploaded: 4096\n"
        );
        let mut s = status(None);
        s.tracker = None;
        let out = human(&CtlReply::Status(s), true);
        assert!(
            out.starts_with("user: (not logged in)\ntracker: (not connected)\n"),
            "{out}"
        );
        assert!(out.ends_with("uploaded: 4.00 KiB\n"), "{out}");
    }

    #[test]
    fn percent_and_eta() {
        assert_eq!(percent(0, 0), 100);
        assert_eq!(percent(1, 3), 33);
        assert_eq!(percent(999_999, 1_000_000), 99);
        assert_eq!(percent(u64::MAX, u64::MAX), 100);
        assert_eq!(eta(100, 0), None);
        assert_eq!(eta(100, 10).as_deref(), Some("10s"));
        assert_eq!(eta(185, 1).as_deref(), Some("3m 05s"));
        assert_eq!(eta(7620, 1).as_deref(), Some("2h 07m"));
    }
}
