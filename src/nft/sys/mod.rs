//! Every `unsafe` call into libnftnl that the nftnl crate does not wrap: the table with
//! flags, flowtables, the `flow_offload`, `ct ...` and `range` expressions here, and
//! parsing what the kernel sends back (`parse`). Nothing else in offloadd uses FFI for
//! nf_tables.
//!
//! libnftnl objects copy the strings and data they are given (nftnl_*_set_str/_data), so
//! the Rust values only have to live until the `set` call returns.

use std::ffi::{c_char, c_void, CString};
use std::ptr::{self, NonNull};

use nftnl::expr::Expression;
use nftnl::{MsgType, NlMsg, Rule};
use nftnl_sys as sys;
use nftnl_sys::libc;

mod parse;
pub use parse::*;

/// NFT_TABLE_F_OWNER (uapi nf_tables.h, Linux 5.12): the table belongs to the netlink
/// socket that created it and is destroyed by the kernel when that socket closes, so a
/// crashed daemon never leaves a half-maintained flowtable behind.
pub const NFT_TABLE_F_OWNER: u32 = 0x2;
/// NFT_FLOWTABLE_HW_OFFLOAD (`flags offload`).
pub const NFT_FLOWTABLE_HW_OFFLOAD: u32 = 0x1;
/// NFT_FLOWTABLE_COUNTER (`counter`).
pub const NFT_FLOWTABLE_COUNTER: u32 = 0x2;

/// Flowtable messages (enum nf_tables_msg_types in uapi nf_tables.h); libc lacks them.
/// NFT_MSG_NEWGEN / GETGEN (after DELSETELEM = 14): the ruleset generation, bumped by
/// every commit; NFTA_GEN_ID carries it (u32, network order).
pub const NFT_MSG_NEWGEN: i32 = 15;
pub const NFTA_GEN_ID: u16 = 1;
/// NFTA_RULE_TABLE: in a GETRULE dump request, only that table's rules are dumped.
pub const NFTA_RULE_TABLE: u16 = 1;
pub const NFT_MSG_NEWFLOWTABLE: i32 = 22;
pub const NFT_MSG_GETFLOWTABLE: i32 = 23;
pub const NFT_MSG_DELFLOWTABLE: i32 = 24;

/// Conntrack keys for `ct original ...` (enum nft_ct_keys in uapi nf_tables.h).
pub const NFT_CT_SRC_IP: u32 = 19;
pub const NFT_CT_DST_IP: u32 = 20;
pub const NFT_CT_SRC_IP6: u32 = 21;
pub const NFT_CT_DST_IP6: u32 = 22;
pub const NFT_CT_PROTO_SRC: u32 = libc::NFT_CT_PROTO_SRC as u32;
pub const NFT_CT_PROTO_DST: u32 = libc::NFT_CT_PROTO_DST as u32;

fn cstring(s: &str) -> CString {
    // Names come from validated config (interface names) or our own constants.
    CString::new(s).expect("object names never contain NUL")
}

/// NEWTABLE/DELTABLE for a table of family inet with table flags, which the nftnl
/// crate's `Table` cannot set.
pub struct TableMsg {
    pub name: CString,
    pub flags: u32,
}

impl TableMsg {
    pub fn new(name: &str, flags: u32) -> Self {
        TableMsg {
            name: cstring(name),
            flags,
        }
    }
}

// SAFETY: `write` is called by nftnl's Batch with a buffer of nft_nlmsg_maxsize() bytes;
// the table object is allocated, filled, serialised into it and freed within the call.
unsafe impl NlMsg for TableMsg {
    unsafe fn write(&self, buf: *mut c_void, seq: u32, msg_type: MsgType) {
        let (kind, flags) = match msg_type {
            MsgType::Add => (libc::NFT_MSG_NEWTABLE, libc::NLM_F_CREATE | libc::NLM_F_ACK),
            MsgType::Del => (libc::NFT_MSG_DELTABLE, libc::NLM_F_ACK),
        };
        unsafe {
            let t = alloc(sys::nftnl_table_alloc());
            sys::nftnl_table_set_u32(
                t.as_ptr(),
                sys::NFTNL_TABLE_FAMILY as u16,
                libc::NFPROTO_INET as u32,
            );
            sys::nftnl_table_set_str(t.as_ptr(), sys::NFTNL_TABLE_NAME as u16, self.name.as_ptr());
            if msg_type == MsgType::Add {
                sys::nftnl_table_set_u32(t.as_ptr(), sys::NFTNL_TABLE_FLAGS as u16, self.flags);
            }
            let nlh = sys::nftnl_nlmsg_build_hdr(
                buf.cast(),
                kind as u16,
                libc::NFPROTO_INET as u16,
                flags as u16,
                seq,
            );
            sys::nftnl_table_nlmsg_build_payload(nlh, t.as_ptr());
            sys::nftnl_table_free(t.as_ptr());
        }
    }
}

