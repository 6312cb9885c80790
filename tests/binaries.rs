//! The release binaries stay small: no debug info (RocksDB's C++ alone would
//! add ~430 MB), but the symbol table, so a backtrace names functions
//! (`[profile.release] debug = false` in Cargo.toml).

#![allow(clippy::unwrap_used, clippy::expect_used)]

const MAX_BYTES: u64 = 20 * 1024 * 1024;

#[test]
fn release_binaries_are_at_most_20_mb() {
    if cfg!(debug_assertions) {
        eprintln!("not a release build: nothing to check");
        return;
    }
    for bin in [
        env!("CARGO_BIN_EXE_rend"),
        env!("CARGO_BIN_EXE_blast"),
        env!("CARGO_BIN_EXE_setget"),
        env!("CARGO_BIN_EXE_sizes"),
    ] {
        let len = std::fs::metadata(bin).expect("binary").len();
        eprintln!("{bin}: {len} bytes");
        assert!(len <= MAX_BYTES, "{bin} is {len} bytes");
    }
}

#[test]
fn rend_keeps_its_symbols_so_backtraces_name_functions() {
    if cfg!(debug_assertions) {
        return;
    }
    // Stripping takes the debug info only: the symbol table, with rend's
    // mangled function names (`rend::app::…`), stays.
    let bytes = std::fs::read(env!("CARGO_BIN_EXE_rend")).unwrap();
    let needle = b"_ZN4rend3app";
    assert!(
        bytes.windows(needle.len()).any(|w| w == needle),
        "rend's own functions are named"
    );
}
