//! Reading nf_tables state back: our table's objects (to verify an apply) and every
//! flowtable in the kernel (to find others that cover our devices).

use std::io;

use nftnl_sys::libc;

use super::batch::DeviceChange;
use super::socket::NftSocket;
use super::sys::{self, ChainInfo, FlowtableInfo, RuleInfo, TableInfo};
use crate::plan::{Desired, ForwardChain, CHAIN, FLOWTABLE, FLOWTABLE_PRIORITY, TABLE};

/// What the kernel has.
#[derive(Debug, Clone, Default)]
pub struct Actual {
    /// `inet offloadd`, if present.
    pub table: Option<TableInfo>,
    /// Flowtables in our table.
    pub flowtables: Vec<FlowtableInfo>,
    /// Chains in our table.
    pub chains: Vec<ChainInfo>,
    /// Rules in our table, in chain order.
    pub rules: Vec<RuleInfo>,
    /// Flowtables in every other table, any family (fw4's `inet fw4 ft`, hand-made ones).
    pub foreign_flowtables: Vec<FlowtableInfo>,
    /// Forward base chains of every other table of families ip, ip6 and inet: ours must
    /// run after all of them.
    pub foreign_forward: Vec<ForwardChain>,
    /// The ruleset generation of this reading (the same before and after its dumps): a
    /// batch decided on it carries it, and the kernel refuses it (ERESTART) if anyone
    /// committed since.
    pub generation: u32,
}

fn ours(family: u32, table: &str) -> bool {
    family == libc::NFPROTO_INET as u32 && table == TABLE
}

/// How often a read-back is started again because the ruleset changed while it ran.
const READ_RETRIES: usize = 20;