/// NEWFLOWTABLE/DELFLOWTABLE. Without NLM_F_EXCL a NEWFLOWTABLE on an existing flowtable
/// is an update that adds the listed devices' hooks (nf_tables_newflowtable ->
/// nft_flowtable_update), which keeps offloaded flows on other devices offloaded.
pub struct FlowtableMsg {
    pub table: CString,
    pub name: CString,
    pub priority: i32,
    pub devices: Vec<CString>,
    pub flags: u32,
}

impl FlowtableMsg {
    pub fn new<'a>(
        table: &str,
        name: &str,
        priority: i32,
        devices: impl IntoIterator<Item = &'a str>,
        flags: u32,
    ) -> Self {
        FlowtableMsg {
            table: cstring(table),
            name: cstring(name),
            priority,
            devices: devices.into_iter().map(cstring).collect(),
            flags,
        }
    }

    pub fn device_names(&self) -> Vec<String> {
        self.devices
            .iter()
            .map(|d| d.to_string_lossy().into_owned())
            .collect()
    }
}

// SAFETY: as for TableMsg; the device array is a NULL-terminated array of pointers into
// `self.devices`, which outlives the set_array call that copies the strings.
unsafe impl NlMsg for FlowtableMsg {
    unsafe fn write(&self, buf: *mut c_void, seq: u32, msg_type: MsgType) {
        let (kind, flags) = match msg_type {
            MsgType::Add => (NFT_MSG_NEWFLOWTABLE, libc::NLM_F_CREATE | libc::NLM_F_ACK),
            MsgType::Del => (NFT_MSG_DELFLOWTABLE, libc::NLM_F_ACK),
        };
        unsafe {
            let f = alloc(sys::nftnl_flowtable_alloc());
            let fp = f.as_ptr();
            sys::nftnl_flowtable_set_u32(
                fp,
                sys::NFTNL_FLOWTABLE_FAMILY as u16,
                libc::NFPROTO_INET as u32,
            );
            sys::nftnl_flowtable_set_str(
                fp,
                sys::NFTNL_FLOWTABLE_TABLE as u16,
                self.table.as_ptr(),
            );
            sys::nftnl_flowtable_set_str(fp, sys::NFTNL_FLOWTABLE_NAME as u16, self.name.as_ptr());
            // A deletion that names devices removes only those hooks; the kernel checks
            // that hook number and priority, if given, match the flowtable's (as nft sends).
            if msg_type == MsgType::Add || !self.devices.is_empty() {
                sys::nftnl_flowtable_set_u32(
                    fp,
                    sys::NFTNL_FLOWTABLE_HOOKNUM as u16,
                    libc::NF_NETDEV_INGRESS as u32,
                );
                sys::nftnl_flowtable_set_s32(fp, sys::NFTNL_FLOWTABLE_PRIO as u16, self.priority);
            }
            if msg_type == MsgType::Add {
                sys::nftnl_flowtable_set_u32(fp, sys::NFTNL_FLOWTABLE_FLAGS as u16, self.flags);
            }
            if !self.devices.is_empty() {
                let mut ptrs: Vec<*const c_char> =
                    self.devices.iter().map(|d| d.as_ptr()).collect();
                ptrs.push(ptr::null());
                sys::nftnl_flowtable_set_array(
                    fp,
                    sys::NFTNL_FLOWTABLE_DEVICES as u16,
                    ptrs.as_mut_ptr(),
                );
            }
            let nlh = sys::nftnl_nlmsg_build_hdr(
                buf.cast(),
                kind as u16,
                libc::NFPROTO_INET as u16,
                flags as u16,
                seq,
            );
            sys::nftnl_flowtable_nlmsg_build_payload(nlh, fp);
            sys::nftnl_flowtable_free(fp);
        }
    }
}

/// `flow add @<flowtable>` (the kernel's nft_flow_offload expression).
pub struct FlowOffload(pub CString);

impl Expression for FlowOffload {
    fn to_expr(&self, _rule: &Rule) -> NonNull<sys::nftnl_expr> {
        // SAFETY: the expression is handed to the rule, which frees it.
        unsafe {
            let e = alloc(sys::nftnl_expr_alloc(c"flow_offload".as_ptr()));
            sys::nftnl_expr_set_str(
                e.as_ptr(),
                sys::NFTNL_EXPR_FLOW_TABLE_NAME as u16,
                self.0.as_ptr(),
            );
            e
        }
    }
}

/// `ct original <key>` loaded into register 1. The direction makes the match follow the
/// connection rather than the packet (nft_ct_get_eval reads tuple[dir]).
pub struct CtOriginal(pub u32);

/// `ct <key>` without a direction (keys of the whole connection: direction, mark),
/// loaded into register 1.
pub struct CtKey(pub u32);

