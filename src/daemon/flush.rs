//! When to flush after other programs' commits: pure, with time passed in.
//!
//! One fw4 reload or `firewall-cmd --reload` is several transactions within a few ms:
//! the first change opens a settle window and the flush happens once at its end, for
//! every change in it. A flush that fails (a device vanished during the reload) stays
//! due and is retried, backing off, until it has happened: until then offloaded flows
//! may still bypass the new rules, which is what the flush exists to prevent.

use std::time::{Duration, Instant};

use crate::config::FlushOn;
use crate::nft::monitor::RulesetChange;

/// Notifications of one `nft -f` or fw4 reload arrive within a few ms of each other.
pub const SETTLE: Duration = Duration::from_millis(50);
/// Retries of a failed flush: 100 ms, doubling, at most this far apart.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

#[derive(Debug, Default)]
pub struct FlushSchedule {
    due: Option<Instant>,
    /// Tables whose changes the next flush answers, deduplicated.
    tables: Vec<String>,
    failures: u32,
    /// When the first change the due flush answers arrived.
    since: Option<Instant>,
    /// Commits not flushed for: set elements only (policy "rules"), or policy "off".
    pub ignored: u64,
}

impl FlushSchedule {
    /// Takes one committed change; returns whether it made a flush due.
    pub fn change(&mut self, c: &RulesetChange, policy: FlushOn, now: Instant) -> bool {
        let flush = match policy {
            FlushOn::Off => false,
            FlushOn::Rules => !c.elements_only,
            FlushOn::Any => true,
        };
        if !flush {
            self.ignored += 1;
            return false;
        }
        for t in &c.tables {
            if !self.tables.contains(t) {
                self.tables.push(t.clone());
            }
        }
        self.due.get_or_insert(now + SETTLE);
        self.since.get_or_insert(now);
        true
    }

    /// When the next flush is due, if one is.
    pub fn due(&self) -> Option<Instant> {
        self.due
    }

    /// The tables the due flush is for.
    pub fn tables(&self) -> &[String] {
        &self.tables
    }

    /// The flush happened: the tables it was for, and when the first of their changes
    /// arrived (so the log can say how long the change took to reach offloaded flows).
    pub fn done(&mut self) -> (Vec<String>, Option<Instant>) {
        self.due = None;
        self.failures = 0;
        (std::mem::take(&mut self.tables), self.since.take())
    }

    /// The flush failed: it stays due, later. Returns the delay.
    pub fn failed(&mut self, now: Instant) -> Duration {
        self.failures += 1;
        let delay =
            (Duration::from_millis(100) * 2u32.saturating_pow(self.failures - 1)).min(MAX_BACKOFF);
        self.due = Some(now + delay);
        delay
    }

    /// Nothing to flush any more (we stopped managing: no table, no offloaded flows).
    pub fn cancel(&mut self) {
        self.since = None;
        self.due = None;
        self.failures = 0;
        self.tables.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(tables: &[&str], elements_only: bool) -> RulesetChange {
        RulesetChange {
            tables: tables.iter().map(|t| t.to_string()).collect(),
            elements_only,
        }
    }

    #[test]
    fn element_commits_do_not_flush_by_default_rule_commits_do_once() {
        let t0 = Instant::now();
        let mut s = FlushSchedule::default();
        for i in 0..2000 {
            let now = t0 + Duration::from_millis(i * 5);
            assert!(!s.change(&change(&["inet banip"], true), FlushOn::Rules, now));
        }
        assert_eq!((s.due(), s.ignored), (None, 2000));
        // A burst of rule changes (a fw4 reload) within the window: one flush.
        assert!(s.change(&change(&["inet fw4"], false), FlushOn::Rules, t0));
        assert!(s.change(
            &change(&["inet fw4", "inet other"], false),
            FlushOn::Rules,
            t0 + Duration::from_millis(30)
        ));
        assert_eq!(s.due(), Some(t0 + SETTLE), "the window does not move");
        // The flush answers both, timed from the first change.
        assert_eq!(
            s.done(),
            (
                vec!["inet fw4".to_string(), "inet other".to_string()],
                Some(t0)
            )
        );
        assert_eq!(s.due(), None);
    }

    #[test]
    fn policy_any_flushes_for_elements_and_off_never() {
        let t0 = Instant::now();
        let mut s = FlushSchedule::default();
        assert!(s.change(&change(&["inet x"], true), FlushOn::Any, t0));
        s.done();
        assert!(!s.change(&change(&["inet x"], false), FlushOn::Off, t0));
        assert_eq!((s.due(), s.ignored), (None, 1));
    }

    #[test]
    fn a_failed_flush_stays_due_and_backs_off() {
        let t0 = Instant::now();
        let mut s = FlushSchedule::default();
        s.change(&change(&["inet fw4"], false), FlushOn::Rules, t0);
        let delays: Vec<u128> = (0..8).map(|_| s.failed(t0).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        assert_eq!(s.due(), Some(t0 + MAX_BACKOFF));
        assert_eq!(s.tables(), ["inet fw4"], "still answering the same change");
        s.done();
        s.change(&change(&["inet fw4"], false), FlushOn::Rules, t0);
        assert_eq!(
            s.failed(t0).as_millis(),
            100,
            "backoff starts over after a success"
        );
    }
}
