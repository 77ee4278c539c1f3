//! The conntrack watcher actor: ctnetlink events plus a periodic resync feed the
//! `FlowTracker`; commands ask it for totals and flow lists; transitions are broadcast
//! to `flows --watch` clients.
//!
//! Resyncs ask the kernel only for offloaded entries (cheap whatever the table size);
//! every `FULL_RESYNC_EVERY`th resync, the first one and the one after an overrun dump
//! the whole table so counts of slow flows cannot drift. Dumps run on a thread of their
//! own and arrive in small chunks (a full dump of 100k entries takes ~0.2 s here, seconds on a
//! router CPU): the actor goes on reading events and answering `status` meanwhile.
//!
//! Kernels before 5.15 ignore the status filter and return the whole table: that is
//! seen (an entry without IPS_OFFLOAD in an offloaded-only dump), said in status, and
//! the resync interval is stretched so the full dumps stay under `MAX_DUMP_SHARE` of the
//! time.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::unix::AsyncFd;
use tokio::sync::{broadcast, mpsc, oneshot};
use tracing::{debug, info, warn};

use super::{
    CtError, CtSocket, DumpCount, DumpFilter, Entry, FlowRecord, FlowTracker, PathFilter, Stats,
    Transition, IPS_OFFLOAD,
};

/// One full dump every this many resyncs (every minute at the default 2 s).
pub const FULL_RESYNC_EVERY: u64 = 30;
/// Entries per chunk from the dump thread to the actor, and chunks in flight: together
/// at most ~4 × 256 × 140 bytes outside the tracker during a dump (1024-entry chunks four
/// deep were ~0.9 MiB that came and went, and showed as RSS noise in the soak).
const CHUNK: usize = 256;
const CHUNKS_IN_FLIGHT: usize = 2;
/// Without the kernel's status filter every resync walks the whole table: space them so
/// dumping takes at most this share of the time.
const MAX_DUMP_SHARE: u32 = 50; // 1/50 = 2 %
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
/// actor on the current tokio runtime and the dump thread. The first resync is full.
pub fn spawn(opts: WatcherOptions) -> Result<WatcherHandle, CtError> {
    let sock = CtSocket::for_events(opts.event_buffer)?;
    // SAFETY: CtSocket owns its fd for its whole life and always returns the same one;
    // the AsyncFd owns the CtSocket, so the fd outlives the registration.
    let events = unsafe { AsyncFd::register_with_interest(sock, tokio::io::Interest::READABLE) }
        .map_err(|e| CtError::Io {
            what: "registering the event socket",
            error: e.into_parts().1,
        })?;
    let dumps = spawn_dumper(CtSocket::for_dumps()?)?;
    let (tx, rx) = mpsc::channel(16);
    let (transitions, _) = broadcast::channel(WATCH_BACKLOG);
    let actor = Actor {
        events,
        dumps,
        dump: None,
        full_due: true,
        tracker: FlowTracker::new(unix_ms()),
        epoch: Instant::now(),
        transitions: transitions.clone(),
        filtered_dumps: true,
        resyncs: 0,
        interval: opts.resync_interval,
    };
    tokio::spawn(actor.run(rx));
    Ok(WatcherHandle { tx, transitions })
}

pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// What the dump thread sends back for one request.
enum DumpMsg {
    Entries(Vec<Entry>),
    Done(Result<DumpCount, CtError>),
}

type DumpRequest = (DumpFilter, mpsc::Sender<DumpMsg>);

/// The thread that owns the dump socket: blocking recv loops stay off the runtime.
fn spawn_dumper(mut sock: CtSocket) -> Result<std::sync::mpsc::Sender<DumpRequest>, CtError> {
    let (tx, rx) = std::sync::mpsc::channel::<DumpRequest>();
    std::thread::Builder::new()
        .name("ct-dump".into())
        .spawn(move || {
            while let Ok((filter, reply)) = rx.recv() {
                let mut chunk = Vec::with_capacity(CHUNK);
                let result = sock.dump(filter, |ev| {
                    chunk.push(ev.entry);
                    if chunk.len() == CHUNK {
                        let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
                        let _ = reply.blocking_send(DumpMsg::Entries(full));
                    }
                });
                if !chunk.is_empty() {
                    let _ = reply.blocking_send(DumpMsg::Entries(chunk));
                }
                let _ = reply.blocking_send(DumpMsg::Done(result));
            }
        })
        .map_err(|error| CtError::Io {
            what: "starting the dump thread",
            error,
        })?;
    Ok(tx)
}

