//! Where our forward chain goes among the other firewalls, and what it records on each
//! connection: the chain runs after every other forward base chain, and offloads a flow
//! only once a packet of each direction got that far.

use std::fmt;

/// Our forward chain's priority when no other forward chain is at or above it: well above
/// the firewalls we know (fw4 and iptables-nft at filter (0), firewalld at filter + 10,
/// iptables' security table at + 50), so a packet reaches us only after all of them
/// accepted it. Chains of equal priority run in an order nobody can promise (the one
/// registered last runs first), so ours must be strictly higher than every other.
pub const CHAIN_PRIORITY: i32 = 200;
/// Conntrack label bits that record, per connection, that a packet of the original
/// (reply) direction reached our chain, so every other forward chain accepted one. The
/// flow is added only when both are set: a direction some firewall drops never gets
/// the other direction's packets through the flowtable. The two highest bits, away from
/// the low ones people name in /etc/connlabel.conf.
pub const LABEL_ORIGINAL: u8 = 126;
pub const LABEL_REPLY: u8 = 127;

/// A label bit as the 16-byte bitmap the kernel keeps (bit N in byte N / 8, as nft
/// writes it on little-endian machines; on big-endian ones the bytes are the same, the
/// bit nft would call by that number differs, and our set and test still agree).
pub fn label_bytes(bit: u8) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[usize::from(bit / 8)] = 1 << (bit % 8);
    b
}

/// A forward base chain of another table (any of ip, ip6, inet).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ForwardChain {
    pub family: String,
    pub table: String,
    pub chain: String,
    pub priority: i32,
}

impl fmt::Display for ForwardChain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} ({})",
            self.family,
            self.table,
            self.chain,
            priority_text(self.priority)
        )
    }
}

/// Our chain's priority and why, given the other forward chains: a fixed `[offload]
/// priority` as configured, else `CHAIN_PRIORITY` or, when another chain is at or above
/// it, one more than the highest. `others` never holds our own chain.
///
/// A chain at the very top (`i32::MAX`) leaves no place after it: that is an error, never
/// a wrap to the lowest priority, which would put our chain before every firewall.
pub fn choose_priority(
    fixed: Option<i32>,
    others: &[ForwardChain],
) -> Result<(i32, String), String> {
    let highest = others.iter().max_by_key(|c| c.priority);
    Ok(match (fixed, highest) {
        (Some(p), Some(h)) if h.priority >= p => (
            p,
            format!("fixed by [offload] priority, NOT after {h}: that chain runs after ours and may drop what we offload"),
        ),
        (Some(p), _) => (p, "fixed by [offload] priority".into()),
        (None, Some(h)) if h.priority >= CHAIN_PRIORITY => match h.priority.checked_add(1) {
            Some(p) => (p, format!("after the highest other forward chain, {h}")),
            None => return Err(format!(
                "forward chain {h} has the highest priority there is: no chain can run after it, so offloadd cannot promise that every firewall accepted a flow before offloading it; move that chain lower (or, knowing what it drops, set [offload] priority)"
            )),
        },
        (None, Some(h)) => (CHAIN_PRIORITY, format!("after every other forward chain (highest: {h})")),
        (None, None) => (CHAIN_PRIORITY, "no other forward chain".into()),
    })
}

/// As nft prints a filter chain's priority: `filter`, `filter + 10`, `filter - 5`, and
/// a plain number further than 10 from it (`200`).
pub fn priority_text(p: i32) -> String {
    match p {
        0 => "filter".into(),
        1..=10 => format!("filter + {p}"),
        -10..=-1 => format!("filter - {}", -p),
        p => p.to_string(),
    }
}
