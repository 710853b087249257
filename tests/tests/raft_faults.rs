//! Bounded fault test: 20 rounds of kill -9 of a random tracker of three
//! during a stream of writes, then a restart. Afterwards every write that
//! p2pctl acknowledged is present, and nothing that was never attempted is.
//! A write answered with an error may or may not have been applied (its
//! outcome was unknown when the tracker died); those are counted apart.

use blackbox::{wait_until, Net, Trackers, SETTLE_TIMEOUT};
use rand::Rng;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const ROUNDS: usize = 20;

#[test]
fn twenty_rounds_of_tracker_kill9_lose_no_acknowledged_write() {
    let started = Instant::now();
    let mut net = Net::start_with(Trackers(3));
    let d = net.daemon("writer");
    d.signup("owner", "pw");
    let stop = AtomicBool::new(false);
    let mut acked = BTreeSet::new();
    let mut failed = BTreeSet::new();
    let mut rng = rand::thread_rng();
    std::thread::scope(|s| {
        let writer = s.spawn(|| {
            let (mut ok, mut err) = (Vec::new(), Vec::new());
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) && i < 2000 {
                let g = format!("w{i}");
                let out = d.ctl(&["create_group", &g]);
                if out.status == 0 {
                    ok.push(g)
                } else {
                    err.push(g)
                }
                i += 1;
            }
            (ok, err)
        });
        for round in 0..ROUNDS {
            let victim = rng.gen_range(0..3);
            std::thread::sleep(Duration::from_millis(300));
            net.trackers[victim].kill9();
            std::thread::sleep(Duration::from_millis(rng.gen_range(200..1200)));
            net.trackers[victim].restart();
            println!("round {round}: killed and restarted tracker {}", victim + 1);
        }
        stop.store(true, Ordering::Relaxed);
        let (ok, err) = writer.join().expect("writer thread");
        acked.extend(ok);
        failed.extend(err);
    });
    // Read everything back once the cluster settled.
    let mut present = BTreeSet::new();
    let settled = wait_until(SETTLE_TIMEOUT, || {
        let out = d.ctl(&["list_groups"]);
        if out.status != 0 {
            return false;
        }
        present = out
            .json
            .as_ref()
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|g| g["group"].as_str().map(str::to_owned))
            .collect();
        true
    });
    assert!(
        settled,
        "the cluster did not answer list_groups after the rounds"
    );
    let lost: Vec<_> = acked.difference(&present).collect();
    let phantom: Vec<_> = present
        .iter()
        .filter(|g| !acked.contains(*g) && !failed.contains(*g))
        .collect();
    let failed_present = failed.intersection(&present).count();
    println!(
        "rounds {ROUNDS}: acknowledged {}, refused/unavailable {} (of which applied anyway {}), present {}, lost {}, phantom {}; {:?}",
        acked.len(),
        failed.len(),
        failed_present,
        present.len(),
        lost.len(),
        phantom.len(),
        started.elapsed()
    );
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    assert!(
        phantom.is_empty(),
        "writes never attempted are present: {phantom:?}"
    );
    assert!(!acked.is_empty(), "no write was acknowledged at all");
}
