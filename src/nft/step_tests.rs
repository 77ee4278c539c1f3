//! `next_step` on fixtures of the kernel's state: each test builds what offloadd applied
//! last, the plan, and what a reading of the kernel shows, and checks the batch named and
//! what it reports (committed? flushed?). The kernel facts they stand on are DESIGN.md's.

use super::*;
use crate::nft::fixtures::{holding, hooked, plan_of, rules, software};
use crate::plan::FLOWTABLE;

/// `next_step` with the owner flag allowed.
fn step<'w>(
    applied: Option<&Desired>,
    want: &'w Desired,
    actual: &Actual,
    flush: bool,
) -> Step<'w> {
    step_owner(applied, want, actual, flush, true)
}

fn step_owner<'w>(
    applied: Option<&Desired>,
    want: &'w Desired,
    actual: &Actual,
    flush: bool,
    owner: bool,
) -> Step<'w> {
    let rules = rules(want);
    next_step(&Inputs {
        applied,
        want,
        rules: &rules,
        actual,
        flush,
        owner,
    })
}

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Each batch's objects, BATCH_BEGIN and BATCH_END left out.
fn objects(s: &Step, want: &Desired) -> Vec<Object> {
    let b = s.batch(want).expect("a batch");
    b.objects[1..b.objects.len() - 1].to_vec()
}

// Nothing.

#[test]
fn nothing_when_the_kernel_holds_what_was_applied() {
    let d = software(&["lan0", "wan0"]);
    let s = step(Some(&d), &d, &holding(&d, true), false);
    assert_eq!(s, Step::Nothing);
    assert!(s.batch(&d).is_none());
    assert!(!s.commits() && !s.flushes());
}

/// The first misreport of issue 27: a device was deleted, and the kernel dropped its
/// hook by itself (DESIGN.md: a deleted device silently leaves the flowtable). The new
/// plan differs from the last only in that device, the kernel already holds it: nothing
/// is sent, and nothing is reported as changed (it said "ruleset changed").
#[test]
fn nothing_when_the_kernel_already_dropped_a_deleted_devices_hook() {
    let before = software(&["lan0", "wan0", "wan1"]);
    let now = software(&["lan0", "wan0"]);
    let kernel = hooked(holding(&before, true), &["lan0", "wan0"]);
    let s = step(Some(&before), &now, &kernel, false);
    assert_eq!(s, Step::Nothing);
    assert!(!s.commits(), "nothing is sent, so nothing changed");
}

/// The same when the plan changes only in what it reports (`configured`, `missing`): a
/// configured device that no flowtable names appeared.
#[test]
fn nothing_when_only_the_report_fields_of_the_plan_differ() {
    let before = software(&["lan0", "wan0"]).without_flowtable();
    let now = software(&["lan0", "wan0", "wan1"]).without_flowtable();
    assert_ne!(before, now);
    let s = step(Some(&before), &now, &holding(&before, true), false);
    assert_eq!(s, Step::Nothing);
    assert!(!s.commits());
}

// Hooks only.

#[test]
fn a_device_that_appears_is_added_as_a_hook_with_the_same_flags() {
    let before = software(&["lan0", "wan0"]);
    let now = software(&["lan0", "wan0", "wan1"]);
    let s = step(Some(&before), &now, &holding(&before, true), false);
    let ft = now.flowtable.as_ref().unwrap();
    assert_eq!(
        s,
        Step::Hooks(vec![DeviceChange {
            name: FLOWTABLE,
            flowtable: ft,
            add: names(&["wan1"]),
            remove: vec![],
        }])
    );
    assert!(
        ft.counter,
        "the update carries `counter`, or the kernel drops it"
    );
    assert!(s.commits() && !s.flushes(), "flows stay offloaded");
    // One NEWFLOWTABLE naming the new device: no table, chain or rule is touched.
    assert_eq!(
        objects(&s, &now),
        [Object::Flowtable {
            name: FLOWTABLE.into(),
            devices: names(&["wan1"]),
            hw_offload: false,
        }]
    );
}

/// A device deleted and created again under its name is not hooked again by the kernel
/// (5.15-6.12, DESIGN.md): the plan is unchanged, the hook is missing, offloadd adds it.
#[test]
fn a_device_that_came_back_is_hooked_again_under_the_same_plan() {
    let d = software(&["lan0", "wan0"]);
    let kernel = hooked(holding(&d, true), &["lan0"]);
    let s = step(Some(&d), &d, &kernel, false);
    assert!(
        matches!(&s, Step::Hooks(c) if c[0].add == ["wan0"] && c[0].remove.is_empty()),
        "{s:?}"
    );
}

