//! The L2 store's unit tests: flushes, restarts, the disk bound, calls
//! that would wait, and the log's group commit.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;

use super::*;
use crate::protocol::{ErrorReply, Response, StoreMode};

fn open(dir: &Path, max_bytes: Option<u64>) -> L2 {
    L2::open(&L2Options {
        path: dir.to_path_buf(),
        cache_mb: 8,
        max_bytes,
        durability: Durability::Wal,
        max_value: 1 << 20,
    })
    .unwrap()
}

fn set(key: &str, value: &str, exptime: i64) -> Command {
    Command::Store {
        mode: StoreMode::Set,
        key: Bytes::from(key.to_string()),
        flags: 5,
        exptime,
        cas: 0,
        value: Bytes::from(value.to_string()),
    }
}

fn gete(key: &str) -> Command {
    Command::GetE {
        key: Bytes::from(key.to_string()),
    }
}

#[test]
fn a_second_open_of_one_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _first = open(dir.path(), None);
    let second = L2::open(&L2Options {
        path: dir.path().to_path_buf(),
        cache_mb: 8,
        max_bytes: None,
        durability: Durability::Wal,
        max_value: 1 << 20,
    });
    let err = second.err().expect("second open must fail");
    assert!(matches!(err, OpenError::Locked(_)), "{err}");
    assert!(err.to_string().contains("in use by another process"));
}

#[test]
fn cas_grows_across_restarts_and_flush_hides_older_records() {
    let dir = tempfile::tempdir().unwrap();
    let first_cas;
    {
        let l2 = open(dir.path(), None);
        let Response::Stored { cas } = l2.inner.exec(&set("a", "1", 0), Mode::Wait).unwrap() else {
            panic!()
        };
        first_cas = cas;
        assert_eq!(
            l2.inner
                .exec(&Command::Flush { delay: 0 }, Mode::Wait)
                .unwrap(),
            Response::Ok
        );
        assert_eq!(
            l2.inner.exec(&gete("a"), Mode::Wait).unwrap(),
            Response::NotFound
        );
        l2.inner.exec(&set("b", "2", 0), Mode::Wait).unwrap();
        l2.close();
    }
    let l2 = open(dir.path(), None);
    // The flush is remembered; what came after it is not hidden.
    assert_eq!(
        l2.inner.exec(&gete("a"), Mode::Wait).unwrap(),
        Response::NotFound
    );
    let Response::ValueE { value, expiry } = l2.inner.exec(&gete("b"), Mode::Wait).unwrap() else {
        panic!()
    };
    assert_eq!((value.flags, expiry, &value.data[..]), (5, 0, &b"2"[..]));
    assert!(value.cas > first_cas);
    let Response::Stored { cas } = l2.inner.exec(&set("c", "3", 0), Mode::Wait).unwrap() else {
        panic!()
    };
    assert!(cas > value.cas);
}

#[test]
fn delayed_flush_takes_effect_at_its_time() {
    let dir = tempfile::tempdir().unwrap();
    let l2 = open(dir.path(), None);
    l2.inner.exec(&set("a", "1", 0), Mode::Wait).unwrap();
    l2.inner.exec(&set("b", "1", 0), Mode::Wait).unwrap();
    l2.inner
        .exec(&Command::Flush { delay: 3 }, Mode::Wait)
        .unwrap();
    assert!(matches!(
        l2.inner.exec(&gete("a"), Mode::Wait).unwrap(),
        Response::ValueE { .. }
    ));
    std::thread::sleep(Duration::from_millis(3100));
    assert_eq!(
        l2.inner.exec(&gete("a"), Mode::Wait).unwrap(),
        Response::NotFound
    );
    l2.inner.exec(&set("a", "2", 0), Mode::Wait).unwrap();
    assert!(matches!(
        l2.inner.exec(&gete("a"), Mode::Wait).unwrap(),
        Response::ValueE { .. }
    ));
    // A later delayed flush, or one in 1970 (which flushes nothing),
    // does not bring back what the fired one hid, nor does a restart.
    for delay in [100, 2_592_001] {
        l2.inner
            .exec(&Command::Flush { delay }, Mode::Wait)
            .unwrap();
        assert_eq!(
            l2.inner.exec(&gete("b"), Mode::Wait).unwrap(),
            Response::NotFound,
            "flush_all {delay}"
        );
    }
    drop(l2);
    let l2 = open(dir.path(), None);
    assert_eq!(
        l2.inner.exec(&gete("b"), Mode::Wait).unwrap(),
        Response::NotFound
    );
    assert!(matches!(
        l2.inner.exec(&gete("a"), Mode::Wait).unwrap(),
        Response::ValueE { .. }
    ));
}

