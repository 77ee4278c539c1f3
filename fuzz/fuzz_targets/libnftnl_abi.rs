//! Which nf_tables messages libnftnl parses without ending the process.
//!
//! libnftnl checks each attribute it knows with mnl_attr_validate before using it, and a
//! failed check is abi_breakage(): "nf_tables kernel ABI is broken, contact your vendor"
//! and exit(EXIT_FAILURE), the whole daemon gone (libnftnl src/utils.c; table.c,
//! chain.c, flowtable.c, rule.c, expr.c and expr/*.c each call it from their parse
//! callbacks). The kernel never sends such a message, so the readback target lets only
//! messages that pass these checks reach libnftnl: otherwise every run would stop within
//! seconds at that exit, which is recorded in docs/fuzzing.md. Likewise an expression
//! without NFTA_EXPR_NAME, which libnftnl 1.2.4 looks up as the name at address 4
//! (nftnl_expr_parse: nftnl_expr_alloc(mnl_attr_get_str(NULL)), a SIGSEGV: the first find
//! of this target, fuzz/regressions/readback/libnftnl-segv-expression-without-name), and a
//! jump or goto verdict without NFTA_VERDICT_CHAIN, whose missing name libnftnl strdup()s
//! (libnftnl-segv-jump-without-chain). The
//! shapes here are stricter than libnftnl where unsure (an attribute type not listed
//! makes the message skipped), which costs coverage, never a false report.
//!
//! Attribute numbers are uapi nf_tables.h's; sizes are mnl_attr_validate's (U8 1, U32 4,
//! U64 8 bytes exactly; STRING at least one byte; NUL_STRING ends in NUL; NESTED empty
//! or at least a header).

