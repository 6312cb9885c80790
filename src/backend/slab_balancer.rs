//! The slab balancer: rend moves memcached's slab pages itself.
//!
//! memcached hands each slab class the pages it asks for while memory is
//! free and then keeps them there. When the sizes of values shift, the new
//! sizes evict each other within the few pages their classes hold while the
//! old sizes' pages keep items nobody reads: the classes calcify. memcached's
//! own automover is slow (`slab_automove=1`, its default, judges over a
//! window of many seconds) or blind (`=2` takes a page from whichever class
//! comes next on every eviction; its documentation says not to run it for
//! long).
//!
//! The balancer polls `stats items` and `stats slabs` on its own text
//! connection (an [`AdminLane`]) and, when a class evicted since the last
//! poll, asks memcached to move one page to it (`slabs reassign SRC DST`)
//! from the class whose oldest item is the oldest of all, if that item has
//! gone unused a quarter longer than what the evicting class threw away:
//! memcached's LRU, made global across classes. A class that holds a whole page of free chunks
//! may always give one. The move itself is memcached's (its rebalancer
//! thread frees the page, evicting what is on it). One page moves at a
//! time; while pages move or classes evict the balancer polls every
//! [`POLL_BUSY`], otherwise every [`POLL_IDLE`].
//!
//! A burst of writes of a new size arrives faster than memcached frees
//! pages, so with pacing ([`pacer`], `--slab-pacing`, on by default with the
//! balancer) a store whose class has no free chunk while another class holds
//! older items waits for the page: such a class wakes the balancer, which
//! moves a page to it as if it had evicted.
//!
//! With chunked values (`--chunked`) it is off by default: chunks of every
//! value share one class, and a page memcached frees for another class
//! takes chunks of live values with it, each a whole value lost.
//!
//! Cost: one `stats items` per poll, `stats slabs` too when a class evicted
//! or, with pacing, on every poll (and `stats settings` once); idle, what
//! `results/slab_pacing.csv` reports; memory: those replies, of a few KiB,
//! and one small map.
//! A memcached that does not answer (hung, restarting, `slab_reassign`
//! off) costs one failed poll per [`POLL_IDLE`] and nothing else.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::admin::AdminLane;
use super::memcached::L1Addr;
use super::slab_classes::{stat, SlabClasses, PAGE};
use super::Backend;
use crate::protocol::{Command, Response};

pub mod pacer;

use pacer::Pacer;

/// Poll interval while a page is moving, and for [`HOT`] after one could
/// last be moved.
pub const POLL_BUSY: Duration = Duration::from_millis(1);
/// Poll interval otherwise.
pub const POLL_IDLE: Duration = Duration::from_millis(20);
/// A class that evicted within this long is under pressure: it gives a
/// page only for items clearly older than the taker's.
pub const RECENT: Duration = Duration::from_millis(500);
/// How long a move is retried while memcached is still moving the page
/// before it.
const BUSY_RETRY: Duration = Duration::from_millis(20);
/// How long the balancer keeps polling fast after a page could last be moved.
const HOT: Duration = Duration::from_millis(200);
/// Time allowed for one admin exchange.
const TIMEOUT: Duration = Duration::from_secs(2);

/// What the balancer reads of one slab class.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Class {
    /// Pages the class holds (`total_pages`).
    pub pages: u64,
    /// Items per page (`chunks_per_page`).
    pub chunks_per_page: u64,
    /// Free chunks (`free_chunks` + `free_chunks_end`).
    pub free_chunks: u64,
    /// Items evicted since memcached started (`evicted`).
    pub evicted: u64,
    /// Seconds since the oldest item was last used (`age`).
    pub age: u64,
    /// Seconds the latest evicted item had gone unused (`evicted_time`).
    pub evicted_time: u64,
}

