//! The tracker's own documentation: the epilogue of `--help` (examples,
//! files, exit status), `tracker completions SHELL` (clap_complete) and
//! `tracker man [--dir DIR]` (clap_mangen), all generated from [`Cli`] and
//! [`EXTRA`] so they never disagree.
//!
//! [`Extra`] is the same in p2pd's `manual.rs`.

use crate::cli::Cli;
use clap::CommandFactory;
use roff::{bold, italic, roman, Roff};
use std::io::Write;
use std::path::{Path, PathBuf};

/// What `tracker --help` and `man tracker` say beyond the options.
pub const EXTRA: Extra = Extra {
    examples: &[
        (
            "tracker tracker_info.txt 1",
            "Run tracker 1 of the list, alone (one line in tracker_info.txt).",
        ),
        (
            "tracker keygen cluster.key",
            "Make the key a cluster of several trackers shares; prints its fingerprint.",
        ),
        (
            "tracker tracker_info.txt 2 --cluster-key cluster.key --data-dir /srv/t2",
            "Run tracker 2 of a cluster.",
        ),
        (
            "tracker --config /etc/p2pshare/tracker-1.toml",
            "Everything from a config file (which may name tracker_info and n).",
        ),
        (
            "tracker fingerprint --data-dir ~/.local/share/p2pshare/tracker-1",
            "Print a single tracker's fingerprint, for tracker_info.txt.",
        ),
        (
            "tracker completions bash > ~/.local/share/bash-completion/completions/tracker",
            "Install tab completion for bash (also zsh, fish, elvish, powershell).",
        ),
        (
            "tracker man --dir ~/.local/share/man/man1",
            "Install this manual page as tracker.1.",
        ),
    ],
    files: &[
        (
            "tracker_info.txt",
            "The tracker list, one IP:PORT per line, optionally followed by the
             cluster's fingerprint; the same file as the daemons'.",
        ),
        (
            "DATA_DIR",
            "The durable state (--data-dir, default ~/.local/share/p2pshare/tracker-N);
             a single tracker keeps its cluster.key there.",
        ),
        (
            "--config FILE",
            "TOML; keys: tracker_info, n, cluster_key, data_dir, snapshot_every,
             max_groups, idle_timeout, max_connections_per_ip, max_connections.
             Relative paths are from its directory; the command line overrides it.",
        ),
    ],
    exit_status: &[
        (
            "0",
            "stopped cleanly (SIGTERM, SIGINT, `quit`), or a command succeeded",
        ),
        (
            "1",
            "could not start or failed (bad config or tracker_info.txt, port in use)",
        ),
        ("2", "usage error (unknown option, bad value)"),
    ],
};

/// The completion script for `shell`.
///
/// # Errors
/// Writing to `out` failed.
pub fn completions(shell: clap_complete::Shell, out: &mut dyn Write) -> std::io::Result<()> {
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "tracker", &mut buf);
    out.write_all(&buf)
}

/// The man page, roff.
///
/// # Errors
/// Writing to `out` failed.
pub fn man(out: &mut dyn Write) -> std::io::Result<()> {
    EXTRA.man_page(Cli::command(), out)
}

/// Write `DIR/tracker.1`; returns its path.
///
/// # Errors
/// The directory cannot be made or the file written.
pub fn man_to_dir(dir: &Path) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join("tracker.1");
    let mut page = Vec::new();
    man(&mut page)?;
    std::fs::write(&path, page)?;
    Ok(path)
}

