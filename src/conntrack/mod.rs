//! Conntrack: which path each flow takes (slow, software or hardware offload), live.
//!
//! `decode` turns ctnetlink messages into `Entry` values without allocating; `socket`
//! dumps the table and receives events; `tracker` is the pure state (flows by path,
//! transitions, time to offload); `watcher` is the actor that feeds the tracker from
//! events plus a periodic resync and answers snapshots.

mod decode;
mod dumper;
mod listing;
mod lookup;
mod record;
mod schedule;
mod socket;
mod tracker;
mod watcher;

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

pub use decode::{decode, messages, DecodeError, Event, EventKind, Message};
pub use lookup::{lookup_request, LookupCount};
pub use socket::{CtError, CtSocket, Drained, DumpCount, DumpFilter};
pub use tracker::{
    sort_flows, FlowRecord, FlowTracker, Sight, Stats, Transition, Transitions, MAX_FLOWS, RECENT,
    TTO_BUCKETS_S, TTO_SAMPLES,
};
pub use watcher::{
    spawn as spawn_watcher, unix_ms, WatcherHandle, WatcherOptions, FULL_EVERY, RECONCILE_EVERY,
};

/// conntrack status bits (include/uapi/linux/netfilter/nf_conntrack_common.h).
/// IPS_OFFLOAD is set while the flow sits in a flowtable (software path);
/// IPS_HW_OFFLOAD additionally once a NIC accepted it. Both clear when the flowtable
/// lets go of the flow (idle timeout, FIN/RST, table deleted).
pub const IPS_OFFLOAD: u32 = 1 << 14;
pub const IPS_SEEN_REPLY: u32 = 1 << 1;
pub const IPS_HW_OFFLOAD: u32 = 1 << 15;

/// Where a flow's packets are processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Path {
    /// Every packet goes through the whole firewall on the CPU.
    Slow,
    /// In a flowtable: forwarded at the ingress hook, skipping the firewall.
    Sw,
    /// In a hardware flowtable: the NIC or switch forwards it.
    Hw,
}

impl Path {
    pub const ALL: [Path; 3] = [Path::Slow, Path::Sw, Path::Hw];

    /// Classification is ours, whatever the kernel filtered on.
    pub fn of_status(status: u32) -> Path {
        if status & IPS_HW_OFFLOAD != 0 {
            Path::Hw
        } else if status & IPS_OFFLOAD != 0 {
            Path::Sw
        } else {
            Path::Slow
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Path::Slow => "slow",
            Path::Sw => "sw",
            Path::Hw => "hw",
        })
    }
}

/// One direction of a connection as conntrack sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Tuple {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
}

#[cfg(test)]
impl Tuple {
    /// A tuple from text, for tests: `Tuple::of("198.18.1.2", 40000, "198.18.2.2", 5201)`.
    pub(crate) fn of(src: &str, sport: u16, dst: &str, dport: u16) -> Tuple {
        Tuple {
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            sport,
            dport,
        }
    }
}

impl fmt::Display for Tuple {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} -> {}",
            Endpoint(self.src, self.sport),
            Endpoint(self.dst, self.dport)
        )
    }
}

/// `198.18.1.2:80` or `[fd00::2]:80`.
struct Endpoint(IpAddr, u16);

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(a) => write!(f, "{a}:{}", self.1),
            IpAddr::V6(a) => write!(f, "[{a}]:{}", self.1),
        }
    }
}

/// Packets and bytes of both directions; present when the kernel accounts them
/// (`net.netfilter.nf_conntrack_acct=1`, or the flowtable's `counter` for offloaded flows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Counters {
    pub orig_packets: u64,
    pub orig_bytes: u64,
    pub reply_packets: u64,
    pub reply_bytes: u64,
}

/// What identifies a connection: conntrack itself keys entries by original tuple and zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FlowKey {
    pub proto: u8,
    pub zone: u16,
    pub orig: Tuple,
}

/// One conntrack entry, decoded. Only TCP and UDP entries are ever produced: nothing
/// else can be offloaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub key: FlowKey,
    pub reply: Tuple,
    pub status: u32,
    pub mark: u32,
    /// TCP state (TCP_CONNTRACK_*), when the message carried protoinfo.
    pub tcp_state: Option<u8>,
    pub counters: Option<Counters>,
}

impl Entry {
    pub fn path(&self) -> Path {
        Path::of_status(self.status)
    }
}

/// IANA protocol numbers of the two protocols a flowtable takes.
pub const TCP: u8 = 6;
pub const UDP: u8 = 17;

pub fn proto_name(proto: u8) -> &'static str {
    if proto == TCP {
        "tcp"
    } else {
        "udp"
    }
}

/// Which flows a listing asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum PathFilter {
    Slow,
    Sw,
    Hw,
    /// Software or hardware.
    Offloaded,
}

impl PathFilter {
    pub fn matches(self, path: Path) -> bool {
        match self {
            PathFilter::Slow => path == Path::Slow,
            PathFilter::Sw => path == Path::Sw,
            PathFilter::Hw => path == Path::Hw,
            PathFilter::Offloaded => path != Path::Slow,
        }
    }

    /// The cheapest dump that still returns every flow this filter wants.
    pub fn dump_filter(filter: Option<PathFilter>) -> DumpFilter {
        match filter {
            Some(PathFilter::Sw | PathFilter::Hw | PathFilter::Offloaded) => DumpFilter::Offloaded,
            _ => DumpFilter::All,
        }
    }
}

/// net.netfilter.nf_conntrack_acct in this namespace: without it slow flows carry no
/// byte counters (offloaded ones do, through the flowtable's `counter`).
pub fn accounting_on() -> Option<bool> {
    std::fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_acct")
        .ok()
        .map(|s| s.trim() != "0")
}