/// A hook the plan no longer wants (a configured device renamed away: on this kernel
/// the hook follows the device to its new name) is removed alone with DELFLOWTABLE.
#[test]
fn a_hook_the_plan_no_longer_names_is_removed_alone() {
    let d = software(&["lan0", "wan0"]);
    let kernel = hooked(holding(&d, true), &["lan0", "wan0", "wan9"]);
    let s = step(Some(&d), &d, &kernel, false);
    assert!(
        matches!(&s, Step::Hooks(c) if c[0].add.is_empty() && c[0].remove == ["wan9"]),
        "{s:?}"
    );
    assert_eq!(objects(&s, &d).len(), 1);
}

// Flush.

#[test]
fn a_flush_replaces_the_flowtables_and_keeps_table_and_chain() {
    let d = software(&["lan0", "wan0"]);
    let s = step(Some(&d), &d, &holding(&d, true), true);
    assert_eq!(
        s,
        Step::Flush {
            existing: names(&["ft"])
        }
    );
    assert!(s.commits() && s.flushes());
    let o = objects(&s, &d);
    assert!(
        !o.iter()
            .any(|o| matches!(o, Object::Table | Object::DeleteTable)),
        "the table stays: {o:?}"
    );
    let flowtables = o
        .iter()
        .filter(|o| matches!(o, Object::Flowtable { .. }))
        .count();
    assert_eq!(flowtables, 2, "DELFLOWTABLE ft, NEWFLOWTABLE ft: {o:?}");
}

/// A flush is asked after a firewall change whatever else holds: it wins over hooks.
#[test]
fn a_flush_wins_over_a_hook_change() {
    let before = software(&["lan0", "wan0"]);
    let now = software(&["lan0", "wan0", "wan1"]);
    let s = step(Some(&before), &now, &holding(&before, true), true);
    assert!(matches!(s, Step::Flush { .. }), "{s:?}");
}

/// The second misreport of issue 27: a flush asked for when there is no table creates
/// it, and flushes nothing (no flow of ours was offloaded). It answered "flushed".
#[test]
fn a_flush_without_a_table_creates_it_and_is_no_flush() {
    let d = software(&["lan0", "wan0"]);
    let s = step(None, &d, &Actual::default(), true);
    assert_eq!(s, Step::Create { owner: true });
    assert!(s.commits());
    assert!(!s.flushes(), "creating the table flushed nothing");
}

/// A table of ours without flowtables (a kernel without nf_flow_table, the host tier):
/// the flush rebuilds the rules and deletes no flowtable, so it flushed no flow.
#[test]
fn a_flush_of_a_table_without_flowtables_flushes_no_flow() {
    let d = software(&["lan0"]).without_flowtable();
    let s = step(Some(&d), &d, &holding(&d, true), true);
    assert_eq!(s, Step::Flush { existing: vec![] });
    assert!(s.commits() && !s.flushes());
}

/// A base chain's priority cannot change in place: the flush goes through the whole
/// replace, whose delete of the table flushes too.
#[test]
fn a_flush_whose_chain_must_move_replaces_the_table() {
    let before = software(&["lan0", "wan0"]);
    let mut now = before.clone();
    now.priority += 10;
    let s = step(Some(&before), &now, &holding(&before, true), true);
    assert_eq!(
        s,
        Step::Replace {
            owner: true,
            existing: names(&["ft"])
        }
    );
    assert!(s.flushes());
}

// Replace (or create).

#[test]
fn the_first_apply_creates_the_table() {
    let d = software(&["lan0"]);
    let s = step(None, &d, &Actual::default(), false);
    assert_eq!(s, Step::Create { owner: true });
    let o = objects(&s, &d);
    assert_eq!(o[0], Object::Table, "{o:?}");
    assert!(!o.contains(&Object::DeleteTable));
}

#[test]
fn new_exclusions_replace_the_whole_table_in_one_batch() {
    let before = software(&["lan0", "wan0"]);
    let now = plan_of(
        "hardware = \"off\"\n[[offload.exclude]]\nl4proto = \"udp\"\ndport = [\"5060\"]\n",
        &["lan0", "wan0"],
    );
    let s = step(Some(&before), &now, &holding(&before, true), false);
    assert_eq!(
        s,
        Step::Replace {
            owner: true,
            existing: names(&["ft"])
        }
    );
    assert!(s.commits() && s.flushes());
    let o = objects(&s, &now);
    assert_eq!(o[..2], [Object::DeleteTable, Object::Table], "{o:?}");
}

