//! The nfnetlink socket: send a batch, collect the kernel's answer per message, dump
//! objects. Blocking; owned by the nft thread (mnl::Socket is !Send).

use std::io;
use std::ops::Range;
use std::os::fd::AsRawFd;

use nftnl_sys::libc;

use super::sys;

/// NLMSG_ERROR / NLMSG_DONE (uapi netlink.h).
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
/// Sequence numbers of our own requests start here, far above the batch's (1, 2, ...).
const SEQ_BASE: u32 = 1 << 30;

pub struct NftSocket {
    sock: mnl::Socket,
    seq: u32,
    /// u64-backed so every netlink header in it is 4-byte aligned for libnftnl.
    buf: Vec<u64>,
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
        // Large batches (hundreds of exclusion rules) must fit in one sendmsg.
        let sndbuf: libc::c_int = 4 << 20;
        // SAFETY: plain setsockopt calls on a socket we own, with correctly sized values.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                size_of::<libc::timeval>() as u32,
            );
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_SNDBUFFORCE,
                (&sndbuf as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as u32,
            );
        }
        Ok(NftSocket {
            sock,
            seq: SEQ_BASE,
            buf: vec![0u64; 64 * 1024],
        })
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1).max(SEQ_BASE);
        self.seq
    }

    /// Sends a batch and returns every (seq, errno) the kernel answered (0 = accepted).
    ///
    /// nfnetlink processes a batch synchronously inside sendmsg, so all its answers are
    /// queued before we send the next request; answers are read up to the reply to a
    /// GETGEN sent right after, whatever the kernel version acknowledges.
    pub fn send_batch(&mut self, bytes: &[u8]) -> io::Result<Vec<(u32, i32)>> {
        self.sock.send(bytes)?;
        let sync = self.send_getgen()?;
        let mut answers = Vec::new();
        self.read_until(sync, |kind, seq, msg| {
            if kind == NLMSG_ERROR && seq != sync {
                answers.push((seq, crate::nlmsg::errno(msg)));
            }
        })?;
        Ok(answers)
    }

    /// Sends NFT_MSG_GETGEN (answered with NEWGEN and an ack) and returns its seq.
    fn send_getgen(&mut self) -> io::Result<u32> {
        let seq = self.next_seq();
        let mut req = [0u8; 64];
        let n = sys::get_request(
            &mut req,
            libc::NFT_MSG_GETGEN,
            libc::AF_UNSPEC as u16,
            false,
            seq,
        );
        self.sock.send(&req[..n])?;
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

    /// Dumps all objects of a GET type in `family` and returns those `parse` accepts.
    pub fn dump<T>(
        &mut self,
        msg_type: i32,
        family: u16,
        mut parse: impl FnMut(*const libc::nlmsghdr) -> Option<T>,
    ) -> io::Result<Vec<T>> {
        let seq = self.next_seq();
        let mut req = [0u8; 64];
        let n = sys::get_request(&mut req, msg_type, family, true, seq);
        self.sock.send(&req[..n])?;
        let mut out = Vec::new();
        let mut err = 0;
        self.read_until(seq, |kind, s, msg| {
            if s != seq {
                return;
            }
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

/// NFTA_GEN_ID of an NFT_MSG_NEWGEN message: attributes follow the 16-byte nlmsghdr
/// and the 4-byte nfgenmsg.
fn gen_id(msg: &[u8]) -> Option<u32> {
    let v = crate::nlmsg::attr(msg.get(20..)?, sys::NFTA_GEN_ID)?;
    Some(u32::from_be_bytes(v.try_into().ok()?))
}

/// (type, seq, byte range) of each complete netlink message in `bytes`, stepping by
/// NLMSG_ALIGN(len) as the kernel lays them out.
pub(crate) fn messages(bytes: &[u8]) -> Vec<(u16, u32, Range<usize>)> {
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
