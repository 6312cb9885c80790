//! Orca unit tests with scripted fake backends: one per path of DESIGN §3's
//! table, failure branches included.
//!
//! Both tiers are [`Fake`]s that log every command they are handed (into one
//! log shared by the two, so the order across tiers is visible) and answer
//! from a script. Back-fills run in a task spawned after the reply, so tests
//! that expect one poll for it ([`wait_until`]); tests that expect none give
//! spawned work time to run ([`settle`]) before checking the log.

use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use super::trust::MAX_SUSPECTS;
use super::*;
use crate::backend::{BackendError, BackendFuture, Tier};
use crate::metrics::Counts;
use crate::orca::{l1_l2, l1_l2_batch};
use crate::protocol::Frame;

type Answer = Result<Response, BackendError>;
type Script = Arc<dyn Fn(&Command) -> Answer + Send + Sync>;
type Gate = (fn(&Command) -> bool, Arc<Semaphore>);

/// One command log for both tiers.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<(Tier, Command)>>>);

impl Log {
    fn all(&self) -> Vec<(Tier, Command)> {
        self.0.lock().unwrap().clone()
    }
}

/// A scripted tier.
#[derive(Clone)]
struct Fake {
    tier: Tier,
    log: Log,
    script: Arc<Mutex<Script>>,
    /// Commands matching the predicate wait for a permit before answering.
    gate: Arc<Mutex<Option<Gate>>>,
    /// What [`Backend::unsettled`] answers.
    unsettled: Arc<std::sync::atomic::AtomicBool>,
}

impl Fake {
    fn new(tier: Tier, log: Log) -> Fake {
        Fake {
            tier,
            log,
            script: Arc::new(Mutex::new(Arc::new(move |_: &Command| {
                Err(BackendError::Protocol(tier, "unscripted"))
            }))),
            gate: Arc::new(Mutex::new(None)),
            unsettled: Arc::default(),
        }
    }

    fn answer(&self, f: impl Fn(&Command) -> Answer + Send + Sync + 'static) {
        *self.script.lock().unwrap() = Arc::new(f);
    }

    fn hold(&self, which: fn(&Command) -> bool) -> Arc<Semaphore> {
        let sem = Arc::new(Semaphore::new(0));
        *self.gate.lock().unwrap() = Some((which, sem.clone()));
        sem
    }

    fn seen(&self) -> Vec<Command> {
        self.log
            .all()
            .into_iter()
            .filter(|(t, _)| *t == self.tier)
            .map(|(_, c)| c)
            .collect()
    }
}

impl Backend for Fake {
    fn unsettled(&self, _key: Option<&[u8]>) -> bool {
        self.unsettled.load(Ordering::SeqCst)
    }

    fn call(&self, cmd: &Command) -> BackendFuture {
        self.log.0.lock().unwrap().push((self.tier, cmd.clone()));
        let script = self.script.lock().unwrap().clone();
        let gate = self
            .gate
            .lock()
            .unwrap()
            .as_ref()
            .filter(|(which, _)| which(cmd))
            .map(|(_, sem)| sem.clone());
        let answer = script(cmd);
        Box::pin(async move {
            if let Some(sem) = gate {
                sem.acquire().await.unwrap().forget();
            }
            answer
        })
    }
}

struct Rig {
    l1: Fake,
    l2: Fake,
    /// The admin lane (logged as L1: it is memcached too).
    admin: Fake,
    log: Log,
    shared: Arc<Shared<Fake, Fake>>,
}

impl Rig {
    fn new() -> Rig {
        Rig::with_read_locks(false)
    }

    fn with_read_locks(read_locks: bool) -> Rig {
        let log = Log::default();
        let l1 = Fake::new(Tier::L1, log.clone());
        let l2 = Fake::new(Tier::L2, log.clone());
        let admin = Fake::new(Tier::L1, log.clone());
        let settings = SharedSettings {
            locks: KeyLocks::new(64),
            read_locks,
            l1_timeout: Duration::from_secs(1),
        };
        let shared = Shared::new(
            l1.clone(),
            l2.clone(),
            Arc::new(admin.clone()),
            Arc::new(Counters::default()),
            settings,
        );
        Rig {
            l1,
            l2,
            admin,
            log,
            shared,
        }
    }

    /// The main port (l1-l2).
    async fn main(&self, cmd: Command) -> Response {
        let mut orca = l1_l2::orca(self.shared.clone());
        bounded(orca.handle(&req(cmd))).await
    }

    /// The batch port (l1-l2-batch).
    async fn batch(&self, cmd: Command) -> Response {
        let mut orca = l1_l2_batch::orca(self.shared.clone());
        bounded(orca.handle(&req(cmd))).await
    }

    fn count(&self, which: impl Fn(&Counts) -> &AtomicU64) -> u64 {
        which(&self.shared.counters.counts).load(Ordering::Relaxed)
    }

    fn log(&self) -> Vec<(Tier, Command)> {
        self.log.all()
    }
}

async fn bounded<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(5), f)
        .await
        .expect("the orca did not answer within 5 s")
}

