//! `Nft`: applies `Desired` values to the kernel, one batch per change, and checks the
//! result by reading it back.

use std::thread;
use std::time::Duration;

use nftnl_sys::libc;

use super::batch::{self, BuiltBatch, Delivery, Object, TableFlags};
use super::error::{explain, NftError};
use super::features::{self, Features};
use super::hardware::{Change, Kernel};
use super::own::OwnCommits;
use super::readback::Actual;
use super::socket::NftSocket;
use super::step::{after_refusal, next_step, transient, Inputs, Reaction, Step};
use super::sys;
use crate::plan::Desired;

/// How often one change is decided again after another program committed between our
/// reading and our batch (ERESTART) or nf_tables said EBUSY (`step::transient`). Each
/// retry reads the kernel again, so a retry never sends a stale decision. Against a program that
/// commits without pause offloadd would give up after these and report the error.
const RACE_RETRIES: u32 = 20;

/// Owns the netlink socket and what was last applied through it.
pub struct Nft {
    sock: NftSocket,
    /// Use NFT_TABLE_F_OWNER; cleared once if the kernel refuses it (Linux < 5.12).
    owner: bool,
    /// Last ruleset applied, and the rule expressions it was built with.
    applied: Option<(Desired, Vec<String>)>,
    /// Batches decided again because the ruleset changed under them (since start).
    races: u64,
    /// The next apply must replace the flowtables even if nothing else changed; cleared
    /// when a batch commits (a refused or unanswered one leaves it asked for).
    flush: bool,
    /// Batches whose answers overflowed the receive buffer (since start).
    lost_answers: u64,
    /// The generations our batches committed as (read by the ruleset monitor).
    own: OwnCommits,
}

impl Nft {
    pub fn open() -> Result<Self, NftError> {
        let sock = NftSocket::open().map_err(|error| NftError::Io {
            context: "opening the netfilter netlink socket",
            error,
        })?;
        Ok(Nft {
            sock,
            owner: true,
            applied: None,
            races: 0,
            flush: false,
            lost_answers: 0,
            own: OwnCommits::default(),
        })
    }

    /// The record of our commits, for the ruleset monitor.
    pub fn own_commits(&self) -> OwnCommits {
        self.own.clone()
    }

    pub fn owner(&self) -> bool {
        self.owner
    }

    pub fn read(&mut self) -> Result<Actual, NftError> {
        Actual::read(&mut self.sock).map_err(|error| NftError::Io {
            context: "reading nf_tables state",
            error,
        })
    }

    fn table_exists(&mut self) -> Result<bool, NftError> {
        Ok(self.read()?.table.is_some())
    }

    /// Batches decided again after a concurrent commit or EBUSY, since start.
    pub fn races(&self) -> u64 {
        self.races
    }

    /// Batches whose answers overflowed the receive buffer and were settled by reading
    /// the kernel back, since start.
    pub fn lost_answers(&self) -> u64 {
        self.lost_answers
    }

    /// Sends a batch (or its trial) and returns the first refusal in batch order.
    /// When the kernel's answers were lost (receive buffer overrun), the socket has been
    /// drained and the outcome is settled by reading the kernel back: a batch that reads
    /// back as `expect` committed; otherwise the first refusal read counts.
    fn send(
        &mut self,
        b: &BuiltBatch,
        how: Delivery,
        expect: Option<(&Desired, &[String])>,
    ) -> Result<Option<(Object, i32)>, NftError> {
        if let Delivery::At(g) = how {
            self.own.sending(g);
        }
        let outcome = self.send_and_settle(b, how, expect);
        self.own
            .answered(matches!(outcome, Ok(None)) && matches!(how, Delivery::At(_)));
        outcome
    }

