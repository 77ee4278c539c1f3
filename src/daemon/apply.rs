//! One apply as the daemon does it: plan from the config and the links of now, send it
//! to the nft thread, plan again if a device vanished meanwhile, record the outcome in
//! `status`.

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use super::{view, Links};
use crate::config::{Config, Hardware};
use crate::link::{self, LinkSnapshot};
use crate::nft::{Applied, ApplyRequest, NftError, NftHandle};
use crate::plan::{plan, Inputs, Plan, TABLE};
use crate::view::status::Status;

/// How many times to re-plan when a device vanishes between snapshot and read-back.
const DEVICE_RACE_RETRIES: usize = 5;
/// How long to wait for the link watcher to report the device that vanished.
const DEVICE_RACE_WAIT: Duration = Duration::from_millis(50);

/// Why an apply runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// Start or reload: log every device problem, probe hardware afresh.
    Start,
    /// Devices came or went, or a flush is due.
    Event,
}

/// The devices to plan with: the link watcher's snapshot and, when hardware offload is
/// asked for, the lower devices of the configured ones (from sysfs, as fw4 does).
fn links_for(cfg: &Config, mut snap: LinkSnapshot) -> LinkSnapshot {
    if cfg.offload.hardware != Hardware::Off {
        snap.resolve_lowers(&cfg.offload.devices, Path::new(link::SYSFS_NET));
    }
    snap
}

/// Gathers the plan's inputs and plans, the blocking parts on a blocking thread (sysfs
/// is read for lower devices, and a config near the limits of docs/limits.md makes
/// thousands of rules): `status` answers meanwhile.
async fn plan_now(
    nft: &NftHandle,
    cfg: &Config,
    path: &Path,
    links: &Links,
) -> anyhow::Result<Plan> {
    let (c, snap) = (cfg.clone(), links.borrow().clone());
    let snap = tokio::task::spawn_blocking(move || links_for(&c, snap)).await?;
    // The devices whose qdiscs matter, from a plan with the links alone (pure, cheap).
    let candidates = plan(cfg, &Inputs::links(&snap))
        .map_err(|e| anyhow::anyhow!(e.at(path)))?
        .ruleset
        .shaping_candidates();
    // After every other forward chain as the kernel has them now; a chain added later
    // is a ruleset change, which brings us back here.
    let forward = nft.read().await?.foreign_forward;
    let shaped = link::shaped_now(&candidates).await.unwrap_or_else(|e| {
        warn!("{e}; SQM/QoS on flowtable devices is not detected");
        Default::default()
    });
    let (c, path) = (cfg.clone(), path.to_owned());
    tokio::task::spawn_blocking(move || {
        let inputs = Inputs {
            links: &snap,
            forward: &forward,
            shaped: &shaped,
        };
        plan(&c, &inputs).map_err(|e| anyhow::anyhow!(e.at(&path)))
    })
    .await?
}

async fn apply(
    nft: &NftHandle,
    cfg: &Config,
    path: &Path,
    links: &Links,
    why: Why,
    flush: bool,
) -> anyhow::Result<Applied> {
    let mut tries = 0;
    // A commit with the flush asked answers the request (nft's executor clears it on
    // any commit); `flushed` says whether existing flowtables were replaced (report).
    let (mut flush_done, mut flushed) = (false, false);
    loop {
        let Plan {
            ruleset: desired,
            priority_why,
        } = plan_now(nft, cfg, path, links).await?;
        // At start and reload; after link events the "applied" line lists them.
        for dev in desired
            .missing
            .iter()
            .filter(|_| why == Why::Start && tries == 0)
        {
            warn!(device = %dev, "configured device does not exist; added when it appears");
        }
        let request = ApplyRequest {
            hardware: cfg.offload.hardware,
            reprobe: why == Why::Start && tries == 0,
            flush: flush && !flush_done,
        };
        match nft.apply(desired, request).await {
            Err(NftError::DeviceGone { devices }) if tries < DEVICE_RACE_RETRIES => {
                tries += 1;
                info!(devices = ?devices, "a device vanished while applying; planning again");
                tokio::time::sleep(DEVICE_RACE_WAIT).await;
            }
            Err(e) => return Err(e.into()),
            Ok(a) if !a.vanished.is_empty() && tries < DEVICE_RACE_RETRIES => {
                // Committed without them; the flush, if asked for, has happened.
                tries += 1;
                flush_done |= a.changed;
                flushed |= a.flushed;
                tokio::time::sleep(DEVICE_RACE_WAIT).await;
            }
            Ok(mut a) => {
                a.flushed |= flushed;
                a.priority_why = priority_why;
                let devices: Vec<&str> = a.desired.devices().collect();
                if a.changed {
                    info!(table = TABLE, devices = ?devices, missing = ?a.desired.missing, hardware = %a.hardware, priority = a.desired.priority, priority_why = %a.priority_why, owner = a.owner, took_ms = a.took.as_millis() as u64, "applied ruleset");
                } else {
                    debug!(table = TABLE, "ruleset unchanged");
                }
                return Ok(a);
            }
        }
    }
}

