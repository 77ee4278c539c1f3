//! ctnetlink sockets: a dump socket (request/reply) and an event socket (multicast).
//!
//! Requests are built with netlink-packet-netfilter; replies are decoded by `decode`
//! without allocating, because a dump of a busy router's table is 100k entries.

use std::io;
use std::os::fd::{AsRawFd, RawFd};

use netlink_packet_core::{
    DefaultNla, NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_netfilter::conntrack::{ConntrackAttribute, ConntrackMessage, Status};
use netlink_packet_netfilter::{NetfilterHeader, NetfilterMessage, NetfilterProtoFamily};
use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};

use super::decode::{decode, messages, Message, CTA_STATUS_MASK};
use super::{Event, IPS_OFFLOAD};

/// Multicast groups NFNLGRP_CONNTRACK_NEW, _UPDATE, _DESTROY.
const GROUPS: [u32; 3] = [1, 2, 3];
/// The kernel fills a dump's datagrams up to the reader's buffer size but never beyond
/// 32 KiB (netlink_recvmsg caps max_recvmsg_len), and an event is one small datagram:
/// 64 KiB holds any of them. (It was 1 MiB: that was idle resident memory, no speed.)
const RECV_BUFFER: usize = 64 << 10;

/// Which entries a dump asks the kernel for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DumpFilter {
    All,
    /// Entries with IPS_OFFLOAD set (software and hardware). Linux ≥ 5.15 filters in the
    /// kernel (CTA_STATUS + CTA_STATUS_MASK); older kernels ignore the attributes and
    /// return everything, so callers always classify what comes back.
    Offloaded,
}

#[derive(Debug, thiserror::Error)]
pub enum CtError {
    #[error("ctnetlink {what}: {error} (is nf_conntrack loaded and are you root? try: modprobe nf_conntrack_netlink)")]
    Io {
        what: &'static str,
        error: io::Error,
    },
    #[error("the kernel refused the conntrack dump: {}", crate::nft::errno_name(*.0))]
    Refused(i32),
}

pub struct CtSocket {
    sock: Socket,
    pub(super) buf: Vec<u8>,
    seq: u32,
    /// A request failed mid-answer (timeout, overrun): late answers may still be queued
    /// and are drained before the next request.
    dirty: bool,
}

/// How long a dump or lookup waits for the kernel's next answer before giving up: the
/// kernel answers at once, so this only ends a wait for answers that were dropped.
const ANSWER_TIMEOUT: libc::timeval = libc::timeval {
    tv_sec: 5,
    tv_usec: 0,
};

impl AsRawFd for CtSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }
}

fn io(what: &'static str) -> impl FnOnce(io::Error) -> CtError {
    move |error| CtError::Io { what, error }
}

impl CtSocket {
    /// A socket for dump requests (blocking).
    pub fn for_dumps() -> Result<CtSocket, CtError> {
        let mut sock = Socket::new(NETLINK_NETFILTER).map_err(io("socket"))?;
        sock.bind_auto().map_err(io("bind"))?;
        sock.connect(&SocketAddr::new(0, 0))
            .map_err(io("connect"))?;
        // Room for two batches of lookup answers (the kernel charges them only while
        // they wait), and an end to waiting for an answer that was dropped.
        set_rcvbuf(sock.as_raw_fd(), super::lookup::LOOKUP_RCVBUF)
            .map_err(io("setting the dump buffer size"))?;
        set_rcvtimeo(sock.as_raw_fd(), ANSWER_TIMEOUT).map_err(io("setting the answer timeout"))?;
        Ok(CtSocket {
            sock,
            buf: vec![0; RECV_BUFFER],
            seq: 0,
            dirty: false,
        })
    }

