//! What went wrong talking to nf_tables, in words a router admin can act on. Every
//! errno is mapped to a cause and a next step; none is shown bare.

use super::batch::Object;

/// The message users get when the kernel has no flowtables (DESIGN.md, verified: both
/// NEWFLOWTABLE and the flow_offload rule fail with ENOENT then).
pub const NO_FLOWTABLE_SUPPORT: &str = "kernel lacks flowtable support (OpenWrt: opkg install kmod-nft-offload; modules nf_flow_table, nf_flow_table_inet, nft_flow_offload)";

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("cannot talk to nf_tables: {context}: {error} (is the nf_tables module loaded? offloadd needs root or CAP_NET_ADMIN)")]
    Io {
        context: &'static str,
        error: std::io::Error,
    },
    #[error("{NO_FLOWTABLE_SUPPORT}")]
    NoFlowtableSupport,
    #[error("hardware offload refused for {}: {reason}", devices.join(", "))]
    HardwareRefused {
        devices: Vec<String>,
        reason: String,
    },
    #[error("flowtable device disappeared while applying ({}); offloadd re-reads the devices and retries", devices.join(", "))]
    DeviceGone { devices: Vec<String> },
    #[error("{what}: {cause} ({name})")]
    Refused {
        what: String,
        /// The devices of the refused message, when it was a flowtable's.
        devices: Vec<String>,
        name: &'static str,
        errno: i32,
        cause: String,
    },
    #[error("table inet offloadd does not match what was applied: {0} (another program changed it? see `nft list table inet offloadd`)")]
    ReadBack(String),
}

impl NftError {
    pub fn errno(&self) -> Option<i32> {
        match self {
            NftError::Refused { errno, .. } => Some(*errno),
            NftError::Io { error, .. } => error.raw_os_error(),
            _ => None,
        }
    }
}

/// Symbolic errno names for the values nf_tables returns.
pub fn errno_name(errno: i32) -> &'static str {
    match errno {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::ENODEV => "ENODEV",
        libc::EINVAL => "EINVAL",
        libc::ENOSPC => "ENOSPC",
        libc::ENOMEM => "ENOMEM",
        libc::ENOBUFS => "ENOBUFS",
        libc::EMSGSIZE => "EMSGSIZE",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EAFNOSUPPORT => "EAFNOSUPPORT",
        libc::EPROTONOSUPPORT => "EPROTONOSUPPORT",
        libc::E2BIG => "E2BIG",
        libc::ERANGE => "ERANGE",
        libc::EAGAIN => "EAGAIN",
        _ => "errno",
    }
}

/// Maps the kernel's refusal of one message to an error with cause and next step.
/// ENOENT on the flowtable is ambiguous (no flowtable support, or a device vanished);
/// the caller settles that with a probe before calling this.
pub fn explain(object: &Object, errno: i32) -> NftError {
    let what = describe(object);
    let cause: String = match (object, errno) {
        (Object::Flowtable { hw_offload: true, devices, .. }, libc::EOPNOTSUPP) => {
            return NftError::HardwareRefused {
                devices: devices.clone(),
                reason: "driver does not support TC_SETUP_FT (EOPNOTSUPP); use hardware = \"auto\" to fall back to software offload".into(),
            }
        }
        (Object::FlowAdd, libc::ENOENT | libc::EOPNOTSUPP) => return NftError::NoFlowtableSupport,
        (Object::Batch, libc::EPERM) => "permission denied: run offloadd as root or with CAP_NET_ADMIN".into(),
        (_, libc::EPERM) => "table inet offloadd is owned by another process (is another offloadd running? stop it first; `nft list table inet offloadd` shows the table)".into(),
        (Object::Table, libc::EOPNOTSUPP) => "the kernel refused the table flags (the owner flag needs Linux 5.12 or later)".into(),
        (_, libc::EAFNOSUPPORT | libc::EPROTONOSUPPORT) => "the kernel lacks nf_tables for family inet (OpenWrt: opkg install kmod-nft-core; elsewhere: modprobe nf_tables)".into(),
        (Object::Exclude { .. }, libc::ENOENT | libc::EOPNOTSUPP) => "the kernel lacks an expression this exclusion needs (modules nft_ct, nft_range; OpenWrt: kmod-nft-core)".into(),
        (Object::Flowtable { .. }, libc::EEXIST) | (Object::Table, libc::EEXIST) => "already exists; offloadd replaces its own table at start, so this is a race with another program".into(),
        (_, libc::EBUSY) => "nf_tables is busy (another program changed the ruleset at the same moment); try again".into(),
        (_, libc::ENOMEM | libc::ENOBUFS | libc::ENOSPC) => "the kernel ran out of memory for the ruleset; free memory or reduce exclusions".into(),
        (_, libc::EMSGSIZE | libc::E2BIG) => "the ruleset is too large for one message; reduce exclusions".into(),
        (_, libc::EINVAL | libc::ERANGE) => "the kernel rejected the message as invalid (kernel too old for this feature? please report with `uname -r`)".into(),
        (_, libc::ENOENT) => "the kernel does not know an object this message refers to (a missing module?)".into(),
        (_, libc::EOPNOTSUPP) => "the kernel does not support this (too old, or a module is missing)".into(),
        (_, e) => format!("unexpected error: {}", std::io::Error::from_raw_os_error(e)),
    };
    let devices = match object {
        Object::Flowtable { devices, .. } => devices.clone(),
        _ => Vec::new(),
    };
    NftError::Refused {
        what,
        devices,
        name: errno_name(errno),
        errno,
        cause,
    }
}

