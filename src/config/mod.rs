//! Configuration: one `Config` value, whatever the source.
//!
//! Parsers take `&str` and report errors with a 1-based line number; `load` is the thin
//! wrapper that reads a file and puts its path in front of every error, so a person sees
//! `/etc/offloadd/offloadd.toml:12: ...` and knows where to look.

mod load;
mod metrics;
pub mod openwrt;
mod shown;
mod toml;
pub mod uci;
mod values;
mod zones;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use self::toml::parse_toml;
pub use load::{load_toml, MAX_TOML_BYTES, MAX_UCI_BYTES};
use load::{read_capped, text_or_error};
pub use metrics::MetricsConfig;
pub(crate) use shown::{shown, shown_uci, some_of};
pub use values::{parse_duration, IpPrefix, L4Proto, Mark, PortRange};

/// Default configuration file for the TOML source.
pub const DEFAULT_TOML_PATH: &str = "/etc/offloadd/offloadd.toml";

/// The whole configuration of the daemon, independent of where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Whether we build our own flowtable or only report on someone else's.
    pub mode: Mode,
    /// What goes into the flowtable and what must never be offloaded.
    pub offload: OffloadConfig,
    /// How we watch conntrack.
    pub conntrack: ConntrackConfig,
    /// Flowtable idle timeouts; `None` leaves the kernel's value alone.
    pub timeouts: Timeouts,
    /// Where the daemon publishes Prometheus metrics (textfile, HTTP); off by default.
    pub metrics: MetricsConfig,
}

/// DESIGN.md "Modes".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Observe when another flowtable already covers our devices, else manage.
    Auto,
    /// Build and maintain `table inet offloadd`.
    Manage,
    /// Create nothing; report on flowtables others own.
    Observe,
}

/// What to do about hardware offload (`flags offload` on the flowtable).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hardware {
    /// Never ask the NIC.
    Off,
    /// Try the flag; on refusal fall back to software and say why.
    Auto,
    /// Refuse to start without hardware offload.
    Require,
}

/// `flush_on_firewall_change`: which commits of other programs flush our flowtable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FlushOn {
    /// Commits that change tables, chains, rules, sets, flowtables or stateful objects,
    /// not those that only add or remove set elements (dnsmasq nftset, banIP, crowdsec,
    /// fail2ban, firewalld ipsets do that many times a second). An element change does
    /// not change which rules an established flow meets: a set lookup's verdict for it
    /// may change, and that is what "any" is for.
    Rules,
    /// Every commit, set elements included.
    Any,
    /// Never: offloaded flows keep bypassing rules added after they were offloaded.
    Off,
}

impl FlushOn {
    /// "rules", "any" or "off"; the booleans of earlier versions mean "rules" and "off".
    pub fn parse(word: &str) -> Result<FlushOn, String> {
        match word {
            "rules" | "true" | "1" | "yes" | "on" => Ok(FlushOn::Rules),
            "any" => Ok(FlushOn::Any),
            "off" | "false" | "0" | "no" => Ok(FlushOn::Off),
            _ => Err(format!(
                "flush_on_firewall_change {} is not valid: use \"rules\" (the default), \"any\" or \"off\"",
                shown_uci(word)
            )),
        }
    }
}

impl std::fmt::Display for FlushOn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FlushOn::Rules => "rules",
            FlushOn::Any => "any",
            FlushOn::Off => "off",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffloadConfig {
    /// Devices (interface names) whose forwarded flows may be offloaded: the devices
    /// packets arrive on, which the flowtable hooks (`br-lan`, a PPPoE carrier `wan`).
    pub devices: Vec<String>,
    /// For a device of `devices`, the other names the forward hook sees its traffic
    /// under (layer-3 devices stacked on it: `wan` -> `pppoe-wan`). The `flow add` rule
    /// matches these and the devices themselves, so a flow is offloaded only when both
    /// its ends are covered by a hook.
    pub l3_devices: std::collections::BTreeMap<String, Vec<String>>,
    /// Hardware offload policy.
    pub hardware: Hardware,
    /// A fixed priority for our forward chain; `None` places it after every other
    /// forward chain, from the live ruleset (`plan::choose_priority`).
    pub priority: Option<i32>,
    /// Keep conntrack byte/packet counters right for offloaded flows (nlbwmon, accounting).
    pub counter: bool,
    /// Which changes of other nf_tables tables flush the flowtable, so offloaded flows
    /// meet the new rules on their next packet.
    pub flush_on_change: FlushOn,
    /// Connections that must stay on the normal path (each compiles to one or more
    /// `return` rules before `flow add`).
    pub exclude: Vec<Exclude>,
}

