//! The nfnetlink socket: send a batch, collect the kernel's answer per message, dump
//! objects. Blocking; owned by the nft thread (mnl::Socket is !Send).
//!
//! Batches go out without NLM_F_ACK: nfnetlink_rcv_batch reports every refused message
//! whatever its flags, and queues an ack per message only when asked, all inside
//! sendmsg. With an ack per message a batch of a few hundred rules overflowed the
//! receive buffer with ENOBUFS after the kernel had committed it (DESIGN.md). Errors can
//! still overflow it (a batch refused whole reports every message); then the socket is
//! drained and the caller reads the kernel's state again before concluding anything.

use std::io;
use std::ops::Range;
use std::os::fd::AsRawFd;

use nftnl_sys::libc;

use super::batch::{BuiltBatch, Delivery, Object};
use super::sys;

/// NLMSG_ERROR / NLMSG_DONE (uapi netlink.h).
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
/// NLM_F_DUMP_INTR: the dumped objects changed while the dump ran (its answer may mix
/// two generations).
const NLM_F_DUMP_INTR: u16 = 0x10;
/// Sequence numbers start here; every request and every batch message gets its own.
const SEQ_START: u32 = 1 << 30;
/// Refusals of a whole batch come one message each: room for a few thousand of them.
/// The kernel allocates it only while answers wait, so an idle daemon does not pay it.
const RCVBUF: libc::c_int = 1 << 20;
/// The smallest send buffer; a larger batch raises it to fit (one batch, one sendmsg).
const MIN_SNDBUF: usize = 4 << 20;

/// What the kernel answered to a batch.
#[derive(Debug, Default)]
pub struct BatchAnswer {
    /// What each refused message of the batch was, and the errno, in batch order.
    pub errors: Vec<(Object, i32)>,
    /// Answers were dropped (ENOBUFS): `errors` may be incomplete, and whether the batch
    /// committed is known only by reading the kernel's state.
    pub lost: bool,
}

#[derive(Default)]
struct RawAnswer {
    errors: Vec<(u32, i32)>,
    lost: bool,
}

pub struct NftSocket {
    sock: mnl::Socket,
    seq: u32,
    sndbuf: usize,
    /// u64-backed so every netlink header in it is 4-byte aligned for libnftnl.
    buf: Vec<u64>,
}

