//! Why a slow flow is not offloaded, from what offloadd knows: the flow as conntrack has
//! it, the exclusions, this machine's addresses, the role, the last flush. Pure: the
//! daemon fills `Context` and asks per flow while it streams a listing.
//!
//! What the kernel requires (nft_flow_offload.c): a confirmed TCP or UDP conntrack entry
//! whose reply was seen (`IP_CT_ESTABLISHED`), a TCP packet without SYN, FIN or RST, and
//! a `flow add` rule that the forwarded packet reaches. Traffic to or from the router
//! itself never crosses the forward hook at all.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::config::Exclude;
use crate::conntrack::{FlowRecord, Path, IPS_SEEN_REPLY, TCP};
use crate::report::tcp_state_name;

/// conntrack's TCP_CONNTRACK_ESTABLISHED.
const ESTABLISHED: u8 = 3;
/// A flush this recent explains a slow flow that is otherwise fit to offload.
const FLUSH_RECENT_MS: u64 = 10_000;
/// Time on a path and the flush's time come from two clocks (the tracker's monotonic
/// one, the daemon's wall clock): this much apart still counts as "since the flush".
const FLUSH_CLOCK_SLACK_MS: u64 = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// To or from an address of this machine: input/output, never forwarded.
    RouterLocal,
    /// No reply seen yet (one-way UDP, an unanswered SYN).
    NoReply,
    /// TCP not established (handshake, closing).
    TcpState,
    /// An exclusion of the config matches it.
    Excluded,
    /// An exclusion that also matches on devices matches its addresses and ports.
    MaybeExcluded,
    /// offloadd observes: another table's flowtable and rules decide.
    Observe,
    /// The flowtable was flushed moments ago.
    Flushed,
    /// The route of one of its directions leaves by a device the flowtable does not hook.
    DeviceNotInFlowtable,
    /// It was offloaded and left the flowtable with no event: idle past the flowtable's
    /// timeout, or torn down for a route that changed (the tracker saw the move).
    LeftFlowtable,
    /// Nothing offloadd knows explains it.
    Unknown,
}

/// A reason and what it is about (an address, a state, a file:line, a time); the
/// sentence is made by the reader (`text`), so a listing of a million flows carries
/// a word or two each, not the same sentence a million times.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Why {
    pub reason: Reason,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

impl Why {
    /// The tracker's hint for a flow it saw come back from the flowtable.
    pub fn left_flowtable() -> Why {
        Why {
            reason: Reason::LeftFlowtable,
            detail: String::new(),
        }
    }

    pub fn text(&self) -> String {
        let d = &self.detail;
        match self.reason {
            Reason::RouterLocal => format!("the router's own traffic ({d} is this machine's address): only forwarded flows are offloaded; run speed tests through the router, not to it"),
            Reason::NoReply => "no reply seen yet (one-way UDP, or a TCP SYN not answered): offloaded once both directions have passed".into(),
            Reason::TcpState => format!("TCP {d}: only established connections are offloaded"),
            Reason::Excluded => format!("excluded by the exclusion at {d}"),
            Reason::MaybeExcluded => format!("the exclusion at {d} matches its addresses and ports; it also names devices, which conntrack does not record, so offloadd cannot tell whether it applies"),
            Reason::Observe => format!("offloadd only observes ({d}): the owner of that flowtable and its rules decide what is offloaded"),
            Reason::LeftFlowtable => "it was offloaded and left the flowtable: idle past the flowtable timeout (nf_flowtable_tcp_timeout / _udp_timeout, [timeouts]), or torn down for a route change; its next packet offloads it again".into(),
            Reason::DeviceNotInFlowtable => format!("its traffic goes through {d}, which is not in the flowtable: add it to [offload] devices (UCI: its zone, or list device) if its flows should be offloaded"),
            Reason::Flushed => format!("the flowtable was flushed {d}: offloaded again at its next packet if the firewall still accepts it"),
            Reason::Unknown => "offloadd cannot tell: established both ways and not excluded; most often one of its devices is not in the flowtable (offloadd status lists them), or it was offloaded and sat idle past the flowtable timeout".into(),
        }
    }
}

/// The config's part of a `Context`: set by the daemon at start and reload.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    pub exclude: Vec<Exclude>,
    pub exclude_file: String,
    /// The layer-3 names of configured devices (`pppoe-wan` on `wan`).
    pub l3_devices: std::collections::BTreeMap<String, Vec<String>>,
}

/// What the daemon knows besides the flow.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// Addresses of this machine (getifaddrs at the listing's start).
    pub local: Vec<IpAddr>,
    pub exclude: Vec<Exclude>,
    /// The file the exclusions' lines are in.
    pub exclude_file: String,
    /// `Some(why)` while observing.
    pub observing: Option<String>,
    /// The last flush: when, and what caused it.
    pub last_flush: Option<(u64, String)>,
    pub now_unix_ms: u64,
    /// Devices our flowtable hooks now, with their layer-3 names.
    pub hooked: Vec<String>,
}

