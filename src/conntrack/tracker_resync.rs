//! The tracker's side of resyncs (dumps and lookups) and of forgetting old slow flows.
//!
//! Counting what is not kept: every flow in the kernel is either kept or counted in
//! `untracked`. A full dump recounts: the slow flows it shows that are not kept are its
//! tally, which replaces `untracked` when it ends. Between full dumps the count follows
//! events (a DESTROY or another event of a flow not kept takes it off) and forgetting
//! (adds). An event during a full dump about a flow the dump already counted can leave
//! it one off until the next one.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::time::Duration;

use super::{as_ms, ms, FlowTracker, Sight, MAX_LOOKUPS, RECENT};
use crate::conntrack::{DumpFilter, Entry, FlowKey, Path, Transition, IPS_SEEN_REPLY};

/// Which of the flows offloaded for longer than `RECENT` a lookup resync asks about:
/// those whose key hashes to `phase` modulo `stride`. The watcher turns the phase every
/// resync, so each is asked about once every `stride` resyncs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spread {
    pub stride: u32,
    pub phase: u32,
}

impl Spread {
    pub const ALL: Spread = Spread {
        stride: 1,
        phase: 0,
    };

    fn covers(&self, k: &FlowKey) -> bool {
        if self.stride <= 1 {
            return true;
        }
        // Any hash the process keeps stable will do: only the spread matters.
        let mut h = std::hash::DefaultHasher::new();
        k.hash(&mut h);
        h.finish() % u64::from(self.stride) == u64::from(self.phase % self.stride)
    }
}

/// What a lookup resync asks, and over how many long-offloaded flows it spreads.
#[derive(Debug, Default)]
pub struct LookupPlan {
    pub keys: Vec<FlowKey>,
    /// Flows offloaded for longer than `RECENT`, asked about or not.
    pub spread_over: usize,
}

impl FlowTracker {
    /// Starts a resync: entries of the dump go to `dumped`, then `end_resync` (or
    /// `end_lookup`). `full`: a dump of the whole table, which recounts what is not kept.
    pub fn begin_resync(&mut self, full: bool) {
        self.generation = self.generation.wrapping_add(1);
        self.resyncing = true;
        self.touched.clear();
        self.tally = full.then_some(0);
        self.raced = 0;
    }

    /// How many events of the last full dump were about flows it did not keep (each may
    /// leave its recount one off); the watcher then asks for another full dump soon.
    pub fn take_raced(&mut self) -> u64 {
        std::mem::take(&mut self.raced)
    }

    /// Records an entry of the running resync's dump.
    pub fn dumped(&mut self, e: &Entry, now: Duration) -> Option<Transition> {
        if self.touched.contains(&e.key) {
            return None;
        }
        self.observe(e, now, Sight::Dump)
    }

    /// A resync whose dump failed: nothing is settled.
    pub fn abort_resync(&mut self) {
        self.resyncing = false;
        self.touched = HashSet::new();
        self.tally = None;
    }

    /// Settles what the dump did not show. After a dump of offloaded entries, a flow we
    /// had as offloaded and that was not in it has left the flowtable (idle timeout,
    /// teardown, table deleted): it is back on the slow path. After a full dump, a flow
    /// not in it is gone (its DESTROY event was lost), and its tally is the count of
    /// slow flows not kept.
    pub fn end_resync(&mut self, filter: DumpFilter, now: Duration) -> Vec<Transition> {
        let generation = self.generation;
        let tally = self.tally;
        // Events during the dump marked what they touched as seen (`observe`).
        self.abort_resync();
        let mut out = Vec::new();
        self.stats.dumps += 1;
        if filter == DumpFilter::All {
            self.stats.full_dumps += 1;
            self.untracked = tally.unwrap_or(self.untracked);
            self.initial = false;
            let before = self.flows.len();
            let stats = &mut self.stats;
            self.flows.retain(|_, f| {
                let keep = f.seen == generation;
                if !keep {
                    match f.path {
                        Path::Slow => stats.slow -= 1,
                        Path::Sw => stats.sw -= 1,
                        Path::Hw => stats.hw -= 1,
                    }
                }
                keep
            });
            tracing::debug!(
                dropped = before - self.flows.len(),
                untracked = self.untracked,
                "full resync"
            );
            self.shrink_if_mostly_empty();
            return out;
        }
        let stale: Vec<FlowKey> = self
            .flows
            .iter()
            .filter(|(_, f)| f.path != Path::Slow && f.seen != generation)
            .map(|(k, _)| *k)
            .collect();
        for key in stale {
            if let Some(t) = self.set_path(key, Path::Slow, now) {
                out.push(t);
            }
        }
        out
    }

