//! Per-tuple lookups: how a resync re-checks the flows it already tracks. A GET with an
//! original tuple is one hash lookup in the kernel (`ctnetlink_get_conntrack` ->
//! `nf_conntrack_find_get`), where a dump walks the whole table whatever its filter:
//! re-checking the 1 % of a 100k-entry table that is offloaded is 1,000 lookups instead
//! of a 100k-entry walk every resync.
//!
//! Requests go out `BATCH` to a sendmsg. Each answer is a unicast skb the kernel
//! allocates at NLMSG_DEFAULT_SIZE (about 4 KiB of receive buffer each, whatever the
//! entry's size), so the dump socket's receive buffer is raised to hold a batch twice.

use netlink_packet_core::{
    DefaultNla, NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_REQUEST,
};
use netlink_packet_netfilter::conntrack::{
    ConntrackAttribute, ConntrackMessage, IPTuple, ProtoTuple, Protocol, Tuple as NlTuple,
};
use netlink_packet_netfilter::{NetfilterHeader, NetfilterMessage, NetfilterProtoFamily};

use super::decode::{messages, Message};
use super::socket::{deliver, CtError, CtSocket};
use super::{Event, FlowKey};

/// Requests per sendmsg.
pub const BATCH: usize = 64;
/// The dump socket's receive buffer: two batches of answers.
pub const LOOKUP_RCVBUF: usize = 2 * BATCH * 4096 + (64 << 10);
/// CTA_ZONE (uapi nfnetlink_conntrack.h): u16, network order.
const CTA_ZONE: u16 = 18;

/// What one `lookup` found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LookupCount {
    pub asked: u64,
    /// Answered with the entry (passed to the callback when TCP/UDP and well formed).
    pub found: u64,
    /// Answered ENOENT: the kernel no longer has the connection.
    pub gone: u64,
    pub malformed: u64,
}

/// IPCTNL_MSG_CT_GET for one original tuple, in the tuple's own family (the kernel
/// parses the addresses by the message's nfgen_family). No NLM_F_ACK: an entry or an
/// error comes back either way.
pub fn lookup_request(key: &FlowKey, seq: u32) -> Vec<u8> {
    let family = if key.orig.src.is_ipv4() {
        NetfilterProtoFamily::IPv4
    } else {
        NetfilterProtoFamily::IPv6
    };
    let mut attrs = vec![ConntrackAttribute::CtaTupleOrig(vec![
        NlTuple::Ip(vec![
            IPTuple::SourceAddress(key.orig.src),
            IPTuple::DestinationAddress(key.orig.dst),
        ]),
        NlTuple::Proto(vec![
            ProtoTuple::Protocol(Protocol::from(key.proto)),
            ProtoTuple::SourcePort(key.orig.sport),
            ProtoTuple::DestinationPort(key.orig.dport),
        ]),
    ])];
    if key.zone != 0 {
        attrs.push(ConntrackAttribute::Other(DefaultNla::new(
            CTA_ZONE,
            key.zone.to_be_bytes().to_vec(),
        )));
    }
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST;
    header.sequence_number = seq;
    let mut msg = NetlinkMessage::new(
        header,
        NetlinkPayload::from(NetfilterMessage::new(
            NetfilterHeader::new(family, 0, 0),
            ConntrackMessage::Get(attrs),
        )),
    );
    msg.finalize();
    let mut buf = vec![0; msg.buffer_len()];
    msg.serialize(&mut buf);
    buf
}

