//! Turns a `Desired` into one nf_tables batch (bytes), labelling each message so a
//! refusal can be reported against the object it concerns. Building has no side effects.

use std::ffi::CString;

use nftnl::expr::{Bitwise, Cmp, CmpOp, Conntrack, Lookup, Meta, Verdict};
use nftnl::set::{Set, SetKey};
use nftnl::{Batch, Chain, ChainType, Hook, MsgType, Policy, ProtoFamily, Rule, Table};

use super::sys::{self, CtOriginal, FlowOffload, FlowtableMsg, RangeEq, TableMsg};
use crate::plan::{
    label_bytes, CtDir, Desired, ExcludeRule, Flowtable, CHAIN, FLOWTABLE, FLOWTABLE_PRIORITY,
    LABEL_ORIGINAL, LABEL_REPLY, TABLE,
};

pub use super::built::{nfnl_type, BuiltBatch, Delivery, Object};
#[cfg(test)]
use super::built::{NFNL_BATCH_GENID, NFNL_MSG_BATCH_BEGIN, NFNL_MSG_BATCH_END};

/// Table flags we create our table with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableFlags {
    /// Set NFT_TABLE_F_OWNER (kernels >= 5.12).
    pub owner: bool,
}

impl TableFlags {
    fn bits(self) -> u32 {
        if self.owner {
            sys::NFT_TABLE_F_OWNER
        } else {
            0
        }
    }
}

/// Protocol numbers as set elements of type inet_proto (nft datatype 12, 1 byte).
struct L4ProtoKey(u8);

impl SetKey for L4ProtoKey {
    const TYPE: u32 = 12;
    const LEN: u32 = 1;
    fn data(&self) -> Box<[u8]> {
        Box::new([self.0])
    }
}

fn name(s: &str) -> CString {
    CString::new(s).expect("constant names")
}

/// One batch that creates our whole ruleset; with `replace`, it first deletes the table
/// that is there, so the swap is atomic.
pub fn create(desired: &Desired, flags: TableFlags, replace: bool) -> BuiltBatch {
    let mut batch = Batch::new();
    let mut labels = Vec::new();
    if replace {
        batch.add(&TableMsg::new(TABLE, 0), MsgType::Del);
        labels.push(Object::DeleteTable);
    }
    batch.add(&TableMsg::new(TABLE, flags.bits()), MsgType::Add);
    labels.push(Object::Table);
    add_flowtables(&mut batch, &mut labels, desired);

    let table = Table::new(name(TABLE), ProtoFamily::Inet);
    let mut chain = Chain::new(name(CHAIN), &table);
    chain.set_hook(Hook::Forward, desired.priority);
    chain.set_type(ChainType::Filter);
    chain.set_policy(Policy::Accept);
    batch.add(&chain, MsgType::Add);
    labels.push(Object::Chain);
    add_rules(&mut batch, &mut labels, desired, &table, &chain);
    BuiltBatch::from_batch(batch, labels)
}

/// The flush: one batch that empties our chain, deletes our flowtables `existing` and
/// creates `desired`'s flowtables and rules again. Deleting a flowtable tears down every
/// flow in it (nf_flow_table_free), as deleting the table does, so each flow's next
/// packet walks the current firewall; the table and chain stay, so the chain keeps its
/// place among the forward hooks and the table its handle.
pub fn flush(desired: &Desired, existing: &[&str]) -> BuiltBatch {
    let mut batch = Batch::new();
    let mut labels = Vec::new();
    let table = Table::new(name(TABLE), ProtoFamily::Inet);
    let chain = Chain::new(name(CHAIN), &table);
    // DELRULE naming only table and chain deletes every rule of the chain (`nft flush
    // chain`); the rules' references go first, so the flowtables can be deleted.
    batch.add(&Rule::new(&chain), MsgType::Del);
    labels.push(Object::Chain);
    for ft_name in existing {
        let msg = FlowtableMsg::new(TABLE, ft_name, FLOWTABLE_PRIORITY, [], 0);
        batch.add(&msg, MsgType::Del);
        labels.push(Object::Flowtable {
            name: ft_name.to_string(),
            devices: vec![],
            hw_offload: false,
        });
    }
    add_flowtables(&mut batch, &mut labels, desired);
    add_rules(&mut batch, &mut labels, desired, &table, &chain);
    BuiltBatch::from_batch(batch, labels)
}

