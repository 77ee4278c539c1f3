//! Apply latency for tests/bench.sh: offloadd's one batch (with its read-back check) for
//! a changed ruleset, run inside the bench's namespace as root. Alternates between two
//! rulesets (the second with one more exclusion) so every apply replaces the table, as
//! `nft -f` of `delete table ...; table ... {}` does. Prints `apply_ms MEDIAN`.
//!   apply_bench CONFIG REPS [--no-flowtable]

use std::time::Instant;

use offloadd::config::load_toml;
use offloadd::link::LinkSnapshot;
use offloadd::nft::{Kernel, Nft};
use offloadd::plan::plan;
use offloadd::plan::Inputs;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let cfg_a = load_toml(args.get(1).expect("CONFIG").as_ref())?;
    let reps: usize = args.get(2).and_then(|r| r.parse().ok()).unwrap_or(21);
    let no_ft = args.iter().any(|a| a == "--no-flowtable");
    let mut cfg_b = cfg_a.clone();
    let mut extra = cfg_b.offload.exclude.first().cloned().unwrap_or_default();
    extra.dport = vec!["9".parse().map_err(anyhow::Error::msg)?];
    extra.l4proto = Some(offloadd::config::L4Proto::Tcp);
    cfg_b.offload.exclude.push(extra);
    let links = LinkSnapshot::current()?;
    let mut a = plan(&cfg_a, &Inputs::links(&links)).map(|p| p.ruleset)?;
    let mut b = plan(&cfg_b, &Inputs::links(&links)).map(|p| p.ruleset)?;
    if no_ft {
        a = a.without_flowtable();
        b = b.without_flowtable();
    }
    let mut nft = Nft::open()?;
    nft.apply(&a)?;
    let mut times = Vec::new();
    for i in 0..reps {
        let d = if i % 2 == 0 { &b } else { &a };
        let t = Instant::now();
        let changed = nft.apply(d)?.changed;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        assert!(changed, "every apply must change the table");
    }
    nft.remove()?;
    times.sort_by(|x, y| x.total_cmp(y));
    println!("apply_ms {:.2}", times[times.len() / 2]);
    Ok(())
}
