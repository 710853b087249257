//! The tracker's own documentation: the epilogue of `--help` (examples,
//! files, exit status), `tracker completions SHELL` (clap_complete) and
//! `tracker man [--dir DIR]` (clap_mangen), all generated from [`Cli`] and
//! [`EXTRA`] so they never disagree.
//!
//! [`Extra`] and the rendering are `p2p-manual`'s, shared with p2pd.

use crate::cli::{Cli, EXTRA};
use clap::CommandFactory;
use std::io::Write;

/// `tracker completions` / `tracker man`: print or write what `tool` asks.
///
/// # Errors
/// Writing to `out` or into the directory failed.
pub fn run(tool: p2p_manual::Tool, out: &mut dyn Write) -> std::io::Result<()> {
    EXTRA.run(tool, Cli::command(), "tracker", out)
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum;
    use clap_complete::Shell;
    use p2p_manual::Tool;
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
        // Every shell clap_complete knows, so a new one is covered too.
        for &shell in Shell::value_variants() {
            let mut script = Vec::new();
            run(Tool::Completions { shell }, &mut script).unwrap();
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
        let mut printed = Vec::new();
        let man1 = dir.path().join("man1");
        run(Tool::Man { dir: Some(man1) }, &mut printed).unwrap();
        let path = PathBuf::from(String::from_utf8(printed).unwrap().trim());
        assert_eq!(path, dir.path().join("man1/tracker.1"));
        assert!(std::fs::metadata(&path).unwrap().len() > 1000);
    }
}
