//! Netns tier: our forward chain runs after every other forward base chain. The kernel
//! reads back the other families' forward chains (ip, ip6, inet), the chain lands at the
//! chosen priority, and `check` lists the others and fails when one runs after ours.

mod common;

use common::{desired, require_root, Netns, FW4};
use offloadd::nft::Nft;
use offloadd::plan::choose_priority;

const BIN: &str = env!("CARGO_BIN_EXE_offloadd");

const OTHERS: &str = "table ip security {
    chain FORWARD { type filter hook forward priority 50; policy accept; }
}
table ip6 late {
    chain late_fwd { type filter hook forward priority 300; policy accept; }
}
table inet nat_only {
    chain post { type nat hook postrouting priority srcnat; policy accept; }
}
";

#[test]
#[ignore = "root and network namespaces: tests/run.sh runs it (cargo test -- --include-ignored)"]
fn the_chain_goes_after_every_other_forward_chain_and_check_says_so() {
    require_root();
    let ns = Netns::new();
    ns.sh(&format!("nft -f - <<'EOF'\n{FW4}{OTHERS}EOF"));
    let plan = desired("[offload]\n");
    let (others, listing) = ns.enter(move || {
        use offloadd::nft::Kernel;
        let mut nft = Nft::open().unwrap();
        let others = nft.read().unwrap().foreign_forward;
        let mut d = plan.clone();
        d.priority = choose_priority(None, &others).unwrap().0;
        nft.apply(&d).unwrap();
        // Listed while our socket lives: the table is owned by it.
        let out = std::process::Command::new("nft")
            .args(["list", "chain", "inet", "offloadd", "forward"])
            .output()
            .unwrap();
        (others, String::from_utf8_lossy(&out.stdout).into_owned())
    });
    let mut seen: Vec<String> = others.iter().map(|c| c.to_string()).collect();
    seen.sort();
    // The NAT chain hooks postrouting, not forward: not listed.
    assert_eq!(
        seen,
        [
            "inet fw4 forward (filter)",
            "ip security FORWARD (50)",
            "ip6 late late_fwd (300)"
        ]
    );
    assert!(listing.contains("priority 301;"), "{listing}");

    let dir = std::env::temp_dir().join(format!("offloadd-prio-{}", ns.name));
    std::fs::create_dir_all(&dir).unwrap();
    let ok = dir.join("ok.toml");
    std::fs::write(&ok, "[offload]\ndevices = [\"lo\"]\nhardware = \"off\"\n").unwrap();
    let out = ns.run(BIN, &["check", "--config", ok.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.contains("forward chain at 301 would run after ")
            && text.contains("ip6 late late_fwd (300)"),
        "{text}"
    );
    // A fixed priority below another chain: check fails and names it.
    let low = dir.join("low.toml");
    std::fs::write(
        &low,
        "[offload]\ndevices = [\"lo\"]\nhardware = \"off\"\npriority = 20\n",
    )
    .unwrap();
    let out = ns.run(BIN, &["check", "--config", low.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("forward chain at 20 would run before ip security FORWARD (50), ip6 late late_fwd (300)"),
        "{text}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}
