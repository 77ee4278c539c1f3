//! `plan`: the pure heart of the pipeline. `plan(Config, LinkSnapshot) -> Desired`.
//!
//! `Desired` is a value: it can be compared (to decide whether a reload changes anything),
//! printed as nft syntax (`offloadd plan`, golden tests) and handed to `nft` to apply.
//! Nothing here touches the kernel.

use std::collections::{BTreeMap, BTreeSet};

use crate::config::{Config, IpPrefix, L4Proto, Mark, PortRange};
use crate::link::LinkSnapshot;

mod expand;
mod order;
mod render;
pub use order::{
    choose_priority, label_bytes, priority_text, ForwardChain, CHAIN_PRIORITY, LABEL_ORIGINAL,
    LABEL_REPLY,
};

/// Our table (family inet) as DESIGN.md names it.
pub const TABLE: &str = "offloadd";
/// Our flowtable inside `TABLE`.
pub const FLOWTABLE: &str = "ft";
/// Our base chain inside `TABLE`.
pub const CHAIN: &str = "forward";
/// Flowtable ingress hook priority.
pub const FLOWTABLE_PRIORITY: i32 = 0;
/// Most rules one exclusion may expand to (the product of its lists' lengths, twice for
/// ports without a protocol and for device matches). docs/limits.md says why.
pub const MAX_EXCLUDE_RULES: usize = 512;
/// Most rules all exclusions together may expand to. Every packet that is not (yet)
/// offloaded walks them in order: a flow's first packets, and all traffic the flowtable
/// cannot carry. docs/limits.md says why 4096.
pub const MAX_TOTAL_EXCLUDE_RULES: usize = 4096;

/// The ruleset we want in the kernel.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Desired {
    /// The flowtable, or `None` where the kernel has no flowtables and a caller (the
    /// host-kernel tests, the apply benchmark) wants the rest of the ruleset anyway.
    pub flowtable: Option<Flowtable>,
    /// The present configured devices: what the flowtable holds on software offload.
    pub configured: BTreeSet<String>,
    /// For each configured device (present or not), the names the forward hook sees its
    /// traffic under: the device and the L3 devices stacked on it (`wan`, `pppoe-wan`).
    /// `flow add` is limited to flows whose input and output are both among them, so a
    /// flow is offloaded only where a flowtable hook sees its packets both ways: a flow
    /// to a device no hook covers (a VPN or Docker bridge offloadd was not given) would
    /// be marked OFFLOAD in conntrack and still take the slow path. iifname compares
    /// names, so `pppoe-wan` matches whenever the session is up, with no change when it
    /// reconnects.
    pub matches: BTreeMap<String, Vec<String>>,
    /// `return` rules, in order, before `flow add`.
    pub excludes: Vec<ExcludeRule>,
    /// Configured devices absent when planned: left out (naming an absent device makes the
    /// kernel refuse the whole batch with ENOENT) and added when they appear.
    pub missing: Vec<String>,
    /// Configured devices that the flowtables name through others (hardware mode:
    /// bridge -> ports, VLAN -> parent).
    pub via: BTreeMap<String, Vec<String>>,
    /// Our forward chain's priority (see `choose_priority`).
    pub priority: i32,
    /// Flowtable devices that are shaped (SQM/QoS), and by what. Filled by the caller
    /// from the kernel's qdiscs; hardware offload would bypass the shaper, so these stay
    /// on software offload.
    pub shaped: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Flowtable {
    /// Present configured devices, sorted so equal sets compare equal.
    pub devices: BTreeSet<String>,
    /// `counter`: keeps conntrack accounting right for offloaded flows.
    pub counter: bool,
    /// `flags offload`: hardware offload.
    pub hw_offload: bool,
}

