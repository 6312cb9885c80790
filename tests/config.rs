//! Configuration: every setting from a flag, a `REND_*` environment variable
//! or a `--config` TOML file, with flag > environment > file > default; every
//! invalid value refused at start with a message naming its source, the flag
//! and what is allowed; `--print-config` output accepted back by `--config`.
//!
//! These run the real `rend` binary, mostly with `--print-config`, which
//! prints the effective configuration and exits before anything starts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use clap::CommandFactory;

const REND: &str = env!("CARGO_BIN_EXE_rend");

/// `REND_*` variables: (name, value).
type Env<'a> = Vec<(&'a str, &'a str)>;

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// rend with these arguments and exactly these `REND_*` variables (none
/// inherited from the test's own environment).
fn rend(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(REND);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("REND_") {
            cmd.env_remove(name);
        }
    }
    let out = cmd
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run rend");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The `--print-config` output of rend with these arguments and variables.
fn printed(args: &[&str], env: &[(&str, &str)]) -> String {
    let mut all = args.to_vec();
    all.push("--print-config");
    let run = rend(&all, env);
    assert_eq!(
        run.code,
        Some(0),
        "rend {all:?} with {env:?} failed:\n{}",
        run.stderr
    );
    run.stdout
}

/// The effective configuration, parsed.
fn effective(args: &[&str], env: &[(&str, &str)]) -> toml::Table {
    let text = printed(args, env);
    text.parse()
        .unwrap_or_else(|e| panic!("--print-config printed invalid TOML ({e}):\n{text}"))
}