    /// A non-blocking socket subscribed to NEW, UPDATE and DESTROY events, with a
    /// receive buffer of `rcvbuf` bytes (forced past net.core.rmem_max when root).
    pub fn for_events(rcvbuf: usize) -> Result<CtSocket, CtError> {
        let mut sock = Socket::new(NETLINK_NETFILTER).map_err(io("socket"))?;
        sock.bind_auto().map_err(io("bind"))?;
        for g in GROUPS {
            sock.add_membership(g)
                .map_err(io("subscribing to conntrack events"))?;
        }
        set_rcvbuf(sock.as_raw_fd(), rcvbuf).map_err(io("setting the event buffer size"))?;
        sock.set_non_blocking(true)
            .map_err(io("set non-blocking"))?;
        Ok(CtSocket {
            sock,
            buf: vec![0; RECV_BUFFER],
            seq: 0,
            dirty: false,
        })
    }

    pub(super) fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    /// Sends a request, first dropping late answers to a request that failed.
    pub(super) fn send_raw(&mut self, req: &[u8], what: &'static str) -> Result<(), CtError> {
        if self.dirty {
            self.drain_stale();
        }
        self.sock.send(req, 0).map_err(io(what))?;
        Ok(())
    }

    /// Receives one datagram of answers into `buf`; a lost or late answer marks the
    /// socket for draining before its next request.
    pub(super) fn recv_raw(&mut self, what: &'static str) -> Result<usize, CtError> {
        self.sock.recv(&mut &mut self.buf[..], 0).map_err(|error| {
            self.dirty = true;
            CtError::Io { what, error }
        })
    }

    fn drain_stale(&mut self) {
        while let Ok(n) = self.sock.recv(&mut &mut self.buf[..], libc::MSG_DONTWAIT) {
            if n == 0 {
                break;
            }
        }
        self.dirty = false;
    }

    /// Dumps the conntrack table (IPv4 and IPv6), calling `f` for every TCP/UDP entry.
    /// Returns how many entries the kernel sent (including those not TCP/UDP) and how
    /// many messages could not be decoded (logged and skipped).
    pub fn dump(
        &mut self,
        filter: DumpFilter,
        mut f: impl FnMut(Event),
    ) -> Result<DumpCount, CtError> {
        let seq = self.next_seq();
        self.send_raw(&dump_request(filter, seq), "sending the dump request")?;
        let mut count = DumpCount::default();
        loop {
            let n = self.recv_raw("receiving the dump")?;
            for m in messages(&self.buf[..n]) {
                match m {
                    Message::Conntrack {
                        msg_type,
                        flags,
                        bytes,
                    } => {
                        count.entries += 1;
                        count.malformed += u64::from(!deliver(msg_type, flags, bytes, &mut f));
                    }
                    Message::Done => return Ok(count),
                    Message::Error(0) | Message::Other => {}
                    Message::Error(errno) => {
                        // The rest of this dump may still be queued.
                        self.dirty = true;
                        return Err(CtError::Refused(errno));
                    }
                }
            }
        }
    }

    /// Reads the events queued on the socket, calling `f` for each TCP/UDP one, until
    /// the socket is empty, or the kernel reports that it dropped events since the last
    /// read (`overrun`: the caller must resync), or `budget` datagrams were read (`more`:
    /// the caller reads on after its other work, so a burst queued in a large event
    /// buffer does not hold up `status` for the seconds a router CPU takes to read it).
    pub fn drain_events(
        &mut self,
        budget: usize,
        mut f: impl FnMut(Event),
    ) -> Result<Drained, CtError> {
        let mut d = Drained::default();
        for _ in 0..budget {
            let n = match self.sock.recv(&mut &mut self.buf[..], 0) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(d),
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    d.overrun = true;
                    return Ok(d);
                }
                Err(error) => {
                    return Err(CtError::Io {
                        what: "receiving events",
                        error,
                    })
                }
            };
            for m in messages(&self.buf[..n]) {
                if let Message::Conntrack {
                    msg_type,
                    flags,
                    bytes,
                } = m
                {
                    d.messages += 1;
                    d.malformed += u64::from(!deliver(msg_type, flags, bytes, &mut f));
                }
            }
        }
        d.more = true;
        Ok(d)
    }

    /// For benchmarks: receive a whole dump and parse nothing (the floor).
    pub fn dump_raw(&mut self, filter: DumpFilter) -> Result<usize, CtError> {
        let seq = self.next_seq();
        self.send_raw(&dump_request(filter, seq), "sending the dump request")?;
        let mut total = 0;
        loop {
            let n = self.recv_raw("receiving the dump")?;
            total += n;
            // Step over headers only: NLMSG_DONE may share the last datagram with entries.
            if messages(&self.buf[..n]).any(|m| m == Message::Done) {
                return Ok(total);
            }
        }
    }
}