/// A `ct` load into register 1, with a direction for tuple keys.
fn ct_expr(key: u32, dir: Option<u8>) -> NonNull<sys::nftnl_expr> {
    // SAFETY: as for FlowOffload.
    unsafe {
        let e = alloc(sys::nftnl_expr_alloc(c"ct".as_ptr()));
        sys::nftnl_expr_set_u32(
            e.as_ptr(),
            sys::NFTNL_EXPR_CT_DREG as u16,
            libc::NFT_REG_1 as u32,
        );
        sys::nftnl_expr_set_u32(e.as_ptr(), sys::NFTNL_EXPR_CT_KEY as u16, key);
        if let Some(d) = dir {
            sys::nftnl_expr_set_u8(e.as_ptr(), sys::NFTNL_EXPR_CT_DIR as u16, d);
        }
        e
    }
}

impl Expression for CtOriginal {
    fn to_expr(&self, _rule: &Rule) -> NonNull<sys::nftnl_expr> {
        ct_expr(self.0, Some(0 /* IP_CT_DIR_ORIGINAL */))
    }
}

impl Expression for CtKey {
    fn to_expr(&self, _rule: &Rule) -> NonNull<sys::nftnl_expr> {
        ct_expr(self.0, None)
    }
}

/// Register 1 within [from, to], compared bytewise (memcmp in nft_range_eval), so
/// network-order port numbers compare correctly.
pub struct RangeEq {
    pub from: Vec<u8>,
    pub to: Vec<u8>,
}

impl Expression for RangeEq {
    fn to_expr(&self, _rule: &Rule) -> NonNull<sys::nftnl_expr> {
        // SAFETY: as for FlowOffload; set_data copies the bytes.
        unsafe {
            let e = alloc(sys::nftnl_expr_alloc(c"range".as_ptr()));
            let p = e.as_ptr();
            sys::nftnl_expr_set_u32(p, sys::NFTNL_EXPR_RANGE_SREG as u16, libc::NFT_REG_1 as u32);
            sys::nftnl_expr_set_u32(
                p,
                sys::NFTNL_EXPR_RANGE_OP as u16,
                libc::NFT_RANGE_EQ as u32,
            );
            sys::nftnl_expr_set(
                p,
                sys::NFTNL_EXPR_RANGE_FROM_DATA as u16,
                self.from.as_ptr().cast(),
                self.from.len() as u32,
            );
            sys::nftnl_expr_set(
                p,
                sys::NFTNL_EXPR_RANGE_TO_DATA as u16,
                self.to.as_ptr().cast(),
                self.to.len() as u32,
            );
            e
        }
    }
}

pub(super) fn alloc<T>(p: *mut T) -> NonNull<T> {
    // libnftnl allocation failure means malloc failed: nothing sensible is left to do.
    NonNull::new(p).unwrap_or_else(|| std::process::abort())
}

/// Marks a set's key as host byte order in the set's user data, as nft does for string
/// keys (`ifname`). The kernel ignores user data; nft reads it to print the elements:
/// without it nft takes the key as big endian, reverses the bytes and prints every
/// interface name as "" (the NUL padding comes first).
pub fn set_key_host_byteorder(set: NonNull<sys::nftnl_set>) {
    // One nftnl_udata TLV: type NFTNL_UDATA_SET_KEYBYTEORDER (0), length 4, and nft's
    // BYTEORDER_HOST_ENDIAN (1) as a host-order u32.
    let mut udata = vec![0u8, 4];
    udata.extend_from_slice(&1u32.to_ne_bytes());
    // SAFETY: a valid set; libnftnl copies the bytes before returning.
    unsafe {
        sys::nftnl_set_set_data(
            set.as_ptr(),
            sys::NFTNL_SET_USERDATA as u16,
            udata.as_ptr() as *const c_void,
            udata.len() as u32,
        );
    }
}

/// `ct label set` from register 1: ORs the register's bits into the connection's label
/// bitmap (nf_connlabels_replace with the value as its own mask), leaving other bits
/// (the user's labels) alone. A connection created while no rule used labels has no
/// label storage, and the set does nothing.
pub struct CtLabelSet;

impl Expression for CtLabelSet {
    fn to_expr(&self, _rule: &Rule) -> NonNull<sys::nftnl_expr> {
        // SAFETY: as for FlowOffload.
        unsafe {
            let e = alloc(sys::nftnl_expr_alloc(c"ct".as_ptr()));
            sys::nftnl_expr_set_u32(
                e.as_ptr(),
                sys::NFTNL_EXPR_CT_KEY as u16,
                libc::NFT_CT_LABELS as u32,
            );
            sys::nftnl_expr_set_u32(
                e.as_ptr(),
                sys::NFTNL_EXPR_CT_SREG as u16,
                libc::NFT_REG_1 as u32,
            );
            e
        }
    }
}