/// The dump in flight.
struct Dump {
    filter: DumpFilter,
    rx: mpsc::Receiver<DumpMsg>,
    started: Instant,
    /// Entries without IPS_OFFLOAD in an offloaded-only dump: the kernel ignored the
    /// status filter.
    unfiltered: u64,
}

struct Actor {
    events: AsyncFd<CtSocket>,
    dumps: std::sync::mpsc::Sender<DumpRequest>,
    dump: Option<Dump>,
    /// A full dump is wanted (start, overrun, every FULL_RESYNC_EVERY resyncs).
    full_due: bool,
    tracker: FlowTracker,
    epoch: Instant,
    transitions: broadcast::Sender<Transition>,
    /// Cleared when the kernel refuses or ignores the status filter; every resync is
    /// then full.
    filtered_dumps: bool,
    resyncs: u64,
    /// Time between resyncs: the configured one, or longer without the status filter.
    interval: Duration,
}

/// After a dump: whether dumps can still be filtered by the kernel, and the resync
/// interval. An offloaded-only dump that returned an entry without IPS_OFFLOAD was not
/// filtered (the kernel lacks the filter and returned the whole table); then every
/// resync is full, and full dumps are spaced to take at most 1/MAX_DUMP_SHARE of the
/// time.
fn adapt(filtered: bool, interval: Duration, dump: &Dump, took: Duration) -> (bool, Duration) {
    let filtered = filtered && dump.unfiltered == 0;
    if !filtered && dump.filter == DumpFilter::All {
        return (filtered, interval.max(took * MAX_DUMP_SHARE));
    }
    (filtered, interval)
}

async fn next_dump_msg(dump: &mut Option<Dump>) -> Option<DumpMsg> {
    match dump {
        Some(d) => d.rx.recv().await,
        None => std::future::pending().await,
    }
}

impl Actor {
    async fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        let configured = self.interval;
        self.start_dump();
        let mut tick =
            tokio::time::interval_at(tokio::time::Instant::now() + self.interval, self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut events_alive = true;
        loop {
            tokio::select! {
                ready = self.events.readable_mut(), if events_alive => {
                    let mut guard = match ready {
                        Ok(g) => g,
                        Err(e) => { warn!("conntrack event socket: {e}; events stop, resyncs go on"); events_alive = false; continue; }
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
                        warn!("conntrack events were lost (event socket overrun); resyncing (raise [conntrack] event_buffer if this repeats)");
                        self.full_due = true;
                        self.start_dump();
                    }
                }
                msg = next_dump_msg(&mut self.dump) => self.dump_msg(msg),
                _ = tick.tick() => {
                    self.resyncs += 1;
                    if !self.filtered_dumps || self.resyncs % FULL_RESYNC_EVERY == 0 {
                        self.full_due = true;
                    }
                    self.start_dump();
                    if self.interval != tick.period() {
                        info!(interval_ms = self.interval.as_millis() as u64, configured_ms = configured.as_millis() as u64, "conntrack resync interval changed to keep full dumps cheap");
                        tick = tokio::time::interval_at(tokio::time::Instant::now() + self.interval, self.interval);
                        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    }
                }
                cmd = rx.recv() => match cmd {
                    None => break,
                    Some(Command::Stats(reply)) => { let _ = reply.send(self.stats()); }
                    Some(Command::Flows(filter, reply)) => {
                        let _ = reply.send(self.tracker.flows(filter, self.epoch.elapsed()));
                    }
                },
            }
        }
    }

    fn stats(&self) -> Stats {
        let mut s = self.tracker.stats();
        s.status_filter = Some(self.filtered_dumps);
        s.resync_interval_ms = self.interval.as_millis() as u64;
        s
    }

