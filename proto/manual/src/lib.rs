//! The documentation of p2pshare's programs that clap does not model —
//! examples, files, exit statuses — written once per program as an
//! [`Extra`] and shown both at the end of `--help` and as the man page's own
//! sections (clap_mangen renders the rest), plus the completion scripts
//! (clap_complete). `p2pd` and `tracker` use it; p2pctl's pages are one per
//! command, straight from clap_mangen.

use roff::{bold, italic, roman, Roff};
use std::io::Write;
use std::path::{Path, PathBuf};

/// What each program can do besides its work: print its own documentation.
/// Flattened into the program's subcommands (`PROG completions bash`,
/// `PROG man --dir DIR`).
#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub enum Tool {
    /// Print the completion script for SHELL on stdout.
    Completions {
        /// The shell the script is for.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) on stdout, or write it into DIR as PROGRAM.1.
    Man {
        /// Directory to write the page into (created if missing).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

/// The long flags of `cmd` (not `help` and `version`), for tests that
/// check a page or a script names every one.
pub fn long_flags(cmd: &clap::Command) -> Vec<String> {
    cmd.get_arguments()
        .filter_map(|a| a.get_long().map(str::to_owned))
        .filter(|l| l != "help" && l != "version")
        .collect()
}

/// What `cmd` leaves without a description: arguments with no help,
/// subcommands with no about, and their arguments with no help (`help` and
/// `version` excepted). Empty when `--help` and the man page describe all.
pub fn undescribed(cmd: &clap::Command) -> Vec<String> {
    let skip = |a: &clap::Arg| matches!(a.get_id().as_str(), "help" | "version");
    let mut missing: Vec<String> = cmd
        .get_arguments()
        .filter(|a| !skip(a) && a.get_help().is_none())
        .map(|a| a.get_id().to_string())
        .collect();
    for sub in cmd.get_subcommands() {
        if sub.get_about().is_none() {
            missing.push(sub.get_name().to_owned());
        }
        missing.extend(
            sub.get_arguments()
                .filter(|a| !skip(a) && a.get_help().is_none())
                .map(|a| format!("{} {}", sub.get_name(), a.get_id())),
        );
    }
    missing
}

/// The completion script of `cmd` for `shell`, the program called `name`.
///
/// # Errors
/// Writing to `out` failed.
pub fn completions(
    mut cmd: clap::Command,
    name: &str,
    shell: clap_complete::Shell,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut cmd, name, &mut buf);
    out.write_all(&buf)
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

impl Extra {
    /// Does what `tool` asks for the program `cmd` called `name`: the
    /// script or the page on `out`, or the page written into a directory
    /// and its path on `out`.
    ///
    /// # Errors
    /// Writing to `out` or into the directory failed.
    pub fn run(
        &self,
        tool: Tool,
        cmd: clap::Command,
        name: &str,
        out: &mut dyn Write,
    ) -> std::io::Result<()> {
        match tool {
            Tool::Completions { shell } => completions(cmd, name, shell, out),
            Tool::Man { dir: None } => self.man_page(cmd, out),
            Tool::Man { dir: Some(dir) } => {
                let path = self.man_to_dir(cmd, name, &dir)?;
                writeln!(out, "{}", path.display())
            }
        }
    }

    /// Writes `DIR/NAME.1` (the page of `cmd`); returns its path.
    ///
    /// # Errors
    /// The directory cannot be made or the file written.
    pub fn man_to_dir(
        &self,
        cmd: clap::Command,
        name: &str,
        dir: &Path,
    ) -> std::io::Result<PathBuf> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(format!("{name}.1"));
        let mut page = Vec::new();
        self.man_page(cmd, &mut page)?;
        std::fs::write(&path, page)?;
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_argument_without_help_is_named() {
        let cmd = clap::Command::new("t")
            .arg(clap::Arg::new("quiet").long("quiet").help("say less"))
            .arg(clap::Arg::new("bare").long("bare"))
            .subcommand(clap::Command::new("sub").arg(clap::Arg::new("x")));
        assert_eq!(undescribed(&cmd), vec!["bare", "sub", "sub x"]);
        assert_eq!(long_flags(&cmd), vec!["quiet", "bare"]);
    }
}
