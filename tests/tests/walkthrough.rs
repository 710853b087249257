//! The README's walkthrough, typed line by line into an interactive bash in a
//! pseudo-terminal, as a new user would: job control on, programs started
//! with `&`, a terminal on every stream that is not redirected.
//!
//! The steps are read from README.md itself (the ```sh blocks between the
//! walkthrough markers), so the README cannot drift from what works. A line
//! may end in `# prints: TOKENS`: the output must contain the tokens in that
//! order, separated by whitespace (`<...>` stands for any one word). Every
//! line must succeed (exit status 0), and no job may be stopped by the
//! terminal (`Stopped (tty input)` was how the tracker froze when it read
//! stdin in the background).
//!
//! Substitutions keep it private and parallel-safe: `/tmp/p2p` becomes a
//! fresh temporary directory and the tracker's port 7600 a free one. The
//! `cargo build` line is skipped: the test command built the binaries, and
//! a cargo inside `cargo test` would wait on the build directory's lock.

use blackbox::{bin, free_port, STOP_TIMEOUT};
use rexpect::reader::Options;
use rexpect::session::{spawn_with_options, PtyReplSession};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const START: &str = "<!-- walkthrough: typed by tests/tests/walkthrough.rs -->";
const END: &str = "<!-- end of walkthrough -->";
const EXPECT: &str = "# prints:";
/// Longest any one step may take (the 50 MiB download included).
const STEP_TIMEOUT_MS: u64 = 90_000;
/// What a person takes at least between two lines; programs started with
/// `&` get this long to bind their sockets before the next line uses them.
const TYPING_PAUSE: Duration = Duration::from_millis(700);
const PROMPT: &str = "p2p-walkthrough$ ";

#[derive(Debug, Clone)]
struct Step {
    line: String,
    expect: Option<String>,
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace")
        .to_path_buf()
}

/// The ```sh lines of the README's walkthrough, in order.
fn steps(readme: &str) -> Vec<Step> {
    let start = readme
        .find(START)
        .expect("README has the walkthrough start marker");
    let end = readme[start..]
        .find(END)
        .map(|i| start + i)
        .expect("README has the walkthrough end marker");
    let mut steps = Vec::new();
    let mut in_sh = false;
    for line in readme[start..end].lines() {
        let t = line.trim();
        if t.starts_with("```") {
            in_sh = !in_sh && t == "```sh";
            continue;
        }
        if !in_sh || t.is_empty() || t.starts_with('#') {
            continue;
        }
        let (command, expect) = match t.find(EXPECT) {
            Some(i) => (
                t[..i].trim_end().to_owned(),
                Some(t[i + EXPECT.len()..].trim().to_owned()),
            ),
            None => (t.to_owned(), None),
        };
        steps.push(Step {
            line: command,
            expect,
        });
    }
    assert!(!in_sh, "an unclosed ```sh block in the walkthrough");
    steps
}

/// Does `output` hold `tokens` in order, separated only by whitespace?
fn shows(output: &str, tokens: &str) -> bool {
    let words: Vec<&str> = output.split_whitespace().collect();
    let want: Vec<&str> = tokens.split_whitespace().collect();
    if want.is_empty() {
        return true;
    }
    words.windows(want.len()).any(|w| {
        w.iter()
            .zip(&want)
            .all(|(got, want)| (want.starts_with('<') && want.ends_with('>')) || got == want)
    })
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            // A zombie has exited; only its parent (bash) has not reaped it.
            s.rsplit(')')
                .next()
                .map(|rest| rest.trim_start().starts_with('Z'))
                == Some(false)
        })
        .unwrap_or(false)
}

struct Shell {
    repl: PtyReplSession,
    /// Background programs the walkthrough started (`[1] 1234`), stopped by
    /// PID if the walkthrough fails before it stops them itself.
    started: Vec<i32>,
}

impl Shell {
    fn spawn(dir: &Path, path: &str) -> Shell {
        let inputrc = dir.join("inputrc");
        // Bracketed paste would wrap every echoed line in escape codes.
        std::fs::write(&inputrc, "set enable-bracketed-paste off\n").unwrap();
        let mut cmd = Command::new("bash");
        cmd.args(["--noprofile", "--norc", "-i"])
            .current_dir(workspace())
            .env_clear()
            .env("PATH", path)
            .env("HOME", dir)
            .env("XDG_CONFIG_HOME", dir.join("config"))
            .env("XDG_DATA_HOME", dir.join("data"))
            .env("TERM", "xterm-256color")
            .env("LANG", "C.UTF-8")
            .env("INPUTRC", &inputrc)
            .env("PS1", format!("rc=$? {PROMPT}"));
        let session = spawn_with_options(
            cmd,
            Options {
                timeout_ms: Some(STEP_TIMEOUT_MS),
                strip_ansi_escape_codes: true,
            },
        )
        .expect("bash starts in a pseudo-terminal");
        let mut repl = PtyReplSession::new(session, PROMPT.to_owned()).quit_command(None);
        repl.wait_for_prompt().expect("bash shows its first prompt");
        let mut shell = Shell {
            repl,
            started: Vec::new(),
        };
        // A terminal of a usual size: bars are drawn to fit it.
        shell.run("stty cols 120 rows 40");
        shell
    }

