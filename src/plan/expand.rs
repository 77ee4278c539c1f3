//! Exclusions into `return` rules, counted before any is built.
//!
//! An entry's lists multiply: 3,000 input by 3,000 output devices are 18 million rules,
//! and building them before checking took 2.1 GB for 52 KB of config; four lists of
//! 65,536 items wrapped the product to 0 in release builds (two lists on 32-bit). So the
//! count comes from the lists' lengths, in saturating arithmetic, and is checked per entry
//! and for all entries together before a rule is made: what is built is at most
//! `MAX_TOTAL_EXCLUDE_RULES + MAX_EXCLUDE_RULES` rules, whatever the config.

use crate::config::{Exclude, L4Proto};

use super::{CtDir, ExcludeRule, PlanError, MAX_EXCLUDE_RULES, MAX_TOTAL_EXCLUDE_RULES};

/// The rules of all `exclude` entries, in order; refused when one entry or all of them
/// together would pass the caps.
pub(super) fn all(exclude: &[Exclude]) -> Result<Vec<ExcludeRule>, PlanError> {
    let mut out = Vec::new();
    let mut total = 0usize;
    for e in exclude {
        let count = rule_count(e);
        if count > MAX_EXCLUDE_RULES {
            return Err(PlanError::TooManyRules {
                line: e.line,
                count,
            });
        }
        total += count;
        if total > MAX_TOTAL_EXCLUDE_RULES {
            return Err(PlanError::TooManyRulesInAll {
                line: e.line,
                count: total,
            });
        }
        out.extend(expand(e)?);
    }
    Ok(out)
}

/// How many rules `e` expands to at most (pairs of addresses of different families are
/// left out later), from its lists' lengths alone; `usize::MAX` when that does not fit.
fn rule_count(e: &Exclude) -> usize {
    let items = |len: usize| len.max(1);
    let has_ports = !e.sport.is_empty() || !e.dport.is_empty();
    let protos = if e.l4proto.is_none() && has_ports {
        2
    } else {
        1
    };
    // Each (input, output) pair is matched in both packet directions.
    let devices = if e.iif.is_empty() && e.oif.is_empty() {
        1
    } else {
        2usize
            .saturating_mul(items(e.iif.len()))
            .saturating_mul(items(e.oif.len()))
    };
    [
        items(e.saddr.len()),
        items(e.daddr.len()),
        items(e.sport.len()),
        items(e.dport.len()),
        devices,
    ]
    .into_iter()
    .fold(protos, usize::saturating_mul)
}

/// One rule per combination of list items (the lists are ORed). Ports need a protocol
/// for the kernel to know which header they are in, so a port match without `l4proto`
/// becomes one rule for TCP and one for UDP. The caller has checked `rule_count`.
fn expand(e: &Exclude) -> Result<Vec<ExcludeRule>, PlanError> {
    fn or_any<T: Clone>(v: &[T]) -> Vec<Option<T>> {
        if v.is_empty() {
            vec![None]
        } else {
            v.iter().cloned().map(Some).collect()
        }
    }
    let has_ports = !e.sport.is_empty() || !e.dport.is_empty();
    let protos = match (e.l4proto, has_ports) {
        (Some(p), _) => vec![Some(p)],
        (None, true) => vec![Some(L4Proto::Tcp), Some(L4Proto::Udp)],
        (None, false) => vec![None],
    };
    let (saddrs, daddrs) = (or_any(&e.saddr), or_any(&e.daddr));
    let (sports, dports) = (or_any(&e.sport), or_any(&e.dport));
    // (dir, packet iifname, packet oifname) for each (connection iif, connection oif).
    let mut devices: Vec<(Option<CtDir>, Option<String>, Option<String>)> = Vec::new();
    let (iifs, oifs) = (or_any(&e.iif), or_any(&e.oif));
    for i in &iifs {
        for o in &oifs {
            if i.is_none() && o.is_none() {
                devices.push((None, None, None));
            } else {
                devices.push((Some(CtDir::Original), i.clone(), o.clone()));
                devices.push((Some(CtDir::Reply), o.clone(), i.clone()));
            }
        }
    }
    let mut out = Vec::with_capacity(rule_count(e));
    for &l4proto in &protos {
        for &saddr in &saddrs {
            for &daddr in &daddrs {
                if let (Some(s), Some(d)) = (saddr, daddr) {
                    if s.addr.is_ipv4() != d.addr.is_ipv4() {
                        continue;
                    }
                }
                for &sport in &sports {
                    for &dport in &dports {
                        for (dir, iifname, oifname) in &devices {
                            out.push(ExcludeRule {
                                l4proto,
                                saddr,
                                daddr,
                                sport,
                                dport,
                                mark: e.mark,
                                dir: *dir,
                                iifname: iifname.clone(),
                                oifname: oifname.clone(),
                                line: e.line,
                            });
                        }
                    }
                }
            }
        }
    }
    if out.is_empty() {
        return Err(PlanError::Impossible { line: e.line });
    }
    Ok(out)
}

#[cfg(test)]
#[path = "expand_tests.rs"]
mod tests;