/// One `[[offload.exclude]]` entry. Fields are ANDed; the items of a list are ORed.
/// Every match is on the connection's original tuple, never on the packet header (a reply
/// packet carries the tuple reversed; DESIGN.md "Ruleset we own").
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Exclude {
    /// Line of the entry in its file, so plan errors can point at it.
    pub line: usize,
    /// Transport protocol; `None` means TCP and UDP alike.
    pub l4proto: Option<L4Proto>,
    /// Source ports or ranges of the original direction.
    pub sport: Vec<PortRange>,
    /// Destination ports or ranges of the original direction.
    pub dport: Vec<PortRange>,
    /// Source addresses or prefixes of the original direction.
    pub saddr: Vec<IpPrefix>,
    /// Destination addresses or prefixes of the original direction.
    pub daddr: Vec<IpPrefix>,
    /// The connection's mark (`ct mark`), under a mask.
    pub mark: Option<Mark>,
    /// Devices the connection came in on (its original direction's input device).
    pub iif: Vec<String>,
    /// Devices the connection goes out on (its original direction's output device).
    pub oif: Vec<String>,
}

/// Most items one list of an exclusion may have (`sport`, `dport`, `saddr`, `daddr`,
/// `iif`, `oif`; in UCI after zones are resolved to devices). The lists of an entry
/// multiply into rules, so long ones are refused where they are read, with the line of the
/// first item over, before anything is expanded; the plan then counts the product
/// (`plan::MAX_EXCLUDE_RULES` per entry, `plan::MAX_TOTAL_EXCLUDE_RULES` in all). A real
/// exclusion names a few ports, prefixes or devices; 256 is more than a router has
/// interfaces or a person types, and leaves room for a generated list of hosts.
pub const MAX_EXCLUDE_LIST: usize = 256;

/// The error for a list of more than `MAX_EXCLUDE_LIST` items, on the first item over.
pub(crate) fn list_too_long(key: &str) -> String {
    format!("{key} has more than {MAX_EXCLUDE_LIST} items (this is item {}): an exclusion's lists multiply into rules; use prefixes or port ranges instead of long lists", MAX_EXCLUDE_LIST + 1)
}

/// `[offload] priority`: within what nft accepts for a filter chain's hook, and above the
/// standard filter priority, or the chain would run before the firewall it must follow.
pub fn check_priority(p: i64) -> Result<i32, String> {
    if (1..=100_000).contains(&p) {
        Ok(p as i32)
    } else {
        Err(format!("priority {p} is not valid: give a number from 1 to 100000 (above filter, 0), or leave it out to run after every other forward chain"))
    }
}

