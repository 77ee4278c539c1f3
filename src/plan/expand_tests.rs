//! Issue 26: the rules exclusions ask for are counted before any is built, so no list,
//! product of lists or sum of entries can take the memory or wrap the count.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use crate::config::{parse_toml, Config, Exclude, IpPrefix, L4Proto, PortRange};
use crate::link::LinkSnapshot;
use crate::plan::Inputs;
use crate::plan::{plan, PlanError};

fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

fn with(exclude: Vec<Exclude>) -> Config {
    let mut cfg = Config::default();
    cfg.offload.exclude = exclude;
    cfg
}

/// Plans `cfg`, which must be refused, and within a second (a bomb expanded first took
/// seconds and gigabytes; counted first it takes microseconds, so the bound is loose).
fn refused_quickly(cfg: &Config) -> PlanError {
    let started = Instant::now();
    let e = plan(cfg, &Inputs::links(&LinkSnapshot::default()))
        .map(|p| p.ruleset)
        .expect_err("a bomb was accepted");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(1), "refused after {took:?}: {e}");
    e
}

#[test]
fn three_thousand_by_three_thousand_devices_are_counted_not_built() {
    // 52 KB of config: each (iif, oif) pair is two rules (one per packet direction).
    // Built before the check, these took 2.1 GB.
    let e = refused_quickly(&with(vec![Exclude {
        line: 7,
        iif: names("a", 3000),
        oif: names("b", 3000),
        ..Exclude::default()
    }]));
    assert_eq!(
        e,
        PlanError::TooManyRules {
            line: 7,
            count: 18_000_000
        }
    );
}

#[test]
fn lists_whose_product_passes_2_pow_64_do_not_wrap() {
    // Four lists of 65,536: 2^64 rules, which wrapped to 0 (and passed) in release
    // builds and panicked in debug ones. The parsers' list caps refuse such lists
    // first; this is the plan's own guard, for a Config built some other way.
    let hosts = |last: u8| -> Vec<IpPrefix> {
        (0..65536u32)
            .map(|i| IpPrefix {
                addr: Ipv4Addr::new(10, (i >> 8) as u8, i as u8, last).into(),
                len: 32,
            })
            .collect()
    };
    let port = PortRange { first: 1, last: 1 };
    let e = refused_quickly(&with(vec![Exclude {
        line: 9,
        l4proto: Some(L4Proto::Tcp),
        saddr: hosts(1),
        daddr: hosts(2),
        sport: vec![port; 65536],
        dport: vec![port; 65536],
        ..Exclude::default()
    }]));
    assert!(
        matches!(e, PlanError::TooManyRules { line: 9, .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("or more"), "{e}");
    // Two lists of 65,536 are 2^32 rules: the whole count on 64-bit, a wrap on 32-bit
    // routers without checked arithmetic.
    let e = refused_quickly(&with(vec![Exclude {
        line: 3,
        saddr: hosts(1),
        daddr: hosts(2),
        ..Exclude::default()
    }]));
    assert!(
        matches!(e, PlanError::TooManyRules { line: 3, .. }),
        "{e:?}"
    );
}

/// `n` entries of 256 destination ports each, no protocol: 512 rules an entry (TCP and
/// UDP), each entry two lines.
fn entries_of_256_ports(n: usize) -> String {
    let ports: Vec<String> = (0..256).map(|p| format!("\"{}\"", 10000 + p)).collect();
    let entry = format!("[[offload.exclude]]\ndport = [{}]\n", ports.join(", "));
    entry.repeat(n)
}

#[test]
fn the_rule_cap_holds_for_all_entries_together() {
    // 2,000 entries of 512 rules each were accepted as 1,024,000 rules: every entry was
    // under the per-entry cap. Eight entries are 4,096 rules; the ninth (line 17) is
    // refused, by its line.
    let cfg = parse_toml(&entries_of_256_ports(2000)).unwrap();
    let e = refused_quickly(&cfg);
    assert_eq!(e.line(), 17, "{e}");
    let text = e.to_string();
    assert!(text.contains("4096") && text.contains("4608"), "{text}");
    let cfg = parse_toml(&entries_of_256_ports(8)).unwrap();
    let d = plan(&cfg, &Inputs::links(&LinkSnapshot::default()))
        .map(|p| p.ruleset)
        .unwrap();
    assert_eq!(d.excludes.len(), 4096);
}