/// What one attribute must look like.
#[derive(Clone, Copy)]
enum Shape {
    U8,
    U32,
    U64,
    /// MNL_TYPE_STRING: not empty (libnftnl strdup()s it: the NUL may be past it).
    Str,
    /// MNL_TYPE_NUL_STRING: not empty, last byte NUL.
    NulStr,
    /// Not checked (padding, user data, values, device names).
    Any,
    /// MNL_TYPE_NESTED holding these attributes.
    Nest(&'static [(u16, Shape)]),
    /// NFTA_RULE_EXPRESSIONS: NFTA_LIST_ELEM nests of one expression each.
    Exprs,
    /// NFTA_DATA_VERDICT: VERDICT's attributes, and a chain for a jump or goto.
    Verdict,
}

use Shape::*;

const TABLE: &[(u16, Shape)] = &[
    (1, Str), // NAME
    (2, U32), // FLAGS
    (3, U32), // USE
    (4, U64), // HANDLE
    (5, Any), // PAD
    (6, Any), // USERDATA
    (7, U32), // OWNER
];

/// NFTA_DEVICE_NAME entries (flowtable and chain hooks); libnftnl strdup()s each and
/// refuses (no exit) any other type.
const DEVICES: &[(u16, Shape)] = &[(1, Any)];

const CHAIN_HOOK: &[(u16, Shape)] = &[
    (1, U32),           // HOOKNUM
    (2, U32),           // PRIORITY
    (3, Str),           // DEV
    (4, Nest(DEVICES)), // DEVS
];

const COUNTERS: &[(u16, Shape)] = &[(1, U64), (2, U64), (3, Any)];

const CHAIN: &[(u16, Shape)] = &[
    (1, Str),              // TABLE
    (2, U64),              // HANDLE
    (3, Str),              // NAME
    (4, Nest(CHAIN_HOOK)), // HOOK
    (5, U32),              // POLICY
    (6, U32),              // USE
    (7, Str),              // TYPE
    (8, Nest(COUNTERS)),   // COUNTERS
    (9, Any),              // PAD
    (10, U32),             // FLAGS
    (11, U32),             // ID
    (12, Any),             // USERDATA
];

const FLOWTABLE_HOOK: &[(u16, Shape)] = &[
    (1, U32),           // NUM
    (2, U32),           // PRIORITY
    (3, Nest(DEVICES)), // DEVS
];

const FLOWTABLE: &[(u16, Shape)] = &[
    (1, Str),                  // TABLE
    (2, Str),                  // NAME
    (3, Nest(FLOWTABLE_HOOK)), // HOOK
    (4, U32),                  // USE
    (5, U64),                  // HANDLE
    (6, Any),                  // PAD
    (7, U32),                  // FLAGS
];

const COMPAT: &[(u16, Shape)] = &[(1, U32), (2, U32)];

const RULE: &[(u16, Shape)] = &[
    (1, Str),          // TABLE
    (2, Str),          // CHAIN
    (3, U64),          // HANDLE
    (4, Exprs),        // EXPRESSIONS
    (5, Nest(COMPAT)), // COMPAT
    (6, U64),          // POSITION
    (7, Any),          // USERDATA
    (8, Any),          // PAD
    (9, U32),          // ID
    (10, U32),         // POSITION_ID
    (11, U32),         // CHAIN_ID
];

const VERDICT: &[(u16, Shape)] = &[(1, U32), (2, NulStr), (3, U32)];
/// struct nft_data: a value (any bytes) or a verdict.
const DATA: &[(u16, Shape)] = &[(1, Any), (2, Verdict)];
/// NFT_JUMP and NFT_GOTO (enum nft_verdicts), which name a chain.
const JUMP_GOTO: [i32; 2] = [-3, -4];

/// The expressions offloadd's own rules are made of (nft/batch.rs, nft/sys), and
/// counter and payload, which other tables' rules hold most.
const EXPRESSIONS: &[(&str, &[(u16, Shape)])] = &[
    ("meta", &[(1, U32), (2, U32), (3, U32)]),
    ("cmp", &[(1, U32), (2, U32), (3, Nest(DATA))]),
    (
        "lookup",
        &[(1, NulStr), (2, U32), (3, U32), (4, U32), (5, U32)],
    ),
    (
        "bitwise",
        &[
            (1, U32),
            (2, U32),
            (3, U32),
            (4, Nest(DATA)),
            (5, Nest(DATA)),
            (6, U32),
            (7, Nest(DATA)),
        ],
    ),
    ("ct", &[(1, U32), (2, U32), (3, U8), (4, U32)]),
    ("immediate", &[(1, U32), (2, Nest(DATA))]),
    (
        "range",
        &[(1, U32), (2, U32), (3, Nest(DATA)), (4, Nest(DATA))],
    ),
    ("flow_offload", &[(1, NulStr)]),
    ("counter", &[(1, U64), (2, U64), (3, Any)]),
    (
        "payload",
        &[
            (1, U32),
            (2, U32),
            (3, U32),
            (4, U32),
            (5, U32),
            (6, U32),
            (7, U32),
            (8, U32),
        ],
    ),
];

/// Whether libnftnl's parser of this object can take the message without exiting.
/// `object` is the nf_tables message type (NEWTABLE 0, NEWCHAIN 3, NEWRULE 6,
/// NEWFLOWTABLE 22); `msg` is the message as it lies in the buffer up to its length
/// rounded up to 4: mnl_attr_parse walks the attributes up to MNL_ALIGN(nlmsg_len), so
/// an attribute may take the padding bytes after an unaligned length.
pub fn parses_without_exit(object: u8, msg: &[u8]) -> bool {
    let attrs = msg.get(20..).unwrap_or_default();
    match object {
        0 => fits(attrs, TABLE),
        3 => fits(attrs, CHAIN),
        6 => fits(attrs, RULE),
        22 => fits(attrs, FLOWTABLE),
        _ => false,
    }
}

/// Walks attributes as mnl_attr_parse does: it stops quietly at the first that does not
/// fit in what is left, so what follows is never looked at.
fn fits(mut attrs: &[u8], shapes: &[(u16, Shape)]) -> bool {
    while attrs.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([attrs[0], attrs[1]]));
        let kind = u16::from_ne_bytes([attrs[2], attrs[3]]) & 0x3fff;
        if len < 4 || len > attrs.len() {
            return true;
        }
        let Some((_, shape)) = shapes.iter().find(|(k, _)| *k == kind) else {
            return false;
        };
        if !shape_fits(*shape, &attrs[4..len]) {
            return false;
        }
        attrs = &attrs[len.next_multiple_of(4).min(attrs.len())..];
    }
    true
}