pub(crate) fn setsockopt(fd: i32, opt: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: a plain setsockopt on a socket we own, with a correctly sized int value.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as u32,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

impl NftSocket {
    pub fn open() -> io::Result<Self> {
        let sock = mnl::Socket::new(mnl::Bus::Netfilter)?;
        let fd = sock.as_raw_fd();
        // A stuck kernel answer must not hang the daemon forever.
        let tv = libc::timeval {
            tv_sec: 5,
            tv_usec: 0,
        };
        // SAFETY: setsockopt with a timeval of the right size on our socket.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                size_of::<libc::timeval>() as u32,
            );
        }
        // FORCE passes net.core.[rw]mem_max when root; unprivileged runs keep the default.
        let _ = setsockopt(fd, libc::SO_RCVBUFFORCE, RCVBUF);
        let _ = setsockopt(fd, libc::SO_SNDBUFFORCE, MIN_SNDBUF as libc::c_int);
        Ok(NftSocket {
            sock,
            seq: SEQ_START,
            sndbuf: MIN_SNDBUF,
            buf: vec![0u64; 64 * 1024],
        })
    }

    /// Reserves `n` consecutive sequence numbers (one per message of a batch).
    pub fn reserve(&mut self, n: u32) -> u32 {
        reserve(&mut self.seq, n)
    }

    fn next_seq(&mut self) -> u32 {
        self.reserve(1)
    }

    /// Sends a batch (committed at a generation, or as a trial) and returns the kernel's
    /// refusals of its messages. Each sending gets fresh sequence numbers, so answers to
    /// anything else (a request that timed out earlier) are never taken for its own.
    pub fn send(&mut self, b: &BuiltBatch, how: Delivery) -> io::Result<BatchAnswer> {
        let base = self.reserve(b.len());
        let mut answer = self.send_batch(&b.wire(base, how), base..base + b.len())?;
        answer.errors.sort_by_key(|e| e.0);
        Ok(BatchAnswer {
            errors: answer
                .errors
                .into_iter()
                .map(|(seq, errno)| (b.object(base, seq), errno))
                .collect(),
            lost: answer.lost,
        })
    }

    /// Sends batch bytes whose messages carry the sequence numbers `seqs` and returns
    /// (seq, errno) of the refusals among them.
    ///
    /// nfnetlink processes a batch synchronously inside sendmsg, so all its answers are
    /// queued before the next request: answers are read up to the reply to a GETGEN sent
    /// right after.
    fn send_batch(&mut self, bytes: &[u8], seqs: Range<u32>) -> io::Result<RawAnswer> {
        if bytes.len() + (64 << 10) > self.sndbuf {
            self.sndbuf = (bytes.len() + (64 << 10)).next_power_of_two();
            setsockopt(
                self.sock.as_raw_fd(),
                libc::SO_SNDBUFFORCE,
                self.sndbuf.min(i32::MAX as usize) as libc::c_int,
            )?;
        }
        self.sock.send(bytes)?;
        let mut answer = RawAnswer::default();
        let mut sync = self.send_getgen()?;
        let errors = &mut answer.errors;
        let mut take = |kind: u16, seq: u32, msg: &[u8]| {
            if kind == NLMSG_ERROR && seqs.contains(&seq) {
                let errno = crate::nlmsg::errno(msg);
                if errno != 0 {
                    errors.push((seq, errno));
                }
            }
        };
        loop {
            match self.read_until(sync, &mut take) {
                Ok(()) => return Ok(answer),
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    // The kernel dropped answers, perhaps our GETGEN's too: read what
                    // is queued (the first refusals are there), then ask again on an
                    // empty queue.
                    answer.lost = true;
                    self.drain(&mut take);
                    sync = self.send_getgen()?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads everything queued on the socket without waiting, handing each message to
    /// `f`.
    fn drain(&mut self, mut f: impl FnMut(u16, u32, &[u8])) {
        let fd = self.sock.as_raw_fd();
        loop {
            // SAFETY: recv into our own buffer of the given length.
            let n = unsafe {
                libc::recv(
                    fd,
                    self.buf.as_mut_ptr().cast(),
                    self.buf.len() * 8,
                    libc::MSG_DONTWAIT,
                )
            };
            if n < 0 {
                if io::Error::last_os_error().raw_os_error() == Some(libc::ENOBUFS) {
                    continue;
                }
                return;
            }
            // SAFETY: viewing the first n received bytes of the u64 buffer.
            let bytes =
                unsafe { std::slice::from_raw_parts(self.buf.as_ptr().cast::<u8>(), n as usize) };
            for (kind, seq, range) in messages(bytes) {
                f(kind, seq, &bytes[range]);
            }
            if n == 0 {
                return;
            }
        }
    }

    /// Sends NFT_MSG_GETGEN (answered with NEWGEN and an ack) and returns its seq.
    fn send_getgen(&mut self) -> io::Result<u32> {
        let seq = self.next_seq();
        self.sock.send(&request(
            libc::NFT_MSG_GETGEN,
            libc::AF_UNSPEC as u8,
            false,
            seq,
            &[],
        ))?;
        Ok(seq)
    }

    /// The ruleset generation now (NFT_MSG_GETGEN). Every commit, by anyone, bumps it.
    pub fn generation(&mut self) -> io::Result<u32> {
        let seq = self.send_getgen()?;
        let newgen = super::batch::nfnl_type(sys::NFT_MSG_NEWGEN);
        let mut generation = None;
        self.read_until(seq, |kind, s, msg| {
            if s == seq && kind == newgen {
                generation = gen_id(msg);
            }
        })?;
        generation.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "nf_tables answered GETGEN without NFTA_GEN_ID",
            )
        })
    }

    /// Dumps all objects of a GET type in `family` (restricted by `attrs`, such as a
    /// table name, where the kernel supports it) and returns those `parse` accepts.
    /// A dump the kernel marks interrupted (the objects changed under it) is an
    /// `ErrorKind::Interrupted` error: read again.
    pub fn dump<T>(
        &mut self,
        msg_type: i32,
        family: u8,
        attrs: &[(u16, &[u8])],
        mut parse: impl FnMut(*const libc::nlmsghdr) -> Option<T>,
    ) -> io::Result<Vec<T>> {
        let seq = self.next_seq();
        self.sock
            .send(&request(msg_type, family, true, seq, attrs))?;
        let mut out = Vec::new();
        let mut err = 0;
        let mut interrupted = false;
        self.read_until(seq, |kind, s, msg| {
            if s != seq {
                return;
            }
            interrupted |= u16::from_ne_bytes([msg[6], msg[7]]) & NLM_F_DUMP_INTR != 0;
            if kind == NLMSG_ERROR {
                err = crate::nlmsg::errno(msg);
            } else if kind != NLMSG_DONE {
                if let Some(v) = parse(msg.as_ptr().cast()) {
                    out.push(v);
                }
            }
        })?;
        if err != 0 {
            return Err(io::Error::from_raw_os_error(err));
        }
        if interrupted {
            return Err(io::Error::new(
                io::ErrorKind::Interrupted,
                "the ruleset changed during the dump",
            ));
        }
        Ok(out)
    }

    /// Reads messages, handing each to `f`, until NLMSG_DONE or NLMSG_ERROR for `seq`.
    fn read_until(&mut self, seq: u32, mut f: impl FnMut(u16, u32, &[u8])) -> io::Result<()> {
        loop {
            // SAFETY: viewing the u64 buffer as bytes; alignment only grows.
            let bytes = unsafe {
                std::slice::from_raw_parts_mut(
                    self.buf.as_mut_ptr().cast::<u8>(),
                    self.buf.len() * 8,
                )
            };
            let n = self.sock.recv_raw(bytes).map_err(|e| {
                if e.kind() == io::ErrorKind::WouldBlock {
                    io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no answer from nf_tables within 5 s",
                    )
                } else {
                    e
                }
            })?;
            let mut done = false;
            for (kind, s, range) in messages(&bytes[..n]) {
                f(kind, s, &bytes[range]);
                if s == seq && (kind == NLMSG_DONE || kind == NLMSG_ERROR) {
                    done = true;
                }
            }
            if done {
                return Ok(());
            }
        }
    }
}

