//! The bodies of the targets fed by the kernel's netlink sockets (nf_tables
//! notifications, nf_tables dump answers, rtnetlink link messages), included by bodies.rs.
//! Each input is one recv buffer, split into messages by the same code the daemon uses.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use netlink_packet_core::{NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload};
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use nftnl::{MsgType, NlMsg};

use offloadd::link::{decode_link_message, Link, LinkEvent, LinkSnapshot};
use offloadd::nft::monitor::{notices, Collector, Notice, RulesetChange};
use offloadd::nft::socket::messages;
use offloadd::nft::sys::{self, FlowtableInfo, TableInfo};
use offloadd::nft::Actual;
use offloadd::plan::Inputs;
use offloadd::plan::{Desired, TABLE};

#[path = "libnftnl_abi.rs"]
mod libnftnl_abi;

/// NFNL_SUBSYS_NFTABLES (uapi nfnetlink.h): the high byte of every nf_tables type.
const NFNL_SUBSYS_NFTABLES: u16 = libc::NFNL_SUBSYS_NFTABLES as u16;
/// enum nf_tables_msg_types (uapi nf_tables.h).
const NFT_MSG_NEWRULE: u8 = 6;
const NFT_MSG_NEWSETELEM: u8 = 12;
const NFT_MSG_NEWGEN: u8 = 15;
/// The objects the read-back dumps (NEWRULE above).
const NFT_MSG_NEWTABLE: u8 = 0;
const NFT_MSG_NEWCHAIN: u8 = 3;
const NFT_MSG_NEWFLOWTABLE: u8 = 22;
/// RTM_NEWLINK / RTM_DELLINK (uapi rtnetlink.h).
const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;

/// One datagram the nf_tables monitor receives (monitor::notices), then the notices fed
/// to the collector in order (Collector::push). Checks: the monitor splits a datagram as
/// the nft socket does (one notice per complete nf_tables message with room for its
/// nfgenmsg); a table name never holds a NUL; canonical messages built from the notices
/// decode to the same notices; a change is reported only at a commit (NEWGEN), once per
/// commit with a foreign change since the last one, naming each foreign table once in the
/// order it first changed and `inet offloadd` never, and `elements_only` exactly when
/// every foreign change was a set element.
pub fn monitor(data: &[u8]) {
    let found = notices(data);
    let messages = messages(data)
        .into_iter()
        .filter(|(kind, _, range)| kind >> 8 == NFNL_SUBSYS_NFTABLES && range.len() >= 20)
        .count();
    assert_eq!(
        found.len(),
        messages,
        "notices and nf_tables messages differ"
    );
    for n in &found {
        if let Notice::Object { table: Some(t), .. } = n {
            assert!(!t.contains('\0'), "table name with a NUL: {t:?}");
        }
    }
    if let Some(again) = encode_notices(&found) {
        assert_eq!(notices(&again), found, "re-encoded notices differ");
    }

    let ours = format!("inet {TABLE}");
    let mut collector = Collector::default();
    let (mut changed, mut rules) = (Vec::<String>::new(), false);
    for n in found {
        let got = collector.push(n.clone());
        match n {
            Notice::Object {
                family,
                table,
                element,
            } => {
                assert_eq!(got, None, "a change reported before its commit");
                let name = format!(
                    "{} {}",
                    offloadd::nft::family_name(family as u32),
                    table.as_deref().unwrap_or("?")
                );
                let own = family == libc::NFPROTO_INET as u8 && table.as_deref() == Some(TABLE);
                if !own {
                    rules |= !element;
                    if !changed.contains(&name) {
                        changed.push(name);
                    }
                }
            }
            Notice::Generation(_) => {
                let want = (!changed.is_empty()).then(|| RulesetChange {
                    tables: std::mem::take(&mut changed),
                    elements_only: !std::mem::take(&mut rules),
                });
                assert_eq!(got, want, "the commit's change");
                if let Some(c) = got {
                    assert!(!c.tables.contains(&ours), "our own table reported");
                }
            }
        }
    }
}