/// `tracker completions` / `tracker man` on stdout; a closed pipe
/// (`tracker man | head`) is not an error.
///
/// # Errors
/// Writing failed otherwise.
pub fn print(write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) -> std::io::Result<()> {
    match write(&mut std::io::stdout().lock()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// The parts of the documentation clap does not model: written once, shown
/// at the end of `--help` and as the man page's own sections.
pub struct Extra {
    /// (the command line, what it does).
    pub examples: &'static [(&'static str, &'static str)],
    /// (path, what it is: lines that fit 80 columns with a 6-space indent).
    pub files: &'static [(&'static str, &'static str)],
    /// (status, when).
    pub exit_status: &'static [(&'static str, &'static str)],
}

/// `.TP` takes no argument here: the default indent.
const NO_ARGS: [&str; 0] = [];

impl Extra {
    /// The epilogue of `--help`, plain text.
    pub fn help_text(&self) -> String {
        let mut text = String::from("Examples:\n");
        for (command, what) in self.examples {
            text += &format!("  {command}\n      {what}\n");
        }
        text += "\nFiles:\n";
        for (path, what) in self.files {
            text += &format!("  {path}\n");
            for line in what.lines() {
                text += &format!("      {}\n", line.trim());
            }
        }
        text += "\nExit status:\n";
        for (status, when) in self.exit_status {
            text += &format!("  {status}  {when}\n");
        }
        text
    }

    /// The man page: clap_mangen's sections for what clap knows, then
    /// COMMANDS (the subcommands, described here rather than on pages of
    /// their own), EXIT STATUS, FILES and EXAMPLES.
    ///
    /// # Errors
    /// Writing to `out` failed.
    pub fn man_page(&self, mut cmd: clap::Command, out: &mut dyn Write) -> std::io::Result<()> {
        cmd.build();
        let man = clap_mangen::Man::new(cmd.clone().after_help(None::<&str>));
        let mut page = Vec::new();
        man.render_title(&mut page)?;
        man.render_name_section(&mut page)?;
        man.render_synopsis_section(&mut page)?;
        man.render_description_section(&mut page)?;
        man.render_options_section(&mut page)?;
        let mut roff = Roff::new();
        roff.control("SH", ["COMMANDS"]);
        for sub in cmd.get_subcommands_mut().filter(|s| s.get_name() != "help") {
            let about = sub.get_about().map(ToString::to_string).unwrap_or_default();
            let usage = sub.render_usage().to_string();
            let usage = usage.trim_start_matches("Usage:").trim();
            roff.control("TP", NO_ARGS).text([bold(usage)]);
            roff.text([roman(about)]);
            let args: Vec<_> = sub
                .get_arguments()
                .filter(|a| !matches!(a.get_id().as_str(), "help" | "version"))
                .collect();
            if !args.is_empty() {
                roff.control("RS", NO_ARGS);
                for arg in args {
                    let value = arg
                        .get_value_names()
                        .and_then(|v| v.first())
                        .map_or_else(|| arg.get_id().to_string(), ToString::to_string);
                    let shown = match arg.get_long() {
                        Some(long) => format!("--{long} <{value}>"),
                        None => format!("<{value}>"),
                    };
                    let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
                    roff.control("TP", NO_ARGS)
                        .text([bold(shown)])
                        .text([roman(help)]);
                }
                roff.control("RE", NO_ARGS);
            }
        }
        roff.control("SH", ["EXIT STATUS"]);
        for (status, when) in self.exit_status {
            roff.control("TP", NO_ARGS)
                .text([bold(*status)])
                .text([roman(*when)]);
        }
        roff.control("SH", ["FILES"]);
        for (path, what) in self.files {
            let what = what.split_whitespace().collect::<Vec<_>>().join(" ");
            roff.control("TP", NO_ARGS)
                .text([italic(*path)])
                .text([roman(what)]);
        }
        roff.control("SH", ["EXAMPLES"]);
        for (command, what) in self.examples {
            roff.control("TP", NO_ARGS)
                .text([bold(*command)])
                .text([roman(*what)]);
        }
        roff.to_writer(&mut page)?;
        man.render_version_section(&mut page)?;
        // Each section rendered alone starts with roff's two-line preamble:
        // keep the first.
        let preamble = Roff::new().render();
        let page = String::from_utf8_lossy(&page).replace(&preamble, "");
        out.write_all(preamble.as_bytes())?;
        out.write_all(page.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap_complete::Shell;

    fn long_flags() -> Vec<String> {
        Cli::command()
            .get_arguments()
            .filter_map(|a| a.get_long().map(str::to_owned))
            .filter(|l| l != "help" && l != "version")
            .collect()
    }

    #[test]
    fn every_argument_is_described() {
        let cmd = Cli::command();
        for arg in cmd.get_arguments() {
            assert!(arg.get_help().is_some(), "{} has no help", arg.get_id());
        }
        for sub in cmd.get_subcommands() {
            assert!(sub.get_about().is_some(), "{}", sub.get_name());
            for arg in sub.get_arguments() {
                assert!(
                    arg.get_help().is_some(),
                    "{} {}",
                    sub.get_name(),
                    arg.get_id()
                );
            }
        }
    }

    #[test]
    fn man_page_mentions_every_flag_and_the_sections() {
        let mut page = Vec::new();
        man(&mut page).unwrap();
        let page = String::from_utf8(page).unwrap();
        assert!(page.contains(".TH"), "roff");
        for flag in long_flags() {
            assert!(
                page.contains(&format!("\\-\\-{}", flag.replace('-', "\\-"))),
                "{flag}"
            );
        }
        for word in [
            ".SH COMMANDS",
            ".SH \"EXIT STATUS\"",
            ".SH FILES",
            ".SH EXAMPLES",
            "tracker keygen",
            "tracker fingerprint",
            "\\-\\-cluster\\-key <FILE>",
        ] {
            assert!(page.contains(word), "{word}");
        }
        assert_eq!(page.matches(".ie \\n(.g").count(), 1, "one preamble");
    }

    #[test]
    fn completions_for_every_shell_mention_every_flag() {
        for shell in [
            Shell::Bash,
            Shell::Zsh,
            Shell::Fish,
            Shell::Elvish,
            Shell::PowerShell,
        ] {
            let mut script = Vec::new();
            completions(shell, &mut script).unwrap();
            let script = String::from_utf8(script).unwrap();
            for flag in long_flags() {
                assert!(script.contains(&flag), "{shell}: {flag}");
            }
            for sub in ["keygen", "fingerprint", "completions", "man"] {
                assert!(script.contains(sub), "{shell}: {sub}");
            }
        }
    }

    #[test]
    fn help_ends_with_examples_files_and_exit_status() {
        let help = Cli::command().render_long_help().to_string();
        let tail = &help[help.find("Examples:").expect("examples")..];
        assert!(tail.contains("\nFiles:\n") && tail.contains("\nExit status:\n"));
        for (status, _) in EXTRA.exit_status {
            assert!(tail.contains(&format!("  {status}  ")), "{status}");
        }
        // The completion example is the one line allowed past 80 columns.
        for line in tail.lines().filter(|l| !l.contains("completions/tracker")) {
            assert!(line.chars().count() <= 80, "{line:?}");
        }
    }

    #[test]
    fn man_dir_writes_the_page() {
        let dir = tempfile::tempdir().unwrap();
        let path = man_to_dir(&dir.path().join("man1")).unwrap();
        assert_eq!(path, dir.path().join("man1/tracker.1"));
        assert!(std::fs::metadata(&path).unwrap().len() > 1000);
    }
}