/// The first of `n` fresh sequence numbers after `*seq`, wrapping back to SEQ_START
/// before u32 would overflow.
fn reserve(seq: &mut u32, n: u32) -> u32 {
    if seq.checked_add(n + 1).is_none() {
        *seq = SEQ_START;
    }
    let base = *seq + 1;
    *seq += n;
    base
}

/// An nf_tables GET request: nlmsghdr, nfgenmsg (family, version 0, resource id 0) and
/// attributes, built here rather than through libnftnl so nothing writes a header into
/// unaligned memory.
pub(crate) fn request(
    msg_type: i32,
    family: u8,
    dump: bool,
    seq: u32,
    attrs: &[(u16, &[u8])],
) -> Vec<u8> {
    let flags = if dump { libc::NLM_F_DUMP } else { 0 } | libc::NLM_F_REQUEST | libc::NLM_F_ACK;
    let mut out = vec![0u8; 20];
    out[4..6].copy_from_slice(&super::batch::nfnl_type(msg_type).to_ne_bytes());
    out[6..8].copy_from_slice(&(flags as u16).to_ne_bytes());
    out[8..12].copy_from_slice(&seq.to_ne_bytes());
    out[16] = family;
    for (kind, value) in attrs {
        out.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(value);
        out.resize(out.len().next_multiple_of(4), 0);
    }
    let len = out.len() as u32;
    out[0..4].copy_from_slice(&len.to_ne_bytes());
    out
}

/// NFTA_GEN_ID of an NFT_MSG_NEWGEN message: attributes follow the 16-byte nlmsghdr
/// and the 4-byte nfgenmsg.
pub(crate) fn gen_id(msg: &[u8]) -> Option<u32> {
    let v = crate::nlmsg::attr(msg.get(20..)?, sys::NFTA_GEN_ID)?;
    Some(u32::from_be_bytes(v.try_into().ok()?))
}

/// (type, seq, byte range) of each complete netlink message in `bytes`, stepping by
/// NLMSG_ALIGN(len) as the kernel lays them out.
#[doc(hidden)] // reached by the fuzz targets (fuzz/fuzz_targets/bodies.rs)
pub fn messages(bytes: &[u8]) -> Vec<(u16, u32, Range<usize>)> {
    let mut out = Vec::new();
    let mut off = 0;
    while off + 16 <= bytes.len() {
        let len = u32::from_ne_bytes(bytes[off..off + 4].try_into().unwrap()) as usize;
        if len < 16 || off + len > bytes.len() {
            break;
        }
        let kind = u16::from_ne_bytes(bytes[off + 4..off + 6].try_into().unwrap());
        let seq = u32::from_ne_bytes(bytes[off + 8..off + 12].try_into().unwrap());
        out.push((kind, seq, off..off + len));
        off += (len + 3) & !3;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_request_with_a_table_attribute() {
        let r = request(libc::NFT_MSG_GETRULE, 1, true, 77, &[(1, b"offloadd\0")]);
        // 16 header + 4 nfgenmsg + 4 attribute header + 9 name padded to 12.
        assert_eq!(r.len(), 36);
        assert_eq!(u32::from_ne_bytes(r[0..4].try_into().unwrap()), 36);
        assert_eq!(u16::from_ne_bytes([r[4], r[5]]), (10 << 8) | 7);
        let flags = u16::from_ne_bytes([r[6], r[7]]) as i32;
        assert_eq!(
            flags,
            libc::NLM_F_REQUEST | libc::NLM_F_ACK | libc::NLM_F_DUMP
        );
        assert_eq!(u32::from_ne_bytes(r[8..12].try_into().unwrap()), 77);
        assert_eq!(r[16], 1);
        assert_eq!(&r[20..22], &13u16.to_ne_bytes());
        assert_eq!(&r[22..24], &1u16.to_ne_bytes());
        assert_eq!(&r[24..33], b"offloadd\0");
        assert_eq!(messages(&r).len(), 1);
    }

    #[test]
    fn sequence_numbers_never_repeat_across_a_wrap() {
        let mut seq = u32::MAX - 3;
        let a = reserve(&mut seq, 2);
        let b = reserve(&mut seq, 5);
        assert_eq!(a, u32::MAX - 2);
        assert!(b >= SEQ_START && (b..b + 5).all(|s| !(a..a + 2).contains(&s)));
    }
}