/// The smallest nf_tables messages that say what `found` says: an object message
/// (NEWRULE, or NEWSETELEM for an element) with its table as attribute 1, or NEWGEN with
/// NFTA_GEN_ID. `None` when a name is too long for a netlink attribute.
fn encode_notices(found: &[Notice]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    for n in found {
        let (kind, family, attr) = match n {
            Notice::Object {
                family,
                table,
                element,
            } => (
                if *element {
                    NFT_MSG_NEWSETELEM
                } else {
                    NFT_MSG_NEWRULE
                },
                *family,
                table
                    .as_ref()
                    .map(|t| (1u16, [t.as_bytes(), b"\0"].concat())),
            ),
            Notice::Generation(g) => (
                NFT_MSG_NEWGEN,
                0,
                g.map(|g| (sys::NFTA_GEN_ID, g.to_be_bytes().to_vec())),
            ),
        };
        let start = out.len();
        out.extend_from_slice(&[0; 16]);
        out[start + 4..start + 6]
            .copy_from_slice(&((NFNL_SUBSYS_NFTABLES << 8) | u16::from(kind)).to_ne_bytes());
        out.extend_from_slice(&[family, 0, 0, 0]);
        if let Some((ty, value)) = attr {
            let len = u16::try_from(4 + value.len()).ok()?;
            out.extend_from_slice(&len.to_ne_bytes());
            out.extend_from_slice(&ty.to_ne_bytes());
            out.extend_from_slice(&value);
            out.resize(out.len().next_multiple_of(4), 0);
        }
        let len = (out.len() - start) as u32;
        out[start..start + 4].copy_from_slice(&len.to_ne_bytes());
    }
    Some(out)
}

/// The config the read-back target plans: two devices and one exclusion
/// (tests/fuzz_regressions.rs builds seeds from it that verify accepts).
pub const READBACK_CONFIG: &str = "[offload]\ndevices = [\"lan0\", \"wan0\"]\ncounter = true\n\
    [[offload.exclude]]\nl4proto = \"udp\"\ndport = [\"5060\"]\n";
/// The devices present when it is planned.
pub const READBACK_LINKS: [&str; 2] = ["lan0", "wan0"];

/// What the read-back compares the kernel's objects with: READBACK_CONFIG planned, and
/// the rule texts of its batch.
fn desired() -> &'static (Desired, Vec<String>) {
    static DESIRED: OnceLock<(Desired, Vec<String>)> = OnceLock::new();
    DESIRED.get_or_init(|| {
        let cfg = offloadd::config::parse_toml(READBACK_CONFIG).expect("the read-back config");
        let links = LinkSnapshot::from_names(READBACK_LINKS);
        let desired = offloadd::plan::plan(&cfg, &Inputs::links(&links))
            .map(|p| p.ruleset)
            .expect("the read-back target's plan");
        let flags = offloadd::nft::batch::TableFlags { owner: true };
        let rules = offloadd::nft::batch::create(&desired, flags, true).rule_texts();
        (desired, rules)
    })
}