    /// Starts the resync that is due, unless one is running (the next tick or the end
    /// of this one starts it then).
    fn start_dump(&mut self) {
        if self.dump.is_some() {
            return;
        }
        let filter = if self.full_due || !self.filtered_dumps {
            DumpFilter::All
        } else {
            DumpFilter::Offloaded
        };
        let (tx, rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
        if self.dumps.send((filter, tx)).is_err() {
            warn!("the conntrack dump thread stopped; flows are no longer resynced");
            return;
        }
        if filter == DumpFilter::All {
            self.full_due = false;
        }
        self.tracker.begin_resync();
        self.dump = Some(Dump {
            filter,
            rx,
            started: Instant::now(),
            unfiltered: 0,
        });
    }

    fn dump_msg(&mut self, msg: Option<DumpMsg>) {
        let Some(dump) = &mut self.dump else { return };
        let now = self.epoch.elapsed();
        match msg {
            Some(DumpMsg::Entries(entries)) => {
                for e in &entries {
                    if dump.filter == DumpFilter::Offloaded && e.status & IPS_OFFLOAD == 0 {
                        dump.unfiltered += 1;
                    }
                    if let Some(t) = self.tracker.dumped(e, now) {
                        let _ = self.transitions.send(t);
                    }
                }
            }
            Some(DumpMsg::Done(result)) => {
                let dump = self.dump.take().expect("in flight");
                self.finish(dump, result, now);
            }
            None => {
                self.dump = None;
                self.tracker.abort_resync();
            }
        }
    }

    fn finish(&mut self, dump: Dump, result: Result<DumpCount, CtError>, now: Duration) {
        let took = dump.started.elapsed();
        match result {
            Ok(count) => {
                self.tracker.note_malformed(count.malformed);
                for t in self.tracker.end_resync(dump.filter, now) {
                    let _ = self.transitions.send(t);
                }
                self.tracker.note_dump(dump.filter, took);
                debug!(filter = ?dump.filter, entries = count.entries, took_us = took.as_micros() as u64, "conntrack resync");
                if dump.unfiltered > 0 && self.filtered_dumps {
                    info!(entries = count.entries, "the kernel ignored the conntrack status filter (it arrived in Linux 5.15): every resync is a full dump of the table");
                }
                (self.filtered_dumps, self.interval) =
                    adapt(self.filtered_dumps, self.interval, &dump, took);
            }
            Err(CtError::Refused(errno)) if dump.filter == DumpFilter::Offloaded => {
                self.tracker.abort_resync();
                info!(
                    "kernel refused the filtered conntrack dump ({}); resyncing with full dumps",
                    crate::nft::errno_name(errno)
                );
                self.filtered_dumps = false;
            }
            Err(e) => {
                self.tracker.abort_resync();
                warn!("conntrack resync failed: {e}");
            }
        }
        if self.full_due {
            self.start_dump();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dump(filter: DumpFilter, unfiltered: u64) -> Dump {
        Dump {
            filter,
            rx: mpsc::channel(1).1,
            started: Instant::now(),
            unfiltered,
        }
    }

    #[test]
    fn an_ignored_status_filter_is_noticed_and_full_dumps_are_spaced() {
        let two = Duration::from_secs(2);
        let ms = Duration::from_millis;
        // A kernel that filters: offloaded-only dumps stay, the interval too.
        let f = dump(DumpFilter::Offloaded, 0);
        assert_eq!(adapt(true, two, &f, ms(3)), (true, two));
        // One that ignored the filter (RHEL 9's 5.14): entries without the bit came back.
        let ignored = dump(DumpFilter::Offloaded, 100_000);
        assert_eq!(adapt(true, two, &ignored, ms(170)), (false, two));
        // From then on dumps are full; 170 ms each, so at most every 8.5 s (2 %).
        let full = dump(DumpFilter::All, 0);
        assert_eq!(adapt(false, two, &full, ms(170)), (false, ms(8500)));
        // A cheap full dump never shortens the configured interval.
        assert_eq!(adapt(false, two, &full, ms(5)), (false, two));
        // With the filter working, the periodic full dump changes nothing.
        assert_eq!(adapt(true, two, &full, ms(170)), (true, two));
    }
}
