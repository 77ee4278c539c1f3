//! The conntrack watcher actor: ctnetlink events plus periodic resyncs feed the
//! `FlowTracker`; commands ask it for totals and flow lists; transitions are broadcast
//! to `flows --watch` clients.
//!
//! Resyncs catch what the kernel sends no event for (a flow leaving the flowtable on its
//! idle timeout, hardware promotion) and what events missed. At each tick (default 2 s)
//! the tracked offloaded flows and the recent two-way ones are looked up by tuple (one
//! hash lookup each in the kernel: the cost follows the offloaded flows, not the table).
//! Dumps walk the whole table, so they are rare and spaced by what they cost: an
//! offloaded-only dump (for flows that got offloaded long after they began) at most
//! every `RECONCILE_EVERY`, a full one (flows destroyed without an event) at most every
//! `FULL_EVERY`, each at least `RECONCILE_SHARE` times its own last duration apart. The
//! first resync is full, and so is the one after an overrun (no sooner than
//! `MIN_FULL_GAP` after the last, so overruns never feed themselves).
//!
//! Kernels before 5.15 ignore the status filter and return the whole table: that is
//! seen (an entry without IPS_OFFLOAD in an offloaded-only dump), said in status, and
//! the resync interval is stretched so the full dumps stay under `MAX_DUMP_SHARE` of the
//! time.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::unix::AsyncFd;
use tokio::sync::{broadcast, mpsc, oneshot};
use tracing::{info, warn};

use std::collections::HashSet;

use super::dumper::{spawn_dumper, DumpMsg, DumpRequest, Request, CHUNKS_IN_FLIGHT};
use super::schedule::{next_resync, Next, Rechecks};
pub use super::schedule::{FULL_EVERY, RECONCILE_EVERY};
use super::{
    CtError, CtSocket, DumpFilter, FlowKey, FlowRecord, FlowTracker, PathFilter, Stats, Transition,
    IPS_OFFLOAD,
};

/// Transitions kept for slow `--watch` clients before they are told they lagged.
/// tokio's broadcast channel allocates and initialises every slot up front: 4096 slots
/// were 0.6 MiB resident at idle. 512 still covers seconds of `--watch` output.
const WATCH_BACKLOG: usize = 512;
/// Event datagrams read in one turn of the watcher's loop (a datagram holds one event
/// or a few): about a millisecond of work on a gateway's core.
const DRAIN_BUDGET: usize = 256;
/// Before a dump chunk is applied, the event queue is read empty, up to this many
/// datagrams (a few milliseconds): see `events_before_dump_msg`.
const BEFORE_DUMP_BUDGET: usize = 4 * DRAIN_BUDGET;

#[derive(Debug, Clone)]
pub struct WatcherOptions {
    pub resync_interval: Duration,
    /// Receive buffer of the event socket, bytes.
    pub event_buffer: usize,
}

enum Command {
    Stats(oneshot::Sender<Stats>),
    Flows(Option<PathFilter>, mpsc::Sender<Vec<FlowRecord>>),
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