    /// `send` without the record of our commits.
    fn send_and_settle(
        &mut self,
        b: &BuiltBatch,
        how: Delivery,
        expect: Option<(&Desired, &[String])>,
    ) -> Result<Option<(Object, i32)>, NftError> {
        let answer = self.sock.send(b, how).map_err(|error| NftError::Io {
            context: "sending an nf_tables batch",
            error,
        })?;
        let first = answer.errors.into_iter().next();
        if !answer.lost {
            return Ok(first);
        }
        tracing::info!(
            messages = b.len(),
            "the kernel's answers to a batch overflowed the receive buffer; reading the ruleset back to learn the outcome"
        );
        self.lost_answers += 1;
        if let (Delivery::At(decided_on), Some((d, rules))) = (how, expect) {
            // Committed means: the generation moved (every commit bumps it; a refused
            // batch leaves it) and the kernel holds what we sent.
            let now = self.read()?;
            if now.generation != decided_on && now.verify(d, rules, self.owner).is_ok() {
                return Ok(None);
            }
        }
        // A trial ends without NFNL_MSG_BATCH_END: the kernel validates and aborts it,
        // so there is nothing to read back, only the lost verdict.
        let what = match how {
            Delivery::Trial => "the kernel's answers to a trial batch were lost (a trial commits nothing); try again",
            _ => "the kernel's answers were lost and the ruleset does not read back as sent",
        };
        first.map(Some).ok_or_else(|| NftError::Io {
            context: "sending an nf_tables batch",
            error: std::io::Error::other(what),
        })
    }

    /// Reads back after a committed batch. A device deleted since the plan (the kernel
    /// drops its hook with it) is no error: what the kernel accepted is recorded, and the
    /// devices are returned for the caller to plan again. The change is reported as
    /// `step`, the one committed, says.
    fn confirm(
        &mut self,
        desired: &Desired,
        rules: Vec<String>,
        step: &Step,
    ) -> Result<Change, NftError> {
        let actual = self.read()?;
        let mut held = desired.clone();
        let mut vanished = Vec::new();
        if let Err(first) = actual.verify(desired, &rules, self.owner) {
            vanished = desired
                .devices()
                .filter(|d| crate::link::ifindex(d).is_none())
                .map(str::to_string)
                .collect();
            for d in &vanished {
                held.remove_device(d);
            }
            if vanished.is_empty() || actual.verify(&held, &rules, self.owner).is_err() {
                return Err(NftError::ReadBack(first));
            }
            tracing::info!(devices = ?vanished, "a flowtable device was deleted right after the commit; planning again");
        }
        self.applied = Some((held, rules));
        Ok(Change {
            changed: step.commits(),
            flushed: step.flushes(),
            vanished,
        })
    }

    /// The kernel features offloadd uses, each found by a trial batch (`features.rs`).
    pub fn features(&mut self) -> Result<Features, NftError> {
        let mut ask = |b: BuiltBatch| self.send(&b, Delivery::Trial, None);
        let answers = features::Answers {
            base: ask(batch::probe_with(0, &[], 0))?,
            owner: ask(batch::probe_with(sys::NFT_TABLE_F_OWNER, &[], 0))?,
            counter: ask(batch::probe_with(0, &[], sys::NFT_FLOWTABLE_COUNTER))?,
            by_name: ask(batch::probe_with(0, &[features::ABSENT_DEVICE], 0))?,
        };
        features::interpret(&answers).map_err(|(o, e)| explain(&o, e))
    }

    /// Turns a refusal into an error; settles the ENOENT ambiguity on NEWFLOWTABLE.
    fn classify(&mut self, object: Object, errno: i32) -> NftError {
        if let (Object::Flowtable { devices, .. }, libc::ENOENT) = (&object, errno) {
            // Without nf_flow_table the type lookup fails with ENOENT; a vanished device
            // does too. A flowtable with no devices separates the two.
            let probe = batch::probe(&[], false);
            return match self.send(&probe, Delivery::Trial, None) {
                Ok(Some((Object::Flowtable { .. }, libc::ENOENT))) => NftError::NoFlowtableSupport,
                Ok(_) => NftError::DeviceGone {
                    devices: devices.clone(),
                },
                Err(e) => e,
            };
        }
        explain(&object, errno)
    }

    /// Called on a transient refusal (see `transient`): counts it, gives up with the
    /// kernel's reason after RACE_RETRIES, and otherwise lets the caller read again.
    fn race(&mut self, attempt: u32, refusal: (Object, i32)) -> Result<(), NftError> {
        if attempt >= RACE_RETRIES {
            return Err(self.classify(refusal.0, refusal.1));
        }
        self.races += 1;
        tracing::info!(
            errno = super::errno_name(refusal.1),
            attempt = attempt + 1,
            "nf_tables changed (another program committed) or was busy while offloadd applied; reading the ruleset again"
        );
        // Back off a little more each time: a program in the middle of a burst of
        // transactions (a firewall reload) gets to finish it.
        thread::sleep(Duration::from_millis(u64::from(attempt.min(10))));
        Ok(())
    }

