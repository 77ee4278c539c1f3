//! `offloadd run`: load, plan, apply, then keep the ruleset right until told to stop.
//!
//! SIGHUP re-reads the config and applies the difference in one batch; a bad config or
//! a refused batch leaves the running ruleset as it was. SIGTERM/SIGINT delete our table
//! (offloaded flows fall back to the normal path at once) and exit 0. Nothing here
//! blocks: the kernel is talked to from the nft and conntrack threads.

mod apply;
pub mod caps;
mod flush;
mod history;
mod notify;
mod react;
mod sysctl;
mod view;

pub use view::{covering, duplicates};

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;
use tracing::{debug, error, info, warn};

use self::apply::{apply_and_record, backoff, transient, Why};
use self::flush::FlushSchedule;
use crate::config::{Config, Mode, Source};
use crate::conntrack::{self, WatcherOptions};
use crate::control;
use crate::link::{self, LinkSnapshot};
use crate::nft::{Actual, NftHandle};
use crate::plan::TABLE;
use crate::publish::Publisher;

/// A burst of link events (a bridge and its ports, a VLAN and its parent's update)
/// settles for this long before the flowtable is converged once.
const LINK_SETTLE: Duration = Duration::from_millis(20);

/// With `mode = "auto"`, how often to look again whether another flowtable covers our
/// devices (fw4 turned offloading on or off): observe <-> manage without a restart.
/// A ruleset notification makes the check run at once; the tick is the fallback.
const ROLE_CHECK: Duration = Duration::from_secs(2);

type Links = watch::Receiver<LinkSnapshot>;

