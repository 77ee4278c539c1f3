//! The generations of offloadd's own commits, so that lost notifications can be told
//! apart from lost changes of other programs.
//!
//! Every nf_tables commit bumps the ruleset generation by one (nf_tables_commit), and a
//! batch sent with NFNL_BATCH_GENID = G commits only while the generation is G: our
//! commit decided at G is generation G + 1, exactly. A flush of a big ruleset is thousands
//! of notifications (a DELRULE and a NEWRULE per rule) and can overrun the monitor's
//! socket by itself; were every overrun taken for a firewall change, that flush would
//! cause the next one, forever. The monitor asks here whether every generation it may
//! have lost was ours.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// How many of our recent commits are remembered. Lost ranges longer than this contain
/// foreign commits or are judged so (a flush more than needed, never one fewer).
const KEEP: usize = 256;

#[derive(Debug, Default)]
struct Record {
    /// The generation our batch in flight commits as, if it commits.
    in_flight: Option<u32>,
    done: VecDeque<u32>,
    /// Overruns whose lost stretch held only our commits.
    forgiven: u64,
}

/// Shared between the nft thread (which records) and the monitor (which asks).
#[derive(Debug, Clone, Default)]
pub struct OwnCommits(Arc<Mutex<Record>>);

/// What the monitor learns about a range of possibly lost generations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lost {
    /// Every generation in it is one of our commits.
    Ours,
    /// At least one may be another program's commit.
    Foreign,
    /// One of them is our batch still being answered: ask again shortly.
    Undecided,
}

/// The generation after `g` (the kernel skips 0 when it wraps).
pub fn next_generation(g: u32) -> u32 {
    match g.wrapping_add(1) {
        0 => 1,
        n => n,
    }
}

impl OwnCommits {
    /// Before sending a batch decided at generation `at`.
    pub fn sending(&self, at: u32) {
        self.0.lock().unwrap().in_flight = Some(next_generation(at));
    }

    /// After its answer: whether it committed.
    pub fn answered(&self, committed: bool) {
        let mut r = self.0.lock().unwrap();
        if let (Some(g), true) = (r.in_flight.take(), committed) {
            if r.done.len() == KEEP {
                r.done.pop_front();
            }
            r.done.push_back(g);
        }
    }

    /// Judges the generations after `after` up to and including `upto`.
    pub fn judge(&self, after: u32, upto: u32) -> Lost {
        let r = self.0.lock().unwrap();
        judge(&r.done, r.in_flight, after, upto)
    }

    /// The monitor found an overrun that lost only our commits.
    pub fn forgive(&self) {
        self.0.lock().unwrap().forgiven += 1;
    }

    /// Overruns that lost only our commits, since start.
    pub fn forgiven(&self) -> u64 {
        self.0.lock().unwrap().forgiven
    }
}

/// Pure core of `OwnCommits::judge`.
fn judge(done: &VecDeque<u32>, in_flight: Option<u32>, after: u32, upto: u32) -> Lost {
    let span = upto.wrapping_sub(after);
    if span as usize > KEEP {
        return Lost::Foreign;
    }
    let mut g = after;
    let mut undecided = false;
    while g != upto {
        g = next_generation(g);
        if in_flight == Some(g) {
            undecided = true;
        } else if !done.contains(&g) {
            return Lost::Foreign;
        }
    }
    if undecided {
        Lost::Undecided
    } else {
        Lost::Ours
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_is_ours_only_when_every_generation_in_it_was_committed_by_us() {
        let own = OwnCommits::default();
        for at in [10, 11, 13] {
            own.sending(at);
            own.answered(true);
        }
        // Ours: 11, 12, 14. 13 is someone else's.
        assert_eq!(own.judge(10, 12), Lost::Ours);
        assert_eq!(own.judge(10, 13), Lost::Foreign);
        assert_eq!(own.judge(13, 14), Lost::Ours);
        assert_eq!(own.judge(9, 12), Lost::Foreign, "10 is not ours");
        // Nothing lost at all.
        assert_eq!(own.judge(14, 14), Lost::Ours);
        // A refused batch is not a commit.
        own.sending(14);
        own.answered(false);
        assert_eq!(own.judge(14, 15), Lost::Foreign);
    }

    #[test]
    fn a_batch_in_flight_is_waited_for() {
        let own = OwnCommits::default();
        own.sending(20);
        assert_eq!(own.judge(20, 21), Lost::Undecided);
        assert_eq!(
            own.judge(19, 21),
            Lost::Foreign,
            "a foreign one decides at once"
        );
        own.answered(true);
        assert_eq!(own.judge(20, 21), Lost::Ours);
    }

    #[test]
    fn wraps_and_long_ranges() {
        let own = OwnCommits::default();
        own.sending(u32::MAX);
        own.answered(true);
        assert_eq!(next_generation(u32::MAX), 1);
        assert_eq!(own.judge(u32::MAX, 1), Lost::Ours);
        // Longer than what is remembered: foreign, without walking it.
        assert_eq!(own.judge(1, 1 + KEEP as u32 + 1), Lost::Foreign);
        // Old commits fall out of the record.
        for at in 100..100 + KEEP as u32 + 1 {
            own.sending(at);
            own.answered(true);
        }
        assert_eq!(own.judge(100, 101), Lost::Foreign);
        assert_eq!(own.judge(101, 102), Lost::Ours);
    }
}
