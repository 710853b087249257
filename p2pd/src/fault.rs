//! Test-only crash points: `P2PD_FAULT=<point>` in the environment makes
//! the daemon kill itself (SIGKILL, as `kill -9` would) when it reaches
//! that point, so the black-box tests can hit a crash window exactly
//! instead of racing a `kill -9` against it.
//!
//! Compiled in always (a test of the release binary needs it) and cheap:
//! the variable is read once; unset, a point is one comparison. Nobody
//! sets it outside the tests (`tests/tests/crash_windows.rs`).

use std::sync::OnceLock;

/// A place where a crash leaves state that a restart must reconcile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Point {
    /// `upload_file`: the share is recorded, `RegisterFile` not sent yet.
    BeforeRegister,
    /// `upload_file`: the tracker committed `RegisterFile`, the command
    /// has not answered yet.
    AfterRegister,
    /// A finished download: the final name is linked to the data, the
    /// `.part` name is still there.
    AfterLink,
    /// A finished download: the `.part` is gone, the share is not
    /// recorded yet.
    AfterFinish,
}

impl Point {
    fn name(self) -> &'static str {
        match self {
            Point::BeforeRegister => "before_register",
            Point::AfterRegister => "after_register",
            Point::AfterLink => "after_link",
            Point::AfterFinish => "after_finish",
        }
    }
}

fn armed() -> Option<&'static str> {
    static ARMED: OnceLock<Option<String>> = OnceLock::new();
    ARMED
        .get_or_init(|| std::env::var("P2PD_FAULT").ok())
        .as_deref()
}

/// Dies here if `P2PD_FAULT` names `point`.
pub fn point(point: Point) {
    if armed() == Some(point.name()) {
        tracing::error!("P2PD_FAULT={}: killing the daemon here", point.name());
        let _ =
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
        std::process::abort();
    }
}