/// Applies and records the outcome in `status` (success or the error that kept the
/// previous ruleset).
pub async fn apply_and_record(
    nft: &NftHandle,
    cfg: &Config,
    path: &Path,
    links: &Links,
    status: &Mutex<Status>,
    why: Why,
    flush: bool,
) -> anyhow::Result<Applied> {
    let started = Instant::now();
    let result = apply(nft, cfg, path, links, why, flush).await;
    let mut st = status.lock().unwrap();
    match &result {
        Ok(a) => {
            let before = st.clone();
            view::applied(&mut st, cfg, a);
            st.present_devices = if a.desired.devices().next().is_none() {
                links.borrow().names_but_lo()
            } else {
                vec![]
            };
            if why == Why::Start && a.desired.devices().next().is_none() {
                warn!(configured = ?cfg.offload.devices, devices_here = ?st.present_devices, "no flowtable devices: none of the configured devices exists, so nothing will be offloaded; set [offload] devices to this machine's devices and reload");
            }
            super::react::log_news(&before, &st, why == Why::Start);
        }
        Err(e) => view::failed(&mut st, e, started.elapsed()),
    }
    result
}

/// Whether a failed apply may succeed if simply tried again later (the kernel was busy,
/// answers were lost, devices moved under it), as opposed to one that needs the admin
/// (a config the kernel refuses, missing kernel support, hardware = "require").
pub fn transient(e: &anyhow::Error) -> bool {
    match e.downcast_ref::<NftError>() {
        Some(NftError::Io { .. } | NftError::ReadBack(_) | NftError::DeviceGone { .. }) => true,
        Some(NftError::Refused { errno, .. }) => matches!(
            *errno,
            libc::EBUSY | libc::ERESTART | libc::ENOBUFS | libc::ENOMEM | libc::EAGAIN
        ),
        _ => false,
    }
}

/// Delay before retry number `n` (1-based) of a failed apply: 200 ms doubling to 10 s.
pub fn backoff(n: u32) -> Duration {
    (Duration::from_millis(200) * 2u32.saturating_pow(n.saturating_sub(1)))
        .min(Duration::from_secs(10))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_kernels_and_lost_answers_are_retried_config_errors_are_not() {
        let io = NftError::Io {
            context: "x",
            error: std::io::Error::other("timeout"),
        };
        assert!(transient(&io.into()));
        assert!(transient(&NftError::ReadBack("moved".into()).into()));
        assert!(!transient(&NftError::NoFlowtableSupport.into()));
        let refused = |errno| NftError::Refused {
            what: "w".into(),
            devices: vec![],
            name: "E",
            errno,
            cause: "c".into(),
        };
        assert!(transient(&refused(libc::EBUSY).into()));
        assert!(!transient(&refused(libc::EINVAL).into()));
        assert!(!transient(&anyhow::anyhow!("offloadd.toml:3: bad")));
        let b: Vec<u64> = (1..8).map(|n| backoff(n).as_millis() as u64).collect();
        assert_eq!(b, [200, 400, 800, 1600, 3200, 6400, 10000]);
    }
}
