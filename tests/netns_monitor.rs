//! Netns tier: the ruleset monitor when its socket overruns. A flush of a big config is
//! thousands of notifications; losing them must not look like another program's change
//! (which would flush again, and again), while another program's lost change must.

mod common;

use std::time::Duration;

use common::{desired, require_root, Netns};
use offloadd::nft::monitor::{spawn_monitor_with, RulesetChange};
use offloadd::nft::{Kernel, Nft};

/// 340 exclusions of 6 ports, TCP and UDP: 4,080 rules (a config may expand to 4,096).
fn big_toml() -> String {
    let mut s = String::from("[offload]\n");
    for e in 0..340 {
        let p = 20000 + e * 6;
        let ports: Vec<String> = (p..p + 6).map(|p| format!("\"{p}\"")).collect();
        s.push_str(&format!(
            "[[offload.exclude]]\ndport = [{}]\n",
            ports.join(", ")
        ));
    }
    s
}

fn nft_file(text: &str) {
    let path = std::env::temp_dir().join(format!("offloadd-monitor-{}.nft", std::process::id()));
    std::fs::write(&path, text).unwrap();
    let ok = std::process::Command::new("nft")
        .arg("-f")
        .arg(&path)
        .status()
        .unwrap()
        .success();
    let _ = std::fs::remove_file(&path);
    assert!(ok, "nft -f failed");
}

async fn next(rx: &mut tokio::sync::mpsc::Receiver<RulesetChange>) -> RulesetChange {
    tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .expect("no change reported within 20 s")
        .expect("monitor ended")
}

#[test]
#[ignore = "root and network namespaces: tests/run.sh runs it (cargo test -- --include-ignored)"]
fn an_overrun_by_our_own_flush_is_forgiven_and_another_programs_is_reported() {
    require_root();
    let ns = Netns::new();
    let d = desired(&big_toml());
    let (after_own, forgiven, after_foreign) = ns.enter(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut nft = Nft::open().unwrap();
            let own = nft.own_commits();
            // 64 KiB holds a few dozen notifications; the monitor task cannot read while
            // this thread is in the applies below, so each overruns it.
            let mut rx = spawn_monitor_with(own.clone(), 64 << 10).unwrap();
            nft.apply(&d).unwrap();
            nft.request_flush();
            nft.apply(&d).unwrap();
            // Let the monitor read the overrun (it counts one it forgives), then commit
            // a small foreign change: the stream is ordered, so whatever the monitor
            // made of our commits comes before it.
            for _ in 0..200 {
                if own.forgiven() > 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            nft_file("table inet marker {}\n");
            let after_own = next(&mut rx).await;
            let forgiven = own.forgiven();
            let mut rules = String::from("table inet other {\n chain c {\n");
            for p in 0..3000 {
                rules.push_str(&format!("  tcp dport {} accept\n", 10000 + p));
            }
            rules.push_str(" }\n}\n");
            nft_file(&rules);
            let after_foreign = next(&mut rx).await;
            (after_own, forgiven, after_foreign)
        })
    });
    assert_eq!(
        after_own.tables,
        ["inet marker"],
        "our own overrunning commits were reported as a change: {after_own:?}"
    );
    assert!(
        forgiven >= 1,
        "the applies never overran the monitor: the check above proved nothing"
    );
    assert_eq!(
        after_foreign.tables,
        ["(notifications lost)"],
        "another program's lost commit must be reported: {after_foreign:?}"
    );
}
