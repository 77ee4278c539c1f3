//! ctnetlink messages → `Entry`, zero-copy over netlink-packet-core's buffers.
//!
//! The attribute numbers are those of include/uapi/linux/netfilter/nfnetlink_conntrack.h.
//! Integers inside ctnetlink attributes are big-endian (network order), unlike the
//! netlink headers around them. Unknown attributes are skipped, so a newer kernel
//! adding some never breaks decoding.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netlink_packet_core::{NetlinkBuffer, NlaBuffer, NlasIterator};

use super::{Counters, Entry, FlowKey, Tuple, TCP, UDP};

/// nfnetlink subsystem id of ctnetlink, the high byte of nlmsg_type.
pub const NFNL_SUBSYS_CTNETLINK: u8 = 1;
pub const IPCTNL_MSG_CT_NEW: u8 = 0;
pub const IPCTNL_MSG_CT_DELETE: u8 = 2;
/// Events for a new entry carry NLM_F_CREATE; updates of an existing one do not.
const NLM_F_CREATE: u16 = 0x400;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
/// nlmsghdr (16) + nfgenmsg (4).
const HEADERS: usize = 20;

const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_REPLY: u16 = 2;
pub(crate) const CTA_STATUS: u16 = 3;
const CTA_PROTOINFO: u16 = 4;
const CTA_MARK: u16 = 8;
const CTA_COUNTERS_ORIG: u16 = 9;
const CTA_COUNTERS_REPLY: u16 = 10;
const CTA_ZONE: u16 = 18;
pub(crate) const CTA_STATUS_MASK: u16 = 26;
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_TUPLE_ZONE: u16 = 3;
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const CTA_IP_V6_SRC: u16 = 3;
const CTA_IP_V6_DST: u16 = 4;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_SRC_PORT: u16 = 2;
const CTA_PROTO_DST_PORT: u16 = 3;
const CTA_PROTOINFO_TCP: u16 = 1;
const CTA_PROTOINFO_TCP_STATE: u16 = 1;
const CTA_COUNTERS_PACKETS: u16 = 1;
const CTA_COUNTERS_BYTES: u16 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A new entry (event with NLM_F_CREATE).
    New,
    /// An existing entry changed, or a dump reply.
    Update,
    /// The entry is gone.
    Destroy,
}

/// One decoded message: what happened to which entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    pub entry: Entry,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("truncated or malformed ctnetlink message: {0}")]
    Malformed(&'static str),
    #[error("the kernel answered with error {0}")]
    Kernel(i32),
}

/// What a netlink stream holds, message by message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// A ctnetlink message (type, flags, whole message bytes).
    Conntrack {
        msg_type: u8,
        flags: u16,
        bytes: &'a [u8],
    },
    /// NLMSG_DONE: a dump is complete.
    Done,
    /// NLMSG_ERROR with its (positive) errno; 0 is an acknowledgement.
    Error(i32),
    /// Something else (another subsystem); skipped.
    Other,
}

/// The messages of one recv buffer, in order; stops at the first malformed header.
pub fn messages(bytes: &[u8]) -> impl Iterator<Item = Message<'_>> {
    let mut off = 0;
    std::iter::from_fn(move || {
        let buf = NetlinkBuffer::new_checked(bytes.get(off..)?).ok()?;
        let len = buf.length() as usize;
        let msg = &bytes[off..off + len];
        off += (len + 3) & !3;
        let ty = buf.message_type();
        Some(match ty {
            NLMSG_DONE => Message::Done,
            NLMSG_ERROR => Message::Error(crate::nlmsg::errno(msg)),
            _ if (ty >> 8) as u8 == NFNL_SUBSYS_CTNETLINK => Message::Conntrack {
                msg_type: ty as u8,
                flags: buf.flags(),
                bytes: msg,
            },
            _ => Message::Other,
        })
    })
}

/// Decodes one ctnetlink message. `Ok(None)` for entries offload can never concern
/// (ICMP, GRE, SCTP...) and message types that are not about entries.
pub fn decode(msg_type: u8, flags: u16, bytes: &[u8]) -> Result<Option<Event>, DecodeError> {
    let kind = match msg_type {
        IPCTNL_MSG_CT_NEW if flags & NLM_F_CREATE != 0 => EventKind::New,
        IPCTNL_MSG_CT_NEW => EventKind::Update,
        IPCTNL_MSG_CT_DELETE => EventKind::Destroy,
        _ => return Ok(None),
    };
    let attrs = bytes
        .get(HEADERS..)
        .ok_or(DecodeError::Malformed("short header"))?;
    let mut orig = None;
    let mut reply = None;
    let mut entry = Entry {
        key: FlowKey {
            proto: 0,
            zone: 0,
            orig: unspecified(),
        },
        reply: unspecified(),
        status: 0,
        mark: 0,
        tcp_state: None,
        counters: None,
    };
    for nla in NlasIterator::new(attrs) {
        let nla = nla.map_err(|_| DecodeError::Malformed("attribute"))?;
        let v = nla.value();
        match nla.kind() {
            CTA_TUPLE_ORIG => orig = tuple(v)?,
            CTA_TUPLE_REPLY => reply = tuple(v)?,
            CTA_STATUS => entry.status = be32(v)?,
            CTA_MARK => entry.mark = be32(v)?,
            CTA_ZONE => entry.key.zone = be16(v)?,
            CTA_PROTOINFO => entry.tcp_state = tcp_state(v)?,
            CTA_COUNTERS_ORIG => {
                let (p, b) = counters(v)?;
                let c = entry.counters.get_or_insert_with(Counters::default);
                (c.orig_packets, c.orig_bytes) = (p, b);
            }
            CTA_COUNTERS_REPLY => {
                let (p, b) = counters(v)?;
                let c = entry.counters.get_or_insert_with(Counters::default);
                (c.reply_packets, c.reply_bytes) = (p, b);
            }
            _ => {}
        }
    }
    let (Some((proto, o)), Some((_, r))) = (orig, reply) else {
        // Every entry message carries both tuples; without them it is not usable.
        return Err(DecodeError::Malformed("entry without both tuples"));
    };
    if proto != TCP && proto != UDP {
        return Ok(None);
    }
    entry.key.proto = proto;
    entry.key.orig = o;
    entry.reply = r;
    Ok(Some(Event { kind, entry }))
}