impl Actual {
    /// Reads our table's objects and every flowtable as one consistent picture: the
    /// generation is read before and after the dumps and the read is repeated when it
    /// moved, or when the kernel marked a dump interrupted (NLM_F_DUMP_INTR). Otherwise a
    /// commit of another program between two dumps could give a picture the kernel
    /// never held.
    pub fn read(sock: &mut NftSocket) -> io::Result<Actual> {
        let mut last = None;
        for _ in 0..READ_RETRIES {
            match Self::read_once(sock) {
                Ok(a) if sock.generation()? == a.generation => return Ok(a),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            io::Error::other(format!(
                "the ruleset changed under each of {READ_RETRIES} read-backs (another program commits without pause)"
            ))
        }))
    }

    fn read_once(sock: &mut NftSocket) -> io::Result<Actual> {
        let generation = sock.generation()?;
        let unspec = libc::AF_UNSPEC as u8;
        let inet = libc::NFPROTO_INET as u8;
        // SAFETY (all four): the socket hands each closure one complete, aligned message.
        let tables = sock.dump(libc::NFT_MSG_GETTABLE, unspec, &[], |m| unsafe {
            sys::parse_table(m)
        })?;
        let flowtables = sock.dump(sys::NFT_MSG_GETFLOWTABLE, unspec, &[], |m| unsafe {
            sys::parse_flowtable(m)
        })?;
        let chains = sock.dump(libc::NFT_MSG_GETCHAIN, unspec, &[], |m| unsafe {
            sys::parse_chain(m)
        })?;
        // Only our table's rules (NFTA_RULE_TABLE in a dump request filters in the
        // kernel, nf_tables_dump_rules_start): fw4's hundreds are not parsed every 2 s.
        let table = format!("{TABLE}\0");
        let filter = [(sys::NFTA_RULE_TABLE, table.as_bytes())];
        let rules = sock.dump(libc::NFT_MSG_GETRULE, inet, &filter, |m| unsafe {
            sys::parse_rule(m)
        })?;
        let (mine, foreign): (Vec<_>, Vec<_>) = flowtables
            .into_iter()
            .partition(|f| ours(f.family, &f.table));
        let (my_chains, other_chains): (Vec<_>, Vec<_>) =
            chains.into_iter().partition(|c| ours(c.family, &c.table));
        let foreign_forward = other_chains
            .into_iter()
            .filter_map(|c| {
                let family = match c.family as i32 {
                    libc::NFPROTO_IPV4 => "ip",
                    libc::NFPROTO_IPV6 => "ip6",
                    libc::NFPROTO_INET => "inet",
                    _ => return None,
                };
                match c.hook {
                    Some((hook, priority, _)) if hook == libc::NF_INET_FORWARD as u32 => {
                        Some(ForwardChain {
                            family: family.into(),
                            table: c.table,
                            chain: c.name,
                            priority,
                        })
                    }
                    _ => None,
                }
            })
            .collect();
        Ok(Actual {
            table: tables.into_iter().find(|t| ours(t.family, &t.name)),
            flowtables: mine,
            chains: my_chains,
            rules: rules
                .into_iter()
                .filter(|r| ours(r.family, &r.table))
                .collect(),
            foreign_flowtables: foreign,
            foreign_forward,
            generation,
        })
    }

    /// Devices of our flowtable `name` as the kernel reports them, sorted.
    pub fn devices_of(&self, name: &str) -> Vec<String> {
        let mut d: Vec<String> = self
            .flowtables
            .iter()
            .filter(|f| f.name == name)
            .flat_map(|f| f.devices.iter().cloned())
            .collect();
        d.sort();
        d
    }

    /// Devices of our main flowtable.
    pub fn our_devices(&self) -> Vec<String> {
        self.devices_of(FLOWTABLE)
    }

    /// The hook changes that bring each of our flowtables to `desired`'s devices.
    pub fn device_changes<'a>(&self, desired: &'a Desired) -> Vec<DeviceChange<'a>> {
        desired
            .flowtables()
            .map(|(name, ft)| {
                let have = self.devices_of(name);
                DeviceChange {
                    name,
                    flowtable: ft,
                    add: ft
                        .devices
                        .iter()
                        .filter(|d| !have.contains(d))
                        .cloned()
                        .collect(),
                    remove: have
                        .into_iter()
                        .filter(|d| !ft.devices.contains(d))
                        .collect(),
                }
            })
            .filter(|c| !c.add.is_empty() || !c.remove.is_empty())
            .collect()
    }

    /// Checks that the kernel holds exactly `desired` (with the rule expressions we
    /// built, `expected_rules`). Returns what differs.
    pub fn verify(
        &self,
        desired: &Desired,
        expected_rules: &[String],
        owner: bool,
    ) -> Result<(), String> {
        self.verify_shape(desired, expected_rules, owner)?;
        for (name, want) in desired.flowtables() {
            let want_devices: Vec<String> = want.devices.iter().cloned().collect();
            let have = self.devices_of(name);
            if have != want_devices {
                return Err(format!(
                    "flowtable {name} devices are {have:?}, expected {want_devices:?}"
                ));
            }
        }
        Ok(())
    }

    /// `verify` without comparing flowtable devices: what must hold before hooks alone
    /// are changed.
    pub fn verify_shape(
        &self,
        desired: &Desired,
        expected_rules: &[String],
        owner: bool,
    ) -> Result<(), String> {
        let table = self.table.as_ref().ok_or("the table is missing")?;
        if owner && table.flags & sys::NFT_TABLE_F_OWNER == 0 {
            return Err("the table lacks the owner flag".into());
        }
        let want: Vec<&str> = desired.flowtables().map(|(n, _)| n).collect();
        let mut have: Vec<&str> = self.flowtables.iter().map(|f| f.name.as_str()).collect();
        have.sort();
        let mut want_sorted = want.clone();
        want_sorted.sort();
        if have != want_sorted {
            return Err(format!("found flowtables {have:?}, expected {want:?}"));
        }
        for (name, want) in desired.flowtables() {
            let have = self
                .flowtables
                .iter()
                .find(|f| f.name == name)
                .expect("compared");
            let mut flags = 0;
            if want.counter {
                flags |= sys::NFT_FLOWTABLE_COUNTER;
            }
            if want.hw_offload {
                flags |= sys::NFT_FLOWTABLE_HW_OFFLOAD;
            }
            if have.flags != flags || have.priority != FLOWTABLE_PRIORITY {
                return Err(format!("flowtable {name} flags {:#x} priority {}, expected {flags:#x} priority {FLOWTABLE_PRIORITY}", have.flags, have.priority));
            }
        }
        match self.chains.as_slice() {
            [c] if c.name == CHAIN
                && c.hook
                    == Some((
                        libc::NF_INET_FORWARD as u32,
                        desired.priority,
                        libc::NF_ACCEPT as u32,
                    )) => {}
            other => return Err(format!("chains differ: {other:?}")),
        }
        let have: Vec<String> = self.rules.iter().map(|r| normalize(&r.exprs)).collect();
        let want: Vec<String> = expected_rules.iter().map(|r| normalize(r)).collect();
        if have.len() != want.len() {
            return Err(format!(
                "chain forward has {} rules, expected {}",
                have.len(),
                want.len()
            ));
        }
        if let Some((i, (h, w))) = have
            .iter()
            .zip(&want)
            .enumerate()
            .find(|(_, (h, w))| h != w)
        {
            return Err(format!(
                "rule {} differs: kernel has {} expected {}",
                i + 1,
                h.replace('\n', " "),
                w.replace('\n', " ")
            ));
        }
        Ok(())
    }
}

/// Anonymous sets are sent as `__set%d` and named `__set0`, `__set1`, ... by the kernel.
fn normalize(exprs: &str) -> String {
    let mut out = String::with_capacity(exprs.len());
    let mut rest = exprs;
    while let Some(i) = rest.find("__set") {
        out.push_str(&rest[..i + 5]);
        rest =
            rest[i + 5..].trim_start_matches(|c: char| c.is_ascii_digit() || c == '%' || c == 'd');
    }
    out.push_str(rest);
    // The kernel dumps NFTA_LOOKUP_FLAGS even when zero (nft_lookup_dump); we do not send it.
    out.lines()
        .map(|l| {
            if l.starts_with("[ lookup ") {
                l.replace(" 0x0 ]", " ]")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn anonymous_set_names_compare_equal() {
        assert_eq!(
            normalize("[ lookup reg 1 set __set%d ]"),
            normalize("[ lookup reg 1 set __set12 ]")
        );
        assert_ne!(
            normalize("[ lookup reg 1 set __set0 ]"),
            normalize("[ lookup reg 2 set __set0 ]")
        );
    }
}
