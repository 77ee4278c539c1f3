//! Ruleset notifications: the kernel multicasts every committed nf_tables change on
//! NFNLGRP_NFTABLES, one message per object and NFT_MSG_NEWGEN at the end of each
//! transaction. Offloaded packets skip every rule, so when another table changes (fw4
//! reload, `nft -f`), flows offloaded under the old rules must go back through the new
//! ones: the daemon flushes our flowtable. Changes to our own table are ignored.
//!
//! Each committed change is classified: a transaction that only adds or removes set
//! elements (NEWSETELEM/DELSETELEM: dnsmasq nftset, banIP, crowdsec, fail2ban and
//! firewalld ipsets do it many times a second) is not a change of rules, and flushing on
//! each would keep nothing offloaded.
//!
//! When the socket overruns, the kernel drops notifications; what was lost is found from
//! generations: the last NEWGEN read before the overrun and the generation after it, and
//! whether every commit between them was ours (`own.rs`).

use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

use netlink_sys::{AsyncSocket, AsyncSocketExt, TokioSocket};
use nftnl_sys::libc;
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::own::{Lost, OwnCommits};
use crate::plan::TABLE;

/// Receive buffer of the monitor socket. A fw4 reload is a few hundred notifications;
/// our own flush of a 2,400-rule config is about 5,000 (about 1 KiB each once queued).
/// The kernel charges it only while notifications wait.
pub const RCVBUF: i32 = 4 << 20;
/// How long an overrun waits for our own batch in flight to be answered.
const IN_FLIGHT_WAIT: Duration = Duration::from_secs(5);

/// NFNLGRP_NFTABLES (uapi nfnetlink.h).
const NFNLGRP_NFTABLES: u32 = 7;
/// A transaction was committed.
const NFT_MSG_NEWGEN: u8 = super::sys::NFT_MSG_NEWGEN as u8;
/// Set element messages (enum nf_tables_msg_types).
const NFT_MSG_NEWSETELEM: u8 = 12;
const NFT_MSG_DELSETELEM: u8 = 14;

/// One committed change to tables other than ours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RulesetChange {
    /// "family table" of each changed object, e.g. "inet fw4" (deduplicated).
    pub tables: Vec<String>,
    /// Only set elements were added or removed.
    pub elements_only: bool,
}

/// What one notification message says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// An object in table `table` of `family` changed (name unknown: `None`); `element`
    /// when it was a set element.
    Object {
        family: u8,
        table: Option<String>,
        element: bool,
    },
    /// End of a committed transaction, with its generation (NFTA_GEN_ID).
    Generation(Option<u32>),
}

/// Decodes the notifications in one datagram. Pure; malformed tails are ignored.
pub fn notices(buf: &[u8]) -> Vec<Notice> {
    let mut out = Vec::new();
    let mut rest = buf;
    while rest.len() >= 16 {
        let len = u32::from_ne_bytes(rest[0..4].try_into().unwrap()) as usize;
        if len < 16 || len > rest.len() {
            break;
        }
        let kind = u16::from_ne_bytes(rest[4..6].try_into().unwrap());
        let msg = &rest[16..len];
        if kind >> 8 == libc::NFNL_SUBSYS_NFTABLES as u16 && msg.len() >= 4 {
            let msg_type = (kind & 0xff) as u8;
            if msg_type == NFT_MSG_NEWGEN {
                out.push(Notice::Generation(super::socket::gen_id(&rest[..len])));
            } else {
                // Every nf_tables object message carries its table's name as attribute 1
                // (NFTA_TABLE_NAME, NFTA_CHAIN_TABLE, NFTA_RULE_TABLE, ...).
                out.push(Notice::Object {
                    family: msg[0],
                    table: attr_string(&msg[4..], 1),
                    element: matches!(msg_type, NFT_MSG_NEWSETELEM | NFT_MSG_DELSETELEM),
                });
            }
        }
        rest = &rest[len.next_multiple_of(4).min(rest.len())..];
    }
    out
}

fn attr_string(attrs: &[u8], want: u16) -> Option<String> {
    let v = crate::nlmsg::attr(attrs, want)?;
    let end = v.iter().position(|&b| b == 0).unwrap_or(v.len());
    std::str::from_utf8(&v[..end]).ok().map(str::to_string)
}

/// Collects notices into committed changes of foreign tables.
#[derive(Default)]
pub struct Collector {
    pending: Vec<String>,
    /// Something other than a set element changed in the pending transaction.
    rules: bool,
}

impl Collector {
    /// Forgets a transaction whose end was lost in an overrun (the overrun decides).
    fn discard(&mut self) {
        self.pending.clear();
        self.rules = false;
    }