/// Toggling `flags offload` on a live flowtable is refused (DESIGN.md): a plan that
/// differs in it, even with the same devices, deletes and creates the table.
#[test]
fn toggling_hardware_offload_replaces_the_table() {
    let sw = plan_of("devices = [\"lan0\"]\nhardware = \"off\"\n", &["lan0"]);
    let hw = plan_of("devices = [\"lan0\"]\nhardware = \"auto\"\n", &["lan0"]);
    assert!(hw.flowtable.as_ref().unwrap().hw_offload);
    let s = step(Some(&sw), &hw, &holding(&sw, true), false);
    assert!(matches!(s, Step::Replace { .. }), "{s:?}");
}

/// A table found at start (no plan of ours applied yet) is replaced, not adopted, even
/// when it reads as the plan: it may be a table some earlier daemon left.
#[test]
fn a_table_found_at_start_is_replaced() {
    let d = software(&["lan0"]);
    let s = step(None, &d, &holding(&d, true), false);
    assert!(matches!(s, Step::Replace { owner: true, .. }), "{s:?}");
}

/// Another program changed a rule in our table: hooks alone cannot repair that.
#[test]
fn a_table_changed_by_another_program_is_replaced() {
    let before = software(&["lan0", "wan0"]);
    let now = software(&["lan0", "wan0", "wan1"]);
    let mut kernel = holding(&before, true);
    kernel.rules.pop();
    let s = step(Some(&before), &now, &kernel, false);
    assert!(matches!(s, Step::Replace { .. }), "{s:?}");
}

// The owner flag.

/// Linux < 5.12 refuses NFT_TABLE_F_OWNER on NEWTABLE with EOPNOTSUPP: the executor
/// decides again without it, once.
#[test]
fn a_refused_owner_flag_is_dropped_once() {
    let d = software(&["lan0"]);
    let empty = Actual::default();
    let first = step_owner(None, &d, &empty, false, true);
    assert_eq!(first, Step::Create { owner: true });
    let refused = (Object::Table, libc::EOPNOTSUPP);
    assert_eq!(after_refusal(&first, &refused), Reaction::WithoutOwner);
    let second = step_owner(None, &d, &empty, false, false);
    assert_eq!(second, Step::Create { owner: false });
    assert_eq!(
        after_refusal(&second, &refused),
        Reaction::Fail,
        "without the flag, the refusal is the answer"
    );
    // A replace asks for the flag too (the table is created again), and is refused alike.
    let replace = Step::Replace {
        owner: true,
        existing: vec![],
    };
    assert_eq!(after_refusal(&replace, &refused), Reaction::WithoutOwner);
}

/// Once the flag is dropped, our table without it reads as the plan.
#[test]
fn without_the_owner_flag_a_table_lacking_it_holds_the_plan() {
    let d = software(&["lan0"]);
    let kernel = holding(&d, false);
    assert_eq!(
        step_owner(Some(&d), &d, &kernel, false, false),
        Step::Nothing
    );
    // Where the flag is allowed, a table lacking it is not ours as planned.
    assert!(matches!(
        step_owner(Some(&d), &d, &kernel, false, true),
        Step::Replace { owner: true, .. }
    ));
}

// The executor's other reaction.

#[test]
fn a_race_is_decided_again_and_other_refusals_are_the_answer() {
    let d = software(&["lan0"]);
    let s = step(None, &d, &Actual::default(), false);
    let ft = |errno| {
        (
            Object::Flowtable {
                name: FLOWTABLE.into(),
                devices: names(&["lan0"]),
                hw_offload: false,
            },
            errno,
        )
    };
    assert_eq!(
        after_refusal(&s, &(Object::Batch, libc::ERESTART)),
        Reaction::Retry
    );
    assert_eq!(after_refusal(&s, &ft(libc::EBUSY)), Reaction::Retry);
    assert_eq!(after_refusal(&s, &ft(libc::ENOENT)), Reaction::Fail);
    assert_eq!(after_refusal(&s, &ft(libc::ERESTART)), Reaction::Fail);
    assert_eq!(
        after_refusal(&s, &(Object::Table, libc::EINVAL)),
        Reaction::Fail
    );
}