/// Classes by id, from the bodies of `stats items` and `stats slabs`.
pub fn parse(items: &[u8], slabs: &[u8]) -> BTreeMap<u32, Class> {
    let mut classes: BTreeMap<u32, Class> = BTreeMap::new();
    for line in items
        .split(|&b| b == b'\n')
        .chain(slabs.split(|&b| b == b'\n'))
    {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Ok(line) = std::str::from_utf8(line) else {
            continue;
        };
        let mut words = line.split(' ');
        let (Some("STAT"), Some(name), Some(value)) = (words.next(), words.next(), words.next())
        else {
            continue;
        };
        let name = name.strip_prefix("items:").unwrap_or(name);
        let Some((id, field)) = name.split_once(':') else {
            continue;
        };
        let (Ok(id), Ok(value)) = (id.parse::<u32>(), value.parse::<u64>()) else {
            continue;
        };
        let class = classes.entry(id).or_default();
        match field {
            "total_pages" => class.pages = value,
            "chunks_per_page" => class.chunks_per_page = value,
            "free_chunks" | "free_chunks_end" => class.free_chunks += value,
            "evicted" => class.evicted = value,
            "age" => class.age = value,
            "evicted_time" => class.evicted_time = value,
            _ => {}
        }
    }
    classes
}

/// Evictions per class since `last` (each class's `evicted` then), for
/// the classes that evicted.
pub fn evictions_since(
    last: &BTreeMap<u32, u64>,
    now: &BTreeMap<u32, Class>,
) -> BTreeMap<u32, u64> {
    now.iter()
        .map(|(&id, c)| (id, c.evicted.saturating_sub(*last.get(&id).unwrap_or(&0))))
        .filter(|&(_, n)| n > 0)
        .collect()
}

/// What each class that needs a page would throw away, as (seconds its
/// victims had gone unused, items evicted since the last poll): a class
/// that evicted ([`evictions_since`]) says so itself (`evicted_time`); one
/// whose writes wait for room ([`pacer`], the bits of `starving`) would
/// evict its oldest item (`age`; 0 for a class with no items).
pub fn demand(
    fresh: &BTreeMap<u32, u64>,
    starving: u64,
    now: &BTreeMap<u32, Class>,
) -> BTreeMap<u32, (u64, u64)> {
    let mut demand: BTreeMap<u32, (u64, u64)> = fresh
        .iter()
        .filter_map(|(id, &n)| Some((*id, (now.get(id)?.evicted_time, n))))
        .collect();
    for id in bits(starving) {
        demand
            .entry(id)
            .or_insert((now.get(&id).map_or(0, |c| c.age), 0));
    }
    demand
}

/// The page to move, as (source, destination), given what each class needs
/// ([`demand`]), the classes now and the classes that evicted within
/// [`RECENT`]; `None` when no class needs a page or no other class may give
/// one.
pub fn choose(
    demand: &BTreeMap<u32, (u64, u64)>,
    now: &BTreeMap<u32, Class>,
    recent: &BTreeSet<u32>,
) -> Option<(u32, u32)> {
    // The class that throws away the youngest items (the most of them on a
    // tie) is the one a page helps most.
    let (&dst, &(want, _)) = demand
        .iter()
        .min_by_key(|(_, &(want, n))| (want, std::cmp::Reverse(n)))?;
    donor(dst, want, now, recent).map(|src| (src, dst))
}

/// The class that should give `dst` a page when `dst` would throw away
/// items unused for `want` seconds: the one holding the oldest item, if
/// that item has gone unused a quarter longer; a class with a whole page
/// of free chunks first.
pub fn donor(
    dst: u32,
    want: u64,
    now: &BTreeMap<u32, Class>,
    recent: &BTreeSet<u32>,
) -> Option<u32> {
    // A quarter older, so that classes whose ages differ by the noise of a
    // second's clock do not trade pages back and forth.
    let older = |secs: u64| secs * 4 > want * 5;
    let spare_page = |c: &Class| c.chunks_per_page > 0 && c.free_chunks >= c.chunks_per_page;
    now.iter()
        .filter(|(&id, c)| id != dst && c.pages > 1)
        // A class that evicts too (or did within [`RECENT`]) gives only if
        // what it evicts is older by a quarter and two ticks of memcached's
        // clock: two classes under the same pressure keep their pages.
        .filter(|(id, c)| {
            let pressed = recent.contains(id);
            spare_page(c)
                || (older(c.age) && !pressed)
                || (pressed && older(c.evicted_time) && c.evicted_time >= want + 2)
        })
        .max_by_key(|(_, c)| (spare_page(c), c.age))
        .map(|(&src, _)| src)
}

/// What memcached said to a `slabs reassign`.
#[derive(Debug, PartialEq, Eq)]
enum Reassign {
    /// Scheduled.
    Ok,
    /// A page is moving already.
    Busy,
    /// Anything else (`NOSPARE`, `UNSAFE`, an error).
    Refused,
}

