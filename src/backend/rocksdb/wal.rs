//! Group commit of the write-ahead log (`--l2-durability wal`): writes made
//! on the worker threads at one moment share one write(2) of RocksDB's log
//! buffer, and each is answered once its bytes are in the log file.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use ::rocksdb::DB;

use super::L2;
use crate::backend::{BackendError, BackendFuture, Tier};
use crate::protocol::Response;

/// Group commit of the write-ahead log (`--l2-durability wal`). A write
/// made on a worker appends to RocksDB's log buffer and takes a ticket; the
/// first waiter to find no flush under way becomes the leader, lets the
/// other tasks of the moment run (and append), then writes the buffer once
/// and wakes everyone whose ticket it covered. A write on the blocking pool
/// writes the buffer itself.
#[derive(Default)]
pub(super) struct WalGroup {
    /// Tickets handed out: writes appended to the buffer.
    pub(super) appended: AtomicU64,
    state: Mutex<WalState>,
    flushed: tokio::sync::Notify,
}

#[derive(Default)]
pub(super) struct WalState {
    /// Every ticket up to this one is in the log file.
    pub(super) flushed: u64,
    pub(super) leader: bool,
    /// The last failed flush: the tickets it covered, and why.
    failed: Option<(u64, u64, String)>,
}

impl WalGroup {
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, WalState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wait until ticket `t` is in the log file.
    pub(super) async fn commit(&self, db: &DB, t: u64) -> Result<(), BackendError> {
        loop {
            let notified = self.flushed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.turn(t) {
                Turn::Done(r) => return r,
                Turn::Wait => notified.await,
                Turn::Lead => {
                    // Should this task be dropped while it leads (its client
                    // went away), the next waiter takes over.
                    let mut lead = Leading(self, true);
                    // The other tasks of this moment append first.
                    tokio::task::yield_now().await;
                    let upto = self.appended.load(Ordering::Acquire);
                    let result = db.flush_wal(false);
                    lead.1 = false;
                    self.flushed_upto(upto, result.err().map(|e| e.into_string()));
                }
            }
        }
    }

    /// What ticket `t` does now: it is in the file, or someone is writing
    /// the buffer, or it is to write the buffer itself.
    fn turn(&self, t: u64) -> Turn {
        let mut st = self.lock();
        if st.flushed >= t {
            return Turn::Done(match &st.failed {
                Some((from, upto, why)) if *from < t && t <= *upto => {
                    Err(BackendError::Storage(Tier::L2, why.clone()))
                }
                _ => Ok(()),
            });
        }
        if st.leader {
            return Turn::Wait;
        }
        st.leader = true;
        Turn::Lead
    }

    fn flushed_upto(&self, upto: u64, failed: Option<String>) {
        let mut st = self.lock();
        let from = st.flushed;
        st.flushed = st.flushed.max(upto);
        st.leader = false;
        if let Some(why) = failed {
            st.failed = Some((from, upto, why));
        }
        drop(st);
        self.flushed.notify_waiters();
    }
}

enum Turn {
    Done(Result<(), BackendError>),
    Wait,
    Lead,
}

/// A leader that has not finished: on drop, gives the lead back.
struct Leading<'a>(&'a WalGroup, bool);

impl Drop for Leading<'_> {
    fn drop(&mut self) {
        if self.1 {
            self.0.lock().leader = false;
            self.0.flushed.notify_waiters();
        }
    }
}

impl L2 {
    /// A write made on this thread, answered once its log bytes are in the
    /// log file.
    pub(super) fn committed(&self, resp: Response) -> BackendFuture {
        let ticket = self
            .inner
            .wal
            .as_ref()
            .map(|w| w.appended.fetch_add(1, Ordering::AcqRel) + 1);
        let inner = self.inner.clone();
        Box::pin(async move {
            if let (Some(wal), Some(t)) = (&inner.wal, ticket) {
                if let Err(e) = wal.commit(&inner.db, t).await {
                    inner.failed_call(&e);
                    return Err(e);
                }
            }
            Ok(resp)
        })
    }
}
