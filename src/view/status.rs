//! What `offloadd status` reports: one serializable value, filled by the daemon as it
//! applies and reloads, completed with conntrack totals when a client asks.

use serde::{Deserialize, Serialize};

use crate::conntrack::Stats;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub version: String,
    pub pid: u32,
    pub started_unix_ms: u64,
    /// When this answer was made, so a client renders "x s ago" right.
    pub now_unix_ms: u64,
    pub config: String,
    /// "manage" or "observe", and why (DESIGN.md "Modes").
    pub role: String,
    pub role_why: String,
    /// Does the kernel have flowtables? `None` until something asked it.
    pub kernel_flowtables: Option<bool>,
    /// Table flag `owner` (Linux ≥ 5.12): the kernel removes our table if we die.
    pub owner_flag: Option<bool>,
    pub hardware: Hardware,
    /// Our forward chain's priority as applied, and why (after every other forward chain).
    #[serde(default)]
    pub priority: Option<i32>,
    #[serde(default)]
    pub priority_why: String,
    pub devices: Vec<Device>,
    /// The devices this machine has, filled when none of the configured devices exists
    /// (the flowtable has no devices: nothing is offloaded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub present_devices: Vec<String>,
    /// Flowtables of other tables (observe mode reports on these).
    pub other_flowtables: Vec<String>,
    /// Manage mode: other flowtables that cover our devices too (fw4 with offloading on).
    #[serde(default)]
    pub duplicates: Vec<String>,
    pub last_apply: Option<LastApply>,
    /// Flowtable flushes after changes to other tables (see `[offload]
    /// flush_on_firewall_change`), and the tables of the last one.
    #[serde(default)]
    pub flushes: u64,
    #[serde(default)]
    pub last_flush: Option<Flush>,
    /// Flushes asked for with `offloadd flush` (an HA mastership change, by hand).
    #[serde(default)]
    pub flushes_requested: u64,
    /// Applies and reloads that failed (the previous ruleset stayed each time).
    #[serde(default)]
    pub apply_failures: u64,
    /// A flush that is due and has not happened yet (a failed one is retried), and why.
    #[serde(default)]
    pub flush_pending: Option<String>,
    /// `flush_on_firewall_change`: rules | any | off.
    #[serde(default)]
    pub flush_on: String,
    /// Commits of other programs that did not flush: set elements only (with "rules"),
    /// or any (with "off").
    #[serde(default)]
    pub commits_not_flushed: u64,
    pub warnings: Vec<String>,
    /// What keeps `[metrics]` from publishing ("textfile: ...", "listen: ..."): a
    /// directory, a refused trap at the file's name, a port or a sandbox.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics_errors: Vec<String>,
    pub resync_interval_ms: u64,
    /// `None` when the conntrack watcher could not start (see `conntrack_error`).
    pub conntrack: Option<Stats>,
    pub conntrack_error: Option<String>,
    /// net.netfilter.nf_conntrack_acct in the daemon's namespace (slow flows' counters).
    #[serde(default)]
    pub conntrack_accounting: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hardware {
    /// The config's `hardware`: off | auto | require.
    pub policy: String,
    /// off | active | fallback (software; some device refused) | none (nothing applied).
    pub state: String,
    pub refused: Vec<Refusal>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    pub device: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    pub name: String,
    pub state: DeviceState,
    /// The devices the flowtable names for it, when not itself (hardware mode resolves
    /// bridges and VLANs to their ports and parents).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub via: Vec<String>,
    /// Why it is not on the path it was asked for (the kernel's reason).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

impl Device {
    pub fn new(name: &str, state: DeviceState) -> Device {
        Device {
            name: name.into(),
            state,
            via: vec![],
            why: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceState {
    /// In our flowtable, software path.
    InFlowtable,
    /// In our flowtable with hardware offload.
    Hardware,
    /// Configured but absent; added when it appears.
    Missing,
    /// Present, but the kernel refused it (see `why`); retried when it changes.
    Refused,
    /// Observe mode: covered by another table's flowtable.
    Observed,
    /// Observe mode: in no flowtable at all.
    NotOffloaded,
}

impl DeviceState {
    pub fn describe(self) -> &'static str {
        match self {
            DeviceState::InFlowtable => "in flowtable (software)",
            DeviceState::Hardware => "in flowtable (hardware)",
            DeviceState::Missing => "missing (added when it appears)",
            DeviceState::Refused => "refused by the kernel",
            DeviceState::Observed => "in another table's flowtable",
            DeviceState::NotOffloaded => "in no flowtable",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Flush {
    pub at_unix_ms: u64,
    /// "family table" of what changed, e.g. "inet fw4"; empty for a requested flush.
    pub tables: Vec<String>,
    pub took_ms: f64,
    /// Asked for with `offloadd flush`, not caused by a firewall change.
    #[serde(default)]
    pub requested: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastApply {
    pub at_unix_ms: u64,
    pub took_ms: f64,
    /// false when the kernel already had exactly this ruleset.
    pub changed: bool,
    /// The error, if this apply (or reload) failed and the previous ruleset stayed.
    pub error: Option<String>,
}