/// One recv buffer of an nf_tables dump answer, laid out as the nft socket's buffer
/// (8-byte aligned, zeros after what was received), split as the socket splits it
/// (socket::messages); each NEWTABLE, NEWCHAIN, NEWRULE and NEWFLOWTABLE message is
/// parsed in place by its libnftnl parser (sys::parse_table, _chain, _rule, _flowtable)
/// and the objects put together as Actual::read does, then compared with a fixed plan.
/// Messages libnftnl would exit on are skipped (libnftnl_abi.rs says why). Checks: a
/// table or flowtable re-encoded by our own builders (TableMsg, FlowtableMsg) parses back
/// to the same values; the hook changes device_changes computes turn the devices read
/// back into the planned ones (adding none that is there, removing none that is not); and
/// when verify accepts the reading, no change is left to make.
pub fn readback(data: &[u8]) {
    let inet = libc::NFPROTO_INET as u32;
    let ours = |family: u32, table: &str| family == inet && table == TABLE;
    // NftSocket::buf: u64s, so every message header in it is 4-byte aligned; a string
    // libnftnl reads past its attribute stops at the zeros after the datagram.
    let mut buf = vec![0u64; (data.len() + 4096).div_ceil(8)];
    // SAFETY: `buf` has room for `data`; plain bytes into plain bytes.
    unsafe {
        std::ptr::copy_nonoverlapping(data.as_ptr(), buf.as_mut_ptr().cast::<u8>(), data.len())
    };
    let base = buf.as_ptr().cast::<u8>();
    // SAFETY: viewing the u64s as bytes, as NftSocket::read_until does.
    let bytes = unsafe { std::slice::from_raw_parts(base, buf.len() * 8) };
    let mut actual = Actual::default();
    for (kind, _, range) in messages(data) {
        let aligned = &bytes[range.start..range.start + range.len().next_multiple_of(4)];
        let object = (kind & 0xff) as u8;
        if kind >> 8 != NFNL_SUBSYS_NFTABLES || !libnftnl_abi::parses_without_exit(object, aligned)
        {
            continue;
        }
        // SAFETY: the message lies whole in `buf` at an offset socket::messages found
        // (a multiple of 4), as in NftSocket::dump.
        let nlh = unsafe { base.add(range.start) }.cast::<libc::nlmsghdr>();
        match object {
            NFT_MSG_NEWTABLE => {
                // SAFETY: as above, for each parser.
                if let Some(t) = unsafe { sys::parse_table(nlh) } {
                    table_round_trip(&t);
                    if ours(t.family, &t.name) {
                        actual.table.get_or_insert(t);
                    }
                }
            }
            NFT_MSG_NEWFLOWTABLE => {
                if let Some(f) = unsafe { sys::parse_flowtable(nlh) } {
                    flowtable_round_trip(&f);
                    if ours(f.family, &f.table) {
                        actual.flowtables.push(f);
                    } else {
                        actual.foreign_flowtables.push(f);
                    }
                }
            }
            NFT_MSG_NEWCHAIN => {
                if let Some(c) = unsafe { sys::parse_chain(nlh) } {
                    if ours(c.family, &c.table) {
                        actual.chains.push(c);
                    }
                }
            }
            NFT_MSG_NEWRULE => {
                if let Some(r) = unsafe { sys::parse_rule(nlh) } {
                    if ours(r.family, &r.table) {
                        actual.rules.push(r);
                    }
                }
            }
            _ => {}
        }
    }

    let (desired, rules) = desired();
    let changes = actual.device_changes(desired);
    for c in &changes {
        let have: BTreeSet<String> = actual.devices_of(c.name).into_iter().collect();
        let add: BTreeSet<String> = c.add.iter().cloned().collect();
        let remove: BTreeSet<String> = c.remove.iter().cloned().collect();
        assert!(have.is_disjoint(&add), "adds a device it has: {add:?}");
        assert!(
            remove.is_subset(&have),
            "removes a device it lacks: {remove:?}"
        );
        let after: BTreeSet<String> = have
            .union(&add)
            .filter(|d| !remove.contains(*d))
            .cloned()
            .collect();
        assert_eq!(after, c.flowtable.devices, "the changes miss the plan");
    }
    if actual.verify(desired, rules, true).is_ok() {
        assert!(
            changes.is_empty(),
            "verified, yet changes remain: {}",
            changes.len()
        );
    }
}

/// A buffer for one message built by libnftnl (nftnl's NlMsg contract: the largest
/// netlink message), 8-byte aligned for parsing it back in place.
fn build(msg: &impl NlMsg) -> Vec<u64> {
    let mut buf = vec![0u64; (nftnl::nft_nlmsg_maxsize() as usize).div_ceil(8)];
    // SAFETY: the buffer has nft_nlmsg_maxsize() bytes, as NlMsg::write requires.
    unsafe { msg.write(buf.as_mut_ptr().cast(), 0, MsgType::Add) };
    buf
}

/// Names that fit in one netlink attribute with room to spare (each is bounded by the
/// input, but a string libnftnl read up to a NUL past its attribute can be longer).
fn fits(names: &[&str]) -> bool {
    names.iter().map(|n| n.len() + 8).sum::<usize>() < 32 << 10
}

fn table_round_trip(t: &TableInfo) {
    if !fits(&[&t.name]) {
        return;
    }
    let buf = build(&sys::TableMsg::new(&t.name, t.flags));
    // SAFETY: `buf` holds the message libnftnl just built, aligned.
    let again = unsafe { sys::parse_table(buf.as_ptr().cast()) };
    let want = TableInfo {
        family: libc::NFPROTO_INET as u32,
        ..t.clone()
    };
    assert_eq!(again, Some(want), "a table re-encoded");
}

fn flowtable_round_trip(f: &FlowtableInfo) {
    let mut names: Vec<&str> = f.devices.iter().map(String::as_str).collect();
    names.extend([f.table.as_str(), f.name.as_str()]);
    if !fits(&names) {
        return;
    }
    let msg = sys::FlowtableMsg::new(
        &f.table,
        &f.name,
        f.priority,
        f.devices.iter().map(String::as_str),
        f.flags,
    );
    let buf = build(&msg);
    // SAFETY: as in table_round_trip.
    let again = unsafe { sys::parse_flowtable(buf.as_ptr().cast()) };
    let want = FlowtableInfo {
        family: libc::NFPROTO_INET as u32,
        ..f.clone()
    };
    assert_eq!(again, Some(want), "a flowtable re-encoded");
}