    /// Forgets slow flows that are no longer young (on the slow path for `RECENT`):
    /// they are counted from now on, not kept. Returns how many.
    pub fn forget_old(&mut self, now: Duration) -> usize {
        let cutoff = as_ms(now.saturating_sub(RECENT));
        let generation = self.generation;
        let (mut forgotten, mut dumped) = (0usize, 0u64);
        let (touched, resyncing) = (&self.touched, self.resyncing);
        self.flows.retain(|k, f| {
            if f.path != Path::Slow || f.since_ms >= cutoff {
                return true;
            }
            forgotten += 1;
            // The running full dump has shown it already (or will skip it): it must
            // count it, or its end would lose it.
            if resyncing && (f.seen == generation || touched.contains(k)) {
                dumped += 1;
            }
            false
        });
        if let Some(t) = &mut self.tally {
            *t += dumped;
        }
        self.untracked += forgotten as u64;
        self.stats.slow -= forgotten as u64;
        if forgotten > 0 {
            self.shrink_if_mostly_empty();
        }
        forgotten
    }

    /// The flows a lookup resync asks the kernel about: the offloaded ones (has one left
    /// the flowtable, or reached hardware?) and the slow ones that could be offloaded any
    /// moment: back from the flowtable, or two-way and first seen, within `RECENT`;
    /// newest first, at most `MAX_LOOKUPS`. Flows offloaded for longer than `RECENT` are
    /// asked about when their key falls in `spread`'s phase: with a stride of N, each
    /// once every N resyncs (all of them with a stride of 1).
    pub fn lookup_plan(&self, now: Duration, spread: Spread) -> LookupPlan {
        let recent_since = as_ms(now.saturating_sub(RECENT));
        let mut keys = Vec::new();
        let mut recent = Vec::new();
        let mut spread_over = 0;
        for (k, f) in &self.flows {
            if f.path != Path::Slow {
                if f.since_ms >= recent_since {
                    keys.push(*k);
                } else {
                    spread_over += 1;
                    if spread.covers(k) {
                        keys.push(*k);
                    }
                }
            } else if f.since_ms >= recent_since && (f.moved || f.status & IPS_SEEN_REPLY != 0) {
                // Back from the flowtable, or two-way and new or first seen (at start: a
                // table we just built re-offloads running flows without an event). A
                // one-way or half-open flow cannot be offloaded; the event that changes
                // that brings it here.
                recent.push((f.since_ms, *k));
            }
        }
        recent.sort_unstable_by_key(|r| std::cmp::Reverse(r.0));
        keys.extend(recent.into_iter().map(|(_, k)| k));
        keys.truncate(MAX_LOOKUPS);
        LookupPlan { keys, spread_over }
    }

    /// Every flow `lookup_plan` would ask about with no spreading.
    #[cfg(test)]
    pub fn lookup_keys(&self, now: Duration) -> Vec<FlowKey> {
        self.lookup_plan(now, Spread::ALL).keys
    }

    /// Ends a lookup resync: entries found went through `dumped`; a flow asked about and
    /// not found is gone from the kernel (its DESTROY event was lost), unless an event
    /// touched it meanwhile.
    pub fn end_lookup(&mut self, asked: &[FlowKey], found: &HashSet<FlowKey>, took: Duration) {
        for k in asked {
            if found.contains(k) || self.touched.contains(k) {
                continue;
            }
            match self.flows.remove(k) {
                Some(old) => self.count(old.path, -1),
                // Forgotten while the lookup ran, and gone: counted, so uncount it.
                None => self.untracked = self.untracked.saturating_sub(1),
            }
        }
        self.abort_resync();
        self.shrink_if_mostly_empty();
        self.stats.lookups += 1;
        self.stats.last_lookup_flows = asked.len() as u64;
        self.stats.last_lookup_ms = Some(ms(took));
    }

    /// Counts are approximate (events lost) until the next full resync ends.
    pub fn set_approximate(&mut self, approximate: bool) {
        self.stats.approximate = approximate;
    }
}

#[cfg(test)]
#[path = "tracker_resync_tests.rs"]
mod tests;