fn req(cmd: Command) -> Request {
    Request {
        cmd,
        frame: Frame::Text {
            noreply: false,
            cas: false,
        },
    }
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn store(mode: StoreMode, key: &str, flags: u32, exptime: i64, cas: u64, value: &[u8]) -> Command {
    Command::Store {
        mode,
        key: b(key),
        flags,
        exptime,
        cas,
        value: Bytes::copy_from_slice(value),
    }
}

fn get(keys: &[&str]) -> Command {
    Command::Get {
        keys: keys.iter().map(|k| b(k)).collect(),
        touch: None,
    }
}

fn gete(key: &str) -> Command {
    Command::GetE { key: b(key) }
}

fn delete(key: &str) -> Command {
    Command::Delete {
        key: b(key),
        cas: 0,
    }
}

fn value(key: &str, flags: u32, cas: u64, data: &[u8]) -> Value {
    Value {
        key: b(key),
        flags,
        cas,
        data: Bytes::copy_from_slice(data),
    }
}

/// An item as L1 holds it: tagged with L2's cas; memcached's own cas is
/// something else entirely.
fn l1_item(key: &str, flags: u32, l2_cas: u64, data: &[u8]) -> Value {
    Value {
        key: b(key),
        flags,
        cas: 777_000 + l2_cas,
        data: wrap(l2_cas, data),
    }
}

/// The back-fill a record of L2 should cause.
fn backfill_add(key: &str, flags: u32, expiry: u32, l2_cas: u64, data: &[u8]) -> Command {
    Command::Store {
        mode: StoreMode::Add,
        key: b(key),
        flags,
        exptime: i64::from(expiry),
        cas: 0,
        value: wrap(l2_cas, data),
    }
}

/// The L1 write a record of L2 should cause.
fn l1_write(
    mode: StoreMode,
    key: &str,
    flags: u32,
    exptime: i64,
    l2_cas: u64,
    data: &[u8],
) -> Command {
    Command::Store {
        mode,
        key: b(key),
        flags,
        exptime,
        cas: 0,
        value: wrap(l2_cas, data),
    }
}

/// A memcached that has nothing and accepts everything.
fn l1_empty(cmd: &Command) -> Answer {
    Ok(match cmd {
        Command::Get { .. } => Response::Values(Vec::new()),
        Command::Store { .. } => Response::Stored { cas: 5_000 },
        Command::Delete { .. } => Response::NotFound,
        Command::Touch { .. } => Response::NotFound,
        Command::Flush { .. } => Response::Ok,
        _ => Response::Error(ErrorReply::UnknownCommand),
    })
}

fn l1_timeout() -> Answer {
    Err(BackendError::Timeout(Tier::L1))
}

/// Poll `cond` every 5 ms for up to 2 s.
async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Let spawned work (back-fills) run before asserting it did nothing. On
/// tokio's paused clock (most tests here) this takes no real time: the
/// clock jumps once every task is idle.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// The exptime of the one command that has one.
fn exptime_of(cmd: &Command) -> i64 {
    match cmd {
        Command::Store { exptime, .. } | Command::Touch { exptime, .. } => *exptime,
        Command::Get {
            touch: Some(exptime),
            ..
        } => *exptime,
        Command::Arith {
            create: Some((_, exptime)),
            ..
        } => *exptime,
        other => panic!("no exptime in {other:?}"),
    }
}

/// `exptime` is `relative` seconds after some moment in [before, after].
fn assert_absolute(exptime: i64, relative: i64, before: u32, after: u32) {
    assert!(
        exptime >= i64::from(before) + relative && exptime <= i64::from(after) + relative,
        "exptime {exptime} is not now+{relative} (now in {before}..={after})"
    );
}

// ---------------------------------------------------------------- wrap

#[test]
fn wrap_and_unwrap_the_l1_header() {
    let w = wrap(0x0102_0304_0506_0708, b"val");
    assert_eq!(&w[..], b"\xA5\x01\x02\x03\x04\x05\x06\x07\x08val");
    assert_eq!(unwrap(&w), Some((0x0102_0304_0506_0708, b("val"))));
    assert_eq!(unwrap(&wrap(9, b"")), Some((9, Bytes::new())));
    // No tag, or too short for the header: not a two-tier item.
    assert_eq!(
        unwrap(&Bytes::from_static(b"\x00\0\0\0\0\0\0\0\x09val")),
        None
    );
    assert_eq!(unwrap(&Bytes::from_static(b"\xA5\0\0\0\0\0\0\0")), None);
}

// ---------------------------------------------------------------- set

#[tokio::test(start_paused = true)]
async fn set_writes_l2_then_l1_with_l2_cas_and_absolute_exptime() {
    let rig = Rig::new();
    rig.l2.answer(|_| Ok(Response::Stored { cas: 42 }));
    rig.l1.answer(|_| Ok(Response::Stored { cas: 5_000 }));
    let before = expiry::now();
    let r = rig
        .main(store(StoreMode::Set, "k", 7, 100, 0, b"hello"))
        .await;
    let after = expiry::now();
    assert_eq!(r, Response::Stored { cas: 42 });
    let log = rig.log();
    assert_eq!(log.len(), 2, "{log:?}");
    let e = exptime_of(&log[0].1);
    assert_absolute(e, 100, before, after);
    assert_eq!(
        log,
        vec![
            (Tier::L2, store(StoreMode::Set, "k", 7, e, 0, b"hello")),
            (
                Tier::L1,
                store(StoreMode::Set, "k", 7, e, 0, b"\xA5\0\0\0\0\0\0\0\x2Ahello")
            ),
        ]
    );
    settle().await;
    assert_eq!(rig.log().len(), 2, "nothing after the L1 set");
    assert_eq!(rig.count(|c| &c.l1_write_failures), 0);
}

#[tokio::test(start_paused = true)]
async fn set_keeps_absolute_zero_and_expired_exptimes() {
    let rig = Rig::new();
    rig.l2.answer(|_| Ok(Response::Stored { cas: 1 }));
    rig.l1.answer(|_| Ok(Response::Stored { cas: 1 }));
    // Absolute (past 30 days), never, already expired.
    for given in [2_000_000_000, 0, -5] {
        rig.main(store(StoreMode::Set, "k", 0, given, 0, b"v"))
            .await;
    }
    let sent: Vec<(Tier, i64)> = rig.log().iter().map(|(t, c)| (*t, exptime_of(c))).collect();
    assert_eq!(
        sent,
        vec![
            (Tier::L2, 2_000_000_000),
            (Tier::L1, 2_000_000_000),
            (Tier::L2, 0),
            (Tier::L1, 0),
            (Tier::L2, -1),
            (Tier::L1, -1),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn set_on_batch_port_replaces_in_l1() {
    let rig = Rig::new();
    rig.l2.answer(|_| Ok(Response::Stored { cas: 42 }));
    // The key is not hot: memcached's replace finds nothing.
    rig.l1.answer(|_| Ok(Response::NotStored));
    let r = rig
        .batch(store(StoreMode::Set, "k", 3, 2_000_000_000, 0, b"v"))
        .await;
    assert_eq!(r, Response::Stored { cas: 42 });
    settle().await;
    assert_eq!(
        rig.log(),
        vec![
            (
                Tier::L2,
                store(StoreMode::Set, "k", 3, 2_000_000_000, 0, b"v")
            ),
            (
                Tier::L1,
                l1_write(StoreMode::Replace, "k", 3, 2_000_000_000, 42, b"v")
            ),
        ],
        "a replace that finds nothing is not followed by a delete"
    );
    assert!(!rig.shared.trust.is_suspect(b"k"));
    assert_eq!(rig.count(|c| &c.l1_write_failures), 0);
}

#[tokio::test(start_paused = true)]
async fn set_l2_failure_is_server_error_and_l1_is_not_called() {
    let rig = Rig::new();
    rig.l2.answer(|_| Err(BackendError::Unavailable(Tier::L2)));
    rig.l1.answer(l1_empty);
    for r in [
        rig.main(store(StoreMode::Set, "k", 0, 0, 0, b"v")).await,
        rig.batch(store(StoreMode::Set, "k", 0, 0, 0, b"v")).await,
    ] {
        assert_eq!(r, Response::Error(ErrorReply::Server(b("L2 unavailable"))));
    }
    settle().await;
    assert!(rig.l1.seen().is_empty(), "{:?}", rig.l1.seen());
    assert_eq!(rig.l2.seen().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn set_l1_timeout_replies_stored_and_makes_the_key_suspect() {
    let rig = Rig::new();
    rig.l2.answer(|cmd| {
        Ok(match cmd {
            Command::Store { .. } => Response::Stored { cas: 42 },
            Command::GetE { .. } => Response::ValueE {
                value: value("k", 7, 42, b"new"),
                expiry: 0,
            },
            _ => Response::Error(ErrorReply::UnknownCommand),
        })
    });
    rig.l1.answer(|cmd| match cmd {
        Command::Store { .. } => l1_timeout(),
        // The write that timed out did not land: L1 still has the old value.
        Command::Get { .. } => Ok(Response::Values(vec![l1_item("k", 7, 41, b"old")])),
        _ => l1_empty(cmd),
    });
    let r = rig.main(store(StoreMode::Set, "k", 7, 0, 0, b"new")).await;
    assert_eq!(r, Response::Stored { cas: 42 });
    assert_eq!(rig.count(|c| &c.l1_write_failures), 1);
    assert!(rig.shared.trust.is_suspect(b"k"));

    let r = rig.main(get(&["k"])).await;
    assert_eq!(r, Response::Values(vec![value("k", 7, 42, b"new")]));
    assert_eq!(
        rig.l2.seen(),
        vec![store(StoreMode::Set, "k", 7, 0, 0, b"new"), gete("k")],
        "the stale L1 hit is not served: L2 answers"
    );
}

/// memcached may answer a read from a stale copy and then apply a write
/// queued after it, whose success lifts the key's suspicion; rend may see the
/// write's success first. A key suspect when its read was sent is not served
/// from that read.
#[tokio::test(start_paused = true)]
async fn a_read_sent_while_the_key_was_suspect_is_not_served_from_l1() {
    let rig = Rig::new();
    rig.l2.answer(|cmd| {
        Ok(match cmd {
            Command::GetE { .. } => Response::ValueE {
                value: value("k", 0, 42, b"new"),
                expiry: 0,
            },
            _ => Response::Error(ErrorReply::UnknownCommand),
        })
    });
    rig.l1.answer(|cmd| match cmd {
        Command::Get { .. } => Ok(Response::Values(vec![l1_item("k", 0, 41, b"old")])),
        _ => l1_empty(cmd),
    });
    rig.shared.trust.suspect(&b("k"));
    let reads = rig.l1.hold(|c| matches!(c, Command::Get { .. }));
    let shared = rig.shared.clone();
    let read = tokio::spawn(async move { l1_l2::orca(shared).handle(&req(get(&["k"]))).await });
    wait_until("the L1 read", || !rig.l1.seen().is_empty()).await;
    // The write queued behind the read succeeds and is seen first.
    rig.shared.trust.clear(b"k");
    reads.add_permits(1);
    let r = bounded(read).await.unwrap();
    assert_eq!(r, Response::Values(vec![value("k", 0, 42, b"new")]));
    assert_eq!(
        rig.l2.seen(),
        vec![gete("k")],
        "L2 answers, not the old L1 copy"
    );
}

/// While an earlier L1 request may still be carried out (a stalled socket
/// memcached has not answered), a later write's success does not vouch for
/// L1's copy; once it has settled, the next successful write does.
#[tokio::test(start_paused = true)]
async fn an_unsettled_l1_keeps_a_key_suspect_through_later_writes() {
    let rig = Rig::new();
    rig.l2.answer(|cmd| {
        Ok(match cmd {
            Command::Store { .. } => Response::Stored { cas: 42 },
            _ => Response::Error(ErrorReply::UnknownCommand),
        })
    });
    rig.l1.answer(l1_empty);
    rig.shared.trust.suspect(&b("k"));
    rig.l1.unsettled.store(true, Ordering::SeqCst);
    let r = rig.main(store(StoreMode::Set, "k", 0, 0, 0, b"v1")).await;
    assert_eq!(r, Response::Stored { cas: 42 });
    assert!(
        rig.shared.trust.is_suspect(b"k"),
        "the old write may still land"
    );
    rig.l1.unsettled.store(false, Ordering::SeqCst);
    rig.main(store(StoreMode::Set, "k", 0, 0, 0, b"v2")).await;
    assert!(!rig.shared.trust.is_suspect(b"k"));
}

#[tokio::test(start_paused = true)]
async fn suspect_key_backfill_deletes_the_stale_copy_then_adds() {
    let rig = Rig::new();
    rig.l2.answer(|cmd| {
        Ok(match cmd {
            Command::Store { .. } => Response::Stored { cas: 42 },
            Command::GetE { .. } => Response::ValueE {
                value: value("k", 7, 42, b"new"),
                expiry: 2_000_000_000,
            },
            _ => Response::Error(ErrorReply::UnknownCommand),
        })
    });
    rig.l1.answer(|cmd| match cmd {
        Command::Store {
            mode: StoreMode::Set,
            ..
        } => l1_timeout(),
        Command::Get { .. } => Ok(Response::Values(vec![l1_item("k", 7, 41, b"old")])),
        Command::Delete { .. } => Ok(Response::Deleted),
        _ => l1_empty(cmd),
    });
    rig.main(store(StoreMode::Set, "k", 7, 0, 0, b"new")).await;
    rig.l1.log.0.lock().unwrap().clear();

    let r = rig.main(get(&["k"])).await;
    assert_eq!(r, Response::Values(vec![value("k", 7, 42, b"new")]));
    wait_until("the back-fill add", || rig.l1.seen().len() >= 3).await;
    settle().await;
    assert_eq!(
        rig.l1.seen(),
        vec![
            get(&["k"]),
            delete("k"),
            backfill_add("k", 7, 2_000_000_000, 42, b"new"),
        ]
    );
    assert_eq!(rig.count(|c| &c.l1_backfills), 1);
    // The delete settled the suspicion: L1 serves the key again.
    assert!(!rig.shared.trust.is_suspect(b"k"));
    rig.l1.answer(|cmd| match cmd {
        Command::Get { .. } => Ok(Response::Values(vec![l1_item("k", 7, 42, b"new")])),
        _ => l1_empty(cmd),
    });
    let l2_calls = rig.l2.seen().len();
    let r = rig.main(get(&["k"])).await;
    assert_eq!(r, Response::Values(vec![value("k", 7, 42, b"new")]));
    assert_eq!(rig.l2.seen().len(), l2_calls, "an L1 hit, L2 not asked");
}

#[tokio::test(start_paused = true)]
async fn suspect_key_backfill_skips_the_add_when_the_delete_fails() {
    let rig = Rig::new();
    rig.l2.answer(|cmd| {
        Ok(match cmd {
            Command::Delete { .. } => Response::Deleted,
            Command::GetE { .. } => Response::ValueE {
                value: value("k", 1, 50, b"v"),
                expiry: 0,
            },
            _ => Response::Error(ErrorReply::UnknownCommand),
        })
    });
    rig.l1.answer(|cmd| match cmd {
        Command::Delete { .. } => l1_timeout(),
        Command::Get { .. } => Ok(Response::Values(vec![l1_item("k", 1, 49, b"stale")])),
        _ => l1_empty(cmd),
    });
    rig.main(delete("k")).await;
    let r = rig.main(get(&["k"])).await;
    assert_eq!(r, Response::Values(vec![value("k", 1, 50, b"v")]));
    wait_until("the back-fill's delete", || rig.l1.seen().len() >= 3).await;
    settle().await;
    assert_eq!(
        rig.l1.seen(),
        vec![delete("k"), get(&["k"]), delete("k")],
        "no add after a failed delete of the stale copy"
    );
    assert!(rig.shared.trust.is_suspect(b"k"));
}

#[tokio::test(start_paused = true)]
async fn l1_refusing_the_set_gets_a_delete_of_the_key() {
    let rig = Rig::new();
    rig.l2.answer(|_| Ok(Response::Stored { cas: 42 }));
    rig.l1.answer(|cmd| match cmd {
        Command::Store { .. } => Ok(Response::Error(ErrorReply::TooLarge)),
        Command::Delete { .. } => Ok(Response::Deleted),
        _ => l1_empty(cmd),
    });
    let r = rig.main(store(StoreMode::Set, "k", 0, 0, 0, b"big")).await;
    assert_eq!(r, Response::Stored { cas: 42 });
    settle().await;
    assert_eq!(
        rig.log(),
        vec![
            (Tier::L2, store(StoreMode::Set, "k", 0, 0, 0, b"big")),
            (Tier::L1, l1_write(StoreMode::Set, "k", 0, 0, 42, b"big")),
            (Tier::L1, delete("k")),
        ]
    );
    assert!(!rig.shared.trust.is_suspect(b"k"));
    assert_eq!(rig.count(|c| &c.l1_write_failures), 0);
}

#[tokio::test(start_paused = true)]
async fn l1_refusing_the_set_and_failing_the_delete_makes_the_key_suspect() {
    let rig = Rig::new();
    rig.l2.answer(|_| Ok(Response::Stored { cas: 42 }));
    rig.l1.answer(|cmd| match cmd {
        Command::Store { .. } => Ok(Response::Error(ErrorReply::OutOfMemory)),
        Command::Delete { .. } => l1_timeout(),
        _ => l1_empty(cmd),
    });
    let r = rig.main(store(StoreMode::Set, "k", 0, 0, 0, b"v")).await;
    assert_eq!(r, Response::Stored { cas: 42 });
    assert_eq!(rig.l1.seen().len(), 2);
    assert!(matches!(rig.l1.seen()[1], Command::Delete { .. }));
    assert!(rig.shared.trust.is_suspect(b"k"));
    assert_eq!(rig.count(|c| &c.l1_write_failures), 1);
}

#[tokio::test(start_paused = true)]
async fn too_large_set_deletes_the_key_in_both_tiers() {
    let rig = Rig::new();
    rig.l2.answer(|_| Ok(Response::Deleted));
    rig.l1.answer(|_| Ok(Response::Deleted));
    let r = rig
        .main(Command::Invalid(Invalid::TooLarge {
            delete: Some(b("k")),
        }))
        .await;
    assert_eq!(r, Response::Error(ErrorReply::TooLarge));
    assert_eq!(
        rig.log(),
        vec![(Tier::L2, delete("k")), (Tier::L1, delete("k"))]
    );
}

// ---------------------------------------------------------------- add / replace

#[tokio::test(start_paused = true)]
async fn add_refused_by_l2_is_not_stored_and_l1_untouched() {
    let rig = Rig::new();
    rig.l2.answer(|_| Ok(Response::NotStored));
    rig.l1.answer(l1_empty);
    for mode in [StoreMode::Add, StoreMode::Replace] {
        assert_eq!(
            rig.main(store(mode, "k", 0, 0, 0, b"v")).await,
            Response::NotStored
        );
        assert_eq!(
            rig.batch(store(mode, "k", 0, 0, 0, b"v")).await,
            Response::NotStored
        );
    }
    settle().await;
    assert!(rig.l1.seen().is_empty(), "{:?}", rig.l1.seen());
    assert_eq!(rig.l2.seen().len(), 4);
}

#[tokio::test(start_paused = true)]
async fn add_and_replace_accepted_by_l2_set_l1_on_the_main_port() {
    let rig = Rig::new();
    rig.l2.answer(|_| Ok(Response::Stored { cas: 61 }));
    rig.l1.answer(l1_empty);
    for mode in [StoreMode::Add, StoreMode::Replace] {
        let r = rig.main(store(mode, "k", 4, 2_000_000_000, 0, b"v")).await;
        assert_eq!(r, Response::Stored { cas: 61 }, "{mode:?}");
    }
    let set = l1_write(StoreMode::Set, "k", 4, 2_000_000_000, 61, b"v");
    assert_eq!(
        rig.log(),
        vec![
            (
                Tier::L2,
                store(StoreMode::Add, "k", 4, 2_000_000_000, 0, b"v")
            ),
            (Tier::L1, set.clone()),
            (
                Tier::L2,
                store(StoreMode::Replace, "k", 4, 2_000_000_000, 0, b"v")
            ),
            (Tier::L1, set),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn add_and_replace_accepted_by_l2_replace_l1_on_the_batch_port() {
    let rig = Rig::new();
    rig.l2.answer(|_| Ok(Response::Stored { cas: 61 }));
    rig.l1.answer(l1_empty);
    for mode in [StoreMode::Add, StoreMode::Replace] {
        let r = rig.batch(store(mode, "k", 4, 0, 0, b"v")).await;
        assert_eq!(r, Response::Stored { cas: 61 }, "{mode:?}");
    }
    let replace = l1_write(StoreMode::Replace, "k", 4, 0, 61, b"v");
    assert_eq!(rig.l1.seen(), vec![replace.clone(), replace]);
}

// ---------------------------------------------------------------- cas

#[tokio::test(start_paused = true)]
async fn stale_cas_is_exists_and_l1_untouched() {
    let rig = Rig::new();
    rig.l2.answer(|_| Ok(Response::Exists));
    rig.l1.answer(l1_empty);
    let cas = store(StoreMode::Cas, "k", 0, 0, 5, b"v");
    assert_eq!(rig.main(cas.clone()).await, Response::Exists);
    assert_eq!(rig.batch(cas.clone()).await, Response::Exists);
    settle().await;
    assert_eq!(rig.log(), vec![(Tier::L2, cas.clone()), (Tier::L2, cas)]);
}

#[tokio::test(start_paused = true)]
async fn cas_accepted_by_l2_writes_l1_without_the_client_cas() {
    let rig = Rig::new();
    rig.l2.answer(|_| Ok(Response::Stored { cas: 6 }));
    rig.l1.answer(l1_empty);
    let cas = store(StoreMode::Cas, "k", 2, 0, 5, b"v");
    assert_eq!(rig.main(cas.clone()).await, Response::Stored { cas: 6 });
    assert_eq!(rig.batch(cas.clone()).await, Response::Stored { cas: 6 });
    assert_eq!(
        rig.log(),
        vec![
            (Tier::L2, cas.clone()),
            (Tier::L1, l1_write(StoreMode::Set, "k", 2, 0, 6, b"v")),
            (Tier::L2, cas),
            (Tier::L1, l1_write(StoreMode::Replace, "k", 2, 0, 6, b"v")),
        ]
    );
}

// ---------------------------------------------------------------- append / incr

fn l2_after_change(data: &'static [u8], cas: u64, expiry: u32) -> impl Fn(&Command) -> Answer {
    move |cmd| {
        Ok(match cmd {
            Command::Store { .. } => Response::Stored { cas },
            Command::Arith { .. } => Response::Numeric { value: 11, cas },
            Command::GetE { key } => Response::ValueE {
                value: Value {
                    key: key.clone(),
                    flags: 3,
                    cas,
                    data: Bytes::from_static(data),
                },
                expiry,
            },
            _ => Response::Error(ErrorReply::UnknownCommand),
        })
    }
}

#[tokio::test(start_paused = true)]
async fn append_and_prepend_refresh_l1_with_the_full_value_from_l2() {
    for (mode, data) in [
        (StoreMode::Append, &b"abcdef"[..]),
        (StoreMode::Prepend, &b"defabc"[..]),
    ] {
        for batch in [false, true] {
            let rig = Rig::new();
            let data: &'static [u8] = data;
            rig.l2.answer(l2_after_change(data, 50, 2_000_000_123));
            rig.l1.answer(l1_empty);
            let cmd = store(mode, "k", 0, 0, 0, b"def");
            let r = if batch {
                rig.batch(cmd.clone()).await
            } else {
                rig.main(cmd.clone()).await
            };
            assert_eq!(r, Response::Stored { cas: 50 });
            let l1_mode = if batch {
                StoreMode::Replace
            } else {
                StoreMode::Set
            };
            assert_eq!(
                rig.log(),
                vec![
                    (Tier::L2, cmd),
                    (Tier::L2, gete("k")),
                    (Tier::L1, l1_write(l1_mode, "k", 3, 2_000_000_123, 50, data)),
                ],
                "{mode:?} batch={batch}"
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn append_refused_by_l2_leaves_l1_untouched() {
    let rig = Rig::new();
    rig.l2.answer(|_| Ok(Response::NotStored));
    rig.l1.answer(l1_empty);
    let cmd = store(StoreMode::Append, "k", 0, 0, 0, b"x");
    assert_eq!(rig.main(cmd.clone()).await, Response::NotStored);
    settle().await;
    assert_eq!(rig.log(), vec![(Tier::L2, cmd)]);
}

#[tokio::test(start_paused = true)]
async fn incr_and_decr_refresh_l1_with_the_full_value_from_l2() {
    for incr in [true, false] {
        for batch in [false, true] {
            let rig = Rig::new();
            rig.l2.answer(l2_after_change(b"11", 60, 0));
            rig.l1.answer(l1_empty);
            let cmd = Command::Arith {
                key: b("n"),
                incr,
                delta: 1,
                create: None,
            };
            let r = if batch {
                rig.batch(cmd.clone()).await
            } else {
                rig.main(cmd.clone()).await
            };
            assert_eq!(r, Response::Numeric { value: 11, cas: 60 });
            let l1_mode = if batch {
                StoreMode::Replace
            } else {
                StoreMode::Set
            };
            assert_eq!(
                rig.log(),
                vec![
                    (Tier::L2, cmd),
                    (Tier::L2, gete("n")),
                    (Tier::L1, l1_write(l1_mode, "n", 3, 0, 60, b"11")),
                ],
                "incr={incr} batch={batch}"
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn binary_incr_create_exptime_is_made_absolute() {
    let rig = Rig::new();
    rig.l2.answer(l2_after_change(b"5", 70, 0));
    rig.l1.answer(l1_empty);
    let before = expiry::now();
    rig.main(Command::Arith {
        key: b("n"),
        incr: true,
        delta: 1,
        create: Some((5, 100)),
    })
    .await;
    let after = expiry::now();
    assert_absolute(exptime_of(&rig.l2.seen()[0]), 100, before, after);
}

#[tokio::test(start_paused = true)]
async fn incr_miss_in_l2_leaves_l1_untouched() {
    let rig = Rig::new();
    rig.l2.answer(|_| Ok(Response::NotFound));
    rig.l1.answer(l1_empty);
    let cmd = Command::Arith {
        key: b("n"),
        incr: true,
        delta: 1,
        create: None,
    };
    assert_eq!(rig.main(cmd.clone()).await, Response::NotFound);
    settle().await;
    assert_eq!(rig.log(), vec![(Tier::L2, cmd)]);
}

#[tokio::test(start_paused = true)]
async fn incr_whose_record_l2_cannot_read_back_deletes_it_in_l1() {
    let rig = Rig::new();
    rig.l2.answer(|cmd| match cmd {
        Command::Arith { .. } => Ok(Response::Numeric { value: 2, cas: 8 }),
        _ => Err(BackendError::Timeout(Tier::L2)),
    });
    rig.l1.answer(|_| Ok(Response::Deleted));
    let r = rig
        .main(Command::Arith {
            key: b("n"),
            incr: true,
            delta: 1,
            create: None,
        })
        .await;
    assert_eq!(r, Response::Numeric { value: 2, cas: 8 });
    assert_eq!(rig.l2.seen()[1], gete("n"));
    assert_eq!(rig.l1.seen(), vec![delete("n")]);
}

// ---------------------------------------------------------------- get

#[tokio::test(start_paused = true)]
async fn get_l1_hit_carries_the_l2_cas_and_skips_l2() {
    let rig = Rig::new();
    rig.l1
        .answer(|_| Ok(Response::Values(vec![l1_item("k", 5, 42, b"v")])));
    for batch in [false, true] {
        let r = if batch {
            rig.batch(get(&["k"])).await
        } else {
            rig.main(get(&["k"])).await
        };
        assert_eq!(r, Response::Values(vec![value("k", 5, 42, b"v")]));
    }
    settle().await;
    assert_eq!(
        rig.log(),
        vec![(Tier::L1, get(&["k"])), (Tier::L1, get(&["k"]))]
    );
    assert_eq!(rig.count(|c| &c.l2_gets), 0);
}

#[tokio::test(start_paused = true)]
async fn get_l1_miss_reads_l2_and_backfills_with_add() {
    let rig = Rig::new();
    rig.l1.answer(l1_empty);
    rig.l2.answer(|_| {
        Ok(Response::ValueE {
            value: value("k", 9, 42, b"v"),
            expiry: 2_000_000_456,
        })
    });
    let r = rig.main(get(&["k"])).await;
    assert_eq!(r, Response::Values(vec![value("k", 9, 42, b"v")]));
    wait_until("the back-fill", || rig.l1.seen().len() >= 2).await;
    settle().await;
    assert_eq!(
        rig.log(),
        vec![
            (Tier::L1, get(&["k"])),
            (Tier::L2, gete("k")),
            (Tier::L1, backfill_add("k", 9, 2_000_000_456, 42, b"v")),
        ]
    );
    assert_eq!(rig.count(|c| &c.l2_gets), 1);
    assert_eq!(rig.count(|c| &c.l2_get_hits), 1);
    assert_eq!(rig.count(|c| &c.l1_backfills), 1);
}

#[tokio::test(start_paused = true)]
async fn get_miss_in_both_tiers_is_empty_and_backfills_nothing() {
    let rig = Rig::new();
    rig.l1.answer(l1_empty);
    rig.l2.answer(|_| Ok(Response::NotFound));
    assert_eq!(rig.main(get(&["k"])).await, Response::Values(Vec::new()));
    settle().await;
    assert_eq!(
        rig.log(),
        vec![(Tier::L1, get(&["k"])), (Tier::L2, gete("k"))]
    );
    assert_eq!(rig.count(|c| &c.l2_gets), 1);
    assert_eq!(rig.count(|c| &c.l2_get_hits), 0);
}

#[tokio::test(start_paused = true)]
async fn get_ignores_untagged_l1_values() {
    let rig = Rig::new();
    rig.l1.answer(|cmd| match cmd {
        Command::Get { .. } => Ok(Response::Values(vec![
            value("plain", 1, 9, b"written by someone else"),
            // The tag, but shorter than the header.
            value("short", 1, 9, b"\xA5\x00\x01"),
        ])),
        _ => Ok(Response::NotStored),
    });
    rig.l2.answer(|cmd| {
        let Command::GetE { key } = cmd else {
            return Ok(Response::Error(ErrorReply::UnknownCommand));
        };
        Ok(Response::ValueE {
            value: Value {
                key: key.clone(),
                flags: 2,
                cas: 30,
                data: b("l2"),
            },
            expiry: 0,
        })
    });
    let r = rig.main(get(&["plain", "short"])).await;
    assert_eq!(
        r,
        Response::Values(vec![
            value("plain", 2, 30, b"l2"),
            value("short", 2, 30, b"l2")
        ])
    );
    assert_eq!(rig.l2.seen(), vec![gete("plain"), gete("short")]);
    wait_until("the back-fills", || rig.l1.seen().len() >= 3).await;
    assert_eq!(
        rig.l1.seen()[1..],
        [
            backfill_add("plain", 2, 0, 30, b"l2"),
            backfill_add("short", 2, 0, 30, b"l2"),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn get_l1_failure_answers_from_l2_without_backfill() {
    let rig = Rig::new();
    rig.l1.answer(|cmd| match cmd {
        Command::Get { .. } => l1_timeout(),
        _ => l1_empty(cmd),
    });
    rig.l2.answer(|_| {
        Ok(Response::ValueE {
            value: value("k", 9, 42, b"v"),
            expiry: 0,
        })
    });
    let r = rig.main(get(&["k"])).await;
    assert_eq!(r, Response::Values(vec![value("k", 9, 42, b"v")]));
    settle().await;
    assert_eq!(
        rig.log(),
        vec![(Tier::L1, get(&["k"])), (Tier::L2, gete("k"))]
    );
    assert_eq!(rig.count(|c| &c.l1_read_failures), 1);
    assert_eq!(rig.count(|c| &c.l1_backfills), 0);
}

#[tokio::test(start_paused = true)]
async fn get_l2_failure_on_a_miss_is_server_error() {
    let rig = Rig::new();
    rig.l1.answer(l1_empty);
    rig.l2.answer(|_| Err(BackendError::Timeout(Tier::L2)));
    assert_eq!(
        rig.main(get(&["k"])).await,
        Response::Error(ErrorReply::Server(b("L2 timeout")))
    );
    settle().await;
    assert_eq!(rig.l1.seen(), vec![get(&["k"])]);
}

#[tokio::test(start_paused = true)]
async fn batch_get_miss_reads_l2_without_backfill() {
    let rig = Rig::new();
    rig.l1.answer(l1_empty);
    rig.l2.answer(|_| {
        Ok(Response::ValueE {
            value: value("k", 9, 42, b"v"),
            expiry: 0,
        })
    });
    let r = rig.batch(get(&["k"])).await;
    assert_eq!(r, Response::Values(vec![value("k", 9, 42, b"v")]));
    settle().await;
    assert_eq!(
        rig.log(),
        vec![(Tier::L1, get(&["k"])), (Tier::L2, gete("k"))]
    );
    assert_eq!(rig.count(|c| &c.l1_backfills), 0);
}

#[tokio::test(start_paused = true)]
async fn multi_get_mixes_hits_and_misses_in_request_order() {
    let rig = Rig::new();
    rig.l1.answer(|cmd| match cmd {
        // memcached answers each key once, in its own order.
        Command::Get { .. } => Ok(Response::Values(vec![
            l1_item("c", 3, 103, b"C"),
            l1_item("a", 1, 101, b"A"),
        ])),
        _ => l1_empty(cmd),
    });
    rig.l2.answer(|cmd| {
        Ok(match cmd {
            Command::GetE { key } if &key[..] == b"b" => Response::ValueE {
                value: value("b", 2, 102, b"B"),
                expiry: 0,
            },
            _ => Response::NotFound,
        })
    });
    let keys = ["a", "b", "c", "b", "a", "d"];
    let r = rig.main(get(&keys)).await;
    let (a, bb, c) = (
        value("a", 1, 101, b"A"),
        value("b", 2, 102, b"B"),
        value("c", 3, 103, b"C"),
    );
    assert_eq!(r, Response::Values(vec![a.clone(), bb.clone(), c, bb, a]));
    assert_eq!(
        rig.l2.seen(),
        vec![gete("b"), gete("d")],
        "each miss read once"
    );
    wait_until("the back-fill", || rig.l1.seen().len() >= 2).await;
    settle().await;
    assert_eq!(
        rig.l1.seen(),
        vec![get(&keys), backfill_add("b", 2, 0, 102, b"B")]
    );
}

#[tokio::test(start_paused = true)]
async fn get_with_read_locks_backfills_and_releases_its_locks() {
    let rig = Rig::with_read_locks(true);
    rig.l1.answer(l1_empty);
    rig.l2.answer(|cmd| {
        Ok(match cmd {
            Command::GetE { .. } => Response::ValueE {
                value: value("k", 0, 1, b"v"),
                expiry: 0,
            },
            _ => Response::Deleted,
        })
    });
    let r = rig.main(get(&["k", "k"])).await;
    assert_eq!(
        r,
        Response::Values(vec![value("k", 0, 1, b"v"), value("k", 0, 1, b"v")])
    );
    wait_until("the back-fill", || rig.l1.seen().len() >= 2).await;
    // A write of the key gets its lock once the back-fill is done.
    assert_eq!(rig.main(delete("k")).await, Response::Deleted);
    assert_eq!(
        rig.l1.seen(),
        vec![
            get(&["k", "k"]),
            backfill_add("k", 0, 0, 1, b"v"),
            delete("k")
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_delete_waits_for_the_backfill_in_flight() {
    let rig = Rig::new();
    rig.l1.answer(|cmd| match cmd {
        Command::Delete { .. } => Ok(Response::Deleted),
        _ => l1_empty(cmd),
    });
    rig.l2.answer(|cmd| {
        Ok(match cmd {
            Command::GetE { .. } => Response::ValueE {
                value: value("k", 0, 1, b"v"),
                expiry: 0,
            },
            _ => Response::Deleted,
        })
    });
    let add = rig.l1.hold(|c| {
        matches!(
            c,
            Command::Store {
                mode: StoreMode::Add,
                ..
            }
        )
    });
    let r = rig.main(get(&["k"])).await;
    assert_eq!(r, Response::Values(vec![value("k", 0, 1, b"v")]));
    wait_until("the back-fill add", || rig.l1.seen().len() >= 2).await;
    let shared = rig.shared.clone();
    let del = tokio::spawn(async move { l1_l2::orca(shared).handle(&req(delete("k"))).await });
    settle().await;
    assert_eq!(
        rig.l2.seen(),
        vec![gete("k")],
        "the delete waits for the key's back-fill"
    );
    add.add_permits(1);
    let r = bounded(del).await.unwrap();
    assert_eq!(r, Response::Deleted);
    assert_eq!(
        rig.log(),
        vec![
            (Tier::L1, get(&["k"])),
            (Tier::L2, gete("k")),
            (Tier::L1, backfill_add("k", 0, 0, 1, b"v")),
            (Tier::L2, delete("k")),
            (Tier::L1, delete("k")),
        ]
    );
}

// ---------------------------------------------------------------- gat

fn l2_gat(cmd: &Command) -> Answer {
    Ok(match cmd {
        Command::Get {
            touch: Some(_),
            keys,
        } => Response::Values(
            keys.iter()
                .filter(|k| &k[..] != b"missing")
                .map(|k| Value {
                    key: k.clone(),
                    flags: 4,
                    cas: 42,
                    data: b("v"),
                })
                .collect(),
        ),
        _ => Response::Error(ErrorReply::UnknownCommand),
    })
}

#[tokio::test(start_paused = true)]
async fn gat_touches_l2_with_absolute_expiry_and_writes_l1() {
    for batch in [false, true] {
        let rig = Rig::new();
        rig.l2.answer(l2_gat);
        rig.l1.answer(l1_empty);
        let cmd = Command::Get {
            keys: vec![b("k"), b("missing")],
            touch: Some(100),
        };
        let before = expiry::now();
        let r = if batch {
            rig.batch(cmd).await
        } else {
            rig.main(cmd).await
        };
        let after = expiry::now();
        assert_eq!(r, Response::Values(vec![value("k", 4, 42, b"v")]));
        let log = rig.log();
        assert!(!log.is_empty());
        let e = exptime_of(&log[0].1);
        assert_absolute(e, 100, before, after);
        let l1_mode = if batch {
            StoreMode::Replace
        } else {
            StoreMode::Set
        };
        settle().await;
        assert_eq!(
            rig.log(),
            vec![
                (
                    Tier::L2,
                    Command::Get {
                        keys: vec![b("k"), b("missing")],
                        touch: Some(e),
                    }
                ),
                (Tier::L1, l1_write(l1_mode, "k", 4, e, 42, b"v")),
            ],
            "batch={batch}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn gat_l2_failure_is_server_error_and_l1_untouched() {
    let rig = Rig::new();
    rig.l2.answer(|_| Err(BackendError::Unavailable(Tier::L2)));
    rig.l1.answer(l1_empty);
    let r = rig
        .main(Command::Get {
            keys: vec![b("k")],
            touch: Some(0),
        })
        .await;
    assert_eq!(r, Response::Error(ErrorReply::Server(b("L2 unavailable"))));
    settle().await;
    assert!(rig.l1.seen().is_empty());
}

#[tokio::test(start_paused = true)]
async fn gat_l1_write_failure_makes_the_key_suspect() {
    let rig = Rig::new();
    rig.l2.answer(l2_gat);
    rig.l1.answer(|_| l1_timeout());
    let r = rig
        .main(Command::Get {
            keys: vec![b("k")],
            touch: Some(0),
        })
        .await;
    assert_eq!(r, Response::Values(vec![value("k", 4, 42, b"v")]));
    assert!(rig.shared.trust.is_suspect(b"k"));
    assert_eq!(rig.count(|c| &c.l1_write_failures), 1);
}

// ---------------------------------------------------------------- delete / touch

#[tokio::test(start_paused = true)]
async fn delete_reaches_l1_whatever_l2_answers_and_the_reply_follows_l2() {
    for (l2_says, batch) in [
        (Response::Deleted, false),
        (Response::NotFound, false),
        (Response::Deleted, true),
        (Response::NotFound, true),
    ] {
        let rig = Rig::new();
        let reply = l2_says.clone();
        rig.l2.answer(move |_| Ok(reply.clone()));
        // L1 disagrees with L2 both ways: the reply is still L2's.
        let l1_says = if l2_says == Response::Deleted {
            Response::NotFound
        } else {
            Response::Deleted
        };
        rig.l1.answer(move |_| Ok(l1_says.clone()));
        let cmd = Command::Delete {
            key: b("k"),
            cas: 0,
        };
        let r = if batch {
            rig.batch(cmd.clone()).await
        } else {
            rig.main(cmd.clone()).await
        };
        assert_eq!(r, l2_says);
        assert_eq!(
            rig.log(),
            vec![(Tier::L2, cmd), (Tier::L1, delete("k"))],
            "batch={batch}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn delete_with_a_cas_is_decided_by_l2() {
    let rig = Rig::new();
    rig.l1.answer(|_| Ok(Response::Deleted));
    let with_cas = Command::Delete {
        key: b("k"),
        cas: 5,
    };
    rig.l2.answer(|_| Ok(Response::Exists));
    assert_eq!(rig.main(with_cas.clone()).await, Response::Exists);
    rig.l2.answer(|_| Ok(Response::Deleted));
    assert_eq!(rig.main(with_cas.clone()).await, Response::Deleted);
    assert_eq!(
        rig.log(),
        vec![
            (Tier::L2, with_cas.clone()),
            (Tier::L2, with_cas),
            // L1's cas is memcached's, never the client's.
            (Tier::L1, delete("k")),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn delete_l1_failure_makes_the_key_suspect() {
    let rig = Rig::new();
    rig.l2.answer(|cmd| {
        Ok(match cmd {
            Command::Delete { .. } => Response::Deleted,
            _ => Response::NotFound,
        })
    });
    rig.l1.answer(|cmd| match cmd {
        Command::Delete { .. } => Err(BackendError::Unavailable(Tier::L1)),
        // The delete never reached memcached: the old copy is still there.
        Command::Get { .. } => Ok(Response::Values(vec![l1_item("k", 0, 9, b"old")])),
        _ => l1_empty(cmd),
    });
    assert_eq!(rig.main(delete("k")).await, Response::Deleted);
    assert_eq!(rig.count(|c| &c.l1_write_failures), 1);
    assert_eq!(rig.main(get(&["k"])).await, Response::Values(Vec::new()));
    // The batch port shares the trust.
    assert_eq!(rig.batch(get(&["k"])).await, Response::Values(Vec::new()));
    settle().await;
    assert_eq!(rig.l2.seen(), vec![delete("k"), gete("k"), gete("k")]);
}

#[tokio::test(start_paused = true)]
async fn touch_reaches_l1_whatever_l2_answers_and_the_reply_follows_l2() {
    for (l2_says, batch) in [
        (Response::Touched { flags: 3, cas: 9 }, false),
        (Response::NotFound, false),
        (Response::Touched { flags: 3, cas: 9 }, true),
        (Response::NotFound, true),
    ] {
        let rig = Rig::new();
        let reply = l2_says.clone();
        rig.l2.answer(move |_| Ok(reply.clone()));
        rig.l1
            .answer(|_| Ok(Response::Touched { flags: 0, cas: 1 }));
        let before = expiry::now();
        let cmd = Command::Touch {
            key: b("k"),
            exptime: 100,
        };
        let r = if batch {
            rig.batch(cmd).await
        } else {
            rig.main(cmd).await
        };
        let after = expiry::now();
        assert_eq!(r, l2_says);
        let log = rig.log();
        assert_eq!(log.len(), 2, "{log:?}");
        let e = exptime_of(&log[0].1);
        assert_absolute(e, 100, before, after);
        let touch = Command::Touch {
            key: b("k"),
            exptime: e,
        };
        // A touch L2 missed deletes L1's copy: L2 holds no such item.
        let l1 = match l2_says {
            Response::NotFound => Command::Delete {
                key: b("k"),
                cas: 0,
            },
            _ => touch.clone(),
        };
        assert_eq!(log, vec![(Tier::L2, touch), (Tier::L1, l1)]);
    }
}

#[tokio::test(start_paused = true)]
async fn touch_l1_failure_makes_the_key_suspect() {
    let rig = Rig::new();
    rig.l2.answer(|cmd| {
        Ok(match cmd {
            Command::Touch { .. } => Response::Touched { flags: 0, cas: 9 },
            _ => Response::ValueE {
                value: value("k", 0, 9, b"v"),
                expiry: 2_000_000_000,
            },
        })
    });
    rig.l1.answer(|cmd| match cmd {
        Command::Touch { .. } => l1_timeout(),
        Command::Get { .. } => Ok(Response::Values(vec![l1_item("k", 0, 9, b"v")])),
        _ => l1_empty(cmd),
    });
    let r = rig
        .main(Command::Touch {
            key: b("k"),
            exptime: 2_000_000_000,
        })
        .await;
    assert_eq!(r, Response::Touched { flags: 0, cas: 9 });
    assert_eq!(rig.count(|c| &c.l1_write_failures), 1);
    // L1's copy may keep the old expiry: the read goes to L2.
    rig.main(get(&["k"])).await;
    assert_eq!(rig.l2.seen()[1], gete("k"));
}

// ---------------------------------------------------------------- flush_all

#[tokio::test(start_paused = true)]
async fn flush_all_reaches_both_tiers_l2_first() {
    for delay in [0, 10] {
        for batch in [false, true] {
            let rig = Rig::new();
            rig.l2.answer(|_| Ok(Response::Ok));
            rig.l1.answer(|_| Ok(Response::Ok));
            let cmd = Command::Flush { delay };
            let r = if batch {
                rig.batch(cmd).await
            } else {
                rig.main(cmd).await
            };
            assert_eq!(r, Response::Ok);
            // Both tiers get one canonical form: 0, or the absolute time.
            let log = rig.log();
            assert_eq!(log.len(), 2, "{log:?}");
            assert_eq!((log[0].0, log[1].0), (Tier::L2, Tier::L1));
            assert_eq!(log[0].1, log[1].1);
            let Command::Flush { delay: sent } = log[0].1 else {
                panic!("{log:?}")
            };
            if delay == 0 {
                assert_eq!(sent, 0);
            } else {
                let now = unix_now() as i64;
                assert!((now + 9..=now + 11).contains(&sent), "{sent} (now {now})");
            }
            assert!(!rig.shared.trust.all_suspect());
        }
    }
}

#[tokio::test(start_paused = true)]
async fn flush_all_l2_failure_is_server_error_and_l1_not_flushed() {
    let rig = Rig::new();
    rig.l2
        .answer(|_| Err(BackendError::Storage(Tier::L2, "disk".into())));
    rig.l1.answer(|_| Ok(Response::Ok));
    let r = rig.main(Command::Flush { delay: 0 }).await;
    assert_eq!(
        r,
        Response::Error(ErrorReply::Server(b("L2 storage error: disk")))
    );
    assert!(rig.l1.seen().is_empty());
}

#[tokio::test(start_paused = true)]
async fn flush_all_l1_failure_distrusts_l1_until_a_recovery_flush() {
    let rig = Rig::new();
    // L1 answers reads but cannot flush until `flush_ok`.
    let flush_ok = Arc::new(AtomicBool::new(false));
    let ok = flush_ok.clone();
    rig.l1.answer(move |cmd| match cmd {
        Command::Flush { .. } if ok.load(Ordering::SeqCst) => Ok(Response::Ok),
        Command::Flush { .. } => l1_timeout(),
        Command::Get { .. } => Ok(Response::Values(vec![l1_item("k", 0, 7, b"l1")])),
        _ => Ok(Response::Stored { cas: 1 }),
    });
    rig.l2.answer(|cmd| {
        Ok(match cmd {
            Command::Flush { .. } => Response::Ok,
            _ => Response::ValueE {
                value: value("k", 0, 8, b"l2"),
                expiry: 0,
            },
        })
    });
    assert_eq!(rig.main(Command::Flush { delay: 0 }).await, Response::Ok);
    assert_eq!(
        rig.log(),
        vec![
            (Tier::L2, Command::Flush { delay: 0 }),
            (Tier::L1, Command::Flush { delay: 0 })
        ]
    );
    assert_eq!(rig.count(|c| &c.l1_write_failures), 1);
    assert!(rig.shared.trust.all_suspect());

    // All of L1 is distrusted: reads skip it (both ports) and do not
    // back-fill; only recovery flushes reach it.
    assert_eq!(
        rig.main(get(&["k"])).await,
        Response::Values(vec![value("k", 0, 8, b"l2")])
    );
    assert_eq!(
        rig.batch(get(&["k"])).await,
        Response::Values(vec![value("k", 0, 8, b"l2")])
    );
    settle().await;
    assert!(
        rig.l1
            .seen()
            .iter()
            .all(|c| *c == Command::Flush { delay: 0 }),
        "only flushes reach a distrusted L1: {:?}",
        rig.l1.seen()
    );
    assert_eq!(rig.l2.seen()[1..], [gete("k"), gete("k")]);
    assert_eq!(rig.count(|c| &c.l1_read_failures), 0);

    // The recovery flush (every 500 ms) settles it.
    flush_ok.store(true, Ordering::SeqCst);
    let flushes_before = rig.l1.seen().len();
    wait_until("the recovery flush", || !rig.shared.trust.all_suspect()).await;
    assert!(rig.l1.seen().len() > flushes_before);
    assert_eq!(rig.l1.seen().last(), Some(&Command::Flush { delay: 0 }));
    let r = rig.main(get(&["k"])).await;
    assert_eq!(r, Response::Values(vec![value("k", 0, 7, b"l1")]));
    assert_eq!(rig.l1.seen().last(), Some(&get(&["k"])));
    assert_eq!(rig.l2.seen().len(), 3, "the L1 hit is served");
}

#[tokio::test(start_paused = true)]
async fn recovery_flush_failing_keeps_l1_distrusted() {
    let rig = Rig::new();
    rig.l2.answer(|cmd| {
        Ok(match cmd {
            Command::Flush { .. } => Response::Ok,
            _ => Response::NotFound,
        })
    });
    rig.l1.answer(|_| l1_timeout());
    rig.main(Command::Flush { delay: 0 }).await;
    wait_until("a recovery attempt", || rig.l1.seen().len() >= 2).await;
    assert!(rig.shared.trust.all_suspect());
    assert!(rig
        .l1
        .seen()
        .iter()
        .all(|c| *c == Command::Flush { delay: 0 }));
    let before = rig.l1.seen().len();
    assert_eq!(rig.main(get(&["k"])).await, Response::Values(Vec::new()));
    assert_eq!(rig.l2.seen().last(), Some(&gete("k")));
    assert!(
        rig.l1.seen()[before..]
            .iter()
            .all(|c| matches!(c, Command::Flush { .. })),
        "L1 is not read while distrusted"
    );
}

/// A delayed flush_all that L1 missed: the recovery flush empties L1 now, but
/// L1 must still forget, at the flush time, what is back-filled before it,
/// as L2 will.
// Real time: it waits for wall-clock seconds (memcached's flush times).
#[tokio::test]
async fn delayed_flush_missed_by_l1_still_takes_effect_in_l1() {
    let rig = Rig::new();
    let l1_up = Arc::new(AtomicBool::new(false));
    let up = l1_up.clone();
    rig.l1.answer(move |cmd| {
        if !up.load(Ordering::SeqCst) {
            return Err(BackendError::Unavailable(Tier::L1));
        }
        l1_empty(cmd)
    });
    // L2 as the RocksDB tier behaves: the record stays readable, with its own
    // expiry, until the flush time.
    rig.l2.answer(|cmd| {
        Ok(match cmd {
            Command::Flush { .. } => Response::Ok,
            _ => Response::ValueE {
                value: value("k", 0, 8, b"v"),
                expiry: 0,
            },
        })
    });
    let flush_at = i64::from(expiry::now()) + 10;
    assert_eq!(rig.main(Command::Flush { delay: 10 }).await, Response::Ok);
    l1_up.store(true, Ordering::SeqCst);
    let l1_back = rig.l1.seen().len();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    rig.main(get(&["k"])).await;
    settle().await;
    let since: Vec<Command> = rig.l1.seen()[l1_back..].to_vec();
    let add = since.iter().position(|c| {
        matches!(
            c,
            Command::Store {
                mode: StoreMode::Add,
                ..
            }
        )
    });
    // L1 is back and trusted again (the recovery flushed it): the miss
    // back-fills it, and L1 must have been told of the flush still to come
    // before that, or the copy must expire by then.
    let i = add.unwrap_or_else(|| panic!("no back-fill once L1 was back: {since:?}"));
    let told_of_flush = since[..i].iter().any(|c| match c {
        // A relative delay or an absolute time near the flush time.
        Command::Flush { delay } => *delay > 0,
        _ => false,
    });
    let capped = matches!(exptime_of(&since[i]), e if e > 0 && e <= flush_at);
    assert!(
        told_of_flush || capped,
        "back-filled before the flush time with no pending flush in L1: {since:?}"
    );
}

// ---------------------------------------------------------------- GETE, stats

#[tokio::test(start_paused = true)]
async fn gete_is_answered_by_l2() {
    let rig = Rig::new();
    rig.l1.answer(l1_empty);
    let hit = Response::ValueE {
        value: value("k", 6, 42, b"v"),
        expiry: 2_000_000_000,
    };
    let h = hit.clone();
    rig.l2.answer(move |cmd| {
        Ok(match cmd {
            Command::GetE { key } if &key[..] == b"k" => h.clone(),
            _ => Response::NotFound,
        })
    });
    assert_eq!(rig.main(gete("k")).await, hit);
    assert_eq!(rig.batch(gete("k")).await, hit);
    assert_eq!(rig.main(gete("nope")).await, Response::Values(Vec::new()));
    settle().await;
    assert!(rig.l1.seen().is_empty());
    assert_eq!(rig.l2.seen(), vec![gete("k"), gete("k"), gete("nope")]);
}

/// A text `stats <group>` is memcached's text reply, over the admin lane;
/// a binary one goes to L1 as a binary STAT.
#[tokio::test(start_paused = true)]
async fn stats_group_goes_to_l1() {
    let rig = Rig::new();
    let text = Response::Raw(b("STAT evictions 0\r\nEND\r\n"));
    let t = text.clone();
    rig.admin.answer(move |_| Ok(t.clone()));
    let stats = Response::Stats(vec![(b("evictions"), b("0"))]);
    let s = stats.clone();
    rig.l1.answer(move |_| Ok(s.clone()));
    let cmd = Command::Stats {
        arg: Some(b("items")),
    };
    assert_eq!(rig.main(cmd.clone()).await, text);
    let relayed = Command::Admin {
        line: b("stats items"),
        noreply: false,
    };
    assert_eq!(rig.log(), vec![(Tier::L1, relayed)]);

    let mut orca = l1_l2::orca(rig.shared.clone());
    let binary = Request {
        cmd: cmd.clone(),
        frame: Frame::Binary {
            opcode: crate::protocol::binary::op::STAT,
            opaque: 0,
        },
    };
    assert_eq!(bounded(orca.handle(&binary)).await, stats);
    assert_eq!(rig.l1.seen().last(), Some(&cmd));
}

/// memcached's admin commands go to the admin lane on both ports, and its
/// reply comes back as it is; when memcached cannot be reached the client
/// gets SERVER_ERROR, or nothing after `noreply`.
#[tokio::test(start_paused = true)]
async fn admin_commands_go_to_the_admin_lane() {
    let rig = Rig::new();
    rig.admin.answer(|_| Ok(Response::Raw(b("OK\r\n"))));
    let admin = |line: &str, noreply: bool| Command::Admin {
        line: b(line),
        noreply,
    };
    let memlimit = admin("cache_memlimit 100", false);
    assert_eq!(rig.main(memlimit.clone()).await, Response::Raw(b("OK\r\n")));
    assert_eq!(
        rig.batch(memlimit.clone()).await,
        Response::Raw(b("OK\r\n"))
    );
    assert_eq!(
        rig.log(),
        vec![(Tier::L1, memlimit.clone()), (Tier::L1, memlimit)]
    );
    rig.admin
        .answer(|_| Err(BackendError::Unavailable(Tier::L1)));
    assert_eq!(
        rig.main(admin("slabs automove 1", false)).await,
        Response::Error(ErrorReply::Server(b("L1 unavailable")))
    );
    assert_eq!(
        rig.main(admin("slabs automove 1 noreply", true)).await,
        Response::Nothing
    );
    assert!(rig.l2.seen().is_empty());
}

// ---------------------------------------------------------------- back-fill failure

/// A back-fill add that timed out may still land in memcached later, on the
/// key's connection, after a flush_all sent on another one. The design
/// treats every failed L1 write this way: the key is suspect.
#[tokio::test(start_paused = true)]
async fn backfill_add_timeout_makes_the_key_suspect() {
    let rig = Rig::new();
    let flushed = Arc::new(AtomicBool::new(false));
    let f = flushed.clone();
    rig.l2.answer(move |cmd| {
        Ok(match cmd {
            Command::Flush { .. } => {
                f.store(true, Ordering::SeqCst);
                Response::Ok
            }
            _ if f.load(Ordering::SeqCst) => Response::NotFound,
            _ => Response::ValueE {
                value: value("k", 0, 8, b"pre-flush"),
                expiry: 0,
            },
        })
    });
    // A first read misses and its back-fill times out; later reads find the
    // add, which landed after the flush.
    rig.l1.answer({
        let first = Arc::new(AtomicBool::new(true));
        move |cmd| match cmd {
            Command::Get { .. } if first.swap(false, Ordering::SeqCst) => {
                Ok(Response::Values(Vec::new()))
            }
            Command::Store { .. } => l1_timeout(),
            Command::Flush { .. } => Ok(Response::Ok),
            Command::Get { .. } => Ok(Response::Values(vec![l1_item("k", 0, 8, b"pre-flush")])),
            _ => l1_empty(cmd),
        }
    });
    rig.main(get(&["k"])).await;
    wait_until("the back-fill", || rig.l1.seen().len() >= 2).await;
    assert_eq!(rig.main(Command::Flush { delay: 0 }).await, Response::Ok);
    assert_eq!(rig.main(get(&["k"])).await, Response::Values(Vec::new()));
}

// ---------------------------------------------------------------- trust

#[test]
fn too_many_suspects_distrust_all_of_l1_until_flushed() {
    let trust = L1Trust::default();
    assert!(!trust.is_suspect(b"k"));
    for i in 0..MAX_SUSPECTS {
        trust.suspect(&Bytes::from(i.to_string()));
    }
    assert!(trust.is_suspect(b"0"));
    assert!(!trust.is_suspect(b"k"));
    assert!(!trust.all_suspect());
    trust.suspect(&b("one more"));
    assert!(trust.all_suspect());
    assert!(trust.is_suspect(b"k"));
    // A write that succeeds clears its key, not all of L1.
    trust.clear(b"k");
    assert!(trust.is_suspect(b"k"));
    // A flush covering every suspicion settles all; one that raced a new
    // suspicion does not.
    let g = trust.generation();
    trust.suspect(&b("late"));
    assert!(!trust.flushed(g));
    assert!(trust.all_suspect());
    assert!(trust.flushed(trust.generation()));
    assert!(!trust.all_suspect());
    assert!(!trust.is_suspect(b"0"));
}

/// A suspect key is the client's key, a slice of its read buffer: the
/// suspect set must hold a copy of its own, or it keeps that whole buffer
/// alive for as long as the key stays suspect.
#[test]
fn suspect_keys_do_not_hold_client_buffers() {
    let trust = L1Trust::default();
    let buffer = Bytes::from(vec![b'k'; 64 * 1024]);
    let key = buffer.slice(100..110);
    trust.suspect(&key);
    drop(key);
    assert!(trust.is_suspect(&[b'k'; 10]));
    assert!(
        buffer.try_into_mut().is_ok(),
        "the suspect set still shares the client's buffer"
    );
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A delayed flush about to fire: a record L2 read before it must not be
/// put in L1, where it would outlive the flush L2 applies (the add could
/// land after memcached's flush time).
#[tokio::test(start_paused = true)]
async fn no_backfill_of_a_record_a_flush_about_to_fire_hides() {
    let rig = Rig::new();
    let old_cas = (unix_now() - 10) * 1_000_000;
    rig.l2.answer(move |cmd| {
        Ok(match cmd {
            Command::GetE { .. } => Response::ValueE {
                value: value("k", 0, old_cas, b"old"),
                expiry: 0,
            },
            Command::Flush { .. } => Response::Ok,
            _ => Response::Error(ErrorReply::UnknownCommand),
        })
    });
    rig.l1.answer(l1_empty);
    assert_eq!(rig.main(Command::Flush { delay: 2 }).await, Response::Ok);
    let r = rig.main(get(&["k"])).await;
    assert_eq!(r, Response::Values(vec![value("k", 0, old_cas, b"old")]));
    settle().await;
    assert!(
        !rig.l1.seen().iter().any(|c| matches!(
            c,
            Command::Store {
                mode: StoreMode::Add,
                ..
            }
        )),
        "back-filled under a flush about to fire: {:?}",
        rig.l1.seen()
    );
    // A record written after the flush's time is back-filled as usual.
    let new_cas = (unix_now() + 10) * 1_000_000;
    rig.l2.answer(move |cmd| {
        Ok(match cmd {
            Command::GetE { .. } => Response::ValueE {
                value: value("n", 0, new_cas, b"new"),
                expiry: 0,
            },
            _ => Response::Error(ErrorReply::UnknownCommand),
        })
    });
    rig.main(get(&["n"])).await;
    wait_until("the back-fill of n", || {
        rig.l1
            .seen()
            .contains(&backfill_add("n", 0, 0, new_cas, b"new"))
    })
    .await;
}

/// Both tiers get one reading of flush_all's time: the canonical form, so
/// a memcached that started at another time reads it the same way. A
/// delayed flush that has fired is kept: L1 is emptied before a new one
/// replaces it there.
// Real time: it waits for wall-clock seconds (memcached's flush times).
#[tokio::test]
async fn flush_all_reaches_both_tiers_in_one_canonical_form() {
    let rig = Rig::new();
    rig.l2.answer(|cmd| {
        Ok(match cmd {
            Command::Flush { .. } => Response::Ok,
            _ => Response::Error(ErrorReply::UnknownCommand),
        })
    });
    rig.l1.answer(l1_empty);
    let flushes = |rig: &Rig, tier: Tier| -> Vec<i64> {
        rig.log()
            .into_iter()
            .filter_map(|(t, c)| match c {
                Command::Flush { delay } if t == tier => Some(delay),
                _ => None,
            })
            .collect()
    };
    let now = unix_now() as i64;
    rig.main(Command::Flush { delay: 0 }).await;
    rig.main(Command::Flush { delay: 1 }).await;
    rig.main(Command::Flush { delay: 2_592_001 }).await;
    rig.main(Command::Flush { delay: 2 }).await;
    let l2 = flushes(&rig, Tier::L2);
    // flush_all 1 fires this second (and hides the rest of it), as
    // memcached's does: an absolute time one second on.
    let (this, at) = (l2[1], l2[3]);
    assert!((now + 1..=now + 2).contains(&this), "{l2:?} (now {now})");
    assert!((now + 2..=now + 3).contains(&at), "{l2:?} (now {now})");
    assert_eq!(l2, vec![0, this, 2_592_001, at]);
    // The flush of this second had fired when the one in 1970 came, so L1
    // was emptied before memcached forgot it.
    assert_eq!(flushes(&rig, Tier::L1), vec![0, this, 0, 2_592_001, at]);
    // Once the delayed one has fired, a later delayed flush empties L1
    // first too.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    rig.main(Command::Flush { delay: 100 }).await;
    let l1 = flushes(&rig, Tier::L1);
    assert_eq!(l1[5], 0, "{l1:?}");
    assert!(l1[6] > now + 90, "{l1:?}");
}