    /// The flows `filter` wants, in chunks; the list ends when the channel closes.
    pub async fn flows(
        &self,
        filter: Option<PathFilter>,
    ) -> Option<mpsc::Receiver<Vec<FlowRecord>>> {
        let (tx, rx) = mpsc::channel(2);
        self.tx.send(Command::Flows(filter, tx)).await.ok()?;
        Some(rx)
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
        interval: opts.resync_interval,
        last_full: None,
        last_filtered: None,
        overrun_at: None,
        rechecks: Rechecks::default(),
        overrun_pending: false,
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

/// What a resync asks: a dump, or lookups of tracked flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dump(DumpFilter),
    Lookup,
}

/// The resync in flight.
struct Dump {
    kind: Kind,
    rx: mpsc::Receiver<DumpMsg>,
    started: Instant,
    /// Entries without IPS_OFFLOAD in an offloaded-only dump: the kernel ignored the
    /// status filter.
    unfiltered: u64,
    /// Lookups: the flows the kernel answered with an entry.
    found: HashSet<FlowKey>,
}

struct Actor {
    events: AsyncFd<CtSocket>,
    dumps: std::sync::mpsc::Sender<DumpRequest>,
    dump: Option<Dump>,
    /// A full dump is wanted now (start, overrun), as soon as `MIN_FULL_GAP` allows.
    full_due: bool,
    tracker: FlowTracker,
    epoch: Instant,
    transitions: broadcast::Sender<Transition>,
    /// Cleared when the kernel refuses or ignores the status filter; every resync is
    /// then full.
    filtered_dumps: bool,
    /// Time between resyncs: the configured one, or longer without the status filter.
    interval: Duration,
    /// When the last full and offloaded-only dumps began, and what they took.
    last_full: Option<(Instant, Duration)>,
    last_filtered: Option<(Instant, Duration)>,
    /// The last overrun: counts are approximate until a full dump begun after it ends.
    overrun_at: Option<Instant>,
    /// How the lookups of long-offloaded flows are spread over resyncs.
    rechecks: Rechecks,
    /// Events were lost and the queue is not read empty yet: the full dump follows then.
    overrun_pending: bool,
}

/// Reads at most `budget` event datagrams into the tracker. `Some(true)`: the queue was
/// read empty; `Some(false)`: the budget ran out first; `None`: the socket failed (logged).
/// The kernel reports ENOBUFS once, then drops silently until the queue has been read
/// empty: an overrun is noted in `overrun_pending` and reading goes on, so the full dump
/// that settles it starts after the drop, not before.
fn drain(
    sock: &mut CtSocket,
    tracker: &mut FlowTracker,
    transitions: &broadcast::Sender<Transition>,
    now: Duration,
    budget: usize,
    overrun_pending: &mut bool,
) -> Option<bool> {
    loop {
        let drained = sock.drain_events(budget, |ev| {
            if let Some(t) = tracker.event(&ev, now) {
                let _ = transitions.send(t);
            }
        });
        match drained {
            Ok(d) => {
                tracker.note_malformed(d.malformed);
                if d.overrun {
                    *overrun_pending = true;
                    continue;
                }
                return Some(!d.more);
            }
            Err(e) => {
                warn!("{e}");
                return None;
            }
        }
    }
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
        self.start_dump(true);
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
                    // during the dump is reported again. A drain reads at most
                    // DRAIN_BUDGET datagrams a turn; the rest waits for the next turn of
                    // the loop, after any control request or dump chunk that is waiting.
                    let now = self.epoch.elapsed();
                    let read = drain(guard.get_inner_mut(), &mut self.tracker, &self.transitions, now, DRAIN_BUDGET, &mut self.overrun_pending);
                    if read == Some(true) {
                        guard.clear_ready();
                        self.settle_overrun();
                    }
                }
                msg = next_dump_msg(&mut self.dump) => {
                    if events_alive {
                        self.events_before_dump_msg();
                    }
                    self.dump_msg(msg)
                }
                _ = tick.tick() => {
                    self.tracker.forget_old(self.epoch.elapsed());
                    self.start_dump(true);
                    if self.interval != tick.period() {
                        info!(interval_ms = self.interval.as_millis() as u64, configured_ms = configured.as_millis() as u64, "conntrack resync interval changed to keep full dumps cheap");
                        tick = tokio::time::interval_at(tokio::time::Instant::now() + self.interval, self.interval);
                        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    }
                }
                cmd = rx.recv() => match cmd {
                    None => break,
                    Some(Command::Stats(reply)) => { let _ = reply.send(self.stats()); }
                    Some(Command::Flows(filter, out)) => {
                        let now = self.epoch.elapsed();
                        if filter.is_some_and(|f| !f.matches(super::Path::Slow)) {
                            let kept = self.tracker.flows(filter, now);
                            tokio::spawn(async move { let _ = out.send(kept).await; });
                        } else {
                            // Old slow flows are not kept: list from a dump.
                            let kept = self.tracker.records(filter, now);
                            tokio::spawn(super::listing::stream(self.dumps.clone(), filter, kept, out));
                        }
                    }
                },
            }
            // One turn (a drain of at most DRAIN_BUDGET datagrams, a dump chunk, a
            // request) and the runtime thread's other tasks get a turn: tokio would let
            // this loop run while a branch is ready, up to 128 turns (tens of
            // milliseconds in a burst), with a status answer waiting to be written.
            tokio::task::yield_now().await;
        }
    }

    /// The events the kernel queued before the dump read what it is about to apply are
    /// applied first. A flow born just before the dump passed it is in the dump, and its
    /// NEW event waits in the event socket: applied after a full dump's end, the flow
    /// was counted twice (once in the recount, once kept); a DESTROY applied late
    /// uncounted a flow the recount had already left out, and a NEW after an
    /// offloaded-only dump's entry uncounted one never counted. Read first, each is seen
    /// while the resync runs, where `touched` and `raced` account for it. A burst longer
    /// than `BEFORE_DUMP_BUDGET` (the queue not read empty) leaves the order unknown: a
    /// full dump follows to recount, spaced like any other.
    fn events_before_dump_msg(&mut self) {
        let now = self.epoch.elapsed();
        let read = drain(
            self.events.get_mut(),
            &mut self.tracker,
            &self.transitions,
            now,
            BEFORE_DUMP_BUDGET,
            &mut self.overrun_pending,
        );
        match read {
            Some(true) => self.settle_overrun(),
            Some(false) => self.full_due = true,
            None => {}
        }
    }

    /// After the event queue was read empty: lost events (ENOBUFS) are reported and
    /// recounted by a full dump.
    fn settle_overrun(&mut self) {
        if !std::mem::take(&mut self.overrun_pending) {
            return;
        }
        self.tracker.note_overrun();
        self.tracker.set_approximate(true);
        self.overrun_at = Some(Instant::now());
        warn!("conntrack events were lost (event socket overrun); counts are approximate until the next full resync (raise [conntrack] event_buffer if this repeats)");
        self.full_due = true;
        self.start_dump(false);
    }

    fn stats(&self) -> Stats {
        let mut s = self.tracker.stats();
        s.status_filter = Some(self.filtered_dumps);
        s.resync_interval_ms = self.interval.as_millis() as u64;
        s.recheck_every_ms = self.rechecks.every(self.interval).as_millis() as u64;
        s
    }

    /// Starts the resync that is due, unless one is running (the next tick or the end
    /// of this one starts it then): a full dump when one is due and spaced enough, else
    /// an offloaded-only dump when due, else lookups of the tracked flows that need it.
    /// `tick`: see `next_resync`.
    fn start_dump(&mut self, tick: bool) {
        if self.dump.is_some() {
            return;
        }
        let now = Instant::now();
        let next = next_resync(
            tick,
            self.full_due,
            self.filtered_dumps,
            (self.last_full, self.last_filtered),
            now,
        );
        let request = match next {
            Next::Wait => return,
            Next::Full => {
                self.full_due = false;
                Request::Dump(DumpFilter::All)
            }
            Next::Offloaded => Request::Dump(DumpFilter::Offloaded),
            Next::Lookup => {
                let plan = self
                    .tracker
                    .lookup_plan(self.epoch.elapsed(), self.rechecks.next());
                self.rechecks.planned(&plan);
                if plan.keys.is_empty() {
                    return;
                }
                Request::Lookup(plan.keys)
            }
        };
        let kind = match &request {
            Request::Dump(f) => Kind::Dump(*f),
            Request::Lookup(_) => Kind::Lookup,
        };
        let (tx, rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
        if self.dumps.send((request, tx)).is_err() {
            warn!("the conntrack dump thread stopped; flows are no longer resynced");
            return;
        }
        self.tracker
            .begin_resync(matches!(kind, Kind::Dump(DumpFilter::All)));
        self.dump = Some(Dump {
            kind,
            rx,
            started: now,
            unfiltered: 0,
            found: HashSet::new(),
        });
    }

    fn dump_msg(&mut self, msg: Option<DumpMsg>) {
        let Some(dump) = &mut self.dump else { return };
        let now = self.epoch.elapsed();
        match msg {
            Some(DumpMsg::Entries(entries)) => {
                for e in &entries {
                    match dump.kind {
                        Kind::Dump(DumpFilter::Offloaded) if e.status & IPS_OFFLOAD == 0 => {
                            dump.unfiltered += 1
                        }
                        Kind::Lookup => {
                            dump.found.insert(e.key);
                        }
                        _ => {}
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
}

#[path = "watcher_finish.rs"]
mod finish;