impl CtSocket {
    /// Looks up each key, calling `f` with every entry the kernel still has. A key not
    /// passed to `f` is gone (ENOENT), or was not TCP/UDP or malformed (counted).
    pub fn lookup(
        &mut self,
        keys: &[FlowKey],
        mut f: impl FnMut(Event),
    ) -> Result<LookupCount, CtError> {
        let mut count = LookupCount::default();
        for chunk in keys.chunks(BATCH) {
            let mut req = Vec::with_capacity(chunk.len() * 96);
            for k in chunk {
                req.extend(lookup_request(k, self.next_seq()));
            }
            self.send_raw(&req, "sending conntrack lookups")?;
            count.asked += chunk.len() as u64;
            let mut answered = 0;
            while answered < chunk.len() {
                let n = self.recv_raw("receiving conntrack lookups")?;
                for m in messages(&self.buf[..n]) {
                    match m {
                        Message::Conntrack {
                            msg_type,
                            flags,
                            bytes,
                        } => {
                            answered += 1;
                            count.found += 1;
                            count.malformed += u64::from(!deliver(msg_type, flags, bytes, &mut f));
                        }
                        Message::Error(0) | Message::Done | Message::Other => {}
                        Message::Error(libc::ENOENT) => {
                            answered += 1;
                            count.gone += 1;
                        }
                        Message::Error(errno) => {
                            // A tuple the kernel could not parse; the others go on.
                            answered += 1;
                            count.malformed += 1;
                            tracing::debug!(errno, "a conntrack lookup was refused");
                        }
                    }
                }
            }
        }
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conntrack::Tuple;

    #[test]
    fn lookup_request_is_a_get_of_the_original_tuple_in_its_family() {
        let key = FlowKey {
            proto: 6,
            zone: 0,
            orig: Tuple {
                src: "198.18.1.2".parse().unwrap(),
                dst: "198.18.2.2".parse().unwrap(),
                sport: 40000,
                dport: 5201,
            },
        };
        let req = lookup_request(&key, 9);
        // nlmsghdr: CTNETLINK << 8 | GET, NLM_F_REQUEST only, seq 9; nfgenmsg AF_INET.
        assert_eq!(u16::from_ne_bytes([req[4], req[5]]), 0x0101);
        assert_eq!(u16::from_ne_bytes([req[6], req[7]]), 0x1);
        assert_eq!(u32::from_ne_bytes(req[8..12].try_into().unwrap()), 9);
        assert_eq!(req[16], libc::AF_INET as u8);
        // CTA_TUPLE_ORIG { CTA_TUPLE_IP { V4_SRC, V4_DST }, CTA_TUPLE_PROTO { NUM, SPORT, DPORT } }
        let attrs = &req[20..];
        let orig = crate::nlmsg::attr(attrs, 1).expect("CTA_TUPLE_ORIG");
        let ip = crate::nlmsg::attr(orig, 1).expect("CTA_TUPLE_IP");
        assert_eq!(crate::nlmsg::attr(ip, 1), Some(&[198, 18, 1, 2][..]));
        assert_eq!(crate::nlmsg::attr(ip, 2), Some(&[198, 18, 2, 2][..]));
        let proto = crate::nlmsg::attr(orig, 2).expect("CTA_TUPLE_PROTO");
        assert_eq!(crate::nlmsg::attr(proto, 1), Some(&[6][..]));
        assert_eq!(
            crate::nlmsg::attr(proto, 2),
            Some(&40000u16.to_be_bytes()[..])
        );
        assert_eq!(
            crate::nlmsg::attr(proto, 3),
            Some(&5201u16.to_be_bytes()[..])
        );
        assert_eq!(
            crate::nlmsg::attr(attrs, CTA_ZONE),
            None,
            "zone 0 is left out"
        );
        // IPv6 in a zone: AF_INET6 and CTA_ZONE in network order.
        let v6 = FlowKey {
            proto: 17,
            zone: 7,
            orig: Tuple {
                src: "fd00:1::2".parse().unwrap(),
                dst: "fd00:2::2".parse().unwrap(),
                sport: 1,
                dport: 2,
            },
        };
        let req = lookup_request(&v6, 1);
        assert_eq!(req[16], libc::AF_INET6 as u8);
        assert_eq!(crate::nlmsg::attr(&req[20..], CTA_ZONE), Some(&[0, 7][..]));
    }
}
