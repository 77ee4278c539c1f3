//! `offloadd run`: load, plan, apply, then keep the ruleset right until told to stop.
//!
//! SIGHUP re-reads the config and applies the difference in one batch; a bad config or
//! a refused batch leaves the running ruleset as it was. SIGTERM/SIGINT delete our table
//! (offloaded flows fall back to the normal path at once) and exit 0.

mod react;
mod sysctl;
mod view;

pub use view::duplicates;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;
use tracing::{debug, error, info, warn};

use crate::config::{Config, Hardware, Mode, Source};
use crate::conntrack::{self, WatcherOptions};
use crate::control;
use crate::link::{self, LinkSnapshot};
use crate::nft::{Actual, Applied, NftError, NftHandle};
use crate::plan::{plan, TABLE};
use crate::status::Status;

/// How many times to re-plan when a device vanishes between snapshot and apply.
const DEVICE_RACE_RETRIES: usize = 5;
/// How long to wait for the link watcher to report the device that vanished.
const DEVICE_RACE_WAIT: Duration = Duration::from_millis(50);
/// A burst of link events (a bridge and its ports, a VLAN and its parent's update)
/// settles for this long before the flowtable is converged once.
const LINK_SETTLE: Duration = Duration::from_millis(20);

/// With `mode = "auto"`, how often to look again whether another flowtable covers our
/// devices (fw4 turned offloading on or off): observe <-> manage without a restart.
const ROLE_CHECK: Duration = Duration::from_secs(2);

type Links = watch::Receiver<LinkSnapshot>;

/// Notifications of one `nft -f` or fw4 reload arrive within a few ms; wait this long
/// after the first so a burst costs one flush.
const FLUSH_SETTLE: Duration = Duration::from_millis(50);

pub struct RunOptions {
    pub config: Source,
    /// Control socket for status, flows and metrics.
    pub socket: PathBuf,
}

/// What the daemon decided to do with the config's mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    Manage { why: String },
    Observe { why: String },
}

/// Resolves `auto`: observe when a flowtable we do not own already covers one of our
/// devices (fw4 with flow_offloading=1, a hand-written ruleset), else manage.
pub fn decide_role(cfg: &Config, actual: &Actual) -> Role {
    match cfg.mode {
        Mode::Manage => Role::Manage {
            why: "mode = \"manage\"".into(),
        },
        Mode::Observe => Role::Observe {
            why: "mode = \"observe\"".into(),
        },
        Mode::Auto => {
            for ft in &actual.foreign_flowtables {
                if let Some(dev) = cfg.offload.devices.iter().find(|d| ft.devices.contains(d)) {
                    return Role::Observe {
                        why: format!(
                            "mode = \"auto\" and flowtable {} in table {} already covers {dev}",
                            ft.name, ft.table
                        ),
                    };
                }
            }
            Role::Manage {
                why: "mode = \"auto\" and no other flowtable covers the configured devices".into(),
            }
        }
    }
}

/// The devices to plan with: the link watcher's snapshot and, when hardware offload is
/// asked for, the lower devices of the configured ones (from sysfs, as fw4 does).
fn links_for(cfg: &Config, links: &Links) -> LinkSnapshot {
    let mut snap = links.borrow().clone();
    if cfg.offload.hardware != Hardware::Off {
        snap.resolve_lowers(&cfg.offload.devices, Path::new(link::SYSFS_NET));
    }
    snap
}

