//! Parsing what the kernel sends back (dumps of tables, flowtables, chains, rules) with
//! libnftnl's parsers, into plain Rust values.

use std::ffi::{c_char, CStr};

use nftnl_sys as sys;
use nftnl_sys::libc;

use super::alloc;

/// A table as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableInfo {
    pub family: u32,
    pub name: String,
    pub flags: u32,
}

/// A flowtable as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowtableInfo {
    pub family: u32,
    pub table: String,
    pub name: String,
    pub priority: i32,
    pub flags: u32,
    pub devices: Vec<String>,
}

/// A base or regular chain as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainInfo {
    pub family: u32,
    pub table: String,
    pub name: String,
    /// (hook number, priority, policy) for base chains.
    pub hook: Option<(u32, i32, u32)>,
}

/// A rule as the kernel reports it: where it is, and libnftnl's text of its expressions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleInfo {
    pub family: u32,
    pub table: String,
    pub chain: String,
    /// One `[ expr ... ]` per line, as `nft --debug=netlink` shows them.
    pub exprs: String,
}

unsafe fn str_attr(p: *const c_char) -> String {
    if p.is_null() {
        String::new()
    } else {
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }
}

/// Parses a NEWTABLE message.
///
/// # Safety
/// `nlh` must point at one complete, 4-byte aligned netlink message.
pub unsafe fn parse_table(nlh: *const libc::nlmsghdr) -> Option<TableInfo> {
    unsafe {
        let t = alloc(sys::nftnl_table_alloc()).as_ptr();
        let out = (sys::nftnl_table_nlmsg_parse(nlh, t) >= 0).then(|| TableInfo {
            family: sys::nftnl_table_get_u32(t, sys::NFTNL_TABLE_FAMILY as u16),
            name: str_attr(sys::nftnl_table_get_str(t, sys::NFTNL_TABLE_NAME as u16)),
            flags: sys::nftnl_table_get_u32(t, sys::NFTNL_TABLE_FLAGS as u16),
        });
        sys::nftnl_table_free(t);
        out
    }
}

/// Parses a NEWFLOWTABLE message.
///
/// # Safety
/// `nlh` must point at one complete, 4-byte aligned netlink message.
pub unsafe fn parse_flowtable(nlh: *const libc::nlmsghdr) -> Option<FlowtableInfo> {
    unsafe {
        let f = alloc(sys::nftnl_flowtable_alloc()).as_ptr();
        let out = (sys::nftnl_flowtable_nlmsg_parse(nlh, f) >= 0).then(|| {
            let mut devices = Vec::new();
            if sys::nftnl_flowtable_is_set(f, sys::NFTNL_FLOWTABLE_DEVICES as u16) {
                let mut p = sys::nftnl_flowtable_get_array(f, sys::NFTNL_FLOWTABLE_DEVICES as u16);
                while !p.is_null() && !(*p).is_null() {
                    devices.push(str_attr(*p));
                    p = p.add(1);
                }
            }
            FlowtableInfo {
                family: sys::nftnl_flowtable_get_u32(f, sys::NFTNL_FLOWTABLE_FAMILY as u16),
                table: str_attr(sys::nftnl_flowtable_get_str(
                    f,
                    sys::NFTNL_FLOWTABLE_TABLE as u16,
                )),
                name: str_attr(sys::nftnl_flowtable_get_str(
                    f,
                    sys::NFTNL_FLOWTABLE_NAME as u16,
                )),
                priority: sys::nftnl_flowtable_get_s32(f, sys::NFTNL_FLOWTABLE_PRIO as u16),
                flags: sys::nftnl_flowtable_get_u32(f, sys::NFTNL_FLOWTABLE_FLAGS as u16),
                devices,
            }
        });
        sys::nftnl_flowtable_free(f);
        out
    }
}

/// Parses a NEWCHAIN message.
///
/// # Safety
/// `nlh` must point at one complete, 4-byte aligned netlink message.
pub unsafe fn parse_chain(nlh: *const libc::nlmsghdr) -> Option<ChainInfo> {
    unsafe {
        let c = alloc(sys::nftnl_chain_alloc()).as_ptr();
        let out = (sys::nftnl_chain_nlmsg_parse(nlh, c) >= 0).then(|| ChainInfo {
            family: sys::nftnl_chain_get_u32(c, sys::NFTNL_CHAIN_FAMILY as u16),
            table: str_attr(sys::nftnl_chain_get_str(c, sys::NFTNL_CHAIN_TABLE as u16)),
            name: str_attr(sys::nftnl_chain_get_str(c, sys::NFTNL_CHAIN_NAME as u16)),
            hook: sys::nftnl_chain_is_set(c, sys::NFTNL_CHAIN_HOOKNUM as u16).then(|| {
                (
                    sys::nftnl_chain_get_u32(c, sys::NFTNL_CHAIN_HOOKNUM as u16),
                    sys::nftnl_chain_get_s32(c, sys::NFTNL_CHAIN_PRIO as u16),
                    sys::nftnl_chain_get_u32(c, sys::NFTNL_CHAIN_POLICY as u16),
                )
            }),
        });
        sys::nftnl_chain_free(c);
        out
    }
}

/// Parses a NEWRULE message.
///
/// # Safety
/// `nlh` must point at one complete, 4-byte aligned netlink message.
pub unsafe fn parse_rule(nlh: *const libc::nlmsghdr) -> Option<RuleInfo> {
    unsafe {
        let r = alloc(sys::nftnl_rule_alloc()).as_ptr();
        let out = (sys::nftnl_rule_nlmsg_parse(nlh, r) >= 0).then(|| {
            let mut buf = vec![0u8; 4096];
            let n = sys::nftnl_rule_snprintf(
                buf.as_mut_ptr().cast(),
                buf.len(),
                r,
                0, /* NFTNL_OUTPUT_DEFAULT */
                0,
            );
            buf.truncate(n.clamp(0, 4095) as usize);
            let text = String::from_utf8_lossy(&buf);
            RuleInfo {
                family: sys::nftnl_rule_get_u32(r, sys::NFTNL_RULE_FAMILY as u16),
                table: str_attr(sys::nftnl_rule_get_str(r, sys::NFTNL_RULE_TABLE as u16)),
                chain: str_attr(sys::nftnl_rule_get_str(r, sys::NFTNL_RULE_CHAIN as u16)),
                // The first line names family, table, chain and handle; keep the
                // expressions only, so a built rule and its read-back compare equal.
                exprs: text
                    .lines()
                    .skip(1)
                    .map(str::trim)
                    .collect::<Vec<_>>()
                    .join("\n"),
            }
        });
        sys::nftnl_rule_free(r);
        out
    }
}
