//! `check`'s facts, read from the config, sysfs, /proc and the kernel (by trial batches
//! that are never committed): nothing is changed.

use std::path::Path;

use super::{Facts, StatusFilter, MODULES};
use crate::config::{Hardware, Source};
use crate::link::LinkSnapshot;
use crate::nft::{Kernel, Nft, NftError};
use crate::plan::{plan, Inputs, PlanError};

/// Tries an offloaded-only dump (and, if it returned nothing, counts the table).
fn probe_status_filter() -> Option<StatusFilter> {
    use crate::conntrack::{CtSocket, DumpFilter, IPS_OFFLOAD};
    let mut sock = CtSocket::for_dumps().ok()?;
    let started = std::time::Instant::now();
    let mut without_bit = 0u64;
    let count = sock
        .dump(DumpFilter::Offloaded, |ev| {
            without_bit += u64::from(ev.entry.status & IPS_OFFLOAD == 0);
        })
        .ok()?;
    if without_bit > 0 {
        return Some(StatusFilter::Ignored {
            entries: count.entries,
            took_ms: started.elapsed().as_secs_f64() * 1000.0,
        });
    }
    let all = sock.dump(DumpFilter::All, |_| {}).ok()?;
    Some(if all.entries > count.entries {
        StatusFilter::Works
    } else {
        StatusFilter::Unknown
    })
}

pub fn gather(source: &Source) -> Facts {
    let mut x = Facts {
        source: source.to_string(),
        ..Facts::default()
    };
    x.modules = MODULES
        .iter()
        .map(|m| (*m, Path::new("/sys/module").join(m).exists()))
        .collect();
    x.ip_forward = sysctl_bool("net/ipv4/ip_forward");
    x.status_filter = probe_status_filter();
    x.conntrack_acct = sysctl_bool("net/netfilter/nf_conntrack_acct");
    let cfg = match source.load() {
        Ok(c) => c,
        Err(e) => {
            x.config = Some(Err(e.to_string()));
            return x;
        }
    };
    x.config = Some(Ok(cfg.clone()));
    x.textfile = cfg
        .metrics
        .textfile
        .as_deref()
        .map(|p| crate::publish::check_target(p).map_err(|e| e.to_string()));
    let mut links = LinkSnapshot::current().unwrap_or_default();
    if cfg.offload.hardware != Hardware::Off {
        links.resolve_lowers(&cfg.offload.devices, Path::new(crate::link::SYSFS_NET));
    }
    // With the links alone first: what the config asks for, and the devices whose
    // qdiscs and drivers matter. The plan with every input follows below.
    let mut desired = match plan(&cfg, &Inputs::links(&links)) {
        Ok(p) => p.ruleset,
        Err(e) => {
            x.plan = Some(Err(e.at(&source.exclude_file())));
            return x;
        }
    };
    x.plan = Some(Ok(desired.clone()));
    if desired.devices().next().is_none() {
        x.present = links.names_but_lo();
    }
    let sysfs = Path::new(crate::link::SYSFS_NET);
    x.mlx5 = desired
        .devices()
        .filter_map(|d| crate::link::mlx5_port(sysfs, d))
        .map(|p| {
            let hw_tc = crate::link::feature(&p.device, "hw-tc-offload").map(|f| f.active);
            (p, hw_tc)
        })
        .collect();
    let devices = desired.shaping_candidates();
    if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        x.shaped = rt
            .block_on(crate::link::shaped_now(&devices))
            .unwrap_or_default();
    }
    let mut nft = match Nft::open() {
        Ok(n) => n,
        Err(e) => {
            x.denied = Some(e.to_string());
            return x;
        }
    };
    if let Ok(actual) = nft.read() {
        x.duplicates = crate::daemon::covering(&cfg, &actual);
        x.live = actual.table.is_some();
        let live = actual.chains.iter().find_map(|c| c.hook.map(|h| h.1));
        let inputs = Inputs {
            links: &links,
            forward: &actual.foreign_forward,
            shaped: &x.shaped,
        };
        match plan(&cfg, &inputs) {
            Ok(p) => desired = p.ruleset,
            Err(PlanError::Priority(e)) => x.priority_error = Some(e),
            Err(e) => x.plan = Some(Err(e.at(&source.exclude_file()))),
        }
        x.priority = match live {
            Some(p) => Some((p, true)),
            None if x.priority_error.is_none() => Some((desired.priority, false)),
            None => None,
        };
        x.forward_chains = actual.foreign_forward;
        if matches!(x.plan, Some(Ok(_))) {
            x.plan = Some(Ok(desired.clone()));
        }
    }
    let trial = if x.live {
        Ok(())
    } else {
        nft.trial(&desired.software_only())
    };
    match trial {
        Ok(()) => x.trial = Some(Ok(())),
        Err(NftError::NoFlowtableSupport) => {
            x.no_flowtables = true;
            x.trial = Some(Err(NftError::NoFlowtableSupport.to_string()));
        }
        Err(
            e @ NftError::Refused {
                errno: libc::EPERM, ..
            },
        ) => x.denied = Some(e.to_string()),
        Err(e) => x.trial = Some(Err(e.to_string())),
    }
    if x.denied.is_none() {
        x.features = Some(nft.features().map_err(|e| e.to_string()));
    }
    if cfg.offload.hardware != Hardware::Off && !x.no_flowtables && x.denied.is_none() {
        for dev in desired.devices() {
            let r = nft.probe(dev, true).map_err(|e| match e {
                NftError::HardwareRefused { reason, .. } => {
                    let hint = crate::link::hw_tc_offload_hint(dev)
                        .map(|h| format!("; {h}"))
                        .unwrap_or_default();
                    format!("{}{hint}", reason.split(';').next().unwrap_or(&reason))
                }
                other => other.to_string(),
            });
            x.hardware.push((dev.to_string(), r));
        }
    }
    x
}

fn sysctl_bool(path: &str) -> Option<bool> {
    let v = std::fs::read_to_string(Path::new("/proc/sys").join(path)).ok()?;
    Some(v.trim() != "0")
}