/// One exclusion: all present fields must match the connection's original tuple.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ExcludeRule {
    pub l4proto: Option<L4Proto>,
    pub saddr: Option<IpPrefix>,
    pub daddr: Option<IpPrefix>,
    pub sport: Option<PortRange>,
    pub dport: Option<PortRange>,
    pub mark: Option<Mark>,
    /// Device matches are on the packet, so they come with the packet's direction: the
    /// connection's input device is the input of original packets and the output of
    /// replies. `dir` is then set and `iifname`/`oifname` are the packet's devices.
    pub dir: Option<CtDir>,
    pub iifname: Option<String>,
    pub oifname: Option<String>,
    /// Config line of the `[[offload.exclude]]` entry it came from.
    pub line: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CtDir {
    Original,
    Reply,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("this exclude can never match: saddr and daddr are of different IP families (use one family per entry)")]
    Impossible { line: usize },
    /// `count` saturates at `usize::MAX` (lists whose product does not fit).
    #[error("this exclude expands to {} rules (more than {MAX_EXCLUDE_RULES}): use prefixes or port ranges instead of long lists", count_text(*count))]
    TooManyRules { line: usize, count: usize },
    /// The exclusions up to the one on `line` expand to `count` rules in all.
    #[error("the exclusions up to this one expand to {count} rules (more than {MAX_TOTAL_EXCLUDE_RULES} in all, which every packet not yet offloaded walks through): merge entries, with prefixes or port ranges instead of lists")]
    TooManyRulesInAll { line: usize, count: usize },
    /// No priority after every other forward chain exists (`choose_priority`).
    #[error("{0}")]
    Priority(String),
}

fn count_text(count: usize) -> String {
    if count == usize::MAX {
        format!("{count} or more")
    } else {
        count.to_string()
    }
}

impl PlanError {
    /// The config line of the exclusion at fault; 0 for what no line caused.
    pub fn line(&self) -> usize {
        match self {
            PlanError::Impossible { line }
            | PlanError::TooManyRules { line, .. }
            | PlanError::TooManyRulesInAll { line, .. } => *line,
            PlanError::Priority(_) => 0,
        }
    }

    /// The error as every caller shows it: `file:line: what`, or just what for an error
    /// no config line caused.
    pub fn at(&self, exclude_file: &std::path::Path) -> String {
        match self.line() {
            0 => self.to_string(),
            line => format!("{}:{line}: {self}", exclude_file.display()),
        }
    }
}

/// What the plan needs besides the config, each read from the system before planning:
/// `plan` itself reads nothing.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    /// The devices that exist now (with lower devices resolved where hardware asks).
    pub links: &'a LinkSnapshot,
    /// Forward base chains of other tables as the kernel has them (our chain goes after
    /// all of them); empty when there are none or they could not be read.
    pub forward: &'a [ForwardChain],
    /// Shaped devices (SQM/QoS) among `Desired::shaping_candidates`, and by what
    /// (`link::shaped_now`): they stay on software offload.
    pub shaped: &'a BTreeMap<String, String>,
}

static NO_CHAINS: [ForwardChain; 0] = [];
static NO_SHAPING: BTreeMap<String, String> = BTreeMap::new();

impl<'a> Inputs<'a> {
    /// Only the links: no other forward chain, nothing shaped.
    pub fn links(links: &'a LinkSnapshot) -> Inputs<'a> {
        Inputs {
            links,
            forward: &NO_CHAINS,
            shaped: &NO_SHAPING,
        }
    }
}

/// The plan: the ruleset for the kernel, and what a report says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub ruleset: Desired,
    /// Why our forward chain has its priority (`choose_priority`).
    pub priority_why: String,
}

/// Computes the ruleset for `cfg` given the links that exist now.
///
/// The hardware flag is set when the config asks for hardware (`auto` or `require`);
/// whether the devices accept it is the apply step's question (a trial batch). With the
/// flag, bridges and VLANs are replaced by their lower devices (as fw4 does): the driver
/// that sets up the hardware flow is the port's, not the bridge's. Without it, or when
/// hardware is refused (`software_only`), the flowtable holds the configured devices.
pub fn plan(cfg: &Config, inputs: &Inputs) -> Result<Plan, PlanError> {
    let links = inputs.links;
    let matches = cfg
        .offload
        .devices
        .iter()
        .map(|d| {
            let mut names = vec![d.clone()];
            for n in cfg.offload.l3_devices.get(d).into_iter().flatten() {
                if !names.contains(n) {
                    names.push(n.clone());
                }
            }
            (d.clone(), names)
        })
        .collect();
    let (present, missing): (Vec<_>, Vec<_>) = cfg
        .offload
        .devices
        .iter()
        .cloned()
        .partition(|d| links.contains(d));
    let hw_offload = cfg.offload.hardware != crate::config::Hardware::Off;
    let mut via = BTreeMap::new();
    let mut devices = BTreeSet::new();
    let configured = present.iter().cloned().collect();
    for d in present {
        let names = if hw_offload {
            links.hardware_devices(&d)
        } else {
            vec![d.clone()]
        };
        if names != [d.as_str()] {
            via.insert(d, names.clone());
        }
        devices.extend(names);
    }
    let excludes = expand::all(&cfg.offload.exclude)?;
    let (priority, priority_why) =
        choose_priority(cfg.offload.priority, inputs.forward).map_err(PlanError::Priority)?;
    let mut ruleset = Desired {
        flowtable: Some(Flowtable {
            devices,
            counter: cfg.offload.counter,
            hw_offload,
        }),
        configured,
        matches,
        priority,
        excludes,
        missing,
        via,
        shaped: BTreeMap::new(),
    };
    let candidates = ruleset.shaping_candidates();
    ruleset.shaped = inputs
        .shaped
        .iter()
        .filter(|(d, _)| candidates.contains(d))
        .map(|(d, what)| (d.clone(), what.clone()))
        .collect();
    Ok(Plan {
        ruleset,
        priority_why,
    })
}

