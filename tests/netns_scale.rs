//! Netns tier: big batches and busy firewalls, on the host kernel inside namespaces the
//! tests create. A plan of 4,000 rules (near the
//! 4,096 a config may expand to, docs/limits.md) applies in one batch and reads back; a batch the
//! kernel refuses message by message overflows the receive buffer and the socket stays
//! usable; another program's set-element churn is not a rule change.

mod common;

use std::time::{Duration, Instant};

use common::{desired, require_root, Netns};
use offloadd::nft::{Kernel, Nft, NftError};

/// `entries` exclusion entries of 250 ports each; without `l4proto` each port is a TCP
/// and a UDP rule, so 500 rules an entry. `first` shifts the ports (a different plan).
fn big_config(entries: usize, first: u16) -> String {
    let mut toml = String::new();
    for e in 0..entries {
        let ports: Vec<String> = (0..250)
            .map(|p| format!("\"{}\"", first + (e * 250 + p) as u16))
            .collect();
        toml.push_str(&format!(
            "[[offload.exclude]]\ndport = [{}]\n",
            ports.join(", ")
        ));
    }
    toml
}

#[test]
#[ignore = "root and network namespaces: tests/run.sh runs it (cargo test -- --include-ignored)"]
fn four_thousand_rules_apply_read_back_and_are_replaced() {
    require_root();
    let ns = Netns::new();
    let a = desired(&big_config(8, 1000));
    let b = desired(&big_config(8, 20000));
    assert_eq!(a.excludes.len(), 4000);
    let (first, second, rules, again) = ns.enter(move || {
        let mut nft = Nft::open().unwrap();
        let t = Instant::now();
        let first = nft.apply(&a).map(|c| c.changed);
        let took = t.elapsed();
        let second = nft.apply(&b).map(|c| c.changed);
        let rules = nft.read().unwrap().rules.len();
        let again = nft.apply(&b).map(|c| c.changed);
        eprintln!("4000-rule batch applied and read back in {took:?}");
        (first, second, rules, again)
    });
    // Before the fix: ENOBUFS from the acks of a committed batch, then "no answer
    // from nf_tables within 5 s".
    assert!(matches!(first, Ok(true)), "{first:?}");
    assert!(matches!(second, Ok(true)), "{second:?}");
    assert_eq!(rules, 4000, "the read-back holds every rule");
    assert!(matches!(again, Ok(false)), "unchanged: {again:?}");
}

#[test]
#[ignore = "root and network namespaces: tests/run.sh runs it (cargo test -- --include-ignored)"]
fn a_refusal_that_overflows_the_receive_buffer_leaves_the_socket_usable() {
    require_root();
    let ns = Netns::new();
    let plan = desired(&big_config(8, 1000));
    let (refused, still_reads, owner_ok) = ns.enter(move || {
        // The first socket owns the table (owner flag); the second one's batch is then
        // refused message by message (EPERM, then rules of a chain it cannot reach):
        // thousands of error messages, more than its receive buffer holds.
        let mut owner = Nft::open().unwrap();
        owner.apply(&plan).unwrap();
        let mut other = Nft::open().unwrap();
        let t = Instant::now();
        let refused = other.apply(&plan);
        let took = t.elapsed();
        let lost = other.lost_answers();
        let still_reads = other.read().map(|a| a.rules.len());
        let owner_ok = owner.apply(&plan).map(|c| c.changed);
        eprintln!("refused in {took:?} ({lost} overflowed answer sets): {refused:?}");
        assert_eq!(lost, 1, "the refusals overflowed the receive buffer once");
        (refused.map(|c| c.changed), still_reads, owner_ok)
    });
    match refused {
        Err(NftError::Refused { errno, .. }) => assert_eq!(errno, libc::EPERM),
        other => panic!("expected the owner's EPERM, got {other:?}"),
    }
    assert_eq!(
        still_reads.unwrap(),
        4000,
        "the refused socket still reads back"
    );
    assert!(matches!(owner_ok, Ok(false)), "{owner_ok:?}");
}

fn nft_script(ns: &Netns, script: &str) {
    ns.sh(&format!("nft -f - <<'EOF'\n{script}\nEOF"));
}

