//! The kernel features offloadd uses, each found by trying: a trial batch that the kernel
//! checks and never commits. Version numbers say little (distribution kernels backport,
//! RHEL 9's 5.14 has much of 6.x), an answer to a batch says exactly.

use serde::Serialize;

use super::batch::Object;

/// A device name no device has (at most IFNAMSIZ - 1 bytes).
pub const ABSENT_DEVICE: &str = "offloadd-nodev";

/// The kernel's first refusal of one trial batch, `None` when it accepted all of it.
pub type Answer = Option<(Object, i32)>;

/// The answers to the four feature trials.
#[derive(Debug, Clone)]
pub struct Answers {
    /// A table and a flowtable without devices.
    pub base: Answer,
    /// The same table with NFT_TABLE_F_OWNER.
    pub owner: Answer,
    /// The same flowtable with NFT_FLOWTABLE_COUNTER.
    pub counter: Answer,
    /// The same flowtable hooked on ABSENT_DEVICE.
    pub by_name: Answer,
}

/// `None` where the answer does not tell (the feature needs flowtables, which are missing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Features {
    /// nf_flow_table is there: NEWFLOWTABLE of a device-less flowtable is accepted (its
    /// type lookup fails with ENOENT without the module).
    pub flowtables: bool,
    /// Table flag `owner` (Linux 5.12): the kernel deletes the table when our socket
    /// closes. Unknown flags are refused with EOPNOTSUPP.
    pub owner: Option<bool>,
    /// Flowtable flag `counter` (5.7): conntrack counters stay right for offloaded flows.
    pub counter: Option<bool>,
    /// Hooks kept by name (6.16): a flowtable may name a device that does not exist, and
    /// is bound to it when it appears. Before, that is ENOENT, and offloadd adds the
    /// device itself when it appears (as it does on every kernel).
    pub hooks_by_name: Option<bool>,
}

fn refused_with(a: &Answer, errno: i32, flowtable: bool) -> bool {
    matches!(a, Some((o, e)) if *e == errno && matches!(o, Object::Flowtable { .. }) == flowtable)
}

/// What the answers say; the refusal that says nothing about a feature (not root, say) is
/// returned as it is.
pub fn interpret(a: &Answers) -> Result<Features, (Object, i32)> {
    let flowtables = match &a.base {
        None => true,
        r if refused_with(r, libc::ENOENT, true) => false,
        Some(r) => return Err(r.clone()),
    };
    let owner = match &a.owner {
        None => Some(true),
        r if refused_with(r, libc::EOPNOTSUPP, false) => Some(false),
        // Without flowtables the table part is what was asked: it passed.
        r if !flowtables && refused_with(r, libc::ENOENT, true) => Some(true),
        _ => None,
    };
    let with_flowtables = |answer: &Answer, errno: i32| match answer {
        _ if !flowtables => None,
        None => Some(true),
        r if refused_with(r, errno, true) => Some(false),
        _ => None,
    };
    Ok(Features {
        flowtables,
        owner,
        counter: with_flowtables(&a.counter, libc::EOPNOTSUPP),
        hooks_by_name: with_flowtables(&a.by_name, libc::ENOENT),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ft() -> Object {
        Object::Flowtable {
            name: "probe".into(),
            devices: vec![],
            hw_offload: false,
        }
    }

    #[test]
    fn a_6_1_kernel_has_all_but_hooks_by_name() {
        let a = Answers {
            base: None,
            owner: None,
            counter: None,
            by_name: Some((ft(), libc::ENOENT)),
        };
        let f = interpret(&a).unwrap();
        assert_eq!(
            f,
            Features {
                flowtables: true,
                owner: Some(true),
                counter: Some(true),
                hooks_by_name: Some(false)
            }
        );
    }

    #[test]
    fn old_kernels_refuse_unknown_flags_with_eopnotsupp() {
        let a = Answers {
            base: None,
            owner: Some((Object::Table, libc::EOPNOTSUPP)),
            counter: Some((ft(), libc::EOPNOTSUPP)),
            by_name: None,
        };
        let f = interpret(&a).unwrap();
        assert_eq!(f.owner, Some(false));
        assert_eq!(f.counter, Some(false));
        assert_eq!(f.hooks_by_name, Some(true));
    }

    #[test]
    fn without_flowtables_only_the_table_flag_tells() {
        let missing = Some((ft(), libc::ENOENT));
        let a = Answers {
            base: missing.clone(),
            owner: missing.clone(),
            counter: missing.clone(),
            by_name: missing,
        };
        let f = interpret(&a).unwrap();
        assert_eq!(
            f,
            Features {
                flowtables: false,
                owner: Some(true),
                counter: None,
                hooks_by_name: None
            }
        );
    }

    #[test]
    fn a_refusal_that_tells_nothing_is_passed_on() {
        let a = Answers {
            base: Some((Object::Table, libc::EPERM)),
            owner: None,
            counter: None,
            by_name: None,
        };
        assert_eq!(interpret(&a).unwrap_err().1, libc::EPERM);
    }
}