pub struct RunOptions {
    pub config: Source,
    /// What `drop_privileges` did before the runtime started.
    pub privileges: std::io::Result<caps::Dropped>,
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

fn explain_rules(cfg: &Config, exclude_file: &std::path::Path) -> crate::view::explain::Rules {
    crate::view::explain::Rules {
        exclude: cfg.offload.exclude.clone(),
        exclude_file: exclude_file.display().to_string(),
        l3_devices: cfg.offload.l3_devices.clone(),
    }
}

/// Keeps only the capabilities the daemon needs (caps.rs), before any thread starts.
/// Without root (a test, `run` by hand with capabilities) what is there shrinks anyway.
/// The outcome is logged by `run` once the config reads: a bad config is one line.
pub fn drop_privileges() -> std::io::Result<caps::Dropped> {
    caps::drop_to(&caps::KEEP)
}

/// Sleeps until `at`, or forever when there is nothing to wait for.
async fn until(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}

pub async fn run(opts: RunOptions) -> anyhow::Result<()> {
    // Handlers first: procd sends SIGHUP on a config change, possibly while offloadd is
    // still starting, and a signal without a handler would kill it.
    let mut sighup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    // A bad config is one line on stderr (the error), so this comes after loading it.
    let mut cfg = opts.config.load()?;
    info!(version = env!("CARGO_PKG_VERSION"), config = %opts.config, "starting");
    match &opts.privileges {
        Ok(d) => info!(
            bounding_set = d.bounding,
            "capabilities dropped but CAP_NET_ADMIN and CAP_NET_BIND_SERVICE; no_new_privs set"
        ),
        Err(e) => {
            warn!("could not drop capabilities ({e}); running with those it was started with")
        }
    }
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
    let mut ruleset = match crate::nft::monitor::spawn_monitor(nft.own_commits()) {
        Ok(rx) => Some(rx),
        Err(e) => {
            warn!("cannot subscribe to nf_tables notifications ({e}); firewall changes will not flush the flowtable");
            None
        }
    };
    let mut sysctls = sysctl::Sysctls::default();
    let mut role_timer = tokio::time::interval(ROLE_CHECK);
    role_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // When the kernel reported the ruleset change the next role check answers (its
    // log line says how long the switch took from there).
    let mut role_change_at: Option<Instant> = None;
    let mut flushes = FlushSchedule::default();
    // A failed apply that may work when tried again: when, and how many tries so far.
    let mut retry: Option<(Instant, u32)> = None;

    let ct_max = std::fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_max")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok());
    let event_buffer = cfg
        .conntrack
        .event_buffer
        .unwrap_or_else(|| crate::config::event_buffer_for(ct_max));
    info!(event_buffer, nf_conntrack_max = ?ct_max, "conntrack event buffer");
    let watcher = match conntrack::spawn_watcher(WatcherOptions {
        resync_interval: cfg.conntrack.resync_interval,
        event_buffer,
    }) {
        Ok(w) => Some(w),
        Err(e) => {
            warn!("{e}; flows will not be reported");
            status.lock().unwrap().conntrack_error = Some(e.to_string());
            None
        }
    };
    let (flush_tx, mut flush_asks) = tokio::sync::mpsc::channel::<control::FlushAsk>(4);
    let rules = Arc::new(Mutex::new(explain_rules(&cfg, &exclude_file)));
    let history = Arc::new(Mutex::new(crate::view::history::History::default()));
    if let Some(w) = &watcher {
        tokio::spawn(history::keep(w.subscribe(), history.clone()));
    }
    let shared = control::Shared {
        status: status.clone(),
        watcher,
        flush: flush_tx,
        rules: rules.clone(),
        history,
    };
    let mut publisher = Publisher::start(&cfg.metrics, &shared).await;
    let watcher = shared.watcher.clone();
    tokio::spawn(control::serve(listener, shared.clone()));

    let actual = nft.read().await?;
    let mut role = decide_role(&cfg, &actual);
    view::set_role(&mut status.lock().unwrap(), &role, &cfg, &actual);
    match &role {
        Role::Manage { why } => {
            info!(why = %why, "managing table inet offloadd");
            for d in view::duplicates(&cfg, &actual) {
                warn!("{d}");
            }
            match apply_and_record(
                &nft,
                &cfg,
                &exclude_file,
                &links,
                &status,
                Why::Start,
                false,
            )
            .await
            {
                Ok(_) => sysctls.apply(&cfg),
                // procd and systemd give up after a few fast exits: a kernel that was busy
                // or answers that were lost are tried again here instead.
                Err(e) if transient(&e) => {
                    warn!(
                        retry_ms = backoff(1).as_millis() as u64,
                        "{e:#}; trying again"
                    );
                    retry = Some((Instant::now() + backoff(1), 1));
                }
                Err(e) => return Err(e),
            }
        }
        Role::Observe { why } => info!(why = %why, "observing; creating nothing"),
    }
    notify::notify("READY=1");

    loop {
        // Set by an arm that wants the ruleset converged again (Why says how).
        let mut converge: Option<Why> = None;
        tokio::select! {
            _ = sighup.recv() => {
                info!(config = %opts.config, "reloading");
                let started = Instant::now();
                // Reading and checking a config is file I/O and may be large: done on a
                // blocking thread, so status and conntrack answer meanwhile.
                let source = opts.config.clone();
                let new_cfg = match tokio::task::spawn_blocking(move || source.load()).await {
                    Ok(Ok(c)) => c,
                    Err(e) => {
                        error!("loading the config stopped: {e}; keeping the running ruleset");
                        continue;
                    }
                    Ok(Err(e)) => {
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
                    flushes.cancel();
                    react::flush_state(&status, &flushes, None);
                }
                cfg = new_cfg;
                publisher.reload(&cfg.metrics, &shared).await;
                *rules.lock().unwrap() = explain_rules(&cfg, &exclude_file);
                role = new_role;
                view::set_role(&mut status.lock().unwrap(), &role, &cfg, &actual);
                info!(took_ms = started.elapsed().as_millis() as u64, "config reloaded");
                converge = Some(Why::Start);
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
                    Role::Manage { .. } => converge = Some(Why::Event),
                    Role::Observe { .. } => {
                        if let Ok(actual) = nft.read().await {
                            view::set_role(&mut status.lock().unwrap(), &role, &cfg, &actual);
                        }
                    }
                }
            }
            change = react::recv_change(&mut ruleset), if ruleset.is_some() => {
                let Some(change) = change else {
                    warn!("nf_tables notifications ended; firewall changes no longer flush the flowtable");
                    ruleset = None;
                    continue;
                };
                debug!(tables = ?change.tables, elements_only = change.elements_only, "another table committed");
                // Observing, we own no flowtable: nothing is flushed, and nothing counts as
                // "not flushed" (fw4's full reloads are not "set elements only").
                if matches!(role, Role::Manage { .. }) {
                    let policy = cfg.offload.flush_on_change;
                    if !flushes.change(&change, policy, Instant::now()) {
                        debug!(tables = ?change.tables, elements_only = change.elements_only, flush_on_firewall_change = %policy, "another table changed; not flushing");
                    }
                    react::flush_state(&status, &flushes, None);
                }
                // A chain may have appeared at or above ours: plan again (nothing is sent
                // when the priority still puts us after every other forward chain).
                if !change.elements_only {
                    converge = Some(Why::Event);
                    // A flowtable may have come or gone (fw4 stopped, offloading turned
                    // on): decide the role now rather than at the next 2 s tick.
                    if cfg.mode == Mode::Auto {
                        role_change_at.get_or_insert_with(Instant::now);
                        role_timer.reset_immediately();
                    }
                }
            }
            Some(ask) = flush_asks.recv() => {
                let c = react::FlushContext { nft: &nft, cfg: &cfg, exclude_file: &exclude_file, links: &links, status: &status, watcher: watcher.as_ref() };
                let result = react::requested_flush(c, &role).await;
                // The flowtable was just replaced: a flush due for earlier firewall
                // changes is answered by it and must not replace it again.
                if matches!(&result, Ok(f) if f.flushed) && flushes.due().is_some() {
                    flushes.done();
                    react::flush_state(&status, &flushes, None);
                }
                let _ = ask.send(result);
            }
            _ = until(flushes.due()) => converge = Some(Why::Event),
            _ = until(retry.map(|r| r.0)) => converge = Some(Why::Start),
            _ = role_timer.tick(), if cfg.mode == Mode::Auto => {
                let since_change_ms = role_change_at.take().map(|t| t.elapsed().as_millis() as u64);
                let Ok(actual) = nft.read().await else { continue };
                let new_role = decide_role(&cfg, &actual);
                let switch = !matches!((&role, &new_role), (Role::Manage { .. }, Role::Manage { .. }) | (Role::Observe { .. }, Role::Observe { .. }));
                if switch {
                    if let (Role::Manage { .. }, Role::Observe { why }) = (&role, &new_role) {
                        info!(why = %why, since_change_ms, "another flowtable now covers our devices; observing and removing table inet offloadd");
                        if let Err(e) = nft.remove().await { error!("{e}"); continue; }
                        sysctls.restore();
                        flushes.cancel();
                        react::flush_state(&status, &flushes, None);
                    }
                    role = new_role;
                    view::set_role(&mut status.lock().unwrap(), &role, &cfg, &actual);
                    if let Role::Manage { why } = &role {
                        info!(why = %why, since_change_ms, "no other flowtable covers our devices any more; managing table inet offloadd");
                        converge = Some(Why::Start);
                    }
                } else if let Role::Observe { .. } = role {
                    view::set_role(&mut status.lock().unwrap(), &role, &cfg, &actual);
                }
            }
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
        }
        let Some(why) = converge else { continue };
        if !matches!(role, Role::Manage { .. }) {
            retry = None;
            continue;
        }
        // A due flush rides on any apply: the flowtables are replaced with the plan of
        // now, so a device that vanished during a firewall reload cannot stop it.
        let flush = flushes.due().is_some_and(|t| t <= Instant::now());
        let started = Instant::now();
        match apply_and_record(&nft, &cfg, &exclude_file, &links, &status, why, flush).await {
            Ok(a) => {
                if why == Why::Start {
                    sysctls.apply(&cfg);
                }
                if retry.take().is_some() {
                    info!("applied after earlier failures");
                }
                if flush {
                    let (tables, since) = flushes.done();
                    react::flushed(&status, tables, a.flushed, started.elapsed(), since);
                }
            }
            Err(e) => {
                if flush {
                    let delay = flushes.failed(Instant::now());
                    error!(retry_ms = delay.as_millis() as u64, "firewall changed but flushing the flowtable failed: {e:#}; offloaded flows may bypass the new rules until it is retried");
                    react::flush_state(&status, &flushes, Some(format!("{e:#}")));
                } else if transient(&e) {
                    let n = retry.map_or(1, |r| r.1 + 1);
                    warn!(
                        retry_ms = backoff(n).as_millis() as u64,
                        "{e:#}; the running ruleset is unchanged; trying again"
                    );
                    retry = Some((Instant::now() + backoff(n), n));
                } else {
                    error!("{e:#}; the running ruleset is unchanged");
                    retry = None;
                }
            }
        }
    }
    notify::notify("STOPPING=1");
    // The table first: nothing the metrics writer meets may delay what makes traffic
    // take the normal path again.
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
    publisher.stop().await;
    Ok(())
}

/// The control socket file goes away with the daemon, whichever way `run` returns.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