/// Start the balancer for the memcached at `addr` on the current runtime;
/// it counts the pages it moved in `moves`, paces writes through `pacer`
/// when given, and runs until the runtime stops.
pub fn start(addr: L1Addr, moves: Arc<AtomicU64>, pacer: Option<Arc<Pacer>>) {
    let lane = AdminLane::start(addr, TIMEOUT);
    tokio::spawn(run(lane, moves, pacer));
}

async fn run(lane: AdminLane, moves: Arc<AtomicU64>, pacer: Option<Arc<Pacer>>) {
    // Each class's `evicted` at the last poll; none before the first, which
    // only sets the baseline.
    let mut last: Option<BTreeMap<u32, u64>> = None;
    // Poll fast until then: a page could be moved at most HOT ago.
    let mut hot_until = tokio::time::Instant::now();
    // When each class last evicted.
    let mut evicted_at: BTreeMap<u32, tokio::time::Instant> = BTreeMap::new();
    let mut pacing = pacer.map(Pacing::new);
    loop {
        let polled = poll(&lane, pacing.as_mut()).await;
        let Some((items, slabs)) = polled else {
            last = None;
            if let Some(p) = &pacing {
                p.pacer.release_all();
            }
            tokio::time::sleep(POLL_IDLE).await;
            continue;
        };
        let classes = parse(&items, slabs.as_deref().unwrap_or_default());
        let fresh = last
            .as_ref()
            .map(|last| evictions_since(last, &classes))
            .unwrap_or_default();
        last = Some(classes.iter().map(|(&id, c)| (id, c.evicted)).collect());
        let t = tokio::time::Instant::now();
        for &id in fresh.keys() {
            evicted_at.insert(id, t);
        }
        evicted_at.retain(|_, at| t.duration_since(*at) < RECENT);
        let recent: BTreeSet<u32> = evicted_at.keys().copied().collect();
        let starving = match (&mut pacing, &slabs) {
            (Some(p), Some(slabs)) => p.update(&classes, slabs, &recent, t),
            _ => 0,
        };
        // Pages matter only when a class evicted (`stats items` alone says
        // so) or writes wait for room.
        let pick = if fresh.is_empty() && starving == 0 {
            None
        } else {
            let now = match slabs {
                Some(_) => classes,
                None => match admin(&lane, "stats slabs").await {
                    Some(slabs) => parse(&items, &slabs),
                    None => {
                        last = None;
                        tokio::time::sleep(POLL_IDLE).await;
                        continue;
                    }
                },
            };
            choose(&demand(&fresh, starving, &now), &now, &recent)
        };
        let wait = match pick {
            Some((src, dst)) => {
                hot_until = t + HOT;
                let reassigned = move_page(&lane, src, dst).await;
                if reassigned == Reassign::Ok {
                    moves.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(src, dst, "slab balancer moved a page");
                }
                if let (Reassign::Refused, Some(p)) = (&reassigned, &mut pacing) {
                    p.refused(dst, t);
                }
                reassigned.next_poll()
            }
            None if t < hot_until => POLL_BUSY,
            None => POLL_IDLE,
        };
        match &pacing {
            _ if wait.is_zero() => tokio::task::yield_now().await,
            Some(p) => p.pacer.idle(wait).await,
            None => tokio::time::sleep(wait).await,
        }
    }
}

/// `stats items`, and with pacing `stats slabs` too (and memcached's
/// settings, until read); `None` when memcached does not answer.
async fn poll(lane: &AdminLane, pacing: Option<&mut Pacing>) -> Option<(Bytes, Option<Bytes>)> {
    let Some(p) = pacing else {
        return Some((admin(lane, "stats items").await?, None));
    };
    if p.limit.is_none() {
        let settings = admin(lane, "stats settings").await?;
        p.read_settings(&settings);
    }
    let items = admin(lane, "stats items").await?;
    let slabs = admin(lane, "stats slabs").await?;
    Some((items, Some(slabs)))
}

/// The balancer's side of [`pacer`].
struct Pacing {
    pacer: Arc<Pacer>,
    /// memcached's memory limit (`maxbytes`), once read.
    limit: Option<u64>,
    /// Classes not paced until then: a move to them was refused, or a
    /// write to them waited the whole cap.
    cooling: BTreeMap<u32, tokio::time::Instant>,
}

