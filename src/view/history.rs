//! The last path changes, for `offloadd why`: a ring the daemon fills from the
//! watcher's transitions, and the pure selection of one flow's part of it.

use std::collections::VecDeque;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::conntrack::{FlowRecord, Transition, Tuple};

/// About 120 bytes each: 1024 keep the last minutes of a busy router for 120 KiB.
pub const KEEP: usize = 1024;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// Oldest first.
    pub transitions: VecDeque<Transition>,
    /// Transitions that went by while the ring was not listening (a burst it read too
    /// slowly): a flow's history may miss some.
    pub missed: u64,
}

impl History {
    pub fn push(&mut self, t: Transition) {
        if self.transitions.len() == KEEP {
            self.transitions.pop_front();
        }
        self.transitions.push_back(t);
    }
}

/// `ADDR` or `ADDR:PORT` (`[v6]:PORT`), as `offloadd why` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub addr: IpAddr,
    pub port: Option<u16>,
}

impl std::str::FromStr for Target {
    type Err = String;
    fn from_str(s: &str) -> Result<Target, String> {
        if let Ok(addr) = s.parse() {
            return Ok(Target { addr, port: None });
        }
        if let Ok(sa) = s.parse::<std::net::SocketAddr>() {
            return Ok(Target {
                addr: sa.ip(),
                port: Some(sa.port()),
            });
        }
        Err(format!(
            "{s:?} is not an address or address:port (198.18.2.2, 198.18.2.2:5201, [fd00::2]:5201)"
        ))
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.addr, self.port) {
            (a, None) => write!(f, "{a}"),
            (a, Some(p)) => write!(f, "{}", std::net::SocketAddr::new(a, p)),
        }
    }
}

impl Target {
    /// Whether either direction of the flow has this address (and port) at either end,
    /// so a NAT'd flow is found by its inside or its outside address.
    pub fn matches(&self, f: &FlowRecord) -> bool {
        self.matches_tuples(&f.orig, &f.reply)
    }

    pub fn matches_tuples(&self, orig: &Tuple, reply: &Tuple) -> bool {
        [orig, reply].iter().any(|t| {
            (t.src == self.addr && self.port.is_none_or(|p| p == t.sport))
                || (t.dst == self.addr && self.port.is_none_or(|p| p == t.dport))
        })
    }

    /// The transitions of flow `f` (same protocol, zone and original tuple).
    pub fn history_of<'a>(f: &FlowRecord, h: &'a History) -> Vec<&'a Transition> {
        h.transitions
            .iter()
            .filter(|t| t.key.proto == f.proto && t.key.zone == f.zone && t.key.orig == f.orig)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conntrack::{FlowKey, Path, TCP};

    fn record(orig: Tuple, reply: Tuple) -> FlowRecord {
        FlowRecord {
            proto: TCP,
            zone: 0,
            orig,
            reply,
            mark: 0,
            tcp_state: Some(3),
            status: 0xe,
            path: Path::Slow,
            on_path_ms: None,
            to_offload_ms: None,
            counters: None,
            why: None,
        }
    }

    fn transition(orig: Tuple, at: u64, from: Path, to: Path) -> Transition {
        Transition {
            at_unix_ms: at,
            key: FlowKey {
                proto: TCP,
                zone: 0,
                orig,
            },
            reply: orig,
            from,
            to,
            after_ms: None,
        }
    }

    #[test]
    fn targets_parse_v4_v6_with_and_without_port() {
        let t: Target = "198.18.2.2:5201".parse().unwrap();
        assert_eq!(
            (t.addr.to_string(), t.port),
            ("198.18.2.2".into(), Some(5201))
        );
        let t: Target = "[fd00::2]:80".parse().unwrap();
        assert_eq!((t.addr.to_string(), t.port), ("fd00::2".into(), Some(80)));
        let t: Target = "fd00::2".parse().unwrap();
        assert_eq!(t.port, None);
        assert!("example.com:80"
            .parse::<Target>()
            .unwrap_err()
            .contains("address:port"));
    }

    #[test]
    fn a_nat_flow_is_found_by_either_side_and_its_own_history_only() {
        // A LAN host behind masquerade: inside 192.168.1.10, outside 198.18.0.1.
        let orig = Tuple::of("192.168.1.10", 40000, "198.18.2.2", 5201);
        let f = record(orig, Tuple::of("198.18.2.2", 5201, "198.18.0.1", 61000));
        for (s, hit) in [
            ("192.168.1.10", true),
            ("198.18.0.1:61000", true),
            ("198.18.2.2:5201", true),
            ("198.18.2.2:5202", false),
            ("198.18.0.1:40000", false),
        ] {
            assert_eq!(s.parse::<Target>().unwrap().matches(&f), hit, "{s}");
        }
        let mut h = History::default();
        h.push(transition(orig, 1, Path::Slow, Path::Sw));
        h.push(transition(
            Tuple::of("192.168.1.10", 40001, "198.18.2.2", 5201),
            2,
            Path::Slow,
            Path::Sw,
        ));
        h.push(transition(orig, 3, Path::Sw, Path::Slow));
        let mine: Vec<u64> = Target::history_of(&f, &h)
            .iter()
            .map(|t| t.at_unix_ms)
            .collect();
        assert_eq!(mine, [1, 3]);
    }

    #[test]
    fn the_ring_keeps_the_last_ones() {
        let orig = Tuple::of("192.168.1.10", 40000, "198.18.2.2", 5201);
        let mut h = History::default();
        for at in 0..(KEEP as u64 + 10) {
            h.push(transition(orig, at, Path::Slow, Path::Sw));
        }
        assert_eq!(h.transitions.len(), KEEP);
        assert_eq!(h.transitions.front().unwrap().at_unix_ms, 10);
    }
}
