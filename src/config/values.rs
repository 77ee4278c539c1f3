//! Small value types shared by every config source, each with a strict parser whose
//! error text says what a valid value looks like.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use super::shown;

/// Transport protocols a flowtable can offload (the kernel's flow offload handles only
/// TCP and UDP; see nf_flow_table_ip.c).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum L4Proto {
    Tcp,
    Udp,
}

impl L4Proto {
    /// IANA protocol number, as conntrack and `meta l4proto` see it.
    pub fn number(self) -> u8 {
        match self {
            L4Proto::Tcp => 6,
            L4Proto::Udp => 17,
        }
    }
}

impl FromStr for L4Proto {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "tcp" => Ok(L4Proto::Tcp),
            "udp" => Ok(L4Proto::Udp),
            _ => Err(format!(
                "l4proto {} is not offloadable: use \"tcp\" or \"udp\" (flowtables only carry TCP and UDP)",
                shown(s)
            )),
        }
    }
}

impl fmt::Display for L4Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            L4Proto::Tcp => "tcp",
            L4Proto::Udp => "udp",
        })
    }
}

/// A conntrack mark to match, `"0x10"` or `"0x10/0xff"` (value/mask; decimal works too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Mark {
    pub value: u32,
    pub mask: u32,
}

impl FromStr for Mark {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let num = |t: &str| -> Result<u32, String> {
            let t = t.trim();
            let r = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
                Some(h) => u32::from_str_radix(h, 16),
                None => t.parse::<u32>(),
            };
            r.map_err(|_| {
                format!(
                    "mark {} is not valid (use a number like 0x10, or value/mask like 0x10/0xff)",
                    shown(s)
                )
            })
        };
        let (value, mask) = match s.split_once('/') {
            Some((v, m)) => (num(v)?, num(m)?),
            None => (num(s)?, u32::MAX),
        };
        if value & !mask != 0 {
            return Err(format!(
                "mark {}: the value has bits outside the mask, so it can never match",
                shown(s)
            ));
        }
        Ok(Mark { value, mask })
    }
}

impl fmt::Display for Mark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.mask == u32::MAX {
            write!(f, "ct mark {:#x}", self.value)
        } else {
            write!(f, "ct mark and {:#x} == {:#x}", self.mask, self.value)
        }
    }
}

/// A port or an inclusive port range, `"5060"` or `"10000-20000"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    pub fn contains(&self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }
}

impl FromStr for PortRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let port = |p: &str| -> Result<u16, String> {
            match p.trim().parse::<u16>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(format!(
                    "port {} is not valid: use a number 1-65535 or a range like \"10000-20000\"",
                    shown(s)
                )),
            }
        };
        let (first, last) = match s.split_once('-') {
            Some((a, b)) => (port(a)?, port(b)?),
            None => {
                let p = port(s)?;
                (p, p)
            }
        };
        if first > last {
            return Err(format!(
                "port range {} is reversed: write the lower port first",
                shown(s)
            ));
        }
        Ok(PortRange { first, last })
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

/// An address or a prefix, `"192.0.2.10"` or `"2001:db8::/32"`. Host bits must be zero,
/// so a typo like `192.0.2.10/24` is caught instead of silently matching the whole /24.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IpPrefix {
    pub addr: IpAddr,
    pub len: u8,
}

impl IpPrefix {
    pub fn max_len(addr: &IpAddr) -> u8 {
        if addr.is_ipv4() {
            32
        } else {
            128
        }
    }

    pub fn is_host(&self) -> bool {
        self.len == Self::max_len(&self.addr)
    }

    /// The netmask as bytes in network order.
    pub fn mask_bytes(&self) -> Vec<u8> {
        let n = usize::from(Self::max_len(&self.addr) / 8);
        (0..n)
            .map(|i| {
                let bits = (i32::from(self.len) - 8 * i as i32).clamp(0, 8);
                (0xffu16 << (8 - bits)) as u8
            })
            .collect()
    }

