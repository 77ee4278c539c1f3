//! Netns tier: real nf_tables on the host kernel, inside namespaces each test creates.
//! The host kernel has no flowtables, so the full ruleset is applied in the VM tier;
//! here the nft layer applies everything but the flowtable, and the daemon's refusal
//! on such a kernel is checked.

mod common;

use common::{desired, require_root, Netns, FW4};
use offloadd::nft::Nft;

const BIN: &str = env!("CARGO_BIN_EXE_offloadd");

/// `offloadd run` in `ns` with its own control socket (never /run/offloadd.sock), for
/// runs that are expected to stop by themselves.
fn run_daemon(
    ns: &Netns,
    config: &std::path::Path,
    socket: &std::path::Path,
) -> std::process::Output {
    let (config, socket) = (config.to_str().unwrap(), socket.to_str().unwrap());
    ns.run(BIN, &["--socket", socket, "run", "--config", config])
}

/// A namespace with the lab's router devices and a stand-in for fw4's table; returns
/// it with its ruleset as it was before offloadd ran.
fn router_ns() -> (Netns, String) {
    let ns = Netns::new();
    ns.sh(
        "ip link add lan0 type veth peer name lan0p && ip link add wan0 type veth peer name wan0p",
    );
    ns.sh(&format!("nft -f - <<'EOF'\n{FW4}EOF"));
    let before = ns.ruleset();
    (ns, before)
}

#[test]
#[ignore = "root and network namespaces: tests/run.sh runs it (cargo test -- --include-ignored)"]
fn apply_replace_delete_leave_other_tables_alone() {
    require_root();
    let ns = Netns::new();
    ns.sh(&format!("nft -f - <<'EOF'\n{FW4}EOF"));
    let fw4_before = ns.sh("nft list table inet fw4");

    let first =
        desired("[[offload.exclude]]\nl4proto = \"udp\"\ndport = [\"5060\", \"10000-20000\"]\n");
    let second = desired("[[offload.exclude]]\nsaddr = [\"198.18.0.0/15\", \"fd00::/8\"]\n");
    let (applied1, unchanged, listing1, applied2, listing2, removed, gone) = ns.enter(move || {
        use offloadd::nft::Kernel;
        let mut nft = Nft::open().unwrap();
        let a1 = nft.apply(&first).unwrap().changed;
        let again = nft.apply(&first).unwrap().changed;
        let l1 = nft.read().unwrap();
        let a2 = nft.apply(&second).unwrap().changed;
        let l2 = nft.read().unwrap();
        let removed = nft.remove().unwrap();
        let gone = nft.read().unwrap().table.is_none();
        (a1, again, l1.rules.len(), a2, l2.rules.len(), removed, gone)
    });
    assert!(
        applied1 && !unchanged,
        "first apply changes, an identical second does not"
    );
    assert_eq!(listing1, 2);
    assert!(applied2);
    assert_eq!(listing2, 2);
    assert!(removed && gone);
    assert_eq!(
        ns.sh("nft list table inet fw4"),
        fw4_before,
        "inet fw4 changed"
    );
    assert!(!ns.ruleset().contains("offloadd"));
}

