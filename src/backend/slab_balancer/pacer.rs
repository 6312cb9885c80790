//! Pacing: a write waits, briefly, for the page its class is about to get.
//!
//! The balancer alone moves pages as fast as memcached frees them (a page
//! of 100-byte items takes a few milliseconds), but a burst of writes of a
//! new size arrives faster: while the pages are on their way, the new
//! values evict each other in the few pages their class holds. With pacing,
//! a client connection holds a write whose class has no free chunk left
//! while another class holds older items (what the balancer would move a
//! page for), until the balancer has moved that page, for at most the
//! pacing cap (`--slab-pacing`). The connection's later requests wait
//! behind it, so its order is kept; other connections are not held unless
//! they write to the same class.
//!
//! State per class, kept by the balancer and read by every connection: is
//! the class *backed* (another class may give it a page), and its *credit*
//! (items it can still take without evicting: its free chunks, and its
//! share of memory no class has yet, at the last poll; each admitted write
//! takes one). A write to a class that is not backed never waits, so a
//! memcached whose items are all in one class, or whose classes are
//! balanced, is never paced. A write that waits the whole cap goes ahead
//! and its class is not paced for a second (as after a move memcached
//! refused), so a balancer that cannot move pages (hung memcached, a class
//! with no spare page) costs each class at most one cap per second.
//!
//! Cost on the data path: which class a store lands in (a binary search
//! of about 40 sizes) and one atomic load; a CAS when the class is backed.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::backend::slab_classes::{item_size, SlabClasses};
use crate::protocol::meta::Verb;
use crate::protocol::{Command, StoreMode};

/// memcached's `MAX_NUMBER_OF_SLAB_CLASSES`: class ids are below it.
const CLASSES: usize = 64;

#[derive(Default)]
struct ClassState {
    backed: AtomicBool,
    credit: AtomicI64,
    /// Stores admitted while the class was backed and not yet answered:
    /// memcached's free chunks do not count them yet.
    outstanding: AtomicI64,
}

/// What connections and the balancer share.
pub struct Pacer {
    /// How long one write may wait.
    cap: Duration,
    /// Bytes the mode adds to a value before L1 stores it (two-tier's
    /// header).
    extra: usize,
    /// memcached's classes, once the balancer has read its settings.
    table: OnceLock<SlabClasses>,
    classes: [ClassState; CLASSES],
    /// Bumped whenever credit or backing changes, so a waiter that looked
    /// before a change does not sleep through it.
    generation: AtomicU64,
    changed: Notify,
    /// Classes whose writes wait (a bit per class), for the balancer.
    starving: AtomicU64,
    /// Classes a write gave up waiting for (a bit per class).
    gave_up: AtomicU64,
    wake: Notify,
    /// Writes that waited, and those that waited the whole cap.
    pub waits: AtomicU64,
    pub timeouts: AtomicU64,
}

/// What [`Pacer::admit`] says of a store.
pub enum Admit {
    /// Go; keep the [`Landing`], when there is one, until it is answered.
    Go(Option<Landing>),
    Wait(Wait),
}

/// A store admitted to a backed class, until its answer: the balancer
/// counts it against the free chunks memcached reports.
pub struct Landing {
    pacer: Arc<Pacer>,
    class: usize,
}

impl Drop for Landing {
    fn drop(&mut self) {
        self.pacer.classes[self.class]
            .outstanding
            .fetch_sub(1, Ordering::AcqRel);
    }
}

/// A write that must wait: for a change after `generation`, until
/// `deadline`.
#[derive(Clone, Copy, Debug)]
pub struct Wait {
    pub class: usize,
    pub generation: u64,
    pub deadline: Instant,
}

impl Pacer {
    pub fn new(cap: Duration, extra: usize) -> Pacer {
        Pacer {
            cap,
            extra,
            table: OnceLock::new(),
            classes: std::array::from_fn(|_| ClassState::default()),
            generation: AtomicU64::new(0),
            changed: Notify::new(),
            starving: AtomicU64::new(0),
            gave_up: AtomicU64::new(0),
            wake: Notify::new(),
            waits: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
        }
    }

