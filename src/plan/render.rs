//! `Desired` as nft syntax: what `offloadd plan` prints and the golden tests compare.

use std::fmt;

use super::{
    priority_text, CtDir, Desired, ExcludeRule, CHAIN, FLOWTABLE, FLOWTABLE_PRIORITY,
    LABEL_ORIGINAL, LABEL_REPLY, TABLE,
};
use crate::config::IpPrefix;

fn ip_word(p: &IpPrefix) -> &'static str {
    if p.addr.is_ipv4() {
        "ip"
    } else {
        "ip6"
    }
}

impl fmt::Display for ExcludeRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(p) = self.l4proto {
            parts.push(format!("meta l4proto {p}"));
        }
        if let Some(a) = &self.saddr {
            parts.push(format!("ct original {} saddr {a}", ip_word(a)));
        }
        if let Some(a) = &self.daddr {
            parts.push(format!("ct original {} daddr {a}", ip_word(a)));
        }
        if let Some(p) = &self.sport {
            parts.push(format!("ct original proto-src {p}"));
        }
        if let Some(p) = &self.dport {
            parts.push(format!("ct original proto-dst {p}"));
        }
        if let Some(m) = &self.mark {
            parts.push(m.to_string());
        }
        if let Some(d) = self.dir {
            parts.push(match d {
                CtDir::Original => "ct direction original".into(),
                CtDir::Reply => "ct direction reply".into(),
            });
        }
        if let Some(i) = &self.iifname {
            parts.push(format!("iifname \"{i}\""));
        }
        if let Some(o) = &self.oifname {
            parts.push(format!("oifname \"{o}\""));
        }
        parts.push("return".into());
        f.write_str(&parts.join(" "))
    }
}

/// Renders as an nft script that `nft -f` accepts.
impl fmt::Display for Desired {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "table inet {TABLE} {{")?;
        for (name, ft) in self.flowtables() {
            writeln!(f, "\tflowtable {name} {{")?;
            writeln!(f, "\t\thook ingress priority {FLOWTABLE_PRIORITY}")?;
            if !ft.devices.is_empty() {
                let devs: Vec<&str> = ft.devices.iter().map(String::as_str).collect();
                writeln!(f, "\t\tdevices = {{ {} }}", devs.join(", "))?;
            }
            if ft.counter {
                writeln!(f, "\t\tcounter")?;
            }
            if ft.hw_offload {
                writeln!(f, "\t\tflags offload")?;
            }
            writeln!(f, "\t}}\n")?;
        }
        writeln!(f, "\tchain {CHAIN} {{")?;
        writeln!(
            f,
            "\t\ttype filter hook forward priority {}; policy accept;",
            priority_text(self.priority)
        )?;
        for r in &self.excludes {
            writeln!(f, "\t\t{r}")?;
        }
        let names = self.match_names();
        if self.flowtable.is_some() && !names.is_empty() {
            let set: Vec<String> = names.iter().map(|d| format!("\"{d}\"")).collect();
            let set = set.join(", ");
            writeln!(f, "\t\tct direction original ct label set {LABEL_ORIGINAL}")?;
            writeln!(f, "\t\tct direction reply ct label set {LABEL_REPLY}")?;
            writeln!(f, "\t\tiifname {{ {set} }} oifname {{ {set} }} ct label {LABEL_ORIGINAL} ct label {LABEL_REPLY} ct state established meta l4proto {{ tcp, udp }} flow add @{FLOWTABLE}")?;
        }
        writeln!(f, "\t}}")?;
        writeln!(f, "}}")
    }
}