async fn apply(
    nft: &NftHandle,
    cfg: &Config,
    path: &Path,
    links: &Links,
    announce: bool,
) -> anyhow::Result<Applied> {
    let mut tries = 0;
    loop {
        let mut desired = plan(cfg, &links_for(cfg, links))
            .map_err(|e| anyhow::anyhow!("{}:{}: {e}", path.display(), e.line()))?;
        let devices: Vec<String> = desired.devices().map(str::to_string).collect();
        match link::shaped_now(&devices).await {
            Ok(s) => desired.shaped = s,
            Err(e) => warn!("{e}; SQM/QoS on flowtable devices is not detected"),
        }
        // At start and reload; after link events the "applied" line lists them.
        for dev in desired.missing.iter().filter(|_| announce && tries == 0) {
            warn!(device = %dev, "configured device does not exist; added when it appears");
        }
        match nft.apply(desired, cfg.offload.hardware).await {
            Err(NftError::DeviceGone { devices }) if tries < DEVICE_RACE_RETRIES => {
                tries += 1;
                warn!(devices = ?devices, "a device vanished while applying; planning again");
                tokio::time::sleep(DEVICE_RACE_WAIT).await;
            }
            Err(e) => return Err(e.into()),
            Ok(a) => {
                let devices: Vec<&str> = a.desired.devices().collect();
                if a.changed {
                    info!(table = TABLE, devices = ?devices, missing = ?a.desired.missing, hardware = %a.hardware, owner = a.owner, took_ms = a.took.as_millis() as u64, "applied ruleset");
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
async fn apply_and_record(
    nft: &NftHandle,
    cfg: &Config,
    path: &Path,
    links: &Links,
    status: &Mutex<Status>,
    announce: bool,
) -> anyhow::Result<Applied> {
    let started = Instant::now();
    let result = apply(nft, cfg, path, links, announce).await;
    let mut st = status.lock().unwrap();
    match &result {
        Ok(a) => {
            let before = st.clone();
            view::applied(&mut st, cfg, a);
            react::log_news(&before, &st, announce);
        }
        Err(e) => view::failed(&mut st, e, started.elapsed()),
    }
    result
}

pub async fn run(opts: RunOptions) -> anyhow::Result<()> {
    let mut cfg = opts.config.load()?;
    let exclude_file = opts.config.exclude_file();
    let status = Arc::new(Mutex::new(view::initial(&cfg, &opts.config.to_string())));
    // Bind first: a second daemon must stop before it touches the kernel.
    let listener = control::bind(&opts.socket)?;
    let _socket_file = RemoveOnDrop(opts.socket.clone());
    let nft = NftHandle::spawn()?;
    let mut links = link::spawn_link_watcher()
        .await
        .context("watching network devices (rtnetlink link events)")?;
    let mut links_alive = true;
    let mut ruleset = match crate::nft::monitor::spawn_monitor() {
        Ok(rx) => Some(rx),
        Err(e) => {
            warn!("cannot subscribe to nf_tables notifications ({e}); firewall changes will not flush the flowtable");
            None
        }
    };
    let mut sysctls = sysctl::Sysctls::default();
    let mut role_timer = tokio::time::interval(ROLE_CHECK);
    role_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sighup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;

    let watcher = match conntrack::spawn_watcher(WatcherOptions {
        resync_interval: cfg.conntrack.resync_interval,
        event_buffer: cfg.conntrack.event_buffer,
    }) {
        Ok(w) => Some(w),
        Err(e) => {
            warn!("{e}; flows will not be reported");
            status.lock().unwrap().conntrack_error = Some(e.to_string());
            None
        }
    };
    tokio::spawn(control::serve(
        listener,
        control::Shared {
            status: status.clone(),
            watcher,
        },
    ));

    let actual = nft.read().await?;
    let mut role = decide_role(&cfg, &actual);
    view::set_role(&mut status.lock().unwrap(), &role, &cfg, &actual);
    match &role {
        Role::Manage { why } => {
            info!(why = %why, "managing table inet offloadd");
            for d in view::duplicates(&cfg, &actual) {
                warn!("{d}");
            }
            apply_and_record(&nft, &cfg, &exclude_file, &links, &status, true).await?;
            sysctls.apply(&cfg.timeouts);
        }
        Role::Observe { why } => info!(why = %why, "observing; creating nothing"),
    }
    crate::notify::notify("READY=1");

    loop {
        tokio::select! {
            _ = sighup.recv() => {
                info!(config = %opts.config, "reloading");
                let started = Instant::now();
                let new_cfg = match opts.config.load() {
                    Ok(c) => c,
                    Err(e) => {
                        error!("{e}; keeping the running ruleset");
                        view::failed(&mut status.lock().unwrap(), &e.into(), started.elapsed());
                        continue;
                    }
                };
                let actual = match nft.read().await {
                    Ok(actual) => actual,
                    Err(e) => { error!("{e}; keeping the running ruleset"); continue; }
                };
                let new_role = decide_role(&new_cfg, &actual);
                if let (Role::Manage { .. }, Role::Observe { why }) = (&role, &new_role) {
                    info!(why = %why, "switching to observe; removing table inet offloadd");
                    if let Err(e) = nft.remove().await { error!("{e}"); continue; }
                    sysctls.restore();
                }
                cfg = new_cfg;
                role = new_role;
                view::set_role(&mut status.lock().unwrap(), &role, &cfg, &actual);
                if let Role::Manage { .. } = role {
                    match apply_and_record(&nft, &cfg, &exclude_file, &links, &status, true).await {
                        Ok(_) => sysctls.apply(&cfg.timeouts),
                        Err(e) => error!("{e:#}; the running ruleset is unchanged"),
                    }
                }
            }
            changed = links.changed(), if links_alive => {
                if changed.is_err() {
                    error!("the link watcher stopped; devices that appear later are not added until a reload");
                    links_alive = false;
                    continue;
                }
                tokio::time::sleep(LINK_SETTLE).await;
                links.borrow_and_update();
                match role {
                    Role::Manage { .. } => {
                        if let Err(e) = apply_and_record(&nft, &cfg, &exclude_file, &links, &status, false).await {
                            error!("{e:#}; the running ruleset is unchanged");
                        }
                    }
                    Role::Observe { .. } => {
                        if let Ok(actual) = nft.read().await {
                            view::set_role(&mut status.lock().unwrap(), &role, &cfg, &actual);
                        }
                    }
                }
            }
            change = react::recv_change(&mut ruleset), if ruleset.is_some() => {
                let Some(change) = change else {
                    ruleset = None;
                    continue;
                };
                let mut tables = change.tables;
                // One fw4 reload is several transactions: flush once for the burst.
                tokio::time::sleep(FLUSH_SETTLE).await;
                while let Some(Ok(more)) = ruleset.as_mut().map(|r| r.try_recv()) {
                    tables.extend(more.tables);
                }
                tables.sort();
                tables.dedup();
                if matches!(role, Role::Manage { .. }) && cfg.offload.flush_on_change {
                    react::flush(&nft, tables, &status).await;
                } else {
                    debug!(tables = ?tables, "another table changed; not flushing (observing, or flush_on_firewall_change = false)");
                }
            }
            _ = role_timer.tick(), if cfg.mode == Mode::Auto => {
                let Ok(actual) = nft.read().await else { continue };
                let new_role = decide_role(&cfg, &actual);
                let switch = !matches!((&role, &new_role), (Role::Manage { .. }, Role::Manage { .. }) | (Role::Observe { .. }, Role::Observe { .. }));
                if switch {
                    if let (Role::Manage { .. }, Role::Observe { why }) = (&role, &new_role) {
                        info!(why = %why, "another flowtable now covers our devices; observing and removing table inet offloadd");
                        if let Err(e) = nft.remove().await { error!("{e}"); continue; }
                    sysctls.restore();
                    }
                    role = new_role;
                    view::set_role(&mut status.lock().unwrap(), &role, &cfg, &actual);
                    if let Role::Manage { why } = &role {
                        info!(why = %why, "no other flowtable covers our devices any more; managing table inet offloadd");
                        match apply_and_record(&nft, &cfg, &exclude_file, &links, &status, true).await {
                            Ok(_) => sysctls.apply(&cfg.timeouts),
                            Err(e) => error!("{e:#}; the running ruleset is unchanged"),
                        }
                    }
                } else if let Role::Observe { .. } = role {
                    view::set_role(&mut status.lock().unwrap(), &role, &cfg, &actual);
                }
            }
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
        }
    }
    crate::notify::notify("STOPPING=1");
    if let Role::Manage { .. } = role {
        sysctls.restore();
        match nft.remove().await {
            Ok(_) => info!(
                table = TABLE,
                "removed table; offloaded flows continue on the normal path"
            ),
            Err(e) => error!("{e}"),
        }
    }
    Ok(())
}

/// The control socket file goes away with the daemon, whichever way `run` returns.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