/// One datagram on the link watcher's rtnetlink socket: split and parsed as
/// netlink-proto's NetlinkCodec does for rtnetlink's connection, each RTM_NEWLINK /
/// RTM_DELLINK turned into a LinkEvent by the watcher (link::decode_link_message) and
/// applied to a snapshot of four devices. Checks: AF_BRIDGE messages (bridge ports) are
/// no event; a DELLINK is the deletion of its header's index; an event re-encoded as a
/// link message decodes to the same event; `update` says changed exactly when the
/// snapshot changed, a second time nothing changes, the device has its index and master
/// afterwards (or, deleted, no device has that index) and no two devices share an index.
pub fn rtnetlink(data: &[u8]) {
    let mut snap = LinkSnapshot::from_names(["lo", "lan0", "wan0", "br-lan"]);
    let mut rest = data;
    while !rest.is_empty() {
        // NetlinkCodec::decode: a bad length drops the rest of the datagram; a message
        // that does not parse is skipped.
        let Ok(buf) = NetlinkBuffer::new_checked(rest) else {
            break;
        };
        let (bytes, next) = rest.split_at(buf.length() as usize);
        rest = next;
        let Ok(msg) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(bytes) else {
            continue;
        };
        let NetlinkPayload::InnerMessage(inner) = msg.payload else {
            continue;
        };
        let ev = decode_link_message(&inner);
        if let RouteNetlinkMessage::NewLink(l) | RouteNetlinkMessage::DelLink(l) = &inner {
            if l.header.interface_family == AddressFamily::Bridge {
                assert_eq!(ev, None, "a bridge port message became an event");
            } else if matches!(inner, RouteNetlinkMessage::DelLink(_)) {
                let index = l.header.index;
                assert_eq!(ev, Some(LinkEvent::Del { index }));
            }
        }
        let Some(ev) = ev else {
            continue;
        };
        if let Some(again) = reencode(&ev) {
            assert_eq!(again, Some(ev.clone()), "a link event re-encoded");
        }
        let before = snap.clone();
        let changed = snap.update(&ev);
        assert_eq!(changed, snap != before, "update's answer for {ev:?}");
        assert!(!snap.update(&ev), "{ev:?} changed the snapshot twice");
        match &ev {
            LinkEvent::New {
                index,
                name,
                master,
            } => {
                let link = Link {
                    index: *index,
                    master: *master,
                };
                assert_eq!(snap.get(name), Some(link), "after {ev:?}");
            }
            LinkEvent::Del { index } => {
                assert!(
                    snap.names()
                        .all(|n| snap.get(n).map(|l| l.index) != Some(*index)),
                    "{ev:?} left its device"
                );
            }
        }
    }
    let indexes: BTreeSet<u32> = snap
        .names()
        .filter_map(|n| snap.get(n))
        .map(|l| l.index)
        .collect();
    assert_eq!(indexes.len(), snap.len(), "two devices share an index");
}

/// The link message the kernel would send for `ev`, serialized, parsed back and decoded;
/// `None` when the name is too long for a netlink attribute.
fn reencode(ev: &LinkEvent) -> Option<Option<LinkEvent>> {
    if let LinkEvent::New { name, .. } = ev {
        if name.len() > 60_000 {
            return None;
        }
    }
    let mut link = LinkMessage::default();
    let (kind, inner) = match ev {
        LinkEvent::New {
            index,
            name,
            master,
        } => {
            link.header.index = *index;
            link.attributes.push(LinkAttribute::IfName(name.clone()));
            if let Some(m) = master {
                link.attributes.push(LinkAttribute::Controller(*m));
            }
            (RTM_NEWLINK, RouteNetlinkMessage::NewLink(link))
        }
        LinkEvent::Del { index } => {
            link.header.index = *index;
            (RTM_DELLINK, RouteNetlinkMessage::DelLink(link))
        }
    };
    let mut header = NetlinkHeader::default();
    header.message_type = kind;
    let mut msg = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(inner));
    msg.finalize();
    let mut bytes = vec![0; msg.buffer_len()];
    msg.serialize(&mut bytes);
    let parsed = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&bytes);
    Some(match parsed.map(|m| m.payload) {
        Ok(NetlinkPayload::InnerMessage(m)) => decode_link_message(&m),
        _ => None,
    })
}
