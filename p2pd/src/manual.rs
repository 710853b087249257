//! p2pd's own documentation: the epilogue of `--help` (examples, files,
//! exit status), `p2pd completions SHELL` (clap_complete) and
//! `p2pd man [--dir DIR]` (clap_mangen), all generated from [`Cli`] and
//! [`EXTRA`] so they never disagree.
//!
//! [`Extra`] is the same in the tracker's `manual.rs`.

use crate::options::{Cli, Tool};
use clap::CommandFactory;
use roff::{bold, italic, roman, Roff};
use std::io::Write;
use std::path::{Path, PathBuf};

/// What `p2pd --help` and `man p2pd` say beyond the options.
pub const EXTRA: Extra = Extra {
    examples: &[
        (
            "p2pd",
            "Run with the tracker list in ~/.config/p2pshare/tracker_info.txt.",
        ),
        (
            "p2pd --home /tmp/alice --listen 127.0.0.1:0 --tracker-info tracker_info.txt",
            "A second daemon beside your own, e.g. to try sharing on one machine.",
        ),
        (
            "p2pd --listen 0.0.0.0:7000 --advertise 203.0.113.7:7000",
            "Behind a router that forwards port 7000 to this host.",
        ),
        (
            "p2pd --max-upload-rate 2M --max-download-rate 10MiB",
            "Limit the rates (bytes per second; 10M = 10MB = 10MiB).",
        ),
        (
            "p2pd completions bash > ~/.local/share/bash-completion/completions/p2pd",
            "Install tab completion for bash (also zsh, fish, elvish, powershell).",
        ),
        (
            "p2pd man --dir ~/.local/share/man/man1",
            "Install this manual page as p2pd.1.",
        ),
    ],
    files: &[
        (
            "~/.config/p2pshare/config.toml",
            "The config file, read when present (or --config FILE): keys home, listen,
             advertise, tracker_info, max_upload_rate, max_download_rate; relative
             paths are from its directory; flags and P2P_HOME override it.",
        ),
        (
            "HOME/p2pd.sock",
            "The control socket p2pctl talks to. HOME is --home, P2P_HOME, `home` in
             the config file, else ~/.local/share/p2pshare.",
        ),
        (
            "tracker_info.txt",
            "The tracker list, the first found of: --tracker-info FILE, `tracker_info`
             in the config file, HOME/tracker_info.txt, ./tracker_info.txt,
             ~/.config/p2pshare/tracker_info.txt.",
        ),
    ],
    exit_status: &[
        ("0", "stopped cleanly (SIGTERM, SIGINT)"),
        (
            "1",
            "could not start or failed (bad config, no tracker_info.txt, home in use)",
        ),
        ("2", "usage error (unknown option, bad value)"),
    ],
};

/// Run a [`Tool`]: print or write what it asks for.
///
/// # Errors
/// Writing to `out` or into the directory failed.
pub fn run(tool: Tool, out: &mut dyn Write) -> std::io::Result<()> {
    match tool {
        Tool::Completions { shell } => completions(shell, out),
        Tool::Man { dir: None } => man(out),
        Tool::Man { dir: Some(dir) } => {
            let path = man_to_dir(&dir)?;
            writeln!(out, "{}", path.display())
        }
    }
}

/// The completion script for `shell`.
///
/// # Errors
/// Writing to `out` failed.
pub fn completions(shell: clap_complete::Shell, out: &mut dyn Write) -> std::io::Result<()> {
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "p2pd", &mut buf);
    out.write_all(&buf)
}

/// The man page, roff.
///
/// # Errors
/// Writing to `out` failed.
pub fn man(out: &mut dyn Write) -> std::io::Result<()> {
    EXTRA.man_page(Cli::command(), out)
}

/// Write `DIR/p2pd.1`; returns its path.
///
/// # Errors
/// The directory cannot be made or the file written.
pub fn man_to_dir(dir: &Path) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join("p2pd.1");
    let mut page = Vec::new();
    man(&mut page)?;
    std::fs::write(&path, page)?;
    Ok(path)
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
        assert!(page.starts_with(".ie") || page.contains(".TH"), "roff");
        for flag in long_flags() {
            // roff escapes the dashes: \-\-home.
            assert!(
                page.contains(&format!("\\-\\-{}", flag.replace('-', "\\-"))),
                "{flag}"
            );
        }
        for section in [
            ".SH COMMANDS",
            ".SH \"EXIT STATUS\"",
            ".SH FILES",
            ".SH EXAMPLES",
            "p2pd completions",
            "tracker_info.txt",
        ] {
            assert!(page.contains(section), "{section}");
        }
        assert_eq!(page.matches(".ie \\n(.g").count(), 1, "one preamble");
        assert!(
            !page.contains("p2pd\\-completions(1)"),
            "no pages that do not exist"
        );
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
                // fish names long options without the dashes (`-l home`).
                assert!(script.contains(&flag), "{shell}: {flag}");
            }
            assert!(script.contains("completions"), "{shell}");
        }
    }

    #[test]
    fn help_ends_with_examples_files_and_exit_status_in_80_columns() {
        let help = Cli::command().render_long_help().to_string();
        let tail = &help[help.find("Examples:").expect("examples")..];
        assert!(tail.contains("\nFiles:\n") && tail.contains("\nExit status:\n"));
        for (status, _) in EXTRA.exit_status {
            assert!(tail.contains(&format!("  {status}  ")), "{status}");
        }
        for line in tail.lines() {
            assert!(line.chars().count() <= 80, "{line:?}");
        }
    }

    #[test]
    fn man_dir_writes_the_page() {
        let dir = tempfile::tempdir().unwrap();
        let path = man_to_dir(&dir.path().join("man1")).unwrap();
        assert_eq!(path, dir.path().join("man1/p2pd.1"));
        assert!(std::fs::metadata(&path).unwrap().len() > 1000);
    }
}
