//! libmemcached's protocol conformance suite (Debian's memccapable) against
//! rend. It must report all 54 tests passed; a skip or a failure fails here.

mod common;

use std::process::Command;

use common::{Memcached, Rend};

/// Run memccapable against rend started with `flags`; return its output.
pub fn memccapable(rend: &Rend) -> String {
    let (host, port) = rend.addr.rsplit_once(':').expect("tcp address");
    let out = Command::new("memccapable")
        .args(["-h", host, "-p", port, "-t", "10"])
        .output()
        .expect("memccapable must be installed (apt-get install libmemcached-tools)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "memccapable failed:\n{text}");
    text
}

pub fn assert_all_pass(text: &str) {
    let passed = text
        .lines()
        .filter(|l| l.trim_end().ends_with("[pass]"))
        .count();
    let other: Vec<&str> = text
        .lines()
        .filter(|l| l.contains('[') && !l.trim_end().ends_with("[pass]"))
        .collect();
    assert!(other.is_empty(), "not passed: {other:?}\n{text}");
    assert_eq!(passed, 54, "memccapable must pass all 54 tests:\n{text}");
}

#[test]
fn memccapable_passes_against_l1_only() {
    let mc = Memcached::start();
    let rend = Rend::start(&mc, &[]);
    assert_all_pass(&memccapable(&rend));
}