    /// Whether `a` is in this prefix (an address of the other family never is).
    pub fn contains(&self, a: IpAddr) -> bool {
        let bytes = match a {
            IpAddr::V4(a) if self.addr.is_ipv4() => a.octets().to_vec(),
            IpAddr::V6(a) if self.addr.is_ipv6() => a.octets().to_vec(),
            _ => return false,
        };
        let mask = self.mask_bytes();
        let ours = self.addr_bytes();
        (0..mask.len()).all(|i| bytes[i] & mask[i] == ours[i] & mask[i])
    }

    pub fn addr_bytes(&self) -> Vec<u8> {
        match self.addr {
            IpAddr::V4(a) => a.octets().to_vec(),
            IpAddr::V6(a) => a.octets().to_vec(),
        }
    }
}

impl FromStr for IpPrefix {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!("address {} is not valid: use an address like \"192.0.2.10\" or a prefix like \"2001:db8::/32\"", shown(s))
        };
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let max = Self::max_len(&addr);
        let len = match len {
            Some(l) => l
                .parse::<u8>()
                .ok()
                .filter(|&l| l <= max)
                .ok_or_else(|| format!("prefix length in {} must be 0-{max}", shown(s)))?,
            None => max,
        };
        let p = IpPrefix { addr, len };
        let masked: Vec<u8> = p
            .addr_bytes()
            .iter()
            .zip(p.mask_bytes())
            .map(|(a, m)| a & m)
            .collect();
        if masked != p.addr_bytes() {
            return Err(format!(
                "{} has host bits set: write the network address of the prefix (or drop /{len} to match one host)",
                shown(s)
            ));
        }
        Ok(p)
    }
}

impl fmt::Display for IpPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_host() {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}/{}", self.addr, self.len)
        }
    }
}

/// Value types serialise as the text a config file would hold (`"10000-20000"`).
macro_rules! serialize_as_text {
    ($($t:ty),*) => {$(
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
    )*};
}
serialize_as_text!(L4Proto, PortRange, IpPrefix, Mark);

/// Parses `"500ms"`, `"2s"`, `"5m"`, `"1h"`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || {
        format!(
            "duration {} is not valid: use a number with ms, s, m or h, like \"2s\"",
            shown(s)
        )
    };
    let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| bad())?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.checked_mul(60).ok_or_else(bad)?),
        "h" => Duration::from_secs(n.checked_mul(3600).ok_or_else(bad)?),
        _ => return Err(bad()),
    };
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports() {
        assert_eq!(
            "5060".parse(),
            Ok(PortRange {
                first: 5060,
                last: 5060
            })
        );
        assert_eq!(
            "10000-20000".parse::<PortRange>().unwrap().to_string(),
            "10000-20000"
        );
        for bad in ["0", "65536", "20-10", "x", "", "1-", "-5"] {
            assert!(bad.parse::<PortRange>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn prefixes() {
        let p: IpPrefix = "2001:db8::/32".parse().unwrap();
        assert_eq!(p.len, 32);
        assert_eq!(&p.mask_bytes()[..5], &[0xff, 0xff, 0xff, 0xff, 0]);
        let p: IpPrefix = "198.18.0.0/15".parse().unwrap();
        assert_eq!(p.mask_bytes(), vec![255, 254, 0, 0]);
        assert_eq!(
            "192.0.2.10".parse::<IpPrefix>().unwrap().to_string(),
            "192.0.2.10"
        );
        let e = "192.0.2.10/24".parse::<IpPrefix>().unwrap_err();
        assert!(e.contains("host bits"), "{e}");
        assert!("10.0.0.0/33".parse::<IpPrefix>().is_err());
        assert!("fd00::/129".parse::<IpPrefix>().is_err());
        assert!("nonsense".parse::<IpPrefix>().is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        for bad in ["2", "s", "2 s", "-1s", "1.5s", "99999999999999999999s"] {
            assert!(parse_duration(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn l4proto() {
        assert_eq!("udp".parse::<L4Proto>(), Ok(L4Proto::Udp));
        assert!("icmp"
            .parse::<L4Proto>()
            .unwrap_err()
            .contains("TCP and UDP"));
    }
}
