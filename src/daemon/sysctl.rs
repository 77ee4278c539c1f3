//! `[timeouts]`: the flowtable's idle timeouts are global sysctls
//! (net.netfilter.nf_flowtable_{tcp,udp}_timeout, 30 s by default). offloadd sets them
//! while it manages and puts back the values it found when it stops or hands over.
//! They exist once nf_flow_table is loaded, so they are set after the first apply.
//! `[conntrack] accounting` is net.netfilter.nf_conntrack_acct the same way; the kernel
//! gives counters only to entries created while it is on.

use std::path::{Path, PathBuf};

use tracing::{info, warn};

use crate::config::Config;

const DIR: &str = "/proc/sys/net/netfilter";

/// The values found before we changed them, to restore.
#[derive(Default)]
pub struct Sysctls {
    saved: Vec<(PathBuf, String)>,
}

impl Sysctls {
    /// Makes the sysctls match `t`: sets the given ones (saving the old value the first
    /// time), restores any we set before that `t` no longer gives.
    pub fn apply(&mut self, cfg: &Config) {
        let secs = |d: Option<std::time::Duration>| d.map(|d| d.as_secs().to_string());
        for (name, value) in [
            ("nf_flowtable_tcp_timeout", secs(cfg.timeouts.tcp)),
            ("nf_flowtable_udp_timeout", secs(cfg.timeouts.udp)),
            (
                "nf_conntrack_acct",
                cfg.conntrack.accounting.then(|| "1".to_string()),
            ),
        ] {
            let path = Path::new(DIR).join(name);
            match value {
                Some(v) => {
                    if !self.saved.iter().any(|(p, _)| *p == path) {
                        match std::fs::read_to_string(&path) {
                            Ok(old) => self.saved.push((path.clone(), old.trim().to_string())),
                            Err(e) => {
                                warn!(sysctl = %path.display(), "cannot read ({e}); not set");
                                continue;
                            }
                        }
                    }
                    match std::fs::write(&path, &v) {
                        Ok(()) => {
                            info!(sysctl = name, value = %v, "set sysctl while offloadd runs")
                        }
                        Err(e) => warn!(sysctl = %path.display(), "cannot write ({e}); not set"),
                    }
                }
                None => self.restore_one(&path),
            }
        }
    }

    /// Puts back every value we changed.
    pub fn restore(&mut self) {
        let paths: Vec<PathBuf> = self.saved.iter().map(|(p, _)| p.clone()).collect();
        for p in paths {
            self.restore_one(&p);
        }
    }

    fn restore_one(&mut self, path: &Path) {
        if let Some(i) = self.saved.iter().position(|(p, _)| p == path) {
            let (p, old) = self.saved.remove(i);
            match std::fs::write(&p, &old) {
                Ok(()) => info!(sysctl = %p.display(), value = %old, "restored sysctl"),
                Err(e) => warn!(sysctl = %p.display(), "cannot restore {old} ({e})"),
            }
        }
    }
}
