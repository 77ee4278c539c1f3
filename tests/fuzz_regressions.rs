//! Every committed fuzz input, run on the stable toolchain through the same code the
//! libFuzzer targets run (fuzz/fuzz_targets/bodies.rs): the seed and minimized corpora
//! in fuzz/seeds/TARGET (hand-written or captured seeds and the minimized corpus of the
//! last long run) and each crash found so far in fuzz/regressions/TARGET (named for what
//! it broke). `tests/fuzz.sh` runs the fuzzers themselves (nightly); docs/fuzzing.md
//! says what each target checks.

use std::fs;
use std::path::Path;

#[path = "../fuzz/fuzz_targets/bodies.rs"]
mod bodies;

fn run_dir(target: &str, dir: &str, body: fn(&[u8])) -> usize {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join(dir)
        .join(target);
    let Ok(entries) = fs::read_dir(&path) else {
        return 0;
    };
    let mut n = 0;
    for entry in entries {
        let file = entry.unwrap().path();
        let data = fs::read(&file).unwrap();
        let outcome = std::panic::catch_unwind(|| body(&data));
        assert!(
            outcome.is_ok(),
            "{target}: {} broke an invariant",
            file.display()
        );
        n += 1;
    }
    n
}

fn run(target: &str, body: fn(&[u8]), min_corpus: usize) {
    let corpus = run_dir(target, "seeds", body);
    let crashes = run_dir(target, "regressions", body);
    assert!(
        corpus >= min_corpus,
        "{target}: only {corpus} inputs in fuzz/seeds/{target}"
    );
    eprintln!("{target}: {corpus} corpus inputs and {crashes} former crashes pass");
}

#[test]
fn uci_inputs() {
    run("uci", bodies::uci, 20);
}

#[test]
fn toml_plan_inputs() {
    run("toml_plan", bodies::toml_plan, 20);
}

#[test]
fn ctnetlink_inputs() {
    run("ctnetlink", bodies::ctnetlink, 10);
}

#[test]
fn control_inputs() {
    run("control", bodies::control, 5);
}

#[test]
fn http_inputs() {
    run("http", bodies::http, 10);
}

#[test]
fn monitor_inputs() {
    run("monitor", bodies::monitor, 10);
}

#[test]
fn readback_inputs() {
    run("readback", bodies::readback, 10);
}

#[test]
fn rtnetlink_inputs() {
    run("rtnetlink", bodies::rtnetlink, 10);
}

/// Writes the seeds only offloadd's own builders can make: its table, flowtable, chain and
/// rules as its batch carries them, and a hook update. The host kernels of the test
/// machines have no flowtables, so no dump shows our table whole there;
/// fuzz/capture_seeds.py captures everything else from a kernel. Run it again after a
/// change to the batch:
/// `cargo test --test fuzz_regressions -- --ignored write_built_seeds`.
#[test]
#[ignore]
fn write_built_seeds() {
    use offloadd::config::parse_toml;
    use offloadd::link::LinkSnapshot;
    use offloadd::nft::batch::{self, Delivery, DeviceChange, TableFlags};
    use offloadd::nft::socket::messages;

    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    let write = |target: &str, name: &str, bytes: &[u8]| {
        fs::create_dir_all(seeds.join(target)).unwrap();
        fs::write(seeds.join(target).join(format!("built-{name}")), bytes).unwrap();
    };
    // The nf_tables messages of a batch, without BATCH_BEGIN/END (subsystem 0).
    let objects = |wire: &[u8]| -> Vec<u8> {
        messages(wire)
            .into_iter()
            .filter(|(kind, _, _)| kind >> 8 == libc::NFNL_SUBSYS_NFTABLES as u16)
            .flat_map(|(_, _, range)| wire[range].to_vec())
            .collect()
    };
    // NFT_MSG_NEWGEN with NFTA_GEN_ID 8: the end of a committed transaction.
    let mut newgen = vec![0u8; 28];
    newgen[0..4].copy_from_slice(&28u32.to_ne_bytes());
    newgen[4..6].copy_from_slice(&batch::nfnl_type(15).to_ne_bytes());
    newgen[20..24].copy_from_slice(&[8, 0, 1, 0]);
    newgen[24..28].copy_from_slice(&8u32.to_be_bytes());

    let configs: [(&str, &str, &[&str]); 4] = [
        (
            "readback-config",
            bodies::READBACK_CONFIG,
            &bodies::READBACK_LINKS,
        ),
        (
            "hardware",
            "[offload]\ndevices = [\"lan0\", \"wan0\"]\nhardware = \"require\"\ncounter = false\n",
            &["lan0", "wan0"],
        ),
        (
            "exclusions",
            "[offload]\ndevices = [\"lan0\", \"wan0\", \"wg0\"]\n\
             [[offload.exclude]]\nsaddr = [\"192.0.2.0/24\", \"2001:db8::/32\"]\n\
             [[offload.exclude]]\nl4proto = \"tcp\"\nsport = [\"1024-2048\"]\ndport = [\"443\"]\n\
             [[offload.exclude]]\nmark = \"0x10/0xff\"\n\
             [[offload.exclude]]\niif = [\"wg0\"]\noif = [\"wan0\"]\n\
             [[offload.exclude]]\ndaddr = [\"10.0.0.1\"]\nl4proto = \"udp\"\n",
            &["lan0", "wan0", "wg0"],
        ),
        (
            "one-device",
            "[offload]\ndevices = [\"lan0\", \"gone0\"]\n",
            &["lan0"],
        ),
    ];
    for (name, text, links) in configs {
        let cfg = parse_toml(text).unwrap_or_else(|e| panic!("{name}: {}", e.message));
        let desired = offloadd::plan::plan(
            &cfg,
            &offloadd::plan::Inputs::links(&LinkSnapshot::from_names(links.iter().copied())),
        )
        .map(|p| p.ruleset)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        let built = batch::create(&desired, TableFlags { owner: true }, false);
        let wire = objects(&built.wire(1, Delivery::At(7)));
        write("readback", name, &wire);
        write("monitor", name, &[&wire[..], &newgen].concat());
        if let Some(ft) = &desired.flowtable {
            let change = DeviceChange {
                name: offloadd::plan::FLOWTABLE,
                flowtable: ft,
                add: vec!["lan0".into()],
                remove: vec!["eth9".into(), "wan9".into()],
            };
            let update = objects(&batch::update_devices(&[change]).wire(100, Delivery::At(8)));
            write("readback", &format!("{name}-update"), &update);
            write(
                "monitor",
                &format!("{name}-update"),
                &[&update[..], &newgen].concat(),
            );
        }
    }
}