#[test]
#[ignore = "root and network namespaces: tests/run.sh runs it (cargo test -- --include-ignored)"]
fn set_element_churn_is_no_rule_change_and_one_rule_change_is_one() {
    require_root();
    let ns = Netns::new();
    nft_script(
        &ns,
        "table inet banlike {\n set blocked { type ipv4_addr; }\n chain input { type filter hook input priority 0; ip saddr @blocked drop; }\n}",
    );
    let name = ns.name.clone();
    let (changes, commits) = ns.enter(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut rx = offloadd::nft::monitor::spawn_monitor(Default::default()).unwrap();
            // Another program: 200 set-element commits a second for 10 s, each its own
            // `nft` transaction (add, then delete, as dnsmasq nftset and banIP do).
            let churn = tokio::task::spawn_blocking(move || {
                let start = Instant::now();
                let mut commits = 0u32;
                let mut sock = offloadd::nft::socket::NftSocket::open().unwrap();
                while start.elapsed() < Duration::from_secs(10) {
                    let verb = if commits % 2 == 0 { "add" } else { "delete" };
                    element_commit(&mut sock, verb, commits / 2);
                    commits += 1;
                    let next = Duration::from_millis(5) * commits;
                    if let Some(wait) = next.checked_sub(start.elapsed()) {
                        std::thread::sleep(wait);
                    }
                }
                commits
            });
            let mut changes = Vec::new();
            let mut churn = churn;
            let commits = loop {
                tokio::select! {
                    Some(c) = rx.recv() => changes.push(c),
                    done = &mut churn => break done.unwrap(),
                }
            };
            // Then one rule change.
            let out = std::process::Command::new("ip")
                .args([
                    "netns", "exec", &name, "nft", "add", "rule", "inet", "banlike", "input",
                    "tcp", "dport", "9", "drop",
                ])
                .status()
                .unwrap();
            assert!(out.success());
            let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
            while let Ok(Some(c)) = tokio::time::timeout_at(deadline, rx.recv()).await {
                changes.push(c);
            }
            (changes, commits)
        })
    });
    let rule_changes: Vec<_> = changes.iter().filter(|c| !c.elements_only).collect();
    let element_changes = changes.len() - rule_changes.len();
    eprintln!("{commits} element commits in 10 s: {element_changes} element-only changes seen, rule changes {rule_changes:?}");
    assert!(commits >= 1500, "the churn ran: {commits} commits");
    assert!(
        element_changes as u32 >= commits * 9 / 10,
        "the monitor saw the churn: {element_changes} of {commits}"
    );
    assert_eq!(
        rule_changes.len(),
        1,
        "exactly the one rule change: {rule_changes:?}"
    );
    assert_eq!(rule_changes[0].tables, ["inet banlike"]);
}

/// One transaction that adds or deletes element 198.18.(n / 256).(n % 256) of set
/// `blocked`, sent as raw nfnetlink (an `nft` process per commit could not keep up
/// with 200 a second on two CPUs).
fn element_commit(sock: &mut offloadd::nft::socket::NftSocket, verb: &str, n: u32) {
    use nftnl::set::Set;
    use nftnl::{Batch, MsgType, ProtoFamily, Table};
    use offloadd::nft::batch::{BuiltBatch, Delivery, Object};
    let table = Table::new(c"banlike", ProtoFamily::Inet);
    let mut set: Set<std::net::Ipv4Addr> = Set::new(c"blocked", 0, &table, ProtoFamily::Inet);
    set.add(&std::net::Ipv4Addr::new(
        198,
        18,
        (n / 256) as u8,
        (n % 256) as u8,
    ));
    let mut batch = Batch::new();
    let kind = if verb == "add" {
        MsgType::Add
    } else {
        MsgType::Del
    };
    let mut labels = Vec::new();
    for elems in set.elems_iter() {
        batch.add(&elems, kind);
        labels.push(Object::ProtoSet);
    }
    let b = BuiltBatch::from_batch(batch, labels);
    let answer = sock.send(&b, Delivery::At(0)).unwrap();
    assert!(answer.errors.is_empty(), "element {verb} {n}: {answer:?}");
}