impl Pacing {
    fn new(pacer: Arc<Pacer>) -> Pacing {
        Pacing {
            pacer,
            limit: None,
            cooling: BTreeMap::new(),
        }
    }

    fn read_settings(&mut self, settings: &[u8]) {
        let Some(table) = SlabClasses::from_settings(settings) else {
            return;
        };
        self.limit = stat(settings, "maxbytes");
        self.pacer.set_table(table);
    }

    fn refused(&mut self, dst: u32, t: tokio::time::Instant) {
        self.cooling.insert(dst, t + COOL);
    }

    /// Set each class's backing and credit from this poll; the classes
    /// whose writes wait.
    fn update(
        &mut self,
        classes: &BTreeMap<u32, Class>,
        slabs: &[u8],
        recent: &BTreeSet<u32>,
        t: tokio::time::Instant,
    ) -> u64 {
        let (Some(limit), Some(table)) = (self.limit, self.pacer.table()) else {
            return 0;
        };
        for id in bits(self.pacer.take_gave_up()) {
            self.cooling.insert(id, t + COOL);
        }
        self.cooling.retain(|_, until| t < *until);
        let unallocated =
            limit.saturating_sub(stat::<u64>(slabs, "total_malloced").unwrap_or(limit)) / PAGE;
        let state = (1..=table.len() as u32).map(|id| {
            let class = classes.get(&id);
            let backed = !self.cooling.contains_key(&id)
                && donor(id, class.map_or(0, |c| c.age), classes, recent).is_some();
            // A class with no page gets one even when memory is full.
            let pages = unallocated + u64::from(class.is_none_or(|c| c.pages == 0));
            let free = class.map_or(0, |c| c.free_chunks) + pages * table.per_page(id as usize);
            (id as usize, backed, Some(free.min(i64::MAX as u64) as i64))
        });
        self.pacer.update(state);
        self.pacer.take_starving()
    }
}

/// How long a class is not paced after a move to it was refused or a
/// write to it waited the whole cap.
const COOL: Duration = Duration::from_secs(1);

/// The ids of the set bits of `set`.
fn bits(set: u64) -> impl Iterator<Item = u32> {
    (0..64).filter(move |id| set & (1 << id) != 0)
}

impl Reassign {
    /// How long to wait before the next poll after this answer.
    fn next_poll(&self) -> Duration {
        match self {
            Reassign::Ok => Duration::ZERO,
            Reassign::Busy => POLL_BUSY,
            Reassign::Refused => POLL_IDLE,
        }
    }
}

/// Ask memcached to move a page from `src` to `dst`; while the page before
/// it is still moving (`BUSY`), ask again at once, for up to [`BUSY_RETRY`]:
/// a page of large items moves in well under a millisecond, and waiting a
/// timer tick per page would make the balancer, not memcached, the limit.
async fn move_page(lane: &AdminLane, src: u32, dst: u32) -> Reassign {
    let until = tokio::time::Instant::now() + BUSY_RETRY;
    loop {
        match reassign(lane, src, dst).await {
            Reassign::Busy if tokio::time::Instant::now() < until => tokio::task::yield_now().await,
            other => return other,
        }
    }
}

async fn admin(lane: &AdminLane, line: &str) -> Option<Bytes> {
    let cmd = Command::Admin {
        line: Bytes::copy_from_slice(line.as_bytes()),
        noreply: false,
    };
    match lane.call(&cmd).await {
        Ok(Response::Raw(bytes)) => Some(bytes),
        _ => None,
    }
}

