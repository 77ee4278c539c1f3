//! Every committed fuzz input, run on the stable toolchain through the same code the
//! libFuzzer targets run (fuzz/fuzz_targets/bodies.rs): the seed and minimized corpora
//! in fuzz/seeds/TARGET (hand-written seeds and the minimized corpus of the last long run) and each crash found so far in fuzz/regressions/TARGET (named
//! for what it broke). `tests/fuzz.sh` runs the fuzzers themselves (nightly).

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
