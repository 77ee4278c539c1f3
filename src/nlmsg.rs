//! What every netlink reader here shares: the errno of an NLMSG_ERROR message.

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
    use super::errno;

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
