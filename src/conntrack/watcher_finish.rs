//! The end of a resync: what the watcher settles when a dump or a lookup round ends
//! (see `watcher.rs`).

use std::time::Duration;

use tracing::{debug, info, warn};

use super::super::dumper::Outcome;
use super::super::schedule::adapt;
use super::super::{CtError, DumpFilter};
use super::{Actor, Dump, Kind};

impl Actor {
    pub(super) fn finish(&mut self, dump: Dump, result: Result<Outcome, CtError>, now: Duration) {
        let took = dump.started.elapsed();
        match (result, dump.kind) {
            (Ok(Outcome::Lookup(count, asked)), _) => {
                self.tracker.note_malformed(count.malformed);
                self.tracker.end_lookup(&asked, &dump.found, took);
                self.rechecks.done(asked.len(), took, self.interval);
                debug!(
                    asked = count.asked,
                    found = count.found,
                    gone = count.gone,
                    took_us = took.as_micros() as u64,
                    "conntrack lookups"
                );
            }
            (Ok(Outcome::Dump(count)), Kind::Dump(filter)) => {
                self.tracker.note_malformed(count.malformed);
                for t in self.tracker.end_resync(filter, now) {
                    let _ = self.transitions.send(t);
                }
                self.tracker.note_dump(filter, took);
                let slot = match filter {
                    DumpFilter::All => &mut self.last_full,
                    DumpFilter::Offloaded => &mut self.last_filtered,
                };
                *slot = Some((dump.started, took));
                if filter == DumpFilter::All && self.overrun_at.is_none_or(|o| o <= dump.started) {
                    self.tracker.set_approximate(false);
                }
                // A recount that events raced (a flow counted, then destroyed or seen
                // again) may be off by one each: recount soon, not in a minute (spaced
                // like the recovery from an overrun, at most 2 % of the time).
                let raced = self.tracker.take_raced();
                if filter == DumpFilter::All && raced > 0 {
                    debug!(
                        raced,
                        "events raced the full resync's recount; another one follows"
                    );
                    self.full_due = true;
                }
                debug!(filter = ?filter, entries = count.entries, took_us = took.as_micros() as u64, "conntrack resync");
                if dump.unfiltered > 0 && self.filtered_dumps {
                    info!(entries = count.entries, "the kernel ignored the conntrack status filter (it arrived in Linux 5.15): every resync is a full dump of the table");
                }
                (self.filtered_dumps, self.interval) = adapt(
                    self.filtered_dumps,
                    self.interval,
                    filter,
                    dump.unfiltered,
                    took,
                );
            }
            (Ok(Outcome::Dump(_)), Kind::Lookup) => self.tracker.abort_resync(),
            (Err(CtError::Refused(errno)), Kind::Dump(DumpFilter::Offloaded)) => {
                self.tracker.abort_resync();
                info!(
                    "kernel refused the filtered conntrack dump ({}); resyncing with full dumps",
                    crate::nft::errno_name(errno)
                );
                self.filtered_dumps = false;
            }
            (Err(e), _) => {
                self.tracker.abort_resync();
                warn!("conntrack resync failed: {e}");
            }
        }
        if self.full_due {
            self.start_dump(false);
        }
    }
}