/// A refused start: exit status 2, nothing on stdout, and the message.
fn refused(args: &[&str], env: &[(&str, &str)]) -> String {
    let mut all = args.to_vec();
    all.push("--print-config");
    let run = rend(&all, env);
    assert_eq!(
        run.code,
        Some(2),
        "rend {all:?} with {env:?} was not refused:\nstdout: {}\nstderr: {}",
        run.stdout,
        run.stderr
    );
    assert!(
        run.stdout.is_empty(),
        "printed despite the error: {}",
        run.stdout
    );
    run.stderr
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn env_name(flag: &str) -> String {
    format!("REND_{}", flag.replace('-', "_").to_uppercase())
}

/// A TOML value from its text (`4`, `"l1-l2"`, `true`).
fn value(text: &str) -> toml::Value {
    format!("v = {text}").parse::<toml::Table>().unwrap()["v"].clone()
}

/// (flag, default, file, environment, command line); TOML literals for the
/// default and the file, raw strings for the environment and flag. `None`:
/// absent by default.
const LAYERS: &[(&str, Option<&str>, &str, &str, &str)] = &[
    ("l1-conns", Some("1"), "3", "5", "7"),
    ("l1-timeout-ms", Some("1000"), "300", "500", "700"),
    ("l1-memory-mb", Some("64"), "30", "50", "70"),
    (
        "listen",
        Some(r#""127.0.0.1:11211""#),
        r#""127.0.0.1:3""#,
        "127.0.0.1:5",
        "unix:/tmp/seven.sock",
    ),
    (
        "l1",
        None,
        r#""unix:/tmp/file.sock""#,
        "127.0.0.1:5",
        "127.0.0.1:7",
    ),
    (
        "orca",
        Some(r#""l1-l2""#),
        r#""l1-only""#,
        "l1-l2",
        "l1-only",
    ),
    (
        "l2-durability",
        Some(r#""wal""#),
        r#""sync""#,
        "none",
        "sync",
    ),
    (
        "batch-listen",
        Some(r#""127.0.0.1:11212""#),
        r#""off""#,
        "127.0.0.1:5",
        "off",
    ),
    (
        "l2-path",
        Some(r#""./rend-data""#),
        r#""/from/file""#,
        "/from/env",
        "/from/flag",
    ),
    (
        "memcached",
        Some(r#""memcached""#),
        r#""/file/mc""#,
        "/env/mc",
        "/flag/mc",
    ),
    ("l2-max-bytes", None, "3000", "5000", "7000"),
    ("max-conns", Some("16384"), "300", "500", "700"),
    ("max-item-size", None, "3000", "5000", "7000"),
    ("chunk-size", None, "300", "500", "700"),
    ("lock-stripes", Some("1024"), "3", "5", "7"),
    ("idle-timeout", Some("0"), "3", "5", "7"),
    ("shutdown-grace", Some("10"), "3", "5", "7"),
    (
        "metrics-listen",
        Some(r#""127.0.0.1:11299""#),
        r#""off""#,
        "127.0.0.1:5",
        "127.0.0.1:7",
    ),
];

fn check_layer(got: &toml::Table, flag: &str, want: Option<toml::Value>, what: &str) {
    assert_eq!(got.get(flag), want.as_ref(), "{flag} {what}: {got:#?}");
}

#[test]
fn flag_beats_environment_beats_file_beats_default() {
    let dir = tempfile::tempdir().unwrap();
    let file_text: String = LAYERS
        .iter()
        .map(|(flag, _, file, _, _)| format!("{flag} = {file}\n"))
        .collect();
    let file = write(dir.path(), "rend.toml", &file_text);
    let env: Vec<(String, String)> = LAYERS
        .iter()
        .map(|(flag, _, _, env, _)| (env_name(flag), env.to_string()))
        .collect();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let flags: Vec<String> = LAYERS
        .iter()
        .map(|(flag, _, _, _, cmd)| format!("--{flag}={cmd}"))
        .collect();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let from_file = ["--config", file.as_str()];
    let string = |s: &str| {
        // Environment and flag values as --print-config shows them.
        s.parse::<i64>()
            .map(toml::Value::Integer)
            .unwrap_or_else(|_| toml::Value::String(s.to_string()))
    };

    let defaults = effective(&[], &[]);
    let file_only = effective(&from_file, &[]);
    let file_env = effective(&from_file, &env);
    let all = effective(&[&from_file[..], &flags].concat(), &env);
    let env_only = effective(&[], &env);
    let flag_file = effective(&[&from_file[..], &flags].concat(), &[]);
    for (flag, default, file, env, cmd) in LAYERS {
        check_layer(&defaults, flag, default.map(value), "by default");
        check_layer(&file_only, flag, Some(value(file)), "from the file");
        check_layer(&file_env, flag, Some(string(env)), "env over file");
        check_layer(&all, flag, Some(string(cmd)), "flag over env and file");
        check_layer(&env_only, flag, Some(string(env)), "env over default");
        check_layer(&flag_file, flag, Some(string(cmd)), "flag over file");
    }

    // Mixed: each setting from its own source.
    let mixed = effective(
        &["--config", &file, "--l1-conns", "9"],
        &[("REND_L1_TIMEOUT_MS", "900")],
    );
    assert_eq!(mixed["l1-conns"], value("9"));
    assert_eq!(mixed["l1-timeout-ms"], value("900"));
    assert_eq!(mixed["lock-stripes"], value("3"));
    // Not in this file: the default.
    let partial = write(dir.path(), "partial.toml", "l1-conns = 2\n");
    let partial = effective(&["--config", &partial], &[]);
    assert_eq!(partial["l1-conns"], value("2"));
    assert_eq!(partial["l1-timeout-ms"], value("1000"));
    assert_eq!(partial["orca"], value(r#""l1-l2""#));
}

#[test]
fn booleans_from_every_source() {
    let dir = tempfile::tempdir().unwrap();
    let on = write(dir.path(), "on.toml", "chunked = true\nlocked = true\n");
    let off = write(dir.path(), "off.toml", "chunked = false\nlocked = false\n");
    let get = |args: &[&str], env: &[(&str, &str)]| {
        let t = effective(args, env);
        (
            t.get("chunked").and_then(toml::Value::as_bool),
            t.get("locked").and_then(toml::Value::as_bool),
        )
    };
    // Defaults: not chunked, locked unset (follows chunked).
    assert_eq!(get(&[], &[]), (Some(false), None));
    assert!(printed(&[], &[]).contains("# locked: unset: false (follows chunked)"));
    // The file.
    assert_eq!(get(&["--config", &on], &[]), (Some(true), Some(true)));
    assert_eq!(get(&["--config", &off], &[]), (Some(false), Some(false)));
    // The environment, in its usual spellings, over the file.
    for (yes, no) in [("true", "false"), ("1", "0"), ("yes", "no"), ("on", "off")] {
        assert_eq!(
            get(&[], &[("REND_CHUNKED", yes), ("REND_LOCKED", yes)]),
            (Some(true), Some(true)),
            "{yes}"
        );
        assert_eq!(
            get(
                &["--config", &on],
                &[("REND_CHUNKED", no), ("REND_LOCKED", no)]
            ),
            (Some(false), Some(false)),
            "{no}"
        );
    }
    assert_eq!(
        get(
            &["--config", &off],
            &[("REND_CHUNKED", "true"), ("REND_LOCKED", "true")]
        ),
        (Some(true), Some(true))
    );
    // Flags over both.
    let env_off = [("REND_CHUNKED", "false"), ("REND_LOCKED", "false")];
    assert_eq!(
        get(&["--config", &off, "--chunked", "--locked"], &env_off),
        (Some(true), Some(true))
    );
    let env_on = [("REND_LOCKED", "true")];
    assert_eq!(
        get(&["--config", &on, "--locked", "false"], &env_on),
        (Some(true), Some(false))
    );
    assert_eq!(
        get(&["--locked=false"], &env_on),
        (Some(false), Some(false))
    );
    // Chunked alone turns locks on and lifts the value limit.
    let chunked = printed(&["--chunked"], &[]);
    assert!(
        chunked.contains("# locked: unset: true (follows chunked)"),
        "{chunked}"
    );
    assert!(
        chunked.contains("# max-item-size: unset: 1048576 (follows chunked)"),
        "{chunked}"
    );
}

#[test]
fn enums_from_every_source() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "rend.toml",
        "orca = \"l1-only\"\nl2-durability = \"none\"\n",
    );
    let get = |args: &[&str], env: &[(&str, &str)]| {
        let t = effective(args, env);
        (
            t["orca"].as_str().unwrap().to_string(),
            t["l2-durability"].as_str().unwrap().to_string(),
        )
    };
    let pair = |a: &str, b: &str| (a.to_string(), b.to_string());
    assert_eq!(get(&[], &[]), pair("l1-l2", "wal"));
    assert_eq!(get(&["--config", &file], &[]), pair("l1-only", "none"));
    assert_eq!(
        get(
            &[],
            &[("REND_ORCA", "l1-only"), ("REND_L2_DURABILITY", "sync")]
        ),
        pair("l1-only", "sync")
    );
    assert_eq!(
        get(
            &["--config", &file],
            &[("REND_ORCA", "l1-l2"), ("REND_L2_DURABILITY", "sync")]
        ),
        pair("l1-l2", "sync")
    );
    assert_eq!(
        get(
            &[
                "--config",
                &file,
                "--orca",
                "l1-l2",
                "--l2-durability",
                "wal"
            ],
            &[("REND_L2_DURABILITY", "sync")]
        ),
        pair("l1-l2", "wal")
    );
}

/// (flag, invalid value, what the message must say about what is allowed).
/// Numbers are written bare in the file, the rest as strings.
const INVALID: &[(&str, &str, &str)] = &[
    ("l1-conns", "0", "0 is not in 1..=64"),
    ("l1-conns", "65", "65 is not in 1..=64"),
    ("l1-conns", "four", "invalid digit"),
    ("l1-timeout-ms", "0", "0 is not in 1..=60000"),
    ("l1-timeout-ms", "60001", "60001 is not in 1..=60000"),
    ("l1-memory-mb", "7", "7 is not in 8..=1048576"),
    ("l1-memory-mb", "1048577", "1048577 is not in 8..=1048576"),
    ("l2-cache-mb", "0", "0 is not in 1..=1048576"),
    ("l2-cache-mb", "1048577", "1048577 is not in 1..=1048576"),
    ("l2-max-bytes", "0", "0 is not in 1.."),
    ("max-conns", "0", "0 is not in 1.."),
    ("max-item-size", "0", "0 is out of range 1..=1073741824"),
    (
        "max-item-size",
        "1073741825",
        "1073741825 is out of range 1..=1073741824",
    ),
    ("chunk-size", "0", "0 is not in 1..=1000000"),
    ("chunk-size", "1000001", "1000001 is not in 1..=1000000"),
    ("lock-stripes", "0", "0 is not in 1..=1048576"),
    ("lock-stripes", "1048577", "1048577 is not in 1..=1048576"),
    (
        "idle-timeout",
        "31536001",
        "31536001 is not in 0..=31536000",
    ),
    ("shutdown-grace", "86401", "86401 is not in 0..=86400"),
    ("shutdown-grace", "-1", "'-1'"),
    ("orca", "l3", "[possible values: l1-only, l1-l2]"),
    (
        "l2-durability",
        "fast",
        "[possible values: sync, wal, none]",
    ),
    ("listen", "nowhere", "expected host:port or unix:/path"),
    (
        "batch-listen",
        "nowhere",
        "expected host:port or unix:/path",
    ),
    ("l1", "nowhere", "expected host:port or unix:/path"),
    ("l1", "unix:", "unix: needs a socket path"),
    ("locked", "maybe", "invalid value 'maybe' for '--locked"),
    ("metrics-listen", "nowhere", "expected host:port or off"),
];

fn toml_literal(v: &str) -> String {
    if v.parse::<i64>().is_ok() {
        v.to_string()
    } else {
        format!("{v:?}")
    }
}

#[test]
fn every_invalid_value_is_refused_naming_flag_source_and_range() {
    let dir = tempfile::tempdir().unwrap();
    for (flag, bad, allowed) in INVALID {
        let named = format!("for '--{flag}");
        // On the command line.
        let msg = refused(&[&format!("--{flag}={bad}")], &[]);
        assert!(
            msg.contains(&named) && msg.contains(allowed),
            "--{flag}={bad}: {msg}"
        );
        // In the environment: the message names the variable too.
        let var = env_name(flag);
        let msg = refused(&[], &[(&var, bad)]);
        assert!(
            msg.contains(&named) && msg.contains(allowed) && msg.contains(&var),
            "{var}={bad}: {msg}"
        );
        // In the file: the message names the file and the key.
        let file = write(
            dir.path(),
            "bad.toml",
            &format!("{flag} = {}\n", toml_literal(bad)),
        );
        let msg = refused(&["--config", &file], &[]);
        assert!(
            msg.contains(&named)
                && msg.contains(allowed)
                && msg.contains(&file)
                && msg.contains(&format!("`{flag}`")),
            "{flag} = {bad} in the file: {msg}"
        );
    }
    // Booleans: from the environment and the file (the flag takes no value).
    for (var, key) in [("REND_CHUNKED", "chunked"), ("REND_LOCKED", "locked")] {
        let msg = refused(&[], &[(var, "maybe")]);
        assert!(
            msg.contains(var) && msg.contains(&format!("'--{key}")),
            "{msg}"
        );
        let file = write(dir.path(), "bad.toml", &format!("{key} = \"maybe\"\n"));
        let msg = refused(&["--config", &file], &[]);
        assert!(
            msg.contains(&file) && msg.contains(&format!("'--{key}")),
            "{msg}"
        );
    }
}

#[test]
fn wrongly_typed_file_values_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (text, says) in [
        ("l1-conns = true\n", "invalid value 'true' for '--l1-conns"),
        ("l1-conns = 2.5\n", "invalid value '2.5' for '--l1-conns"),
        ("chunked = 3\n", "invalid value '3' for '--chunked"),
        ("listen = 11211\n", "expected host:port or unix:/path"),
        ("l1-conns = [1, 2]\n", "not array"),
        ("orca = { kind = \"l1-only\" }\n", "not table"),
    ] {
        let key = text.split(' ').next().unwrap();
        let file = write(dir.path(), "typed.toml", text);
        let msg = refused(&["--config", &file], &[]);
        assert!(
            msg.contains(&file) && msg.contains(&format!("`{key}`")) && msg.contains(says),
            "{text}: {msg}"
        );
    }
}

#[test]
fn bad_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let unknown = write(dir.path(), "unknown.toml", "l1-conns = 2\nl1-conn = 3\n");
    let msg = refused(&["--config", &unknown], &[]);
    assert!(
        msg.contains(&unknown) && msg.contains("unknown key `l1-conn`") && msg.contains("l1-conns"),
        "{msg}"
    );
    // Not settings: no place in the file.
    for key in ["config", "print-config", "help", "version"] {
        let file = write(dir.path(), "meta.toml", &format!("{key} = true\n"));
        let msg = refused(&["--config", &file], &[]);
        assert!(msg.contains(&format!("unknown key `{key}`")), "{msg}");
    }
    let missing = dir.path().join("missing.toml").display().to_string();
    let msg = refused(&["--config", &missing], &[]);
    assert!(
        msg.contains("cannot read the configuration file") && msg.contains(&missing),
        "{msg}"
    );
    let a_dir = dir.path().display().to_string();
    let msg = refused(&["--config", &a_dir], &[]);
    assert!(
        msg.contains("cannot read the configuration file") && msg.contains(&a_dir),
        "{msg}"
    );
    let broken = write(dir.path(), "broken.toml", "l1-conns = \n");
    let msg = refused(&["--config", &broken], &[]);
    assert!(
        msg.contains(&broken) && msg.contains("not valid TOML"),
        "{msg}"
    );
    // The alias works, but not together with the flag's own name.
    let alias = write(dir.path(), "alias.toml", "max-value-size = 2048\n");
    assert_eq!(
        effective(&["--config", &alias], &[])["max-item-size"],
        value("2048")
    );
    let twice = write(
        dir.path(),
        "twice.toml",
        "max-item-size = 2048\nmax-value-size = 4096\n",
    );
    let msg = refused(&["--config", &twice], &[]);
    assert!(
        msg.contains(&twice) && msg.contains("a second time"),
        "{msg}"
    );
    // A bad value in the file is refused even where a flag overrides it.
    let bad = write(dir.path(), "bad.toml", "l1-conns = 0\n");
    let msg = refused(&["--config", &bad, "--l1-conns", "2"], &[]);
    assert!(msg.contains("1..=64"), "{msg}");
    // A bad variable that a flag overrides is not in force: no error.
    assert_eq!(
        effective(&["--l1-conns", "2"], &[("REND_L1_CONNS", "0")])["l1-conns"],
        value("2")
    );
}

#[test]
fn config_file_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let a = write(dir.path(), "a.toml", "l1-conns = 2\n");
    let b = write(dir.path(), "b.toml", "l1-conns = 3\n");
    assert_eq!(
        effective(&[], &[("REND_CONFIG", &a)])["l1-conns"],
        value("2")
    );
    assert_eq!(
        effective(&["--config", &b], &[("REND_CONFIG", &a)])["l1-conns"],
        value("3")
    );
}

#[test]
fn print_config_round_trips_through_config() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(Vec<&str>, Env)> = vec![
        (vec![], vec![]),
        (
            vec![
                "--listen",
                "unix:/tmp/a \"quoted\" \\ path.sock",
                "--l1",
                "127.0.0.1:1",
                "--l1-conns",
                "9",
                "--l1-timeout-ms",
                "250",
                "--l1-memory-mb",
                "128",
                "--memcached",
                "/opt/mc bin/memcached",
                "--orca",
                "l1-only",
                "--batch-listen",
                "off",
                "--l2-path",
                "/var/lib/rend data",
                "--l2-cache-mb",
                "512",
                "--l2-max-bytes",
                "1000000",
                "--l2-durability",
                "sync",
                "--max-item-size",
                "4096",
                "--chunked",
                "--chunk-size",
                "500",
                "--locked",
                "false",
                "--lock-stripes",
                "64",
                "--idle-timeout",
                "30",
                "--shutdown-grace",
                "2",
            ],
            vec![],
        ),
        (
            vec!["--batch-listen", "unix:/tmp/batch.sock"],
            // Past TOML's integers: printed as a string, read back.
            vec![
                ("REND_MAX_CONNS", "18446744073709551615"),
                ("REND_LOCKED", "1"),
            ],
        ),
    ];
    for (args, env) in cases {
        let first = printed(&args, &env);
        let file = write(dir.path(), "printed.toml", &first);
        let again = printed(&["--config", &file], &[]);
        assert_eq!(first, again, "{args:?} {env:?}");
        // Every setting is there, as a value or as a note.
        for arg in rend::config::Config::command().get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if ["config", "print-config"].contains(&long) {
                continue;
            }
            assert!(
                first.lines().any(|l| l.starts_with(&format!("{long} = "))
                    || l.starts_with(&format!("# {long}: unset"))),
                "{long} missing:\n{first}"
            );
        }
    }
}

#[test]
fn every_flag_has_its_variable() {
    let cmd = rend::config::Config::command();
    for arg in cmd.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if long == "print-config" {
            continue;
        }
        assert_eq!(
            arg.get_env().map(|e| e.to_string_lossy().into_owned()),
            Some(env_name(long)),
            "--{long}"
        );
    }
    let help = rend(&["--help"], &[]);
    assert_eq!(help.code, Some(0));
    assert!(
        help.stdout.contains("REND_L1_TIMEOUT_MS"),
        "{}",
        help.stdout
    );
    assert!(help.stdout.contains("--config <FILE>"), "{}", help.stdout);
}

#[test]
fn invalid_values_stop_rend_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_arg = data.display().to_string();
    let bad = write(dir.path(), "bad.toml", "lock-stripes = 0\n");
    for (args, env) in [
        (vec!["--l1-conns", "0"], vec![]),
        (vec![], vec![("REND_L1_TIMEOUT_MS", "0")]),
        (vec!["--config", bad.as_str()], vec![]),
    ] {
        let mut all = vec!["--listen", "127.0.0.1:0", "--l2-path", &data_arg];
        all.extend(args);
        let run = rend(&all, &env);
        assert_eq!(run.code, Some(2), "{all:?}: {}", run.stderr);
        assert!(!data.exists(), "L2 opened despite {all:?}");
        assert!(!run.stderr.contains("listening on"), "{}", run.stderr);
    }
}

/// memcached's `curr_connections`, asked on `c`.
fn curr_connections(c: &mut common::Conn) -> u64 {
    let stats = String::from_utf8(c.req(b"stats\r\n", b"END\r\n")).unwrap();
    stats
        .lines()
        .find_map(|l| l.strip_prefix("STAT curr_connections "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no curr_connections in {stats}"))
}

#[test]
fn settings_from_file_and_environment_take_effect() {
    // rend really runs with them: each one shows in what rend does, with a
    // real memcached as its L1.
    let mc = common::Memcached::start();
    let mut m = mc.connect();
    let before = curr_connections(&mut m);
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "rend.toml",
        &format!(
            "orca = \"l1-only\"\nl1 = \"{}\"\nthreads = 1\nl1-conns = 3\nmax-conns = 2\nmax-item-size = 50\nlisten = \"127.0.0.1:1\"\nmetrics-listen = \"off\"\n",
            mc.l1_arg()
        ),
    );
    let mut cmd = Command::new(REND);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("REND_") {
            cmd.env_remove(name);
        }
    }
    let mut child = cmd
        .args(["--config", &file])
        .env("REND_LISTEN", "127.0.0.1:0")
        .env("REND_CHUNKED", "true")
        .env("REND_MAX_ITEM_SIZE", "1000")
        .env("RUST_LOG", "info")
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start rend");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stderr = child.stderr.take().unwrap();
    let _child = Kill(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            eprintln!("[rend] {line}");
            if let Some(i) = line.find("listening on ") {
                if let Some(tx) = tx.take() {
                    let addr = line[i + 13..].split_whitespace().next().unwrap_or("");
                    let _ = tx.send(addr.to_string());
                }
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(15))
        .expect("rend did not start");
    // listen: the environment's port 0 beat the file's port 1.
    assert!(
        addr.starts_with("127.0.0.1:") && addr != "127.0.0.1:1",
        "{addr}"
    );
    let mut a = common::Conn::tcp(&addr);
    // max-item-size: the environment's 1000 beat the file's 50.
    let v = "v".repeat(1000);
    assert_eq!(
        a.line(format!("set k 7 0 1000\r\n{v}\r\n").as_bytes()),
        "STORED\r\n"
    );
    let too_big = "v".repeat(1001);
    assert_eq!(
        a.line(format!("set big 0 0 1001\r\n{too_big}\r\n").as_bytes()),
        "SERVER_ERROR object too large for cache\r\n"
    );
    // l1 and chunked: the value is in this memcached, as Rend's chunks.
    let meta = m.req(b"get k-meta\r\n", b"END\r\n");
    assert!(meta.starts_with(b"VALUE k-meta 0 40\r\n"), "{meta:?}");
    let chunk = m.req(b"get k-0\r\n", b"END\r\n");
    assert!(chunk.starts_with(b"VALUE k-0 "), "{chunk:?}");
    assert_eq!(m.req(b"get k\r\n", b"END\r\n"), b"END\r\n");
    // orca l1-only: no L2 (the default --l2-path, ./rend-data, is never made).
    assert!(!dir.path().join("rend-data").exists(), "L2 opened");
    // threads 1 times l1-conns 3: three connections to memcached.
    let mut seen = 0;
    let three = common::wait_for(Duration::from_secs(5), || {
        seen = curr_connections(&mut m);
        seen == before + 3
    });
    assert!(
        three.is_ok(),
        "memcached has {seen} connections, {before} before rend"
    );
    // max-conns 2: a third client is turned away.
    let mut b = common::Conn::tcp(&addr);
    assert!(b.line(b"version\r\n").starts_with("VERSION"));
    let mut c = common::Conn::tcp(&addr);
    assert!(c.closed_within(Duration::from_secs(3)));
    assert_eq!(c.buf, b"ERROR Too many open connections\r\n");
}

/// `fixtures/` path.
fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
        .display()
        .to_string()
}

#[test]
fn the_readme_example_configuration_is_read_as_written() {
    let t = effective(
        &[
            "--config",
            &fixture("rend.toml"),
            "--listen",
            "0.0.0.0:11211",
        ],
        &[("REND_MAX_CONNS", "4096")],
    );
    assert_eq!(t["orca"].as_str(), Some("l1-only"));
    assert_eq!(t["l1"].as_str(), Some("unix:/run/memcached/memcached.sock"));
    assert_eq!(t["l1-timeout-ms"].as_integer(), Some(500));
    assert_eq!(t["chunked"].as_bool(), Some(true));
    assert_eq!(t["max-conns"].as_integer(), Some(4096));
    assert_eq!(t["listen"].as_str(), Some("0.0.0.0:11211"));
}

#[test]
fn the_systemd_unit_is_valid_and_its_command_line_is_accepted() {
    let unit = std::fs::read_to_string(fixture("rend.service")).unwrap();
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart");
    let mut words = exec.split_whitespace();
    assert_eq!(words.next(), Some("/usr/local/bin/rend"));
    let args: Vec<&str> = words.collect();
    let t = effective(&args, &[]);
    assert_eq!(t["listen"].as_str(), Some("0.0.0.0:11211"));
    assert_eq!(t["l2-path"].as_str(), Some("/var/lib/rend/l2"));
    assert!(
        unit.contains("KillMode=mixed"),
        "SIGTERM goes to rend alone, which stops its memcached"
    );

    // systemd's own check, with ExecStart pointed at the binary under test.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rend.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/rend", REND)).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !stderr.contains("rend.service"),
        "systemd-analyze verify:\n{stderr}"
    );
}