impl Exclude {
    /// No match at all: as a rule, a bare `return` that would keep every connection off
    /// the fast path. Both sources refuse it.
    pub fn matches_everything(&self) -> bool {
        self.l4proto.is_none()
            && self.sport.is_empty()
            && self.dport.is_empty()
            && self.saddr.is_empty()
            && self.daddr.is_empty()
            && self.mark.is_none()
            && self.iif.is_empty()
            && self.oif.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConntrackConfig {
    /// Period of the dump that catches state changes the kernel sends no event for.
    pub resync_interval: Duration,
    /// Receive buffer of the conntrack event socket, in bytes. Too small and a burst of
    /// new flows overruns it (counted, then resynced). `None`: sized for the table
    /// (`event_buffer_for`).
    pub event_buffer: Option<usize>,
    /// Turn net.netfilter.nf_conntrack_acct on while offloadd runs (byte and packet
    /// counts of slow flows, for `top`); restored on exit.
    pub accounting: bool,
}

/// The smallest automatic event buffer: about 6,500 events.
pub const DEFAULT_EVENT_BUFFER: usize = 4 << 20;
/// The largest automatic one (a configured size may be larger).
pub const MAX_AUTO_EVENT_BUFFER: usize = 64 << 20;

/// The event buffer for a conntrack table of at most `max_entries` (nf_conntrack_max):
/// room for a burst of an eighth of the table, at the ~640 bytes of receive buffer each
/// event takes (measured: 4 MiB held 6,553 events). The kernel charges the buffer only
/// while events wait in it, so a large limit costs nothing at idle. Up to 52,428 entries
/// (a 256 MB router has 16k to 64k) 4 MiB, 65,536: 5 MiB, 262,144: 20 MiB, 1M: 64 MiB.
pub fn event_buffer_for(max_entries: Option<u64>) -> usize {
    let want = max_entries.unwrap_or(0).saturating_mul(80);
    (want.min(MAX_AUTO_EVENT_BUFFER as u64) as usize).max(DEFAULT_EVENT_BUFFER)
}
pub const MIN_EVENT_BUFFER: usize = 4096;
pub const MAX_EVENT_BUFFER: usize = 1 << 30;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Timeouts {
    /// `net.netfilter.nf_flowtable_tcp_timeout`.
    pub tcp: Option<Duration>,
    /// `net.netfilter.nf_flowtable_udp_timeout`.
    pub udp: Option<Duration>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            mode: Mode::Auto,
            offload: OffloadConfig {
                devices: Vec::new(),
                l3_devices: std::collections::BTreeMap::new(),
                hardware: Hardware::Auto,
                priority: None,
                counter: true,
                flush_on_change: FlushOn::Rules,
                exclude: Vec::new(),
            },
            conntrack: ConntrackConfig {
                resync_interval: Duration::from_secs(2),
                event_buffer: None,
                accounting: false,
            },
            timeouts: Timeouts::default(),
            metrics: MetricsConfig::default(),
        }
    }
}

/// A config error with the line it was found on (1-based; 0 when no line applies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

impl ParseError {
    pub fn new(line: usize, message: impl Into<String>) -> Self {
        ParseError {
            line,
            message: message.into(),
        }
    }
}

/// A config error tied to its file: displays as `file:line: message`.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {error} (check the path; choose the file with --config FILE or the UCI directory with --uci-dir DIR)")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{}", fmt_at(path, *line, message))]
    Invalid {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

fn fmt_at(path: &Path, line: usize, message: &str) -> String {
    if line == 0 {
        format!("{}: {message}", path.display())
    } else {
        format!("{}:{line}: {message}", path.display())
    }
}

/// Where the config comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A TOML file (`--config`, or `/etc/offloadd/offloadd.toml`).
    Toml(PathBuf),
    /// The UCI directory (`/etc/config`): offloadd, firewall and network.
    Uci(PathBuf),
}

impl Source {
    /// `--config FILE` is TOML and `--uci-dir DIR` is UCI. With neither: UCI when
    /// `/etc/config/firewall` exists (OpenWrt), else the default TOML file.
    pub fn choose(config: Option<PathBuf>, uci_dir: Option<PathBuf>) -> Source {
        match (config, uci_dir) {
            (Some(c), _) => Source::Toml(c),
            (None, Some(d)) => Source::Uci(d),
            (None, None) if Path::new(openwrt::UCI_DIR).join("firewall").exists() => {
                Source::Uci(openwrt::UCI_DIR.into())
            }
            (None, None) => Source::Toml(DEFAULT_TOML_PATH.into()),
        }
    }

    pub fn load(&self) -> Result<Config, ConfigError> {
        match self {
            Source::Toml(p) => load_toml(p),
            Source::Uci(d) => openwrt::load_uci(d),
        }
    }

    /// The file exclusions are read from (plan errors point into it).
    pub fn exclude_file(&self) -> PathBuf {
        match self {
            Source::Toml(p) => p.clone(),
            Source::Uci(d) => openwrt::uci_path(d, openwrt::UciFileName::Offloadd),
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Toml(p) => write!(f, "{}", p.display()),
            Source::Uci(d) => write!(f, "UCI {}/{{offloadd,firewall,network}}", d.display()),
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Auto => "auto",
            Mode::Manage => "manage",
            Mode::Observe => "observe",
        })
    }
}

impl fmt::Display for Hardware {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Hardware::Off => "off",
            Hardware::Auto => "auto",
            Hardware::Require => "require",
        })
    }
}

#[cfg(test)]
#[path = "mod_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "limits_tests.rs"]
mod limits_tests;
