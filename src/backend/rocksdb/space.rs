//! The disk bound (`--l2-max-bytes`): what the store's directory holds,
//! read every 100 ms by a thread of its own, plus what was written since.

use std::sync::atomic::Ordering;
use std::sync::Weak;
use std::time::Duration;

use super::Inner;

/// Read the disk use every 100 ms until the store closes.
pub(super) fn watch_space(inner: Weak<Inner>) {
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let Some(inner) = inner.upgrade() else { return };
        if inner.closing.load(Ordering::Acquire) {
            return;
        }
        inner.measure();
    }
}

impl Inner {
    /// Disk use: every file in the data directory (SSTs, write-ahead log,
    /// manifest, RocksDB's own log). What was written while the directory
    /// is read may be counted twice until the next reading, never missed.
    pub(super) fn measure(&self) {
        let before = self.written.load(Ordering::Acquire);
        let used = std::fs::read_dir(&self.path)
            .map(|dir| {
                dir.filter_map(|e| e.ok()?.metadata().ok())
                    .filter(|m| m.is_file())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0);
        self.measured.store(used, Ordering::Release);
        self.written.fetch_sub(before, Ordering::AcqRel);
    }

    /// Bytes counted against the bound.
    pub(super) fn used(&self) -> u64 {
        self.measured.load(Ordering::Acquire) + self.written.load(Ordering::Acquire)
    }
}