    /// Types `line` and returns what the terminal showed until the next
    /// prompt (the echoed line removed) and the exit status.
    fn run(&mut self, line: &str) -> (String, i32) {
        self.repl.send_line(line).expect("typing into the terminal");
        let shown = match self.repl.wait_for_prompt() {
            Ok(s) => s,
            Err(e) => panic!("`{line}` did not finish within {STEP_TIMEOUT_MS} ms: {e}"),
        };
        let shown = shown.replace('\r', "");
        // The prompt is `rc=N p2p-walkthrough$ `: the status ends the output.
        let (output, rc) = match shown.rfind("rc=") {
            Some(i) => (
                shown[..i].to_owned(),
                shown[i + 3..].trim().parse().unwrap_or(-1),
            ),
            None => (shown.clone(), -1),
        };
        // readline echoes the typed line first.
        let output = match output.find('\n') {
            Some(i) if output[..i].contains(line.split_whitespace().next().unwrap_or("")) => {
                output[i + 1..].to_owned()
            }
            _ => output,
        };
        (output, rc)
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
        for &pid in &self.started {
            if alive(pid) {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            }
        }
        // bash refuses a first `exit` while it has stopped jobs, and ignores
        // SIGTERM: end it by PID so a failed run does not wait for timeouts.
        let bash = self.repl.process().child_pid.as_raw();
        let _ = Command::new("kill")
            .args(["-9", &bash.to_string()])
            .status();
        self.repl.process_mut().set_kill_timeout(Some(2_000));
    }
}

#[test]
fn the_readme_walkthrough_works_as_typed_into_an_interactive_shell() {
    let readme = std::fs::read_to_string(workspace().join("README.md")).unwrap();
    let steps = steps(&readme);
    assert!(
        steps.len() >= 10,
        "the walkthrough has its steps: {steps:?}"
    );

    let dir = tempfile::Builder::new()
        .prefix("p2pw")
        .tempdir_in("/tmp")
        .unwrap();
    let root = dir.path().join("p2p");
    let port = free_port().to_string();
    let bin_dir = bin("p2pctl").parent().unwrap().to_path_buf();
    let default_bins = workspace().join("target/release");
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut shell = Shell::spawn(dir.path(), &path);

    let mut transcript = String::new();
    for step in &steps {
        if step.line.starts_with("cargo ") {
            continue;
        }
        let line = step
            .line
            .replace("/tmp/p2p", &root.display().to_string())
            .replace("7600", &port)
            .replace(
                "$PWD/target/release",
                &if bin_dir == default_bins {
                    "$PWD/target/release".to_owned()
                } else {
                    bin_dir.display().to_string()
                },
            );
        let started = Instant::now();
        let (output, rc) = shell.run(&line);
        transcript.push_str(&format!("$ {line}\n{output}"));
        let context = || format!("step `{}`\n--- transcript so far:\n{transcript}", step.line);
        assert!(
            !output.contains("Stopped"),
            "a job was stopped by the terminal: {}",
            context()
        );
        assert_eq!(rc, 0, "exit status {rc}: {}", context());
        if let Some(tokens) = &step.expect {
            assert!(
                shows(&output, tokens),
                "expected `{tokens}` in the output: {}",
                context()
            );
        }
        if line.trim_end().ends_with('&') {
            let pid = output
                .split_whitespace()
                .skip_while(|w| !(w.starts_with('[') && w.ends_with(']')))
                .nth(1)
                .and_then(|w| w.parse().ok())
                .unwrap_or_else(|| panic!("no `[job] PID` line: {}", context()));
            shell.started.push(pid);
        }
        if let Some(rest) = TYPING_PAUSE.checked_sub(started.elapsed()) {
            std::thread::sleep(rest);
        }
    }

    // `--nocapture` shows what a user would have seen.
    eprintln!("{transcript}");
    // The walkthrough ends by stopping what it started; every program exits.
    let deadline = Instant::now() + STOP_TIMEOUT;
    for &pid in &shell.started {
        while alive(pid) {
            assert!(
                Instant::now() < deadline,
                "pid {pid} still runs after the walkthrough stopped it\n{transcript}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    assert!(
        shell.started.len() >= 3,
        "the walkthrough starts a tracker and two daemons"
    );
    let (jobs, _) = shell.run("jobs");
    assert!(
        jobs.trim().is_empty() || jobs.contains("Done") || jobs.contains("Terminated"),
        "jobs left: {jobs}"
    );
}

#[test]
fn the_step_reader_takes_sh_lines_and_their_expectations() {
    let readme = format!(
        "intro\n```sh\nnot this\n```\n{START}\n```sh\n# a comment\nls -l      # prints: a <x> b\n\necho hi\n```\n```text\nnot this\n```\n{END}\n```sh\nnor this\n```\n"
    );
    let s = steps(&readme);
    assert_eq!(s.len(), 2, "{s:?}");
    assert_eq!(s[0].line, "ls -l");
    assert_eq!(s[0].expect.as_deref(), Some("a <x> b"));
    assert_eq!(s[1].line, "echo hi");
    assert!(shows("xx a 1 b yy", "a <x> b"));
    assert!(shows("lab\talice\t2\n", "lab alice 2"));
    assert!(!shows("a b", "a <x> b"));
    assert!(!shows("lab bob 2", "lab alice 2"));
}