impl Desired {
    /// The same ruleset without the flowtable and the `flow add` rule, for kernels that
    /// lack nf_flow_table (the host-kernel test tier and the apply benchmark).
    pub fn without_flowtable(&self) -> Desired {
        Desired {
            flowtable: None,
            ..self.clone()
        }
    }

    /// The same ruleset with hardware offload switched off (the `auto` fallback): one
    /// software flowtable over the configured devices (`br-lan`, not its ports: the
    /// bridge's ingress hook sees what every port, Wi-Fi included, delivers to it).
    ///
    /// There is no mixed layout. A device can be in only one flowtable of a table, and a
    /// flow lives in one flowtable, found only by that flowtable's hooks; a flow between
    /// a hardware device and a software one would be fast in one direction only, and the
    /// forward hook sees `br-lan`, never which port (wired or Wi-Fi) a packet came from.
    pub fn software_only(&self) -> Desired {
        let mut d = self.clone();
        if let Some(ft) = &mut d.flowtable {
            ft.hw_offload = false;
            ft.devices = d.configured.clone();
        }
        d
    }

    /// Leaves `device` out of the flowtable (the kernel refused it), and out of the
    /// `flow add` match, with every configured device it stands for: their flows are no
    /// longer covered.
    pub fn remove_device(&mut self, device: &str) {
        if let Some(ft) = &mut self.flowtable {
            ft.devices.remove(device);
        }
        self.configured.remove(device);
        self.matches.remove(device);
        for (c, lowers) in &self.via {
            if lowers.iter().any(|l| l == device) {
                self.matches.remove(c);
            }
        }
    }

    /// Devices whose shaping matters: the flowtable's, the configured ones and the L3
    /// devices on them (SQM on `pppoe-wan` shapes what the carrier `wan` brings).
    pub fn shaping_candidates(&self) -> Vec<String> {
        let mut v: BTreeSet<String> = self.devices().map(str::to_string).collect();
        v.extend(self.configured.iter().cloned());
        for (c, names) in &self.matches {
            if self.configured.contains(c) {
                v.extend(names.iter().cloned());
            }
        }
        v.into_iter().collect()
    }

    /// The names `flow add` is limited to (both input and output among them).
    pub fn match_names(&self) -> BTreeSet<&str> {
        self.matches
            .values()
            .flatten()
            .map(String::as_str)
            .collect()
    }

    /// Our flowtables by name.
    pub fn flowtables(&self) -> impl Iterator<Item = (&'static str, &Flowtable)> {
        self.flowtable.iter().map(|f| (FLOWTABLE, f))
    }

    pub fn devices(&self) -> impl Iterator<Item = &str> {
        self.flowtables()
            .flat_map(|(_, ft)| ft.devices.iter().map(String::as_str))
    }

    /// Whether `other` differs from `self` only in which devices the flowtables hold, so
    /// the kernel can be brought from one to the other by adding and removing hooks
    /// (NEWFLOWTABLE / DELFLOWTABLE on the live flowtable) without recreating anything.
    /// The `flow add` match names configured devices whether present or not, so it stays.
    pub fn differs_only_in_devices(&self, other: &Desired) -> bool {
        let shape = |d: &Desired| {
            let mut d = d.clone();
            d.missing.clear();
            d.via.clear();
            d.shaped.clear();
            d.configured.clear();
            for ft in d.flowtable.iter_mut() {
                ft.devices.clear();
            }
            d
        };
        shape(self) == shape(other)
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