#[test]
#[ignore = "root and network namespaces: tests/run.sh runs it (cargo test -- --include-ignored)"]
fn applied_rules_read_as_the_plan_says() {
    require_root();
    let ns = Netns::new();
    let d = desired("[[offload.exclude]]\nl4proto = \"udp\"\ndport = [\"5060\"]\n[[offload.exclude]]\nsaddr = [\"fd00::/8\"]\n");
    // Keep the socket (and so the owner-flagged table) alive while nft lists it.
    let (tx, rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let name = ns.name.clone();
    let t = std::thread::spawn(move || {
        common::enter(&name, move || {
            use offloadd::nft::Kernel;
            let mut nft = Nft::open().unwrap();
            nft.apply(&d).unwrap();
            tx.send(()).unwrap();
            done_rx.recv().unwrap();
        })
    });
    rx.recv().unwrap();
    let listing = ns.sh("nft list table inet offloadd");
    done_tx.send(()).unwrap();
    t.join().unwrap();
    assert!(listing.contains("flags owner"), "{listing}");
    assert!(
        listing.contains("type filter hook forward priority 200; policy accept;"),
        "{listing}"
    );
    assert!(
        listing.contains("meta l4proto udp ct original proto-dst 5060 return"),
        "{listing}"
    );
    assert!(
        listing.contains("ct original ip6 saddr fd00::/8 return"),
        "{listing}"
    );
    // The socket closed with the thread, so the kernel removes the owner-flagged table.
    // The removal is not synchronous with close() (seen here: a listing right after the
    // close still showed the table about 1 run in 10), so wait for it, within a bound.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while ns.ruleset().contains("offloadd") {
        assert!(
            std::time::Instant::now() < deadline,
            "owner flag did not remove the table within 2 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
#[ignore = "root and network namespaces: tests/run.sh runs it (cargo test -- --include-ignored)"]
fn kernel_without_flowtables_gets_the_module_hint_and_keeps_nothing() {
    require_root();
    let (ns, before) = router_ns();
    let cfg = std::env::temp_dir().join(format!("offloadd-enoent-{}.toml", std::process::id()));
    std::fs::write(
        &cfg,
        "[offload]\ndevices = [\"lan0\", \"wan0\", \"absent0\"]\nhardware = \"off\"\n",
    )
    .unwrap();
    let sock = cfg.with_extension("sock");
    let out = run_daemon(&ns, &cfg, &sock);
    assert!(
        !sock.exists(),
        "the control socket is removed when run fails"
    );
    std::fs::remove_file(&cfg).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("kernel lacks flowtable support (OpenWrt: opkg install kmod-nft-offload; modules nf_flow_table, nf_flow_table_inet, nft_flow_offload)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("device=absent0"),
        "missing device not warned: {stderr}"
    );
    assert!(!stderr.contains("os error"), "bare errno: {stderr}");
    assert_eq!(ns.ruleset(), before, "a failed start changed the ruleset");
}

#[test]
#[ignore = "root and network namespaces: tests/run.sh runs it (cargo test -- --include-ignored)"]
fn bad_configs_change_nothing_and_name_file_and_line() {
    require_root();
    let (ns, before) = router_ns();
    let dir = std::env::temp_dir().join(format!("offloadd-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cases: &[(&str, &str)] = &[
        (
            "[offload]\ndevices = [\"lan0\"]\nhardware = \"maybe\"\n",
            ":3: hardware \"maybe\" is not valid",
        ),
        ("[offload]\ndevices = \"lan0\"\n", ":2: "),
        ("mode = \"auto\"\n[offload\n", ":2: "),
        (
            "[offload]\ndevices = [\"lan0\"]\n[[offload.exclude]]\ndport = [\"99999\"]\n",
            ":4: port \"99999\" is not valid",
        ),
        (
            "[offload]\ncolour = \"blue\"\n",
            ":2: unknown field `colour`",
        ),
    ];
    for (i, (text, needle)) in cases.iter().enumerate() {
        let path = dir.join(format!("bad{i}.toml"));
        std::fs::write(&path, text).unwrap();
        let sock = dir.join("offloadd.sock");
        let out = run_daemon(&ns, &path, &sock);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text:?}: {stderr}");
        let expected = format!("{}{needle}", path.display());
        assert!(
            stderr.contains(&expected),
            "{text:?}: expected {expected:?} in {stderr}"
        );
        assert_eq!(stderr.trim().lines().count(), 1, "not one line: {stderr}");
        assert_eq!(ns.ruleset(), before, "{text:?} changed the ruleset");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
#[ignore = "root and network namespaces: tests/run.sh runs it (cargo test -- --include-ignored)"]
fn check_with_no_configured_device_present_fails_naming_the_devices_here_and_tries_features() {
    require_root();
    // A gateway whose NICs are ens1f0np0/ens1f1np1, with the example config's eth0/eth1.
    let ns = Netns::new();
    ns.sh("ip link add ens1f0np0 type veth peer name ens1f1np1");
    let before = ns.ruleset();
    let cfg = std::env::temp_dir().join(format!("offloadd-nodev-{}.toml", std::process::id()));
    std::fs::write(&cfg, "[offload]\ndevices = [\"eth0\", \"eth1\"]\n").unwrap();
    let out = ns.run(
        env!("CARGO_BIN_EXE_offloadd"),
        &["check", "--config", cfg.to_str().unwrap()],
    );
    std::fs::remove_file(&cfg).unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("FAIL no flowtable devices: none of the configured devices exists, so nothing will be offloaded (devices here: ens1f0np0, ens1f1np1)"),
        "{text}"
    );
    // This host kernel has nf_tables (and the owner flag) but no flowtables.
    assert!(
        text.contains("ok   kernel features (each tried, nothing committed): flowtables no, table owner flag yes\n"),
        "{text}"
    );
    assert_eq!(ns.ruleset(), before, "check changed the ruleset");
}

#[test]
#[ignore = "root and network namespaces: tests/run.sh runs it (cargo test -- --include-ignored)"]
fn check_on_a_kernel_without_flowtables_fails_with_the_module_hint_and_changes_nothing() {
    require_root();
    let (ns, before) = router_ns();
    let cfg = std::env::temp_dir().join(format!("offloadd-check-{}.toml", std::process::id()));
    std::fs::write(
        &cfg,
        "[offload]\ndevices = [\"lan0\", \"wan0\", \"absent0\"]\nhardware = \"auto\"\n",
    )
    .unwrap();
    let out = ns.run(
        env!("CARGO_BIN_EXE_offloadd"),
        &["check", "--config", cfg.to_str().unwrap()],
    );
    let json = ns.run(
        env!("CARGO_BIN_EXE_offloadd"),
        &["check", "--json", "--config", cfg.to_str().unwrap()],
    );
    std::fs::remove_file(&cfg).unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("FAIL flowtable support: kernel lacks flowtable support (OpenWrt: opkg install kmod-nft-offload"), "{text}");
    assert!(
        text.contains("WARN device absent0 does not exist now"),
        "{text}"
    );
    let found: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert!(
        found
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["level"] == "fail"),
        "{found}"
    );
    assert_eq!(ns.ruleset(), before, "check changed the ruleset");
}