    pub fn push(&mut self, n: Notice) -> Option<RulesetChange> {
        match n {
            Notice::Object {
                family,
                table,
                element,
            } => {
                let ours = family == libc::NFPROTO_INET as u8 && table.as_deref() == Some(TABLE);
                if !ours {
                    self.rules |= !element;
                    let name = format!(
                        "{} {}",
                        super::family_name(family as u32),
                        table.as_deref().unwrap_or("?")
                    );
                    if !self.pending.contains(&name) {
                        self.pending.push(name);
                    }
                }
                None
            }
            Notice::Generation(_) if self.pending.is_empty() => None,
            Notice::Generation(_) => Some(RulesetChange {
                tables: std::mem::take(&mut self.pending),
                elements_only: !std::mem::take(&mut self.rules),
            }),
        }
    }
}

/// The monitor's state between datagrams.
struct Monitor {
    collector: Collector,
    /// The generation of the last NEWGEN read (or read at start).
    last_gen: Option<u32>,
    own: OwnCommits,
    tx: mpsc::Sender<RulesetChange>,
}

impl Monitor {
    /// Takes one datagram; false when the daemon stopped listening.
    async fn take(&mut self, buf: &[u8]) -> bool {
        for n in notices(buf) {
            if let Notice::Generation(Some(g)) = n {
                self.last_gen = Some(g);
            }
            if let Some(change) = self.collector.push(n) {
                if self.tx.send(change).await.is_err() {
                    return false;
                }
            }
        }
        true
    }

    /// After an overrun whose queue has been read: reports a change of unknown tables
    /// unless every commit since `after` (the last generation read before the overrun)
    /// was ours. Flushing once too often is safe, missing a change is not.
    async fn lost(&mut self, after: Option<u32>) -> bool {
        self.collector.discard();
        let now = current_generation();
        let mut verdict = Lost::Foreign;
        if let (Some(a), Ok(n)) = (after, &now) {
            let deadline = tokio::time::Instant::now() + IN_FLIGHT_WAIT;
            verdict = self.own.judge(a, *n);
            while verdict == Lost::Undecided && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(5)).await;
                verdict = self.own.judge(a, *n);
            }
        }
        if let Ok(n) = now {
            self.last_gen = Some(n);
        }
        if verdict == Lost::Ours {
            self.own.forgive();
            info!(after = ?after, upto = ?self.last_gen, "nf_tables notifications overran the monitor's buffer; every commit in the lost stretch was offloadd's own: nothing to flush");
            return true;
        }
        let change = RulesetChange {
            tables: vec!["(notifications lost)".into()],
            elements_only: false,
        };
        self.tx.send(change).await.is_ok()
    }
}

/// The ruleset generation now, asked on a socket of its own.
fn current_generation() -> io::Result<u32> {
    super::socket::NftSocket::open()?.generation()
}

/// Starts the monitor; each committed change to another table arrives on the channel.
/// `own` is the record of our commits (`NftHandle::own_commits`).
pub fn spawn_monitor(own: OwnCommits) -> io::Result<mpsc::Receiver<RulesetChange>> {
    spawn_monitor_with(own, RCVBUF)
}