fn describe(object: &Object) -> String {
    match object {
        Object::Batch => "nf_tables batch".into(),
        Object::DeleteTable => "deleting table inet offloadd".into(),
        Object::Table => "creating table inet offloadd".into(),
        Object::Flowtable { name, devices, .. } => {
            format!(
                "flowtable {name} in table inet offloadd (devices: {})",
                devices.join(", ")
            )
        }
        Object::Chain => "chain forward in table inet offloadd".into(),
        Object::Exclude { line, text } => format!("exclusion from config line {line} ({text})"),
        Object::ProtoSet => "set { tcp, udp } in table inet offloadd".into(),
        Object::DeviceSet => "set of hardware devices in table inet offloadd".into(),
        Object::FlowAdd => "rule `flow add` in table inet offloadd".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ft(hw: bool) -> Object {
        Object::Flowtable {
            name: "ft".into(),
            devices: vec!["eth0".into()],
            hw_offload: hw,
        }
    }

    #[test]
    fn hardware_refusal_names_device_and_driver() {
        let e = explain(&ft(true), libc::EOPNOTSUPP).to_string();
        assert!(
            e.contains("eth0") && e.contains("TC_SETUP_FT") && e.contains("EOPNOTSUPP"),
            "{e}"
        );
    }

    #[test]
    fn missing_flow_offload_expression_is_missing_support() {
        let e = explain(&Object::FlowAdd, libc::ENOENT).to_string();
        assert_eq!(e, NO_FLOWTABLE_SUPPORT);
        assert!(e.contains("kmod-nft-offload"));
    }

    #[test]
    fn permission_and_ownership_differ() {
        let e = explain(&Object::Batch, libc::EPERM).to_string();
        assert!(e.contains("CAP_NET_ADMIN") && e.contains("(EPERM)"), "{e}");
        let e = explain(&Object::Table, libc::EPERM).to_string();
        assert!(e.contains("another offloadd"), "{e}");
    }

    #[test]
    fn every_errno_gets_a_cause_and_a_name() {
        let objects = [
            Object::Batch,
            Object::Table,
            Object::Chain,
            ft(false),
            Object::FlowAdd,
            Object::Exclude {
                line: 3,
                text: "meta l4proto udp return".into(),
            },
        ];
        for o in &objects {
            for errno in 1..=133 {
                let s = explain(o, errno).to_string();
                assert!(!s.trim().is_empty());
                assert!(
                    !s.ends_with(&format!("os error {errno})")),
                    "bare errno for {o:?}: {s}"
                );
            }
        }
        let s = explain(&objects[5], libc::ENOENT).to_string();
        assert!(s.contains("config line 3"), "{s}");
    }
}
