//! What the two config files (p2pd's `config.toml`, `tracker --config`)
//! share: how a path written in one is read, and toml's errors on one
//! line. Each program keeps its own keys and error type.

use std::path::{Path, PathBuf};

/// A path as written in the config file at `file`: `~/x` is in the user's
/// home `home` (as a shell would have it), a relative path is from the
/// file's directory (not the working directory, so a unit and a shell
/// agree).
pub fn path_in_file(file: &Path, value: PathBuf, home: Option<&Path>) -> PathBuf {
    if let (Ok(rest), Some(home)) = (value.strip_prefix("~"), home) {
        return home.join(rest);
    }
    file.parent().unwrap_or(Path::new("")).join(value)
}

/// The user's home directory, for `~/` in config files.
pub fn user_home() -> Option<PathBuf> {
    directories::BaseDirs::new().map(|d| d.home_dir().to_path_buf())
}

/// toml's message on one line, with the line of `text` it is about (its
/// own rendering draws the line over several).
pub fn toml_error_line(e: &toml::de::Error, text: &str) -> String {
    let message = e.message().trim().replace('\n', " ");
    match e.span() {
        Some(span) => {
            let start = span.start.min(text.len());
            let line = text[..start].matches('\n').count() + 1;
            let shown = text.lines().nth(line - 1).unwrap_or("").trim();
            format!("line {line} ({shown}): {message}")
        }
        None => message,
    }
}

/// The ```toml blocks of a Markdown `doc` whose first line contains
/// `marker`: the docs' example files, which the programs' tests parse so
/// the docs cannot drift from the code.
pub fn toml_blocks(doc: &str, marker: &str) -> Vec<String> {
    doc.split("```toml\n")
        .skip(1)
        .filter_map(|rest| rest.split("```").next())
        .filter(|block| block.lines().next().is_some_and(|l| l.contains(marker)))
        .map(str::to_owned)
        .collect()
}

/// The keys a `deny_unknown_fields` struct knows, from serde's own
/// "expected one of `a`, `b`" message (for tests that check every key is
/// documented).
pub fn known_keys(message: &str) -> Vec<String> {
    let Some(list) = message.split("expected one of").nth(1) else {
        return Vec::new();
    };
    list.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_from_the_file_or_the_home() {
        let file = Path::new("/etc/p2p/config.toml");
        let home = Some(Path::new("/home/a"));
        assert_eq!(
            path_in_file(file, "x".into(), home),
            PathBuf::from("/etc/p2p/x")
        );
        assert_eq!(
            path_in_file(file, "/abs".into(), home),
            PathBuf::from("/abs")
        );
        assert_eq!(
            path_in_file(file, "~/d".into(), home),
            PathBuf::from("/home/a/d")
        );
    }

    #[test]
    fn a_toml_error_is_one_line_naming_its_line() {
        let text = "a = 1\nb = = 2\n";
        let e = toml::from_str::<toml::Table>(text).unwrap_err();
        let line = toml_error_line(&e, text);
        assert!(line.starts_with("line 2 (b = = 2): "), "{line}");
        assert!(!line.contains('\n'));
    }

    #[test]
    fn blocks_and_keys() {
        let doc = "x\n```toml\n# config.toml\na = 1\n```\n```toml\n# other\n```\n";
        assert_eq!(
            toml_blocks(doc, "config.toml"),
            vec!["# config.toml\na = 1\n"]
        );
        assert_eq!(
            known_keys("unknown field `z`, expected one of `a`, `b`"),
            vec!["a", "b"]
        );
        assert!(known_keys("nothing").is_empty());
    }
}