    /// The class a store takes an item from, for stores that make a new
    /// item of a size known before memcached sees it (set, add, replace,
    /// cas, `ms`; not append, prepend or arithmetic). `None` until the
    /// balancer has read memcached's settings.
    pub fn class_of(&self, cmd: &Command) -> Option<usize> {
        let (key, flags, len) = match cmd {
            Command::Store {
                mode: StoreMode::Set | StoreMode::Add | StoreMode::Replace | StoreMode::Cas,
                key,
                flags,
                value,
                ..
            } => (key.len(), *flags, value.len()),
            Command::Meta(m) if m.verb == Verb::Set => {
                (m.key.len(), 0, m.value.as_ref().map_or(0, |v| v.len()))
            }
            _ => return None,
        };
        let table = self.table.get()?;
        Some(table.class_of(item_size(key, flags, len + self.extra)))
    }

    /// Whether a store to `class` may go now; if not, what to wait for.
    /// `since`, from an earlier [`Wait`], keeps the first deadline.
    pub fn admit(self: &Arc<Self>, class: usize, since: Option<Wait>) -> Admit {
        let Some(state) = self.classes.get(class) else {
            return Admit::Go(None);
        };
        if !state.backed.load(Ordering::Relaxed) {
            return Admit::Go(None);
        }
        let generation = self.generation.load(Ordering::Acquire);
        let took = state
            .credit
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| {
                (c > 0).then(|| c - 1)
            });
        let deadline = match since {
            _ if took.is_ok() => return Admit::Go(Some(self.landing(class))),
            Some(w) if Instant::now() >= w.deadline => {
                // The balancer did not make room in time: go, and stop
                // pacing this class until it looks again.
                state.backed.store(false, Ordering::Relaxed);
                self.gave_up.fetch_or(1 << class, Ordering::AcqRel);
                self.timeouts.fetch_add(1, Ordering::Relaxed);
                return Admit::Go(Some(self.landing(class)));
            }
            Some(w) => w.deadline,
            None => {
                self.waits.fetch_add(1, Ordering::Relaxed);
                Instant::now() + self.cap
            }
        };
        self.starving.fetch_or(1 << class, Ordering::AcqRel);
        self.wake.notify_one();
        Admit::Wait(Wait {
            class,
            generation,
            deadline,
        })
    }

    fn landing(self: &Arc<Self>, class: usize) -> Landing {
        self.classes[class]
            .outstanding
            .fetch_add(1, Ordering::AcqRel);
        Landing {
            pacer: self.clone(),
            class,
        }
    }

    /// Resolves when what `wait` waits for may have changed, or at its
    /// deadline.
    pub async fn changed(&self, wait: Wait) {
        let notified = self.changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if self.generation.load(Ordering::Acquire) != wait.generation {
            return;
        }
        let _ = tokio::time::timeout_at(wait.deadline, notified).await;
    }

    // The balancer's side.

    pub(super) fn set_table(&self, table: SlabClasses) {
        let _ = self.table.set(table);
    }

    pub(super) fn table(&self) -> Option<&SlabClasses> {
        self.table.get()
    }

    /// The classes whose writes waited since the last call, as a bit set.
    pub(super) fn take_starving(&self) -> u64 {
        self.starving.swap(0, Ordering::AcqRel)
    }

    /// The classes a write gave up waiting for since the last call.
    pub(super) fn take_gave_up(&self) -> u64 {
        self.gave_up.swap(0, Ordering::AcqRel)
    }

    /// Sleep `wait`, or less if a write starts waiting.
    pub(super) async fn idle(&self, wait: Duration) {
        let _ = tokio::time::timeout(wait, self.wake.notified()).await;
    }

    /// Set each class's backing and (when known) its free chunks, less
    /// the stores admitted and not yet answered, as its credit; and wake
    /// the writes that wait.
    pub(super) fn update(&self, classes: impl Iterator<Item = (usize, bool, Option<i64>)>) {
        for (id, backed, free) in classes {
            let Some(state) = self.classes.get(id) else {
                continue;
            };
            if let Some(free) = free {
                let landing = state.outstanding.load(Ordering::Acquire);
                state.credit.store(free - landing, Ordering::Release);
            }
            state.backed.store(backed, Ordering::Release);
        }
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.changed.notify_waiters();
    }

    /// Stop pacing every class (the balancer cannot see memcached).
    pub(super) fn release_all(&self) {
        self.update((0..CLASSES).map(|id| (id, false, None)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn set(key: &str, len: usize) -> Command {
        Command::Store {
            mode: StoreMode::Set,
            key: Bytes::copy_from_slice(key.as_bytes()),
            flags: 0,
            exptime: 0,
            cas: 0,
            value: Bytes::from(vec![b'v'; len]),
        }
    }

    fn go(a: Admit) -> Option<Landing> {
        match a {
            Admit::Go(landing) => landing,
            Admit::Wait(w) => panic!("waits: {w:?}"),
        }
    }

    fn wait(a: Admit) -> Wait {
        match a {
            Admit::Go(_) => panic!("goes"),
            Admit::Wait(w) => w,
        }
    }

    #[test]
    fn classes_of_stores() {
        let p = Pacer::new(Duration::from_millis(20), 0);
        assert_eq!(p.class_of(&set("k", 10)), None, "no table yet");
        p.set_table(SlabClasses::memcached_default());
        // 48 + 8 + 13 + 102 = 171 bytes: class 4 (192).
        assert_eq!(p.class_of(&set("abcdefghijkl", 100)), Some(4));
        assert_eq!(p.class_of(&set("k", 4000)), Some(18));
        let append = Command::Store {
            mode: StoreMode::Append,
            key: Bytes::from_static(b"k"),
            flags: 0,
            exptime: 0,
            cas: 0,
            value: Bytes::from_static(b"v"),
        };
        assert_eq!(p.class_of(&append), None);
        // Two-tier's header moves a value over a class boundary.
        let p = Pacer::new(Duration::from_millis(20), 30);
        p.set_table(SlabClasses::memcached_default());
        assert_eq!(p.class_of(&set("abcdefghijkl", 100)), Some(5));
    }

    #[tokio::test]
    async fn a_backed_class_without_credit_waits_until_credit_comes() {
        let p = Arc::new(Pacer::new(Duration::from_secs(5), 0));
        assert!(go(p.admit(3, None)).is_none(), "not backed: never waits");
        p.update([(3, true, Some(2))].into_iter());
        let first = go(p.admit(3, None)).expect("counted");
        let second = go(p.admit(3, None)).expect("counted");
        let w = wait(p.admit(3, None));
        assert_eq!(p.take_starving(), 1 << 3);
        assert_eq!(p.take_starving(), 0);
        // Credit arriving after the look wakes the waiter at once. Two
        // stores were admitted and are not answered yet: memcached's three
        // free chunks are one for the waiter.
        p.update([(3, true, Some(3))].into_iter());
        tokio::time::timeout(Duration::from_secs(1), p.changed(w))
            .await
            .expect("woken by the change");
        let third = go(p.admit(3, Some(w)));
        let _ = wait(p.admit(3, None));
        assert_eq!(p.waits.load(Ordering::Relaxed), 2);
        // Answered stores no longer count against what memcached reports.
        drop((first, second, third));
        p.update([(3, true, Some(1))].into_iter());
        assert!(go(p.admit(3, None)).is_some());
        // Another class is not held.
        assert!(go(p.admit(4, None)).is_none());
    }

    #[tokio::test]
    async fn a_write_goes_at_its_deadline_and_the_class_stops_pacing() {
        let p = Arc::new(Pacer::new(Duration::from_millis(30), 0));
        p.update([(5, true, Some(0))].into_iter());
        let w = wait(p.admit(5, None));
        let start = std::time::Instant::now();
        p.changed(w).await;
        assert!(start.elapsed() >= Duration::from_millis(25));
        assert!(go(p.admit(5, Some(w))).is_some(), "the cap is over");
        assert_eq!(p.timeouts.load(Ordering::Relaxed), 1);
        assert_eq!(p.take_gave_up(), 1 << 5);
        assert!(
            go(p.admit(5, None)).is_none(),
            "not paced until the next poll"
        );
        p.update([(5, true, Some(0))].into_iter());
        let _ = wait(p.admit(5, None));
        p.release_all();
        assert!(go(p.admit(5, None)).is_none());
    }
}