fn add_flowtables(batch: &mut Batch, labels: &mut Vec<Object>, desired: &Desired) {
    for (ft_name, ft) in desired.flowtables() {
        let (msg, label) = flowtable_msg(ft_name, ft, ft.devices.iter().map(String::as_str));
        batch.add(&msg, MsgType::Add);
        labels.push(label);
    }
}

/// The exclusions and the `flow add` rules, in order.
fn add_rules(
    batch: &mut Batch,
    labels: &mut Vec<Object>,
    desired: &Desired,
    table: &Table,
    chain: &Chain,
) {
    for r in &desired.excludes {
        batch.add(&exclude_rule(chain, r), MsgType::Add);
        labels.push(Object::Exclude {
            line: r.line,
            text: r.to_string(),
        });
    }
    let mut set_id = 0;
    let mut next_set = || {
        set_id += 1;
        set_id
    };
    let names: Vec<&str> = desired.match_names().into_iter().collect();
    if desired.flowtable.is_some() && !names.is_empty() {
        for (dir, bit) in [(0u8, LABEL_ORIGINAL), (1u8, LABEL_REPLY)] {
            // ct direction <dir> ct label set <bit>: this direction got through.
            let mut rule = Rule::new(chain);
            rule.add_expr(&sys::CtKey(libc::NFT_CT_DIRECTION as u32));
            rule.add_expr(&Cmp::new(CmpOp::Eq, dir));
            // An array, not a slice: Immediate sends the bytes of its value as it is.
            rule.add_expr(&nftnl::expr::Immediate::new(
                label_bytes(bit),
                nftnl::expr::Register::Reg1,
            ));
            rule.add_expr(&sys::CtLabelSet);
            batch.add(&rule, MsgType::Add);
            labels.push(Object::FlowAdd);
        }
        let mut r = FlowAddRule::new(table, Some(names.as_slice()), &mut next_set);
        r.add_to(batch, labels, chain, FLOWTABLE);
    }
}

/// NEWFLOWTABLE (create, flags and priority as given) or, for an existing flowtable, the
/// update that adds `devices` as hooks: the kernel keeps the flowtable and its offloaded
/// flows. An update must carry the same flags, or `counter` is silently dropped.
fn flowtable_msg<'a>(
    ft_name: &str,
    ft: &Flowtable,
    devices: impl Iterator<Item = &'a str>,
) -> (FlowtableMsg, Object) {
    let mut bits = 0;
    if ft.counter {
        bits |= sys::NFT_FLOWTABLE_COUNTER;
    }
    if ft.hw_offload {
        bits |= sys::NFT_FLOWTABLE_HW_OFFLOAD;
    }
    let msg = FlowtableMsg::new(TABLE, ft_name, FLOWTABLE_PRIORITY, devices, bits);
    let label = Object::Flowtable {
        name: ft_name.into(),
        devices: msg.device_names(),
        hw_offload: ft.hw_offload,
    };
    (msg, label)
}

/// Hook changes for one live flowtable: devices to add and to remove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceChange<'a> {
    pub name: &'static str,
    pub flowtable: &'a Flowtable,
    pub add: Vec<String>,
    pub remove: Vec<String>,
}

/// One batch that changes only flowtable hooks: NEWFLOWTABLE with the devices to add,
/// DELFLOWTABLE with the hooks to remove (the kernel deletes just those hooks when the
/// message names devices). Flows on other devices stay offloaded.
pub fn update_devices(changes: &[DeviceChange]) -> BuiltBatch {
    let mut batch = Batch::new();
    let mut labels = Vec::new();
    for c in changes {
        if !c.remove.is_empty() {
            let (msg, label) =
                flowtable_msg(c.name, c.flowtable, c.remove.iter().map(String::as_str));
            batch.add(&msg, MsgType::Del);
            labels.push(label);
        }
        if !c.add.is_empty() {
            let (msg, label) = flowtable_msg(c.name, c.flowtable, c.add.iter().map(String::as_str));
            batch.add(&msg, MsgType::Add);
            labels.push(label);
        }
    }
    BuiltBatch::from_batch(batch, labels)
}

/// One batch that deletes our table (and with it the flowtable, chain and rules).
pub fn delete() -> BuiltBatch {
    let mut batch = Batch::new();
    batch.add(&TableMsg::new(TABLE, 0), MsgType::Del);
    BuiltBatch::from_batch(batch, vec![Object::DeleteTable])
}

