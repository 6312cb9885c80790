//! rend with no `--l1`: it starts memcached itself, restarts it when it
//! dies, and stops it on exit (also when rend is killed outright).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::{signal, wait_for, Rend};

/// All descendants of `pid`, from /proc.
fn descendants(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let Ok(children) = std::fs::read_to_string(task.path().join("children")) else {
                continue;
            };
            for c in children.split_whitespace().filter_map(|c| c.parse().ok()) {
                out.push(c);
                todo.push(c);
            }
        }
    }
    out
}

fn memcached_under(pid: u32) -> Option<u32> {
    descendants(pid).into_iter().find(|c| {
        std::fs::read_to_string(format!("/proc/{c}/comm"))
            .map(|s| s.trim() == "memcached")
            .unwrap_or(false)
    })
}

fn alive(pid: u32) -> bool {
    // A zombie still has a /proc entry; look at its state.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

fn start_embedded() -> Rend {
    Rend::start_args(&[
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--orca".into(),
        "l1-only".into(),
    ])
}

#[test]
fn embedded_memcached_is_supervised_and_stopped() {
    let mut rend = start_embedded();
    let mut c = rend.connect();
    assert_eq!(c.line(b"set e 0 0 2\r\nhi\r\n"), "STORED\r\n");
    assert_eq!(
        c.req(b"get e\r\n", b"END\r\n"),
        b"VALUE e 0 2\r\nhi\r\nEND\r\n"
    );

    let first = memcached_under(rend.pid()).expect("rend runs a memcached");
    signal(first, "KILL");
    wait_for(
        Duration::from_secs(10),
        || matches!(memcached_under(rend.pid()), Some(p) if p != first),
    )
    .expect("rend restarts memcached");
    wait_for(Duration::from_secs(10), || {
        c.line(b"set e 0 0 2\r\nhi\r\n") == "STORED\r\n"
    })
    .expect("the same client connection works again");

    let second = memcached_under(rend.pid()).unwrap();
    assert!(rend
        .terminate(Duration::from_secs(15))
        .expect("exits")
        .success());
    wait_for(Duration::from_secs(5), || !alive(second)).expect("memcached stops with rend");
    assert!(!rend.log().contains("ERROR"), "{}", rend.log());
}

#[test]
fn embedded_memcached_dies_with_a_killed_rend() {
    let mut rend = start_embedded();
    let mc = memcached_under(rend.pid()).expect("rend runs a memcached");
    let socket_dirs_before = rend.log();
    let _ = rend.child.kill();
    let _ = rend.child.wait();
    wait_for(Duration::from_secs(5), || !alive(mc))
        .expect("memcached exits when rend is SIGKILLed");
    // Its socket's directory is named in the log; the socket is gone with it
    // or at least no longer served.
    if let Some(i) = socket_dirs_before.find("socket=") {
        let path = socket_dirs_before[i + 7..]
            .split_whitespace()
            .next()
            .unwrap_or("");
        let path = path.trim_end_matches(|c: char| !c.is_ascii_graphic());
        wait_for(Duration::from_secs(5), || {
            std::os::unix::net::UnixStream::connect(Path::new(path)).is_err()
        })
        .expect("nothing serves the embedded memcached's socket any more");
    }
}

/// The process group of `pid` (field 5 of /proc/PID/stat).
fn pgid(pid: u32) -> u32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    stat.rsplit(')')
        .next()
        .and_then(|rest| rest.split_whitespace().nth(2))
        .and_then(|g| g.parse().ok())
        .expect("pgid")
}

/// A clean stop logs no warning: the embedded memcached is in a process
/// group of its own, so a signal to rend's group (Ctrl-C) does not reach
/// it, and if it is stopped anyway while rend shuts down (a service manager
/// signals every process of the service), that is not a crash to restart.
#[test]
fn a_clean_stop_logs_no_warning_even_when_memcached_is_signalled_too() {
    let mut rend = Rend::start_args(&[
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--orca".into(),
        "l1-only".into(),
        "--shutdown-grace".into(),
        "3".into(),
        // Not the default port: another test's rend may hold it, and the
        // warning that says so would fail this test.
        "--metrics-listen".into(),
        "off".into(),
    ]);
    let mc = memcached_under(rend.pid()).expect("rend runs a memcached");
    assert_ne!(pgid(mc), pgid(rend.pid()), "memcached shares rend's group");
    // A client still connected, so rend drains for a while.
    let mut c = rend.connect();
    assert_eq!(c.line(b"set e 0 0 2\r\nhi\r\n"), "STORED\r\n");
    signal(rend.pid(), "TERM");
    wait_for(Duration::from_secs(5), || {
        rend.log().contains("signal received")
    })
    .expect("rend saw the signal");
    signal(mc, "TERM");
    let status = rend.terminate(Duration::from_secs(15)).expect("rend exits");
    assert!(status.success(), "{status:?}");
    let log = rend.log();
    assert!(
        !log.contains("WARN"),
        "a clean stop logged a warning:\n{log}"
    );
    assert!(!log.contains("restarting"), "{log}");
}