/// flush_all starts a compaction of everything; closing at shutdown
/// calls it off instead of waiting for it.
#[test]
fn close_does_not_wait_for_the_compaction_after_a_flush() {
    let dir = tempfile::tempdir().unwrap();
    let l2 = open(dir.path(), None);
    // Values that do not compress away: hex digits of a random walk.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut value = || {
        (0..63)
            .map(|_| {
                x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                format!("{:016x}", x)
            })
            .collect::<String>()
    };
    for batch in 0..4 {
        for i in 0..50_000 {
            l2.inner
                .exec(&set(&format!("key-{batch}-{i}"), &value(), 0), Mode::Wait)
                .unwrap();
        }
        l2.inner.db.flush().unwrap();
    }
    let sst = |l2: &L2| l2.property("rocksdb.total-sst-files-size").unwrap();
    let before = sst(&l2);
    assert!(before > 50_000_000, "{before}");
    l2.inner
        .exec(&Command::Flush { delay: 0 }, Mode::Wait)
        .unwrap();
    l2.close();
    let after = sst(&l2);
    assert!(
        after > before / 2,
        "the compaction ran to its end before close returned: {before} -> {after} bytes"
    );
    assert_eq!(
        l2.inner.exec(&gete("key-0-0"), Mode::Wait).unwrap(),
        Response::NotFound
    );
}

#[test]
fn a_flush_in_1970_flushes_nothing_and_calls_off_a_delayed_one() {
    let dir = tempfile::tempdir().unwrap();
    let l2 = open(dir.path(), None);
    l2.inner.exec(&set("a", "1", 0), Mode::Wait).unwrap();
    l2.inner
        .exec(&Command::Flush { delay: 2 }, Mode::Wait)
        .unwrap();
    l2.inner
        .exec(&Command::Flush { delay: 2_592_001 }, Mode::Wait)
        .unwrap();
    std::thread::sleep(Duration::from_millis(2100));
    assert!(matches!(
        l2.inner.exec(&gete("a"), Mode::Wait).unwrap(),
        Response::ValueE { .. }
    ));
}

#[test]
fn expired_records_are_misses_and_compaction_drops_them() {
    let dir = tempfile::tempdir().unwrap();
    let l2 = open(dir.path(), None);
    l2.inner.exec(&set("short", "x", 1), Mode::Wait).unwrap();
    l2.inner.exec(&set("long", "y", 0), Mode::Wait).unwrap();
    std::thread::sleep(Duration::from_millis(2100));
    assert_eq!(
        l2.inner.exec(&gete("short"), Mode::Wait).unwrap(),
        Response::NotFound
    );
    l2.inner.db.flush().unwrap();
    l2.inner.db.compact_range::<&[u8], &[u8]>(None, None);
    assert!(l2.inner.db.get(b"short").unwrap().is_none());
    assert!(l2.inner.db.get(b"long").unwrap().is_some());
}

#[test]
fn stores_past_the_disk_bound_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let l2 = open(dir.path(), Some(256 * 1024));
    let value = "v".repeat(1000);
    let mut refused = 0;
    for i in 0..600 {
        match l2
            .inner
            .exec(&set(&format!("k{i}"), &value, 0), Mode::Wait)
            .unwrap()
        {
            Response::Stored { .. } => {}
            Response::Error(ErrorReply::OutOfMemory) => refused += 1,
            other => panic!("{other:?}"),
        }
    }
    assert!((300..550).contains(&refused), "refused {refused}");
    assert!(l2.used_bytes() <= 256 * 1024);
    // Deletes still work at the bound.
    assert_eq!(
        l2.inner
            .exec(
                &Command::Delete {
                    key: Bytes::from_static(b"k0"),
                    cas: 0
                },
                Mode::Wait
            )
            .unwrap(),
        Response::Deleted
    );
}