/// Table for trials only: created inside batches that are never committed, so it never
/// exists and a device already hooked by our `ft` can still be probed (a device may be
/// in only one flowtable per table).
pub const PROBE_TABLE: &str = "offloadd_probe";

/// A trial batch for a flowtable on `devices` alone (`flags offload` with `hw_offload`),
/// in `PROBE_TABLE`, never committed.
pub fn probe(devices: &[&str], hw_offload: bool) -> BuiltBatch {
    let bits = if hw_offload {
        sys::NFT_FLOWTABLE_HW_OFFLOAD
    } else {
        0
    };
    probe_with(0, devices, bits)
}

/// A trial table with these table flags and one flowtable with these devices and flags:
/// `probe` and the kernel feature probes (`check`).
pub fn probe_with(table_flags: u32, devices: &[&str], flowtable_flags: u32) -> BuiltBatch {
    let mut batch = Batch::new();
    batch.add(&TableMsg::new(PROBE_TABLE, table_flags), MsgType::Add);
    batch.add(
        &FlowtableMsg::new(
            PROBE_TABLE,
            "probe",
            FLOWTABLE_PRIORITY,
            devices.iter().copied(),
            flowtable_flags,
        ),
        MsgType::Add,
    );
    BuiltBatch::from_batch(
        batch,
        vec![
            Object::Table,
            Object::Flowtable {
                name: "probe".into(),
                devices: devices.iter().map(|d| d.to_string()).collect(),
                hw_offload: flowtable_flags & sys::NFT_FLOWTABLE_HW_OFFLOAD != 0,
            },
        ],
    )
}

/// Interface names as set elements of type ifname (nft datatype 41, IFNAMSIZ bytes).
struct IfNameKey(String);

impl SetKey for IfNameKey {
    const TYPE: u32 = 41;
    const LEN: u32 = libc::IFNAMSIZ as u32;
    fn data(&self) -> Box<[u8]> {
        let mut b = vec![0u8; libc::IFNAMSIZ];
        let n = self.0.len().min(libc::IFNAMSIZ - 1);
        b[..n].copy_from_slice(&self.0.as_bytes()[..n]);
        b.into_boxed_slice()
    }
}

/// `[iifname {..} oifname {..}] ct state established meta l4proto { tcp, udp } flow add
/// @<ft>`, with the anonymous sets it looks up (each set can serve one lookup only).
struct FlowAddRule<'a> {
    protos: Set<'a, L4ProtoKey>,
    /// The same device names twice: one set for iifname, one for oifname.
    within: Option<(Set<'a, IfNameKey>, Set<'a, IfNameKey>)>,
}

impl<'a> FlowAddRule<'a> {
    fn new(table: &'a Table, within: Option<&[&str]>, next_id: &mut impl FnMut() -> u32) -> Self {
        let mut protos: Set<L4ProtoKey> = Set::new(c"__set%d", next_id(), table, ProtoFamily::Inet);
        protos.add(&L4ProtoKey(libc::IPPROTO_TCP as u8));
        protos.add(&L4ProtoKey(libc::IPPROTO_UDP as u8));
        let within = within.map(|devices| {
            let mut make = || {
                let mut s: Set<IfNameKey> =
                    Set::new(c"__set%d", next_id(), table, ProtoFamily::Inet);
                for d in devices {
                    s.add(&IfNameKey(d.to_string()));
                }
                sys::set_key_host_byteorder(s.as_ptr());
                s
            };
            (make(), make())
        });
        FlowAddRule { protos, within }
    }