impl Context {
    /// The context of now, for one listing.
    pub fn now(rules: &Rules, st: &crate::view::status::Status, local: Vec<IpAddr>) -> Context {
        Context {
            local,
            exclude: rules.exclude.clone(),
            exclude_file: rules.exclude_file.clone(),
            observing: (st.role == "observe").then(|| st.role_why.clone()),
            last_flush: st.last_flush.as_ref().map(|f| {
                let cause = if f.requested {
                    "asked for with offloadd flush".to_string()
                } else {
                    format!("firewall change: {}", f.tables.join(", "))
                };
                (f.at_unix_ms, cause)
            }),
            now_unix_ms: crate::conntrack::unix_ms(),
            hooked: hooked(rules, st),
        }
    }

    /// For a flow `why` found no reason for: the device one of its directions is routed
    /// by that the flowtable does not hook (in: the route back to its source; out: the
    /// route to whoever answers it, the DNAT target included). `route` says which device
    /// traffic to an address leaves by.
    pub fn outside_device(
        &self,
        f: &FlowRecord,
        route: Option<String>,
        back: Option<String>,
    ) -> Option<Why> {
        [back, route]
            .into_iter()
            .flatten()
            .find(|d| !self.hooked.contains(d))
            .map(|d| Why {
                reason: Reason::DeviceNotInFlowtable,
                detail: d,
            })
            .filter(|_| f.path == Path::Slow)
    }

    /// `None` for an offloaded flow.
    pub fn why(&self, f: &FlowRecord) -> Option<Why> {
        if f.path != Path::Slow {
            return None;
        }
        let why = |reason, detail: String| Some(Why { reason, detail });
        let local = |a: &IpAddr| self.local.contains(a);
        // To the router: its own address answers. From it: replies come back to it.
        // (A port forward's original destination is local, but a LAN host answers; a
        // masqueraded flow's replies go to a local address, but a LAN host opened it.)
        if local(&f.orig.dst) && local(&f.reply.src) || local(&f.orig.src) && local(&f.reply.dst) {
            let addr = if local(&f.orig.dst) {
                f.orig.dst
            } else {
                f.orig.src
            };
            return why(Reason::RouterLocal, addr.to_string());
        }
        if f.status & IPS_SEEN_REPLY == 0 {
            return why(Reason::NoReply, String::new());
        }
        if f.proto == TCP {
            if let Some(s) = f.tcp_state.filter(|&s| s != ESTABLISHED) {
                return why(Reason::TcpState, tcp_state_name(s).into());
            }
        }
        if let Some(observing) = &self.observing {
            return why(Reason::Observe, observing.clone());
        }
        if let Some(e) = self.exclude.iter().find(|e| matches(e, f)) {
            let at = format!("{}:{}", self.exclude_file, e.line);
            let reason = if e.iif.is_empty() && e.oif.is_empty() {
                Reason::Excluded
            } else {
                Reason::MaybeExcluded
            };
            return why(reason, at);
        }
        if let Some((at, cause)) = &self.last_flush {
            let ago = self.now_unix_ms.saturating_sub(*at);
            // Only a flow the flush took out of the flowtable: one offloaded before and
            // on the slow path since the flush (or not seen back yet). A flow first seen
            // after it, or slow since before it, has another reason.
            let flushed_out = f.to_offload_ms.is_some()
                && f.on_path_ms
                    .is_none_or(|on_slow| on_slow <= ago + FLUSH_CLOCK_SLACK_MS);
            if ago <= FLUSH_RECENT_MS && flushed_out {
                return why(
                    Reason::Flushed,
                    format!("{:.1} s ago ({cause})", ago as f64 / 1000.0),
                );
            }
        }
        if f.why
            .as_ref()
            .is_some_and(|w| w.reason == Reason::LeftFlowtable)
        {
            return Some(Why::left_flowtable());
        }
        why(Reason::Unknown, String::new())
    }
}

/// The names under which the flowtable's devices see traffic: each configured device in
/// the flowtable, the lower devices hardware mode hooks instead, and its layer-3 names.
fn hooked(rules: &Rules, st: &crate::view::status::Status) -> Vec<String> {
    use crate::view::status::DeviceState::{Hardware, InFlowtable};
    let mut out = Vec::new();
    for d in st
        .devices
        .iter()
        .filter(|d| matches!(d.state, InFlowtable | Hardware))
    {
        out.push(d.name.clone());
        out.extend(d.via.iter().cloned());
        out.extend(rules.l3_devices.get(&d.name).into_iter().flatten().cloned());
    }
    out
}

/// Whether exclusion `e` matches the flow's original direction (devices aside).
fn matches(e: &Exclude, f: &FlowRecord) -> bool {
    let any = |empty: bool, hit: bool| empty || hit;
    e.l4proto.is_none_or(|p| p.number() == f.proto)
        && any(
            e.sport.is_empty(),
            e.sport.iter().any(|r| r.contains(f.orig.sport)),
        )
        && any(
            e.dport.is_empty(),
            e.dport.iter().any(|r| r.contains(f.orig.dport)),
        )
        && any(
            e.saddr.is_empty(),
            e.saddr.iter().any(|p| p.contains(f.orig.src)),
        )
        && any(
            e.daddr.is_empty(),
            e.daddr.iter().any(|p| p.contains(f.orig.dst)),
        )
        && e.mark.is_none_or(|m| f.mark & m.mask == m.value & m.mask)
}

#[cfg(test)]
#[path = "explain_tests.rs"]
mod tests;