fn unspecified() -> Tuple {
    Tuple {
        src: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        dst: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        sport: 0,
        dport: 0,
    }
}

/// CTA_TUPLE_*: nested IP addresses and protocol; `None` when the entry has no ports
/// (not TCP/UDP).
fn tuple(v: &[u8]) -> Result<Option<(u8, Tuple)>, DecodeError> {
    let (mut src, mut dst, mut proto, mut sport, mut dport) = (None, None, None, 0, 0);
    for nla in nested(v) {
        let nla = nla?;
        match nla.kind() {
            CTA_TUPLE_IP => {
                for a in nested(nla.value()) {
                    let a = a?;
                    match a.kind() {
                        CTA_IP_V4_SRC => src = Some(v4(a.value())?),
                        CTA_IP_V4_DST => dst = Some(v4(a.value())?),
                        CTA_IP_V6_SRC => src = Some(v6(a.value())?),
                        CTA_IP_V6_DST => dst = Some(v6(a.value())?),
                        _ => {}
                    }
                }
            }
            CTA_TUPLE_PROTO => {
                for a in nested(nla.value()) {
                    let a = a?;
                    match a.kind() {
                        CTA_PROTO_NUM => proto = a.value().first().copied(),
                        CTA_PROTO_SRC_PORT => sport = be16(a.value())?,
                        CTA_PROTO_DST_PORT => dport = be16(a.value())?,
                        _ => {}
                    }
                }
            }
            // A per-direction zone: the entry-level CTA_ZONE already identifies it.
            CTA_TUPLE_ZONE => {}
            _ => {}
        }
    }
    match (src, dst, proto) {
        (Some(src), Some(dst), Some(p)) => Ok(Some((
            p,
            Tuple {
                src,
                dst,
                sport,
                dport,
            },
        ))),
        _ => Err(DecodeError::Malformed(
            "tuple without addresses or protocol",
        )),
    }
}

fn tcp_state(v: &[u8]) -> Result<Option<u8>, DecodeError> {
    for nla in nested(v) {
        let nla = nla?;
        if nla.kind() == CTA_PROTOINFO_TCP {
            for a in nested(nla.value()) {
                let a = a?;
                if a.kind() == CTA_PROTOINFO_TCP_STATE {
                    return Ok(a.value().first().copied());
                }
            }
        }
    }
    Ok(None)
}

fn counters(v: &[u8]) -> Result<(u64, u64), DecodeError> {
    let (mut packets, mut bytes) = (0, 0);
    for nla in nested(v) {
        let nla = nla?;
        match nla.kind() {
            CTA_COUNTERS_PACKETS => packets = be64(nla.value())?,
            CTA_COUNTERS_BYTES => bytes = be64(nla.value())?,
            _ => {}
        }
    }
    Ok((packets, bytes))
}

fn nested(v: &[u8]) -> impl Iterator<Item = Result<NlaBuffer<&[u8]>, DecodeError>> {
    NlasIterator::new(v).map(|r| r.map_err(|_| DecodeError::Malformed("nested attribute")))
}

fn be16(v: &[u8]) -> Result<u16, DecodeError> {
    Ok(u16::from_be_bytes(fixed(v)?))
}
fn be32(v: &[u8]) -> Result<u32, DecodeError> {
    Ok(u32::from_be_bytes(fixed(v)?))
}
fn be64(v: &[u8]) -> Result<u64, DecodeError> {
    Ok(u64::from_be_bytes(fixed(v)?))
}
fn v4(v: &[u8]) -> Result<IpAddr, DecodeError> {
    Ok(IpAddr::V4(Ipv4Addr::from(fixed::<4>(v)?)))
}
fn v6(v: &[u8]) -> Result<IpAddr, DecodeError> {
    Ok(IpAddr::V6(Ipv6Addr::from(fixed::<16>(v)?)))
}
fn fixed<const N: usize>(v: &[u8]) -> Result<[u8; N], DecodeError> {
    v.get(..N)
        .and_then(|s| s.try_into().ok())
        .ok_or(DecodeError::Malformed("attribute too short"))
}

#[cfg(test)]
#[path = "decode_tests.rs"]
mod tests;