    /// Asks the next apply to replace the flowtables (see `batch::flush`): every flow in
    /// them returns to the normal path and its next packet goes through the current
    /// firewall rules (and is offloaded again if they accept it).
    pub fn request_flush(&mut self) {
        self.flush = true;
    }

    /// Removes our table if it is there. Returns whether it was.
    pub fn remove(&mut self) -> Result<bool, NftError> {
        self.applied = None;
        for attempt in 0.. {
            let actual = self.read()?;
            if actual.table.is_none() {
                return Ok(false);
            }
            match self.send(&batch::delete(), Delivery::At(actual.generation), None)? {
                None | Some((_, libc::ENOENT)) => return Ok(true),
                Some(r) if transient(&r) => self.race(attempt, r)?,
                Some((o, e)) => return Err(self.classify(o, e)),
            }
        }
        unreachable!("race() ends the loop after RACE_RETRIES")
    }
}

impl Kernel for Nft {
    /// The executor: reads the kernel, sends what `next_step` names, and decides nothing
    /// itself but what a refusal asks for (`after_refusal`): read again on a race (up to
    /// RACE_RETRIES), or drop the owner flag once.
    fn apply(&mut self, desired: &Desired) -> Result<Change, NftError> {
        // What our chain must read back as; the table flags do not change the rules.
        let rules = batch::create(desired, TableFlags { owner: self.owner }, false).rule_texts();
        let mut attempt = 0;
        loop {
            let actual = self.read()?;
            let step = next_step(&Inputs {
                applied: self.applied.as_ref().map(|(d, _)| d),
                want: desired,
                rules: &rules,
                actual: &actual,
                flush: self.flush,
                owner: self.owner,
            });
            let Some(b) = step.batch(desired) else {
                // The reading shows the plan: record it as ours, so the next plan is
                // compared with it.
                self.applied = Some((desired.clone(), rules));
                return Ok(Change::default());
            };
            let at = Delivery::At(actual.generation);
            let refusal = match self.send(&b, at, Some((desired, &rules)))? {
                None => {
                    // Committed: whatever the step replaced, the flush asked for is done.
                    self.flush = false;
                    return self.confirm(desired, rules, &step);
                }
                Some(r) => r,
            };
            match after_refusal(&step, &refusal) {
                Reaction::Retry => {
                    self.race(attempt, refusal)?;
                    attempt += 1;
                }
                Reaction::WithoutOwner => {
                    tracing::warn!("kernel refused the table owner flag (Linux < 5.12): if offloadd is killed, remove the table with `nft delete table inet offloadd`");
                    self.owner = false;
                }
                Reaction::Fail => return Err(self.classify(refusal.0, refusal.1)),
            }
        }
    }

    fn holds(&mut self, d: &Desired) -> Result<bool, NftError> {
        let Some((applied, rules)) = &self.applied else {
            return Ok(false);
        };
        if applied != d || self.flush {
            return Ok(false);
        }
        let rules = rules.clone();
        Ok(self.read()?.verify(d, &rules, self.owner).is_ok())
    }

    fn ifindex(&mut self, device: &str) -> Option<u32> {
        crate::link::ifindex(device)
    }

    fn trial(&mut self, desired: &Desired) -> Result<(), NftError> {
        let replace = self.table_exists()?;
        let b = batch::create(desired, TableFlags { owner: self.owner }, replace);
        match self.send(&b, Delivery::Trial, None)? {
            None => Ok(()),
            Some((o, e)) => Err(self.classify(o, e)),
        }
    }

    fn probe(&mut self, device: &str, hw: bool) -> Result<(), NftError> {
        let b = batch::probe(&[device], hw);
        match self.send(&b, Delivery::Trial, None)? {
            None => Ok(()),
            Some((o, e)) => Err(self.classify(o, e)),
        }
    }

    fn hint(&mut self, device: &str) -> Option<String> {
        crate::link::hw_tc_offload_hint(device)
    }
}