/// Decodes one message and hands a TCP/UDP entry to `f`; false if it was malformed
/// (logged and skipped: one bad message never stops a dump or the event stream).
pub(super) fn deliver(msg_type: u8, flags: u16, bytes: &[u8], f: &mut impl FnMut(Event)) -> bool {
    match decode(msg_type, flags, bytes) {
        Ok(Some(e)) => f(e),
        Ok(None) => {}
        Err(e) => {
            tracing::debug!("skipping a conntrack message: {e}");
            return false;
        }
    }
    true
}

/// What one `drain_events` call read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Drained {
    pub messages: u64,
    pub malformed: u64,
    /// The kernel dropped events (ENOBUFS) since the last read.
    pub overrun: bool,
    /// The budget ran out before the socket was empty.
    pub more: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DumpCount {
    pub entries: u64,
    pub malformed: u64,
}

/// IPCTNL_MSG_CT_GET with NLM_F_DUMP for AF_UNSPEC (both families).
pub(crate) fn dump_request(filter: DumpFilter, seq: u32) -> Vec<u8> {
    let attrs = match filter {
        DumpFilter::All => vec![],
        DumpFilter::Offloaded => vec![
            // The kernel keeps entries with (status & mask) == value; a zero mask is EINVAL.
            ConntrackAttribute::CtaStatus(Status::Offload),
            ConntrackAttribute::Other(DefaultNla::new(
                CTA_STATUS_MASK,
                IPS_OFFLOAD.to_be_bytes().to_vec(),
            )),
        ],
    };
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    header.sequence_number = seq;
    let mut msg = NetlinkMessage::new(
        header,
        NetlinkPayload::from(NetfilterMessage::new(
            NetfilterHeader::new(NetfilterProtoFamily::Unspec, 0, 0),
            ConntrackMessage::Get(attrs),
        )),
    );
    msg.finalize();
    let mut buf = vec![0; msg.buffer_len()];
    msg.serialize(&mut buf);
    buf
}

fn set_rcvbuf(fd: RawFd, bytes: usize) -> io::Result<()> {
    let val = bytes.min(i32::MAX as usize) as libc::c_int;
    set_opt(fd, libc::SO_RCVBUFFORCE, &val).or_else(|_| set_opt(fd, libc::SO_RCVBUF, &val))
}

fn set_rcvtimeo(fd: RawFd, t: libc::timeval) -> io::Result<()> {
    set_opt(fd, libc::SO_RCVTIMEO, &t)
}

/// setsockopt(SOL_SOCKET, opt) with a value of the type that option takes.
fn set_opt<T>(fd: RawFd, opt: libc::c_int, val: &T) -> io::Result<()> {
    // SAFETY: fd is an open socket; val points to a live T of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            (val as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offloaded_dump_request_carries_status_and_mask() {
        let req = dump_request(DumpFilter::Offloaded, 7);
        // nlmsghdr: type CTNETLINK << 8 | GET, flags REQUEST | DUMP, seq 7
        assert_eq!(u16::from_ne_bytes([req[4], req[5]]), 0x0101);
        assert_eq!(u16::from_ne_bytes([req[6], req[7]]), 0x301);
        assert_eq!(u32::from_ne_bytes(req[8..12].try_into().unwrap()), 7);
        assert_eq!(req[16], 0, "AF_UNSPEC: both families");
        // CTA_STATUS then CTA_STATUS_MASK, both IPS_OFFLOAD big-endian
        let attrs = &req[20..];
        // Attribute headers in host order, the values in network order.
        let attr = |ty: u16| [8u16.to_ne_bytes(), ty.to_ne_bytes(), [0, 0], [0x40, 0]].concat();
        assert_eq!(attrs, [attr(3), attr(26)].concat());
        assert_eq!(dump_request(DumpFilter::All, 1).len(), 20);
    }
}