    fn add_to(&mut self, batch: &mut Batch, labels: &mut Vec<Object>, chain: &Chain, ft: &str) {
        let mut sets: Vec<&Set<'a, IfNameKey>> = Vec::new();
        if let Some((i, o)) = &self.within {
            sets.extend([i, o]);
        }
        for s in &sets {
            batch.add(*s, MsgType::Add);
            labels.push(Object::DeviceSet);
            for elems in s.elems_iter() {
                batch.add(&elems, MsgType::Add);
                labels.push(Object::DeviceSet);
            }
        }
        batch.add(&self.protos, MsgType::Add);
        labels.push(Object::ProtoSet);
        for elems in self.protos.elems_iter() {
            batch.add(&elems, MsgType::Add);
            labels.push(Object::ProtoSet);
        }
        let mut rule = Rule::new(chain);
        if let [i, o] = sets.as_slice() {
            rule.add_expr(&Meta::IifName);
            rule.add_expr(&Lookup::new(*i));
            rule.add_expr(&Meta::OifName);
            rule.add_expr(&Lookup::new(*o));
        }
        // ct label 126 ct label 127: both directions got through every other chain.
        for bit in [LABEL_ORIGINAL, LABEL_REPLY] {
            let zero = [0u8; 16];
            rule.add_expr(&sys::CtKey(libc::NFT_CT_LABELS as u32));
            rule.add_expr(&Bitwise::new(label_bytes(bit).as_slice(), zero.as_slice()));
            rule.add_expr(&Cmp::new(CmpOp::Neq, zero.as_slice()));
        }
        // ct state established
        rule.add_expr(&Conntrack::State);
        rule.add_expr(&Bitwise::new(
            2u32, /* NF_CT_STATE_BIT(IP_CT_ESTABLISHED) */
            0u32,
        ));
        rule.add_expr(&Cmp::new(CmpOp::Neq, 0u32));
        // meta l4proto { tcp, udp }
        rule.add_expr(&Meta::L4Proto);
        rule.add_expr(&Lookup::new(&self.protos));
        rule.add_expr(&FlowOffload(name(ft)));
        batch.add(&rule, MsgType::Add);
        labels.push(Object::FlowAdd);
    }
}

fn exclude_rule<'a>(chain: &'a Chain<'a>, r: &ExcludeRule) -> Rule<'a> {
    let mut rule = Rule::new(chain);
    if let Some(p) = r.l4proto {
        rule.add_expr(&Meta::L4Proto);
        rule.add_expr(&Cmp::new(CmpOp::Eq, p.number()));
    }
    for (prefix, v4key, v6key) in [
        (&r.saddr, sys::NFT_CT_SRC_IP, sys::NFT_CT_SRC_IP6),
        (&r.daddr, sys::NFT_CT_DST_IP, sys::NFT_CT_DST_IP6),
    ] {
        if let Some(p) = prefix {
            rule.add_expr(&CtOriginal(if p.addr.is_ipv4() { v4key } else { v6key }));
            if !p.is_host() {
                let zero = vec![0u8; p.mask_bytes().len()];
                rule.add_expr(&Bitwise::new(p.mask_bytes().as_slice(), zero.as_slice()));
            }
            rule.add_expr(&Cmp::new(CmpOp::Eq, p.addr_bytes().as_slice()));
        }
    }
    for (ports, key) in [
        (&r.sport, sys::NFT_CT_PROTO_SRC),
        (&r.dport, sys::NFT_CT_PROTO_DST),
    ] {
        if let Some(p) = ports {
            rule.add_expr(&CtOriginal(key));
            if p.first == p.last {
                rule.add_expr(&Cmp::new(CmpOp::Eq, p.first.to_be_bytes().as_slice()));
            } else {
                rule.add_expr(&RangeEq {
                    from: p.first.to_be_bytes().to_vec(),
                    to: p.last.to_be_bytes().to_vec(),
                });
            }
        }
    }
    if let Some(m) = r.mark {
        rule.add_expr(&Conntrack::Mark { set: false });
        if m.mask != u32::MAX {
            rule.add_expr(&Bitwise::new(m.mask, 0u32));
        }
        rule.add_expr(&Cmp::new(CmpOp::Eq, m.value));
    }
    if let Some(d) = r.dir {
        rule.add_expr(&sys::CtKey(libc::NFT_CT_DIRECTION as u32));
        let dir: u8 = match d {
            CtDir::Original => 0, // IP_CT_DIR_ORIGINAL
            CtDir::Reply => 1,
        };
        rule.add_expr(&Cmp::new(CmpOp::Eq, dir));
    }
    for (name, meta) in [(&r.iifname, Meta::IifName), (&r.oifname, Meta::OifName)] {
        if let Some(n) = name {
            rule.add_expr(&meta);
            rule.add_expr(&Cmp::new(CmpOp::Eq, IfNameKey(n.clone()).data().as_ref()));
        }
    }
    rule.add_expr(&Verdict::Return);
    rule
}

#[cfg(test)]
#[path = "batch_tests.rs"]
mod tests;