fn shape_fits(shape: Shape, v: &[u8]) -> bool {
    match shape {
        U8 => v.len() == 1,
        U32 => v.len() == 4,
        U64 => v.len() == 8,
        Str => !v.is_empty(),
        NulStr => v.last() == Some(&0),
        Any => true,
        Nest(inner) => v.is_empty() || (v.len() >= 4 && fits(v, inner)),
        Exprs => v.is_empty() || (v.len() >= 4 && fits_expressions(v)),
        Verdict => shape_fits(Nest(VERDICT), v) && (!jumps(v) || has(v, 2)),
    }
}

/// Whether a verdict's NFTA_VERDICT_CODE (big endian) is a jump or goto; the last one
/// counts, as libnftnl keeps the last of each type.
fn jumps(verdict: &[u8]) -> bool {
    let mut code = None;
    each(verdict, |kind, v| {
        if kind == 1 {
            code = v.try_into().ok().map(i32::from_be_bytes);
        }
    });
    code.is_some_and(|c| JUMP_GOTO.contains(&c))
}

fn has(attrs: &[u8], want: u16) -> bool {
    let mut found = false;
    each(attrs, |kind, _| found |= kind == want);
    found
}

/// Each attribute that fits, as mnl_attr_for_each_nested gives them.
fn each(mut attrs: &[u8], mut f: impl FnMut(u16, &[u8])) {
    while attrs.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([attrs[0], attrs[1]]));
        if len < 4 || len > attrs.len() {
            return;
        }
        f(
            u16::from_ne_bytes([attrs[2], attrs[3]]) & 0x3fff,
            &attrs[4..len],
        );
        attrs = &attrs[len.next_multiple_of(4).min(attrs.len())..];
    }
}

/// Each NFTA_LIST_ELEM: NFTA_EXPR_NAME and NFTA_EXPR_DATA, whose attributes the named
/// expression's own callback checks. libnftnl takes the name as a STRING and reads it up
/// to a NUL; it is required NUL-terminated here, so the name looked up is the one seen.
fn fits_expressions(mut list: &[u8]) -> bool {
    while list.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([list[0], list[1]]));
        let kind = u16::from_ne_bytes([list[2], list[3]]) & 0x3fff;
        if len < 4 || len > list.len() {
            return true;
        }
        if kind != 1 || !fits_expression(&list[4..len]) {
            return false;
        }
        list = &list[len.next_multiple_of(4).min(list.len())..];
    }
    true
}

fn fits_expression(elem: &[u8]) -> bool {
    if !elem.is_empty() && elem.len() < 4 {
        return false;
    }
    let (mut name, mut data) = (None, Vec::new());
    let mut rest = elem;
    while rest.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([rest[0], rest[1]]));
        let kind = u16::from_ne_bytes([rest[2], rest[3]]) & 0x3fff;
        if len < 4 || len > rest.len() {
            break;
        }
        let v = &rest[4..len];
        match kind {
            1 if shape_fits(NulStr, v) => name = Some(v),
            2 if v.is_empty() || v.len() >= 4 => data.push(v),
            _ => return false,
        }
        rest = &rest[len.next_multiple_of(4).min(rest.len())..];
    }
    let Some(name) = name else {
        // libnftnl 1.2.4 does not check that the name is there: SIGSEGV.
        return false;
    };
    let name = &name[..name.len() - 1];
    let Some((_, shapes)) = EXPRESSIONS.iter().find(|(n, _)| n.as_bytes() == name) else {
        return false;
    };
    data.iter().all(|d| fits(d, shapes))
}