/// `spawn_monitor` with a receive buffer of `rcvbuf` bytes (tests overrun small ones).
pub fn spawn_monitor_with(
    own: OwnCommits,
    rcvbuf: i32,
) -> io::Result<mpsc::Receiver<RulesetChange>> {
    let mut sock = TokioSocket::new(libc::NETLINK_NETFILTER as isize)?;
    sock.socket_mut().bind_auto()?;
    let fd = sock.socket_mut().as_raw_fd();
    // FORCE passes net.core.rmem_max when root; unprivileged runs keep what they may.
    if super::socket::setsockopt(fd, libc::SO_RCVBUFFORCE, rcvbuf).is_err() {
        let _ = super::socket::setsockopt(fd, libc::SO_RCVBUF, rcvbuf);
    }
    sock.socket_mut().add_membership(NFNLGRP_NFTABLES)?;
    // Read after subscribing: every later commit is either read or found lost.
    let last_gen = current_generation().ok();
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        let mut m = Monitor {
            collector: Collector::default(),
            last_gen,
            own,
            tx,
        };
        loop {
            let buf = match sock.recv_from_full().await {
                Ok((buf, _)) => buf,
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    let after = m.last_gen;
                    // The kernel reports the overrun before what it had queued, and
                    // drops every notification until that queue is read empty
                    // (NETLINK_S_CONGESTED): read it all, then judge the gap.
                    loop {
                        match sock.socket_mut().recv_from_full() {
                            Ok((buf, _)) => {
                                if !m.take(&buf).await {
                                    return;
                                }
                            }
                            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {}
                            Err(_) => break,
                        }
                    }
                    if !m.lost(after).await {
                        return;
                    }
                    continue;
                }
                Err(e) => {
                    warn!("nf_tables notifications stopped: {e}; firewall changes no longer flush the flowtable");
                    return;
                }
            };
            if !m.take(&buf).await {
                return;
            }
        }
    });
    Ok(rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One nf_tables notification: header, nfgenmsg, attribute 1 = table name.
    fn msg(kind: u8, family: u8, table: &str) -> Vec<u8> {
        let mut attr = Vec::new();
        let name = format!("{table}\0");
        attr.extend_from_slice(&((4 + name.len()) as u16).to_ne_bytes());
        attr.extend_from_slice(&1u16.to_ne_bytes());
        attr.extend_from_slice(name.as_bytes());
        while attr.len() % 4 != 0 {
            attr.push(0);
        }
        let len = 16 + 4 + attr.len();
        let mut m = Vec::new();
        m.extend_from_slice(&(len as u32).to_ne_bytes());
        m.extend_from_slice(
            &(((libc::NFNL_SUBSYS_NFTABLES as u16) << 8) | kind as u16).to_ne_bytes(),
        );
        m.extend_from_slice(&[0; 10]);
        m.extend_from_slice(&[family, 0, 0, 0]);
        m.extend_from_slice(&attr);
        m
    }

    #[test]
    fn foreign_change_is_reported_at_commit_our_own_is_not() {
        let inet = libc::NFPROTO_INET as u8;
        let mut buf = msg(6 /* NEWRULE */, inet, "fw4");
        buf.extend(msg(NFT_MSG_NEWGEN, 0, ""));
        let mut c = Collector::default();
        let got: Vec<_> = notices(&buf)
            .into_iter()
            .filter_map(|n| c.push(n))
            .collect();
        assert_eq!(
            got,
            [RulesetChange {
                tables: vec!["inet fw4".into()],
                elements_only: false,
            }]
        );

        let mut own = msg(0 /* NEWTABLE */, inet, TABLE);
        own.extend(msg(3 /* NEWCHAIN */, inet, TABLE));
        own.extend(msg(NFT_MSG_NEWGEN, 0, ""));
        assert!(notices(&own)
            .into_iter()
            .filter_map(|n| c.push(n))
            .next()
            .is_none());
        // Same name in another family is not ours.
        let mut ip = msg(0, libc::NFPROTO_IPV4 as u8, TABLE);
        ip.extend(msg(NFT_MSG_NEWGEN, 0, ""));
        assert_eq!(
            notices(&ip).into_iter().filter_map(|n| c.push(n)).count(),
            1
        );
    }

    #[test]
    fn element_only_commits_are_told_apart_from_rule_changes() {
        let inet = libc::NFPROTO_INET as u8;
        let mut c = Collector::default();
        let run = |c: &mut Collector, kinds: &[u8]| -> Vec<RulesetChange> {
            let mut buf = Vec::new();
            for k in kinds {
                buf.extend(msg(*k, inet, "fw4"));
            }
            buf.extend(msg(NFT_MSG_NEWGEN, 0, ""));
            notices(&buf)
                .into_iter()
                .filter_map(|n| c.push(n))
                .collect()
        };
        // `nft add element`, a set flush plus refill (banIP), a deletion.
        for kinds in [&[12][..], &[14, 12, 12], &[14]] {
            let got = run(&mut c, kinds);
            assert_eq!(got.len(), 1);
            assert!(got[0].elements_only, "{kinds:?}: {got:?}");
        }
        // A rule (with its anonymous set's elements), a new set, a chain: rule changes.
        for kinds in [&[9, 12, 6][..], &[9], &[3], &[12, 6]] {
            let got = run(&mut c, kinds);
            assert!(!got[0].elements_only, "{kinds:?}");
        }
        // The element flag does not leak into the next transaction.
        assert!(run(&mut c, &[12])[0].elements_only);
        // Elements of our own table alone are no change at all.
        let mut own = msg(12, inet, TABLE);
        own.extend(msg(NFT_MSG_NEWGEN, 0, ""));
        assert!(notices(&own).into_iter().all(|n| c.push(n).is_none()));
    }

    #[test]
    fn truncated_input_ends_quietly() {
        let buf = msg(6, 1, "fw4");
        for cut in 0..buf.len() {
            let _ = notices(&buf[..cut]);
        }
    }
}
