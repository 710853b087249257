//! Corruption reports under attack (issue 12): a member who falsely reports
//! an honest holder's copy corrupt gets it unlisted only until its holder
//! has re-hashed it, which the holder does on its own, at once; outsiders
//! and nonsense reports are refused.
//!
//! The victims are real `tracker` and `p2pd` processes on 127.0.0.1. The
//! false reporter is in-test Rust on a tracker link of its own
//! (`blackbox::raw`), since an honest daemon reports only pieces that
//! failed their SHA-1.

use blackbox::raw::{endpoint, runtime, TrackerLink};
use blackbox::{random_file, send_signal, sha1_file, wait_until, Pair, SETTLE_TIMEOUT};
use proto::tracker::{TrackerReply, TrackerRequest};
use proto::{ErrorCode, WireError};
use std::net::SocketAddr;
use std::time::Duration;

/// While bob's daemon is stopped it still counts as online (its last
/// heartbeat is fresh for 10 s): the checks made meanwhile take < 2 s.
const FROZEN_FOR_AT_MOST: Duration = Duration::from_secs(8);

fn report(holder: &str) -> impl Fn(&TrackerLink) -> TrackerRequest + '_ {
    move |link| TrackerRequest::ReportCorrupt {
        token: link.token(),
        group: "g".parse().expect("group id"),
        name: "f.bin".parse().expect("file name"),
        holder: holder.parse().expect("user id"),
    }
}

/// The holders `Locate` lists for f.bin, as `link`'s user sees them.
async fn located(link: &mut TrackerLink) -> Vec<String> {
    let locate = TrackerRequest::Locate {
        token: link.token(),
        group: "g".parse().expect("group id"),
        name: "f.bin".parse().expect("file name"),
    };
    match link.call(locate).await {
        Ok(TrackerReply::Located { peers, .. }) => {
            peers.into_iter().map(|p| p.user.to_string()).collect()
        }
        other => panic!("locate: {other:?}"),
    }
}

fn code(r: Result<TrackerReply, WireError>) -> ErrorCode {
    r.expect_err("the report should be refused").code
}

#[test]
fn a_false_report_unlists_an_honest_copy_only_until_its_holder_rehashes_it() {
    let pair = Pair::start();
    let (a, b) = (&pair.a, &pair.b);
    let src = pair.net.mkdir("bob").join("f.bin");
    let sha = random_file(&src, 3 << 20);
    b.ok(&["upload_file", src.to_str().unwrap(), "g"]);
    // erin, a member, and mallory, an outsider, have links of their own.
    a.ok(&["create_user", "erin", "pw-e"]);
    a.ok(&["create_user", "mallory", "pw-m"]);
    let tracker: SocketAddr = pair.net.tracker_addrs()[0]
        .parse()
        .expect("tracker address");
    let rt = runtime();
    let (ke, km) = (endpoint(), endpoint());
    let mut erin = rt.block_on(TrackerLink::open(tracker, &ke));
    rt.block_on(erin.login("erin", "pw-e"));
    let join = TrackerRequest::JoinGroup {
        token: erin.token(),
        group: "g".parse().expect("group id"),
    };
    rt.block_on(erin.call(join)).expect("join_group");
    a.ok(&["accept_request", "g", "erin"]);
    let mut mallory = rt.block_on(TrackerLink::open(tracker, &km));
    rt.block_on(mallory.login("mallory", "pw-m"));
    let listed = |want: &[&str], erin: &mut TrackerLink| {
        wait_until(SETTLE_TIMEOUT, || rt.block_on(located(erin)) == want)
    };
    assert!(
        listed(&["bob"], &mut erin),
        "bob's copy is listed to begin with"
    );

    // Refused: an outsider, a user who holds nothing, a self-report.
    let r = rt.block_on(mallory.call(report("bob")(&mallory)));
    assert_eq!(code(r), ErrorCode::NotMember);
    let r = rt.block_on(erin.call(report("alice")(&erin)));
    assert_eq!(code(r), ErrorCode::NotHolder);
    let r = rt.block_on(erin.call(report("erin")(&erin)));
    assert_eq!(code(r), ErrorCode::NotHolder);
    assert_eq!(rt.block_on(located(&mut erin)), ["bob"], "nothing changed");

    // bob's daemon is frozen, so the report's effect can be seen before
    // his re-check undoes it.
    let bob = b.pid().expect("bob's daemon runs");
    send_signal(bob, libc::SIGSTOP);
    let frozen = std::time::Instant::now();
    rt.block_on(erin.call(report("bob")(&erin)))
        .expect("a member's report is taken");
    let unlisted = listed(&[], &mut erin);
    let online = a.files("g")[0]["online"].clone();
    assert!(frozen.elapsed() < FROZEN_FOR_AT_MOST, "too slow to tell");
    send_signal(bob, libc::SIGCONT);
    assert!(unlisted, "the reported copy is still located");
    assert_eq!(online, 0, "the reported copy still counts online");

    // bob, told at his next heartbeat, re-hashes his file, finds it
    // intact and registers it again: listed, and served.
    assert!(
        listed(&["bob"], &mut erin),
        "bob's copy is not listed again"
    );
    b.wait_online("g", "f.bin", 1, "bob's copy listed again");
    let dest = pair.net.mkdir("dest");
    a.ok(&["download_file", "g", "f.bin", dest.to_str().unwrap()]);
    assert_eq!(sha1_file(&dest.join("f.bin")), sha);
    let log = std::fs::read_to_string(pair.net.dir().join("b.log")).unwrap_or_default();
    assert!(log.contains("re-hashed our copy: intact"), "{log}");
}
