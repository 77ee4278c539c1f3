//! Netns tier: the link watcher against the host kernel's rtnetlink, in a namespace the
//! test creates. (Flowtable hooks need the VM tier: the host kernel has no flowtables.)

mod common;

use std::process::Command;
use std::time::Duration;

use common::{require_root, Netns};
use offloadd::link::{spawn_link_watcher, LinkSnapshot};
use tokio::sync::watch;

/// Waits up to 2 s for the published snapshot to satisfy `ok`.
async fn wait_for(
    rx: &mut watch::Receiver<LinkSnapshot>,
    what: &str,
    ok: impl Fn(&LinkSnapshot) -> bool,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while !ok(&rx.borrow_and_update()) {
        if tokio::time::timeout_at(deadline, rx.changed())
            .await
            .is_err()
        {
            panic!("{what}: not seen within 2 s; snapshot: {:?}", *rx.borrow());
        }
    }
}

#[test]
#[ignore = "root and network namespaces: tests/run.sh runs it (cargo test -- --include-ignored)"]
fn link_watcher_follows_add_rename_enslave_delete_recreate() {
    require_root();
    let ns = Netns::new();
    let name = ns.name.clone();
    ns.enter(move || {
        let sh = |cmd: &str| {
            let ok = Command::new("ip")
                .args(["netns", "exec", &name, "sh", "-c", cmd])
                .status()
                .expect("ip")
                .success();
            assert!(ok, "`{cmd}` failed");
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut rx = spawn_link_watcher().await.expect("rtnetlink socket");
            assert!(rx.borrow().contains("lo"), "{:?}", *rx.borrow());

            sh("ip link add x0 type veth peer name x1");
            wait_for(&mut rx, "veth pair", |s| {
                s.contains("x0") && s.contains("x1")
            })
            .await;
            let x0 = rx.borrow().get("x0").unwrap().index;

            sh("ip link set x0 name y0");
            wait_for(&mut rx, "rename", |s| {
                !s.contains("x0") && s.get("y0").map(|l| l.index) == Some(x0)
            })
            .await;

            sh("ip link add br0 type bridge && ip link set y0 master br0");
            let br0 = {
                wait_for(&mut rx, "bridge", |s| s.contains("br0")).await;
                rx.borrow().get("br0").unwrap().index
            };
            wait_for(&mut rx, "enslaved", |s| {
                s.get("y0").and_then(|l| l.master) == Some(br0)
            })
            .await;

            // Leaving the bridge sends an AF_BRIDGE RTM_DELLINK for the port: the device
            // itself stays.
            sh("ip link set y0 nomaster");
            wait_for(&mut rx, "released", |s| {
                s.get("y0").is_some_and(|l| l.master.is_none())
            })
            .await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            assert!(
                rx.borrow().contains("y0"),
                "port removal taken for deletion"
            );

            sh("ip link del y0");
            wait_for(&mut rx, "deletion", |s| {
                !s.contains("y0") && !s.contains("x1")
            })
            .await;

            sh("ip link add y0 type veth peer name y1");
            wait_for(&mut rx, "recreated with a new index", |s| {
                s.get("y0").is_some_and(|l| l.index != x0)
            })
            .await;
            // What the watcher holds equals a fresh listing.
            let fresh = LinkSnapshot::current().unwrap();
            let mine: Vec<String> = rx.borrow().names().map(String::from).collect();
            let theirs: Vec<String> = fresh.names().map(String::from).collect();
            assert_eq!(mine, theirs);
        });
    });
}

#[test]
#[ignore = "root and network namespaces: tests/run.sh runs it (cargo test -- --include-ignored)"]
fn ruleset_monitor_reports_other_tables_and_ignores_ours() {
    require_root();
    let ns = Netns::new();
    let name = ns.name.clone();
    ns.enter(move || {
        let nft = |script: &str| {
            let ok = Command::new("ip")
                .args(["netns", "exec", &name, "nft", script])
                .status()
                .expect("nft")
                .success();
            assert!(ok, "nft {script}");
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut rx =
                offloadd::nft::monitor::spawn_monitor(Default::default()).expect("subscribe");
            nft("add table inet offloadd");
            nft("add table inet fw4");
            let change = tokio::time::timeout(Duration::from_secs(2), rx.recv())
                .await
                .expect("a change within 2 s")
                .expect("monitor running");
            // Our own table's transaction came first and was not reported.
            assert_eq!(change.tables, ["inet fw4"]);
            nft("add chain inet fw4 forward { type filter hook forward priority 0; }");
            let change = tokio::time::timeout(Duration::from_secs(2), rx.recv())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(change.tables, ["inet fw4"]);
        });
    });
}
