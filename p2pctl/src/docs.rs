//! `p2pctl completions SHELL` and `p2pctl man [--dir DIR]`: generated from
//! the clap definition, so they cannot drift from what p2pctl accepts.

use crate::cli::Cli;
use clap::CommandFactory;
use std::io::{self, Write};
use std::path::Path;

/// The completion script for `shell`.
pub fn completions(shell: clap_complete::Shell, out: &mut impl Write) {
    clap_complete::generate(shell, &mut Cli::command(), "p2pctl", out);
}

/// `p2pctl.1` as roff.
///
/// # Errors
/// Writing to `out` failed.
pub fn man_page(out: &mut impl Write) -> io::Result<()> {
    clap_mangen::Man::new(Cli::command()).render(out)
}

/// `p2pctl.1` and one `p2pctl-<command>.1` per command into `dir`.
///
/// # Errors
/// `dir` cannot be created or written.
pub fn man_pages_to(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    clap_mangen::generate_to(Cli::command(), dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum;
    use clap_complete::Shell;

    fn command_names() -> Vec<String> {
        Cli::command()
            .get_subcommands()
            .map(|s| s.get_name().to_owned())
            .collect()
    }

    #[test]
    fn every_shell_gets_a_script_naming_every_command() {
        // Every shell clap_complete knows, so a new one is covered too.
        for &shell in Shell::value_variants() {
            let mut out = Vec::new();
            completions(shell, &mut out);
            let script = String::from_utf8(out).unwrap();
            for name in command_names() {
                assert!(script.contains(&name), "{shell}: no {name}");
            }
        }
    }

    #[test]
    fn one_non_empty_page_per_command() {
        let mut out = Vec::new();
        man_page(&mut out).unwrap();
        let page = String::from_utf8(out).unwrap();
        assert!(page.contains(".TH p2pctl"), "{page}");
        assert!(
            page.contains("EXIT STATUS"),
            "the examples and exit statuses are in it"
        );

        let dir = tempfile::tempdir().unwrap();
        man_pages_to(&dir.path().join("man1")).unwrap();
        for name in std::iter::once("p2pctl".to_owned())
            .chain(command_names().iter().map(|n| format!("p2pctl-{n}")))
        {
            let path = dir.path().join("man1").join(format!("{name}.1"));
            let page = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(page.contains(".SH"), "{name}: {page}");
        }
    }
}
