//! Fixtures of the kernel's state for the nft unit tests: plans from a TOML config and a
//! `LinkSnapshot`, and what a reading of the kernel shows once it holds one (`Actual`),
//! built by hand as `readback.rs` would parse it.

use nftnl_sys::libc;

use super::batch::{self, TableFlags};
use super::readback::Actual;
use super::sys::{self, ChainInfo, FlowtableInfo, RuleInfo, TableInfo};
use crate::config::parse_toml;
use crate::link::LinkSnapshot;
use crate::plan::Inputs;
use crate::plan::{plan, Desired, CHAIN, FLOWTABLE_PRIORITY, TABLE};

const INET: u32 = libc::NFPROTO_INET as u32;

/// The plan of `[offload]` `body` (devices lan0, wan0, wan1 unless it names others) when
/// the devices `present` exist.
pub fn plan_of(body: &str, present: &[&str]) -> Desired {
    let devices = if body.contains("devices") {
        ""
    } else {
        "devices = [\"lan0\", \"wan0\", \"wan1\"]\n"
    };
    let cfg = parse_toml(&format!("[offload]\n{devices}{body}")).unwrap();
    plan(
        &cfg,
        &Inputs::links(&LinkSnapshot::from_names(present.iter().copied())),
    )
    .map(|p| p.ruleset)
    .unwrap()
}

/// Software offload (`hardware = "off"`, `counter` on) over the devices `present`.
pub fn software(present: &[&str]) -> Desired {
    plan_of("hardware = \"off\"\n", present)
}

/// The rule expressions `d` builds (the table flags do not change them).
pub fn rules(d: &Desired) -> Vec<String> {
    batch::create(d, TableFlags { owner: true }, false).rule_texts()
}

/// What a reading shows once the kernel holds `d`: our table (with the owner flag if
/// `owner`), its flowtable with `d`'s devices and flags, the forward chain at `d`'s
/// priority and the rules as built.
pub fn holding(d: &Desired, owner: bool) -> Actual {
    let flowtables = d
        .flowtables()
        .map(|(name, ft)| FlowtableInfo {
            family: INET,
            table: TABLE.into(),
            name: name.into(),
            priority: FLOWTABLE_PRIORITY,
            flags: (if ft.counter {
                sys::NFT_FLOWTABLE_COUNTER
            } else {
                0
            }) | (if ft.hw_offload {
                sys::NFT_FLOWTABLE_HW_OFFLOAD
            } else {
                0
            }),
            devices: ft.devices.iter().cloned().collect(),
        })
        .collect();
    let rules = rules(d)
        .into_iter()
        .map(|exprs| RuleInfo {
            family: INET,
            table: TABLE.into(),
            chain: CHAIN.into(),
            exprs,
        })
        .collect();
    Actual {
        table: Some(TableInfo {
            family: INET,
            name: TABLE.into(),
            flags: if owner { sys::NFT_TABLE_F_OWNER } else { 0 },
        }),
        flowtables,
        chains: vec![ChainInfo {
            family: INET,
            table: TABLE.into(),
            name: CHAIN.into(),
            hook: Some((
                libc::NF_INET_FORWARD as u32,
                d.priority,
                libc::NF_ACCEPT as u32,
            )),
        }],
        rules,
        generation: 7,
        ..Actual::default()
    }
}

/// `a` with our flowtable hooked on `devices` instead.
pub fn hooked(mut a: Actual, devices: &[&str]) -> Actual {
    a.flowtables[0].devices = devices.iter().map(|d| d.to_string()).collect();
    a
}