#[tokio::test]
async fn calls_that_would_wait_run_on_the_blocking_pool() {
    let dir = tempfile::tempdir().unwrap();
    let l2 = open(dir.path(), None);
    // The first cas persists its ceiling (an fsync): that set waits.
    assert!(matches!(
        l2.inner.exec(&set("a", "1", 0), Mode::Now),
        Err(Stop::WouldBlock)
    ));
    assert!(matches!(
        l2.call(&set("a", "1", 0)).await,
        Ok(Response::Stored { .. })
    ));
    let pooled = l2.inner.stats.blocking_calls.load(Ordering::Relaxed);
    assert_eq!(pooled, 1);
    // Within the lease, sets and reads finish from memory, here.
    for i in 0..100 {
        assert!(matches!(
            l2.call(&set(&format!("k{i}"), "v", 0)).await,
            Ok(Response::Stored { .. })
        ));
        assert!(matches!(
            l2.call(&gete(&format!("k{i}"))).await,
            Ok(Response::ValueE { .. })
        ));
    }
    assert_eq!(
        l2.inner.stats.blocking_calls.load(Ordering::Relaxed),
        pooled
    );
    // A busy key lock is not waited for on a worker.
    let held = l2.inner.stripe(b"a").lock().unwrap();
    assert!(matches!(
        l2.inner.exec(&set("a", "2", 0), Mode::Now),
        Err(Stop::WouldBlock)
    ));
    drop(held);
    // Every write of --l2-durability sync fsyncs: always the pool.
    let dir2 = tempfile::tempdir().unwrap();
    let synced = L2::open(&L2Options {
        path: dir2.path().to_path_buf(),
        cache_mb: 8,
        max_bytes: None,
        durability: Durability::Sync,
        max_value: 1 << 20,
    })
    .unwrap();
    synced.call(&set("x", "1", 0)).await.unwrap();
    assert!(matches!(
        synced.inner.exec(&set("x", "2", 0), Mode::Now),
        Err(Stop::WouldBlock)
    ));
    assert_eq!(
        synced.call(&gete("x")).await.unwrap(),
        synced.inner.exec(&gete("x"), Mode::Now).unwrap()
    );
}

/// Writes made together share one write of the log buffer, every
/// writer hears when its bytes are in the file, and a leader dropped
/// half way (its client went away) hands over instead of wedging the
/// others.
#[tokio::test(flavor = "current_thread")]
async fn the_log_group_commit_covers_every_writer() {
    let dir = tempfile::tempdir().unwrap();
    let l2 = open(dir.path(), None);
    // Persist the cas ceiling first (a pool call), then write together.
    l2.call(&set("first", "x", 0)).await.unwrap();
    let calls: Vec<_> = (0..50)
        .map(|i| l2.call(&set(&format!("k{i}"), "v", 0)))
        .collect();
    let wal = l2.inner.wal.as_ref().expect("wal durability groups");
    let appended = wal.appended.load(Ordering::Acquire);
    assert!(appended >= 50, "{appended}");
    for c in calls {
        assert!(matches!(c.await, Ok(Response::Stored { .. })));
    }
    assert!(wal.lock().flushed >= appended);

    let t1 = wal.appended.fetch_add(1, Ordering::AcqRel) + 1;
    let t2 = wal.appended.fetch_add(1, Ordering::AcqRel) + 1;
    let inner = l2.inner.clone();
    let leader = tokio::spawn(async move {
        let wal = inner.wal.as_ref().unwrap();
        wal.commit(&inner.db, t1).await
    });
    tokio::task::yield_now().await; // the first leads, then yields
    assert!(wal.lock().leader);
    let inner = l2.inner.clone();
    let follower = tokio::spawn(async move {
        let wal = inner.wal.as_ref().unwrap();
        wal.commit(&inner.db, t2).await
    });
    leader.abort();
    assert!(
        leader.await.unwrap_err().is_cancelled(),
        "the leader was dropped before it wrote the buffer"
    );
    let r = tokio::time::timeout(Duration::from_secs(2), follower)
        .await
        .expect("the follower took over");
    assert!(matches!(r, Ok(Ok(()))));
    assert!(wal.lock().flushed >= t2);
}
