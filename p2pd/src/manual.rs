//! p2pd's own documentation: the epilogue of `--help` (examples, files,
//! exit status), `p2pd completions SHELL` (clap_complete) and
//! `p2pd man [--dir DIR]` (clap_mangen), all generated from [`Cli`] and
//! [`EXTRA`] so they never disagree.
//!
//! [`Extra`] and the rendering are `p2p-manual`'s, shared with the tracker.

use crate::options::{Cli, Tool, EXTRA};
use clap::CommandFactory;
use std::io::Write;

/// Run a [`Tool`]: print or write what it asks for.
///
/// # Errors
/// Writing to `out` or into the directory failed.
pub fn run(tool: Tool, out: &mut dyn Write) -> std::io::Result<()> {
    EXTRA.run(tool, Cli::command(), "p2pd", out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::Tool;
    use clap::ValueEnum;
    use clap_complete::Shell;
    use std::path::PathBuf;

    fn long_flags() -> Vec<String> {
        p2p_manual::long_flags(&Cli::command())
    }

    #[test]
    fn every_argument_is_described() {
        let missing = p2p_manual::undescribed(&Cli::command());
        assert!(missing.is_empty(), "no help: {missing:?}");
    }

    #[test]
    fn man_page_mentions_every_flag_and_the_sections() {
        let mut page = Vec::new();
        run(Tool::Man { dir: None }, &mut page).unwrap();
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
        // Every shell clap_complete knows, so a new one is covered too.
        for &shell in Shell::value_variants() {
            let mut script = Vec::new();
            run(Tool::Completions { shell }, &mut script).unwrap();
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
        let mut printed = Vec::new();
        let man1 = dir.path().join("man1");
        run(Tool::Man { dir: Some(man1) }, &mut printed).unwrap();
        let path = PathBuf::from(String::from_utf8(printed).unwrap().trim());
        assert_eq!(path, dir.path().join("man1/p2pd.1"));
        assert!(std::fs::metadata(&path).unwrap().len() > 1000);
    }
}
