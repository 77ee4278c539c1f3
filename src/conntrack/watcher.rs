//! The conntrack watcher actor: ctnetlink events plus a periodic resync feed the
//! `FlowTracker`; commands ask it for totals and flow lists; transitions are broadcast
//! to `flows --watch` clients.
//!
//! Resyncs ask the kernel only for offloaded entries (cheap whatever the table size);
//! every `FULL_RESYNC_EVERY`th resync, the first one and the one after an overrun dump
//! the whole table so counts of slow flows cannot drift. Dumps run inline on the
//! actor's task: a filtered dump takes milliseconds, a full one of 100k entries ~0.2 s.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::unix::AsyncFd;
use tokio::sync::{broadcast, mpsc, oneshot};
use tracing::{debug, info, warn};

use super::{
    CtError, CtSocket, DumpFilter, FlowRecord, FlowTracker, PathFilter, Stats, Transition,
};

/// One full dump every this many resyncs (every minute at the default 2 s).
pub const FULL_RESYNC_EVERY: u64 = 30;
/// Transitions kept for slow `--watch` clients before they are told they lagged.
/// tokio's broadcast channel allocates and initialises every slot up front: 4096 slots
/// were 0.6 MiB resident at idle. 512 still covers seconds of `--watch` output.
const WATCH_BACKLOG: usize = 512;

#[derive(Debug, Clone)]
pub struct WatcherOptions {
    pub resync_interval: Duration,
    /// Receive buffer of the event socket, bytes.
    pub event_buffer: usize,
}

enum Command {
    Stats(oneshot::Sender<Stats>),
    Flows(Option<PathFilter>, oneshot::Sender<Vec<FlowRecord>>),
}

/// Cheap to clone; the actor stops when every handle is dropped.
#[derive(Clone)]
pub struct WatcherHandle {
    tx: mpsc::Sender<Command>,
    transitions: broadcast::Sender<Transition>,
}

impl WatcherHandle {
    pub async fn stats(&self) -> Option<Stats> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Command::Stats(tx)).await.ok()?;
        rx.await.ok()
    }

    pub async fn flows(&self, filter: Option<PathFilter>) -> Option<Vec<FlowRecord>> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Command::Flows(filter, tx)).await.ok()?;
        rx.await.ok()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Transition> {
        self.transitions.subscribe()
    }
}

/// Opens both sockets (so a missing module is reported now, not later) and starts the
/// actor on the current tokio runtime. The first full dump runs inside the actor.
pub fn spawn(opts: WatcherOptions) -> Result<WatcherHandle, CtError> {
    let sock = CtSocket::for_events(opts.event_buffer)?;
    // SAFETY: CtSocket owns its fd for its whole life and always returns the same one;
    // the AsyncFd owns the CtSocket, so the fd outlives the registration.
    let events = unsafe { AsyncFd::register_with_interest(sock, tokio::io::Interest::READABLE) }
        .map_err(|e| CtError::Io {
            what: "registering the event socket",
            error: e.into_parts().1,
        })?;
    let dumps = CtSocket::for_dumps()?;
    let (tx, rx) = mpsc::channel(16);
    let (transitions, _) = broadcast::channel(WATCH_BACKLOG);
    let actor = Actor {
        events,
        dumps,
        tracker: FlowTracker::new(unix_ms()),
        epoch: Instant::now(),
        transitions: transitions.clone(),
        filtered_dumps: true,
        resyncs: 0,
    };
    tokio::spawn(actor.run(opts.resync_interval, rx));
    Ok(WatcherHandle { tx, transitions })
}

pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

struct Actor {
    events: AsyncFd<CtSocket>,
    dumps: CtSocket,
    tracker: FlowTracker,
    epoch: Instant,
    transitions: broadcast::Sender<Transition>,
    /// Cleared if the kernel refuses the status filter; every resync is then full.
    filtered_dumps: bool,
    resyncs: u64,
}

impl Actor {
    async fn run(mut self, interval: Duration, mut rx: mpsc::Receiver<Command>) {
        self.resync(DumpFilter::All);
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                ready = self.events.readable_mut() => {
                    let mut guard = match ready {
                        Ok(g) => g,
                        Err(e) => { warn!("conntrack event socket: {e}; events stop, resyncs go on"); break; }
                    };
                    // The kernel reports ENOBUFS once, then drops silently until the
                    // queue has been read empty: drain first, dump after, so a drop
                    // during the dump is reported again.
                    let mut overrun = false;
                    loop {
                        let now = self.epoch.elapsed();
                        let tracker = &mut self.tracker;
                        let transitions = &self.transitions;
                        match guard.get_inner_mut().drain_events(|ev| {
                            if let Some(t) = tracker.event(&ev, now) {
                                let _ = transitions.send(t);
                            }
                        }) {
                            Ok(d) => {
                                self.tracker.note_malformed(d.malformed);
                                if !d.overrun {
                                    guard.clear_ready();
                                    break;
                                }
                                overrun = true;
                            }
                            Err(e) => { warn!("{e}"); break; }
                        }
                    }
                    if overrun {
                        self.tracker.note_overrun();
                        warn!("conntrack events were lost (event socket overrun); resyncing now (raise [conntrack] event_buffer if this repeats)");
                        self.resync(DumpFilter::All);
                    }
                }
                _ = tick.tick() => {
                    self.resyncs += 1;
                    let full = !self.filtered_dumps || self.resyncs % FULL_RESYNC_EVERY == 0;
                    self.resync(if full { DumpFilter::All } else { DumpFilter::Offloaded });
                }
                cmd = rx.recv() => match cmd {
                    None => break,
                    Some(Command::Stats(reply)) => { let _ = reply.send(self.tracker.stats()); }
                    Some(Command::Flows(filter, reply)) => {
                        let _ = reply.send(self.tracker.flows(filter, self.epoch.elapsed()));
                    }
                },
            }
        }
        // Events stopped (or the daemon is shutting down): keep answering with resyncs.
        while let Some(cmd) = rx.recv().await {
            match cmd {
                Command::Stats(reply) => {
                    let _ = reply.send(self.tracker.stats());
                }
                Command::Flows(filter, reply) => {
                    self.resync(DumpFilter::All);
                    let _ = reply.send(self.tracker.flows(filter, self.epoch.elapsed()));
                }
            }
        }
    }

    fn resync(&mut self, filter: DumpFilter) {
        let started = Instant::now();
        let now = self.epoch.elapsed();
        self.tracker.begin_resync();
        let tracker = &mut self.tracker;
        let transitions = &self.transitions;
        let result = self.dumps.dump(filter, |ev| {
            if let Some(t) = tracker.observe(&ev.entry, now, false) {
                let _ = transitions.send(t);
            }
        });
        match result {
            Ok(count) => {
                self.tracker.note_malformed(count.malformed);
                for t in self.tracker.end_resync(filter, now) {
                    let _ = self.transitions.send(t);
                }
                debug!(
                    ?filter,
                    entries = count.entries,
                    took_us = started.elapsed().as_micros() as u64,
                    "conntrack resync"
                );
            }
            Err(CtError::Refused(errno)) if filter == DumpFilter::Offloaded => {
                info!(
                    "kernel refused the filtered conntrack dump ({}); resyncing with full dumps",
                    crate::nft::errno_name(errno)
                );
                self.filtered_dumps = false;
                // A failed dump ends no generation: begin_resync again before the next.
            }
            Err(e) => warn!("conntrack resync failed: {e}"),
        }
    }
}
