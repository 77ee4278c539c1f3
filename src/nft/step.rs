//! `next_step`: what one apply sends, decided from values alone. It looks at what offloadd
//! applied last, the plan, one consistent reading of our table, whether a flush is asked
//! and whether the table may carry the owner flag, and names the batch: nothing, hooks
//! only, a flush, or the whole table. The executor (`Nft::apply` in `kernel.rs`) sends
//! what the step says and reacts only to the kernel's answer (`after_refusal`): decide
//! again on a race, drop the owner flag once where the kernel refuses it. The step also
//! tells the truth afterwards: whether anything was committed, whether flows were flushed.

use nftnl_sys::libc;

use super::batch::{self, BuiltBatch, DeviceChange, Object, TableFlags};
use super::readback::Actual;
use crate::plan::Desired;

/// What one decision looks at. `'w` is the plan's lifetime: a step borrows only the plan
/// (its hook changes name the plan's flowtables), so the rest may be read and dropped.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a, 'w> {
    /// The plan last applied through this socket (as the kernel accepted it); `None` at
    /// start and after `remove`. Hooks alone are changed only from a plan of ours: a
    /// table found at start (left by a daemon on a kernel without the owner flag) is
    /// replaced, not adopted.
    pub applied: Option<&'a Desired>,
    /// The plan to bring the kernel to.
    pub want: &'w Desired,
    /// The rule expressions `want` builds: what the reading must show for our chain.
    pub rules: &'a [String],
    /// Our table as the kernel holds it now (one consistent reading).
    pub actual: &'a Actual,
    /// Replace the flowtables even if nothing else changed (a firewall change or
    /// `offloadd flush`).
    pub flush: bool,
    /// Create the table with NFT_TABLE_F_OWNER; false once the kernel refused it.
    pub owner: bool,
}

/// One batch, or none: exactly what the executor sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step<'w> {
    /// The kernel holds the plan: nothing is sent. Either it is the plan applied last, or
    /// the plan differs from it only by hooks the kernel already changed itself (a
    /// deleted device silently leaves the flowtable, DESIGN.md).
    Nothing,
    /// Only flowtable hooks differ: NEWFLOWTABLE on the live flowtable naming the devices
    /// to add, DELFLOWTABLE naming the hooks to remove, both with the plan's flags.
    /// Adding a device to a live flowtable keeps every offloaded flow offloaded; the
    /// update must carry the same flags, or `counter` is silently dropped (DESIGN.md).
    Hooks(Vec<DeviceChange<'w>>),
    /// Empty our chain, delete our flowtables `existing`, create the plan's flowtables
    /// and rules again (`batch::flush`). Table and chain stay, so the chain keeps its
    /// place among the forward hooks; every flow in `existing` goes back to the normal
    /// path and meets the current firewall on its next packet.
    Flush { existing: Vec<String> },
    /// No table of ours: create it whole (with the owner flag if `owner`).
    Create { owner: bool },
    /// Delete our table and create it whole, in one batch. Anything but hooks differs
    /// (exclusions, priority, flags: toggling `offload` on a live flowtable is refused,
    /// DESIGN.md), or a flush whose chain must move. `existing`: our flowtables the
    /// delete takes with it, and with them every offloaded flow.
    Replace { owner: bool, existing: Vec<String> },
}

/// Decides what to send to bring the kernel from `i.actual` to `i.want`. Pure: no
/// socket, no clock; the same inputs give the same step.
pub fn next_step<'w>(i: &Inputs<'_, 'w>) -> Step<'w> {
    let Inputs {
        applied,
        want,
        rules,
        actual,
        flush,
        owner,
    } = *i;
    // The kernel's table has the plan's shape (flags, chain, rules) and the plan differs
    // from ours only in devices: hooks alone bring it there, so flows on the other
    // devices keep their fast path (fw4 recreates the flowtable here).
    if !flush
        && applied.is_some_and(|a| a.differs_only_in_devices(want))
        && actual.verify_shape(want, rules, owner).is_ok()
    {
        let changes = actual.device_changes(want);
        return if changes.is_empty() {
            Step::Nothing
        } else {
            Step::Hooks(changes)
        };
    }
    let existing: Vec<String> = actual.flowtables.iter().map(|f| f.name.clone()).collect();
    match &actual.table {
        None => Step::Create { owner },
        // A base chain's priority cannot be changed in place: at another priority the
        // flush goes through the whole replace, whose delete flushes too.
        Some(_)
            if flush
                && matches!(actual.chains.as_slice(), [c] if c.hook.is_some_and(|h| h.1 == want.priority)) =>
        {
            Step::Flush { existing }
        }
        Some(_) => Step::Replace { owner, existing },
    }
}

impl Step<'_> {
    /// The batch this step sends for `want` (the plan it was decided for); `None` for
    /// `Nothing`.
    pub fn batch(&self, want: &Desired) -> Option<BuiltBatch> {
        Some(match self {
            Step::Nothing => return None,
            Step::Hooks(changes) => batch::update_devices(changes),
            Step::Flush { existing } => {
                let existing: Vec<&str> = existing.iter().map(String::as_str).collect();
                batch::flush(want, &existing)
            }
            Step::Create { owner } => batch::create(want, TableFlags { owner: *owner }, false),
            Step::Replace { owner, .. } => batch::create(want, TableFlags { owner: *owner }, true),
        })
    }

    /// Whether this step sends a batch (committed, it changes the ruleset).
    pub fn commits(&self) -> bool {
        !matches!(self, Step::Nothing)
    }

    /// Whether committing this step deletes flowtables of ours, so every flow offloaded
    /// in them returns to the normal path. Creating a missing table flushes nothing: no
    /// flow of ours was offloaded.
    pub fn flushes(&self) -> bool {
        match self {
            Step::Flush { existing } | Step::Replace { existing, .. } => !existing.is_empty(),
            Step::Nothing | Step::Hooks(_) | Step::Create { .. } => false,
        }
    }
}

/// What the executor does when the kernel refused a step's batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reaction {
    /// Read again and decide again (`transient`).
    Retry,
    /// The kernel refused the table's owner flag (NFT_TABLE_F_OWNER arrived in 5.12; older
    /// kernels answer EOPNOTSUPP on NEWTABLE): decide again with `owner: false`.
    WithoutOwner,
    /// The refusal is the answer.
    Fail,
}

/// The executor's one question after a refusal, answered from values too.
pub fn after_refusal(step: &Step, refusal: &(Object, i32)) -> Reaction {
    if transient(refusal) {
        return Reaction::Retry;
    }
    match (step, refusal) {
        (
            Step::Create { owner: true } | Step::Replace { owner: true, .. },
            (Object::Table, libc::EOPNOTSUPP),
        ) => Reaction::WithoutOwner,
        _ => Reaction::Fail,
    }
}

/// A refusal that means "read again and retry", not "this change is wrong": ERESTART on
/// the batch when another program committed after our reading (the generation in
/// BATCH_BEGIN no longer matches), EBUSY from any object.
pub fn transient(refusal: &(Object, i32)) -> bool {
    matches!(refusal, (Object::Batch, libc::ERESTART) | (_, libc::EBUSY))
}

#[cfg(test)]
#[path = "step_tests.rs"]
mod tests;
