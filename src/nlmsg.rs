//! What every netlink reader here shares: the errno of an NLMSG_ERROR message and the
//! lookup of one attribute.

/// The payload of the first attribute of type `want` in a run of netlink attributes
/// (struct nlattr: u16 len, u16 type, payload, padded to 4 bytes). The type's top two
/// bits are the NESTED and NET_BYTEORDER flags, not part of the type. `None` if absent
/// or if the run is malformed before it.
pub fn attr(mut attrs: &[u8], want: u16) -> Option<&[u8]> {
    while attrs.len() >= 4 {
        let len = u16::from_ne_bytes([attrs[0], attrs[1]]) as usize;
        let kind = u16::from_ne_bytes([attrs[2], attrs[3]]) & 0x3fff;
        if len < 4 || len > attrs.len() {
            return None;
        }
        if kind == want {
            return Some(&attrs[4..len]);
        }
        attrs = &attrs[len.next_multiple_of(4).min(attrs.len())..];
    }
    None
}

/// The positive errno of an NLMSG_ERROR message, 0 for an acknowledgement. The kernel
/// puts `-errno` after the 16-byte header (struct nlmsgerr); a short message or a value
/// that is no negated errno (positive, or i32::MIN, whose negation overflows) is EPROTO.
pub fn errno(msg: &[u8]) -> i32 {
    let Some(raw) = msg.get(16..20) else {
        return libc::EPROTO;
    };
    match i32::from_ne_bytes(raw.try_into().expect("4 bytes")) {
        e if e <= 0 => e.checked_neg().unwrap_or(libc::EPROTO),
        _ => libc::EPROTO,
    }
}

#[cfg(test)]
mod tests {
    use super::{attr, errno};

    #[test]
    fn attribute_lookup_skips_padding_and_stops_at_garbage() {
        // type 1 "ab" (len 6, padded to 8), then type 0x8002 (byte-order flag) u32.
        // Attribute headers are in host byte order.
        let hdr = |len: u16, ty: u16| [len.to_ne_bytes(), ty.to_ne_bytes()].concat();
        let mut run = [
            hdr(6, 1),
            b"ab\0\0".to_vec(),
            hdr(8, 0x8002),
            vec![0, 0, 0, 7],
        ]
        .concat();
        assert_eq!(attr(&run, 1), Some(&b"ab"[..]));
        assert_eq!(attr(&run, 2), Some(&[0, 0, 0, 7][..]));
        assert_eq!(attr(&run, 3), None);
        // The second attribute claims more bytes than there are.
        run[8..10].copy_from_slice(&200u16.to_ne_bytes());
        assert_eq!(attr(&run, 2), None);
    }

    fn error_msg(code: i32) -> Vec<u8> {
        let mut m = vec![0u8; 16];
        m.extend_from_slice(&code.to_ne_bytes());
        m
    }

    #[test]
    fn negated_errno_and_nonsense() {
        assert_eq!(errno(&error_msg(0)), 0);
        assert_eq!(errno(&error_msg(-libc::EBUSY)), libc::EBUSY);
        // Found by the ctnetlink fuzz target: negating i32::MIN panicked in debug builds.
        assert_eq!(errno(&error_msg(i32::MIN)), libc::EPROTO);
        assert_eq!(errno(&error_msg(5)), libc::EPROTO);
        assert_eq!(errno(&[0u8; 18]), libc::EPROTO);
    }
}
