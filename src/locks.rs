//! Key-striped locks: every key maps to one of N read/write locks, so work
//! on one key is serialised (writers alone, readers together) while work on
//! other keys goes on. One set of stripes is shared by every listener.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use tokio::sync::{OwnedRwLockReadGuard, OwnedRwLockWriteGuard, RwLock};

pub struct KeyLocks {
    stripes: Vec<Arc<RwLock<()>>>,
}

/// Held while a request works on its keys.
pub enum Guard {
    Read(Vec<OwnedRwLockReadGuard<()>>),
    Write(Vec<OwnedRwLockWriteGuard<()>>),
}

impl KeyLocks {
    pub fn new(stripes: usize) -> Arc<KeyLocks> {
        Arc::new(KeyLocks {
            stripes: (0..stripes.max(1))
                .map(|_| Arc::new(RwLock::new(())))
                .collect(),
        })
    }

    fn stripe(&self, key: &[u8]) -> usize {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut h);
        (h.finish() % self.stripes.len() as u64) as usize
    }

    /// The distinct stripes of `keys`, in one global order, so two requests
    /// locking several keys can never wait on each other in a cycle.
    fn stripes_of<'a>(&self, keys: impl IntoIterator<Item = &'a [u8]>) -> Vec<usize> {
        let mut s: Vec<usize> = keys.into_iter().map(|k| self.stripe(k)).collect();
        s.sort_unstable();
        s.dedup();
        s
    }

    pub async fn read<'a>(&self, keys: impl IntoIterator<Item = &'a [u8]>) -> Guard {
        let mut guards = Vec::new();
        for s in self.stripes_of(keys) {
            guards.push(self.stripes[s].clone().read_owned().await);
        }
        Guard::Read(guards)
    }

    pub async fn write<'a>(&self, keys: impl IntoIterator<Item = &'a [u8]>) -> Guard {
        let mut guards = Vec::new();
        for s in self.stripes_of(keys) {
            guards.push(self.stripes[s].clone().write_owned().await);
        }
        Guard::Write(guards)
    }

    /// Every stripe, exclusively (flush_all: no key is mid-write or
    /// mid-back-fill while both tiers are flushed).
    pub async fn write_all(&self) -> Guard {
        let mut guards = Vec::with_capacity(self.stripes.len());
        for s in &self.stripes {
            guards.push(s.clone().write_owned().await);
        }
        Guard::Write(guards)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn writers_exclude_each_other_and_readers_share() {
        let locks = KeyLocks::new(16);
        let r1 = locks.read([&b"k"[..]]).await;
        let r2 = tokio::time::timeout(
            std::time::Duration::from_millis(50),
            locks.read([&b"k"[..]]),
        )
        .await;
        assert!(r2.is_ok(), "readers share");
        let w = tokio::time::timeout(
            std::time::Duration::from_millis(50),
            locks.write([&b"k"[..]]),
        )
        .await;
        assert!(w.is_err(), "a writer waits for readers");
        drop((r1, r2));
        let w = locks.write([&b"k"[..], &b"other"[..], &b"k"[..]]).await;
        let w2 = tokio::time::timeout(
            std::time::Duration::from_millis(50),
            locks.write([&b"other"[..]]),
        )
        .await;
        assert!(w2.is_err(), "a writer waits for a writer");
        drop(w);
    }
}