async fn reassign(lane: &AdminLane, src: u32, dst: u32) -> Reassign {
    match admin(lane, &format!("slabs reassign {src} {dst}")).await {
        Some(reply) if reply.starts_with(b"OK") => Reassign::Ok,
        Some(reply) if reply.starts_with(b"BUSY") => Reassign::Busy,
        reply => {
            tracing::debug!(src, dst, ?reply, "slab balancer: memcached refused a move");
            Reassign::Refused
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(pages: u64, evicted: u64, age: u64, evicted_time: u64) -> Class {
        Class {
            pages,
            chunks_per_page: 100,
            free_chunks: 0,
            evicted,
            age,
            evicted_time,
        }
    }

    /// The balancer's pick when the classes that evicted since `last` are
    /// the ones its window holds, and no write waits.
    fn pick(last: &BTreeMap<u32, u64>, now: &BTreeMap<u32, Class>) -> Option<(u32, u32)> {
        let fresh = evictions_since(last, now);
        let recent = fresh.keys().copied().collect();
        choose(&demand(&fresh, 0, now), now, &recent)
    }

    #[test]
    fn parses_memcached_stats() {
        let items = b"STAT items:5:number 10\r\nSTAT items:5:age 7\r\nSTAT items:5:evicted 3\r\n\
STAT items:5:evicted_time 2\r\nSTAT items:18:evicted 0\r\nEND\r\n";
        let slabs =
            b"STAT 5:chunk_size 192\r\nSTAT 5:chunks_per_page 5461\r\nSTAT 5:total_pages 64\r\n\
STAT 5:free_chunks 10\r\nSTAT 5:free_chunks_end 5\r\nSTAT 18:total_pages 1\r\n\
STAT active_slabs 2\r\nSTAT total_malloced 67108864\r\nEND\r\n";
        let c = parse(items, slabs);
        assert_eq!(c.len(), 2);
        assert_eq!(
            c[&5],
            Class {
                pages: 64,
                chunks_per_page: 5461,
                free_chunks: 15,
                evicted: 3,
                age: 7,
                evicted_time: 2,
            }
        );
        assert_eq!(c[&18].pages, 1);
    }

    #[test]
    fn moves_from_the_oldest_class_to_the_evicting_one() {
        let last = BTreeMap::from([(1, 0), (2, 0), (3, 50)]);
        let now = BTreeMap::from([
            (1, class(10, 0, 30, 0)),
            (2, class(10, 0, 60, 0)),
            (3, class(1, 80, 0, 0)),
        ]);
        assert_eq!(pick(&last, &now), Some((2, 3)));
    }

    #[test]
    fn no_evictions_no_move() {
        let last = BTreeMap::from([(1, 5), (2, 7)]);
        let now = BTreeMap::from([(1, class(10, 5, 30, 0)), (2, class(10, 7, 60, 0))]);
        assert_eq!(pick(&last, &now), None);
    }

    #[test]
    fn keeps_items_younger_than_what_was_evicted() {
        // Class 3 evicts items unused for 100 s; the others' oldest are
        // younger, so they are worth more.
        let last = BTreeMap::from([(3, 0)]);
        let now = BTreeMap::from([(1, class(10, 0, 30, 0)), (3, class(1, 9, 100, 100))]);
        assert_eq!(pick(&last, &now), None);
    }

    #[test]
    fn a_class_with_a_free_page_gives_it_first() {
        let last = BTreeMap::new();
        let mut free = class(10, 0, 1, 0);
        free.free_chunks = 150;
        let now = BTreeMap::from([
            (1, class(10, 0, 30, 5)),
            (2, free),
            (3, class(1, 9, 100, 50)),
        ]);
        assert_eq!(pick(&last, &now), Some((2, 3)));
    }

    #[test]
    fn a_class_of_one_page_never_gives() {
        let last = BTreeMap::new();
        let now = BTreeMap::from([(1, class(1, 0, 300, 0)), (3, class(1, 9, 0, 0))]);
        assert_eq!(pick(&last, &now), None);
    }

    #[test]
    fn two_evicting_classes_of_equal_age_do_not_trade_pages() {
        let last = BTreeMap::from([(1, 0), (2, 0)]);
        let now = BTreeMap::from([(1, class(10, 5, 100, 110)), (2, class(10, 9, 110, 100))]);
        assert_eq!(pick(&last, &now), None);
        // Both evicting what they just stored (a chunked value's metadata
        // and chunks), within one tick of memcached's clock.
        let now = BTreeMap::from([(1, class(10, 5, 1, 0)), (2, class(10, 9, 2, 0))]);
        assert_eq!(pick(&last, &now), None);
        // A class that evicts items a quarter older gives.
        let now = BTreeMap::from([(1, class(10, 5, 140, 130)), (2, class(10, 9, 110, 100))]);
        assert_eq!(pick(&last, &now), Some((1, 2)));
        // As does one that evicts nothing and holds older items.
        let now = BTreeMap::from([(1, class(10, 0, 126, 0)), (2, class(10, 9, 110, 100))]);
        assert_eq!(pick(&last, &now), Some((1, 2)));
    }
}
