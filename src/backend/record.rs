//! The L2 record and memcached's verbs as pure functions over it.
//!
//! A record is what L2 keeps per key: a version byte, then flags (u32),
//! absolute expiry (u32 Unix seconds, 0 = never) and cas unique (u64), then
//! (version 2) the item state memcached's meta commands see (last access,
//! u32 Unix seconds, and a byte of bits: fetched, stale, win token sent,
//! base64 key), all big-endian, then the value. Version 1 records (no item
//! state) are still read. [`apply`] decides what a storage command does to
//! the current record, and [`meta::apply_meta`] what a meta command does,
//! with memcached's exact semantics, without any I/O, so the RocksDB store
//! stays a thin shell around them and the rules are testable on their own.

pub mod meta;

use bytes::{BufMut, Bytes, BytesMut};

use crate::protocol::expiry::{self, is_expired, THIRTY_DAYS};
use crate::protocol::number::parse_u64;
use crate::protocol::{Command, ErrorReply, Response, StoreMode, Value};

/// Version byte of the first encoding, without item state (still read).
pub const RECORD_V1: u8 = 1;
/// Version byte of the current encoding.
pub const RECORD_V2: u8 = 2;
/// Bytes before the value in a version 1 record.
pub const RECORD_HEADER_V1: usize = 1 + 4 + 4 + 8;
/// Bytes before the value.
pub const RECORD_HEADER: usize = RECORD_HEADER_V1 + 4 + 1;

/// memcached's `ITEM_UPDATE_INTERVAL`: a fetch moves an item's last access
/// only when it is older than this many seconds.
pub const UPDATE_INTERVAL: u32 = 60;

/// What memcached keeps about an item beside its data, and its meta
/// commands show: `l` and `h` of `mg`, `X`, `W` and `Z`, and whether `k`
/// comes back base64.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ItemState {
    /// The last access, Unix seconds: when the item was stored, moved on by
    /// a fetch at most once a [minute](UPDATE_INTERVAL). 0: unknown (a
    /// version 1 record), read as now.
    pub accessed: u32,
    /// Fetched since it was stored (`h1`).
    pub fetched: bool,
    /// Invalidated by `md … I` (`X`).
    pub stale: bool,
    /// A win token was handed out (`W` once, then `Z`).
    pub won: bool,
    /// Stored by an `ms` with a base64 key: `k` returns it base64.
    pub binary_key: bool,
}

impl ItemState {
    /// A new item's state.
    pub fn new(now: u32) -> ItemState {
        ItemState {
            accessed: now,
            ..ItemState::default()
        }
    }

    /// Seconds since the last access (`l`, `la=`).
    pub fn idle(&self, now: u32) -> u32 {
        if self.accessed == 0 {
            0
        } else {
            now.saturating_sub(self.accessed)
        }
    }

    /// memcached's `do_item_update`: the last access moves to now when it
    /// is more than a minute old.
    pub fn update(&mut self, now: u32) {
        if self.accessed < now.saturating_sub(UPDATE_INTERVAL) {
            self.accessed = now;
        }
    }

    /// memcached's `do_item_bump` on a fetch (with its LRU maintainer off,
    /// see `tests/meta_differential.rs`): fetched, and the access updated.
    pub fn bump(&mut self, now: u32) {
        self.fetched = true;
        self.update(now);
    }

    /// The state's flags as one byte (fetched, stale, won, binary key from
    /// bit 0).
    pub fn bits(&self) -> u8 {
        u8::from(self.fetched)
            | u8::from(self.stale) << 1
            | u8::from(self.won) << 2
            | u8::from(self.binary_key) << 3
    }

    pub fn from_bits(accessed: u32, b: u8) -> ItemState {
        ItemState {
            accessed,
            fetched: b & 1 != 0,
            stale: b & 2 != 0,
            won: b & 4 != 0,
            binary_key: b & 8 != 0,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub flags: u32,
    /// Absolute Unix seconds; 0 never expires.
    pub expiry: u32,
    pub cas: u64,
    pub value: Bytes,
    pub state: ItemState,
}

/// Why stored bytes are not a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("record shorter than its header")]
    Short,
    #[error("unknown record version {0}")]
    Version(u8),
}

impl Record {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(RECORD_HEADER + self.value.len());
        out.put_u8(RECORD_V2);
        out.put_u32(self.flags);
        out.put_u32(self.expiry);
        out.put_u64(self.cas);
        out.put_u32(self.state.accessed);
        out.put_u8(self.state.bits());
        out.put_slice(&self.value);
        out
    }

    /// Where the value starts in the stored bytes `b`, by their version.
    fn header_len(b: &[u8]) -> Result<usize, DecodeError> {
        let header = match b.first() {
            Some(&RECORD_V1) => RECORD_HEADER_V1,
            Some(&RECORD_V2) => RECORD_HEADER,
            Some(&v) if b.len() >= RECORD_HEADER_V1 => return Err(DecodeError::Version(v)),
            _ => return Err(DecodeError::Short),
        };
        if b.len() < header {
            return Err(DecodeError::Short);
        }
        Ok(header)
    }

    pub fn decode(b: &[u8]) -> Result<Record, DecodeError> {
        let header = Self::header_len(b)?;
        let u32_at = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let mut cas = [0u8; 8];
        cas.copy_from_slice(&b[9..17]);
        let state = if header == RECORD_HEADER {
            ItemState::from_bits(u32_at(17), b[21])
        } else {
            ItemState::default()
        };
        Ok(Record {
            flags: u32_at(1),
            expiry: u32_at(5),
            cas: u64::from_be_bytes(cas),
            value: Bytes::copy_from_slice(&b[header..]),
            state,
        })
    }

    /// The header fields alone, for the compaction filter.
    pub fn peek(b: &[u8]) -> Option<(u32, u64)> {
        Self::header_len(b).ok()?;
        let expiry = u32::from_be_bytes([b[5], b[6], b[7], b[8]]);
        let mut cas = [0u8; 8];
        cas.copy_from_slice(&b[9..17]);
        Some((expiry, u64::from_be_bytes(cas)))
    }

    pub fn is_expired(&self, now: u32) -> bool {
        is_expired(self.expiry, now)
    }

    pub fn to_value(&self, key: &Bytes) -> Value {
        Value {
            key: key.clone(),
            flags: self.flags,
            cas: self.cas,
            data: self.value.clone(),
        }
    }
}

/// When a `flush_all` takes effect, by memcached 1.6's rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlushWhen {
    /// Everything stored so far is gone at once.
    Now,
    /// At the start of this second (Unix time), everything stored before the
    /// next second is gone.
    At(u32),
    /// Nothing is flushed, and a flush still to come is called off: an
    /// absolute time from before the server started.
    Never,
}

impl FlushWhen {
    /// The `flush_all` delay that means this, whatever the clock and start
    /// time of the memcached it is sent to: 0, an absolute time one second
    /// after the firing one, or an absolute time in 1970.
    pub fn delay(self) -> i64 {
        match self {
            FlushWhen::Now => 0,
            FlushWhen::At(second) => i64::from(second) + 1,
            FlushWhen::Never => THIRTY_DAYS + 1,
        }
    }
}

/// memcached's reading of `flush_all <delay>` at `now`, for a server that
/// counts absolute times from `started` (see [`server_started`]):
/// - 0 or negative: now;
/// - up to 30 days: the flush fires at second `now + delay - 1` and hides
///   what was stored up to the end of that second (so `flush_all 1` takes
///   effect at once and also hides what is stored later in this second);
/// - above 30 days, an absolute time: at or before `started` it flushes
///   nothing and calls off any flush still to come; after it, it fires at
///   `delay - 1`, and if that second has passed, it is now.
pub fn flush_when(delay: i64, now: u32, started: u32) -> FlushWhen {
    let fire = if delay <= 0 {
        return FlushWhen::Now;
    } else if delay <= THIRTY_DAYS {
        i64::from(now) + delay - 1
    } else if delay <= i64::from(started) {
        return FlushWhen::Never;
    } else {
        delay - 1
    };
    if fire < i64::from(now) {
        FlushWhen::Now
    } else {
        FlushWhen::At(u32::try_from(fire).unwrap_or(u32::MAX))
    }
}

/// The time absolute times are counted from, as memcached counts them: the
/// process's start less 62 seconds (memcached's `process_started`). Fixed
/// by the first call; rend makes that call as it starts.
pub fn server_started() -> u32 {
    static STARTED: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *STARTED.get_or_init(|| expiry::now().saturating_sub(62))
}

/// The record's expiry for an absolute exptime; `None` when already expired.
fn expiry_of(exptime: i64, now: u32) -> Option<u32> {
    let abs = expiry::absolute(exptime, now);
    if abs < 0 {
        return None;
    }
    let e = u32::try_from(abs).unwrap_or(u32::MAX);
    (!is_expired(e, now)).then_some(e)
}

/// What a command does to the stored record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    Keep,
    Put(Record),
    Delete,
}

/// incr/decr on a stored value with memcached's arithmetic: the value is
/// read as a C string of decimal digits (a NUL ends it), incr wraps at 2^64,
/// decr stops at 0, and a result no longer than the old value is padded
/// with spaces to the old length (memcached rewrites it in place). `None`:
/// not a number.
pub fn arith_value(old: &[u8], incr: bool, delta: u64) -> Option<(u64, Vec<u8>)> {
    let text = old.split(|&b| b == 0).next().unwrap_or(&[]);
    let current = parse_u64(text)?;
    let new = if incr {
        current.wrapping_add(delta)
    } else {
        current.saturating_sub(delta)
    };
    let mut digits = new.to_string().into_bytes();
    if digits.len() < old.len() {
        digits.resize(old.len(), b' ');
    }
    Some((new, digits))
}

/// Apply one write to the live record `old` (`None`: absent, expired or
/// flushed). `cas` is the unique to give a record this write creates or
/// changes the value of; `max_value` bounds append/prepend. Returns the
/// reply and what to store. Reads (get without touch, GETE) are not writes
/// and answer `Keep` with no reply change; callers serve them directly.
pub fn apply(
    cmd: &Command,
    old: Option<&Record>,
    now: u32,
    cas: u64,
    max_value: usize,
) -> (Response, Effect) {
    let stamp = Stamp { now, cas };
    match cmd {
        Command::Store {
            mode,
            flags,
            exptime,
            cas: want,
            value,
            ..
        } => {
            // As in memcached, a storage command that carries a cas (binary
            // set/add/replace) is a cas.
            let mode = match mode {
                StoreMode::Set | StoreMode::Add | StoreMode::Replace if *want != 0 => {
                    StoreMode::Cas
                }
                m => *m,
            };
            let stored = Response::Stored { cas };
            match (mode, old) {
                (StoreMode::Set, _) | (StoreMode::Add, None) | (StoreMode::Replace, Some(_)) => {
                    (stored, stamp.put(*flags, *exptime, value.clone()))
                }
                (StoreMode::Add, Some(_))
                | (StoreMode::Replace | StoreMode::Append | StoreMode::Prepend, None) => {
                    (Response::NotStored, Effect::Keep)
                }
                (StoreMode::Cas, None) => (Response::NotFound, Effect::Keep),
                (StoreMode::Cas, Some(o)) if o.cas != *want => (Response::Exists, Effect::Keep),
                (StoreMode::Cas, Some(_)) => (stored, stamp.put(*flags, *exptime, value.clone())),
                (StoreMode::Append | StoreMode::Prepend, Some(o)) => {
                    join(o, value, mode == StoreMode::Append, *want, stamp, max_value)
                }
            }
        }
        Command::Arith {
            incr,
            delta,
            create,
            ..
        } => arith(old, *incr, *delta, *create, stamp),
        Command::Delete { cas: want, .. } => match old {
            None => (Response::NotFound, Effect::Keep),
            Some(o) if *want != 0 && *want != o.cas => (Response::Exists, Effect::Keep),
            Some(_) => (Response::Deleted, Effect::Delete),
        },
        // touch and gat change the expiry only: the cas stays.
        Command::Touch { exptime, .. } => match old {
            None => (Response::NotFound, Effect::Keep),
            Some(o) => (
                Response::Touched {
                    flags: o.flags,
                    cas: o.cas,
                },
                retouch(o, *exptime, now),
            ),
        },
        Command::Get {
            keys,
            touch: Some(exptime),
        } => match (old, keys.first()) {
            (Some(o), Some(key)) => (
                Response::Values(vec![o.to_value(key)]),
                retouch(o, *exptime, now),
            ),
            _ => (Response::Values(Vec::new()), Effect::Keep),
        },
        _ => (Response::Nothing, Effect::Keep),
    }
}

/// When a write happens, and the cas of a record it creates.
#[derive(Clone, Copy)]
struct Stamp {
    now: u32,
    cas: u64,
}

impl Stamp {
    /// A new item: this write's cas, a fresh state.
    fn record(self, flags: u32, expiry: u32, value: Bytes) -> Record {
        Record {
            flags,
            expiry,
            cas: self.cas,
            value,
            state: ItemState::new(self.now),
        }
    }

    /// A new record of `value`: or, when its exptime has already passed, as
    /// good as gone.
    fn put(self, flags: u32, exptime: i64, value: Bytes) -> Effect {
        match expiry_of(exptime, self.now) {
            Some(expiry) => Effect::Put(self.record(flags, expiry, value)),
            // Stored and at once expired: as good as gone.
            None => Effect::Delete,
        }
    }
}

/// append (or prepend) `value` to the live record `o`, keeping its flags
/// and expiry; refused when the client's cas (`want`, 0 for none) is not
/// the record's or the result would pass `max_value`.
fn join(
    o: &Record,
    value: &[u8],
    append: bool,
    want: u64,
    stamp: Stamp,
    max_value: usize,
) -> (Response, Effect) {
    if want != 0 && want != o.cas {
        return (Response::Exists, Effect::Keep);
    }
    let total = o.value.len() + value.len();
    if total > max_value {
        return (Response::NotStored, Effect::Keep);
    }
    // memcached links a new item: a fresh state.
    let value = joined(&o.value, value, append);
    (
        Response::Stored { cas: stamp.cas },
        Effect::Put(stamp.record(o.flags, o.expiry, value)),
    )
}

/// `value` after `old` (append) or before it (prepend).
pub fn joined(old: &[u8], value: &[u8], append: bool) -> Bytes {
    let mut joined = BytesMut::with_capacity(old.len() + value.len());
    if append {
        joined.put_slice(old);
        joined.put_slice(value);
    } else {
        joined.put_slice(value);
        joined.put_slice(old);
    }
    joined.freeze()
}

/// incr/decr of the live record `old`; binary's `create` makes a missing
/// key with its initial value.
fn arith(
    old: Option<&Record>,
    incr: bool,
    delta: u64,
    create: Option<(u64, i64)>,
    stamp: Stamp,
) -> (Response, Effect) {
    match (old, create) {
        (None, None) => (Response::NotFound, Effect::Keep),
        (None, Some((initial, exptime))) => (
            Response::Numeric {
                value: initial,
                cas: stamp.cas,
            },
            stamp.put(0, exptime, Bytes::from(initial.to_string())),
        ),
        (Some(o), _) => match arith_value(&o.value, incr, delta) {
            None => (Response::Error(ErrorReply::NonNumeric), Effect::Keep),
            Some((value, digits)) => (
                Response::Numeric {
                    value,
                    cas: stamp.cas,
                },
                Effect::Put(counted(o, digits, stamp)),
            ),
        },
    }
}

/// The record after incr/decr wrote `digits` (see [`arith_value`]): as
/// memcached does it, in place when the number fits in the old value (the
/// item keeps its state and its last access is updated), else as a new
/// item with the old flags and expiry.
fn counted(o: &Record, digits: Vec<u8>, stamp: Stamp) -> Record {
    if digits.len() <= o.value.len() {
        let mut state = o.state;
        state.update(stamp.now);
        Record {
            cas: stamp.cas,
            value: Bytes::from(digits),
            state,
            ..o.clone()
        }
    } else {
        stamp.record(o.flags, o.expiry, Bytes::from(digits))
    }
}

/// touch and gat: a new expiry; as in memcached, the item is fetched too.
fn retouch(o: &Record, exptime: i64, now: u32) -> Effect {
    match expiry_of(exptime, now) {
        Some(expiry) => {
            let mut state = o.state;
            state.bump(now);
            Effect::Put(Record {
                expiry,
                state,
                ..o.clone()
            })
        }
        None => Effect::Delete,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOW: u32 = 1_800_000_000;

    fn rec(value: &str, cas: u64) -> Record {
        Record {
            flags: 7,
            expiry: 0,
            cas,
            value: Bytes::from(value.to_string()),
            state: ItemState::new(NOW - 10),
        }
    }

    fn store(mode: StoreMode, cas: u64, value: &str) -> Command {
        Command::Store {
            mode,
            key: Bytes::from_static(b"k"),
            flags: 3,
            exptime: 0,
            cas,
            value: Bytes::from(value.to_string()),
        }
    }

    #[test]
    fn layout_is_documented() {
        let r = Record {
            flags: 0x01020304,
            expiry: 0x05060708,
            cas: 0x090a0b0c0d0e0f10,
            value: Bytes::from_static(b"v"),
            state: ItemState {
                accessed: 0x11121314,
                fetched: true,
                stale: false,
                won: true,
                binary_key: false,
            },
        };
        assert_eq!(
            r.encode(),
            [2, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 5, b'v']
        );
        assert_eq!(Record::decode(&r.encode()[..21]), Err(DecodeError::Short));
        let mut v3 = r.encode();
        v3[0] = 3;
        assert_eq!(Record::decode(&v3), Err(DecodeError::Version(3)));
        assert_eq!(
            Record::peek(&r.encode()),
            Some((0x05060708, 0x090a0b0c0d0e0f10))
        );
    }

    #[test]
    fn flush_times_follow_memcached() {
        let started = NOW - 1000;
        let at = |d: i64| flush_when(d, NOW, started);
        assert_eq!(at(0), FlushWhen::Now);
        assert_eq!(at(-3), FlushWhen::Now);
        // memcached: oldest_live = now + delay - 1, flushed once reached.
        assert_eq!(at(1), FlushWhen::At(NOW));
        assert_eq!(at(2), FlushWhen::At(NOW + 1));
        assert_eq!(at(THIRTY_DAYS), FlushWhen::At(NOW + THIRTY_DAYS as u32 - 1));
        // Absolute: before the server started, nothing; since, at once.
        assert_eq!(at(THIRTY_DAYS + 1), FlushWhen::Never);
        assert_eq!(at(i64::from(started)), FlushWhen::Never);
        assert_eq!(at(i64::from(started) + 1), FlushWhen::Now);
        assert_eq!(at(i64::from(NOW)), FlushWhen::Now);
        assert_eq!(at(i64::from(NOW) + 1), FlushWhen::At(NOW));
        assert_eq!(at(i64::from(NOW) + 5), FlushWhen::At(NOW + 4));
        // The canonical delay reads back as the same time on any server.
        for w in [FlushWhen::Now, FlushWhen::At(NOW + 9), FlushWhen::Never] {
            assert_eq!(flush_when(w.delay(), NOW, started), w);
            assert_eq!(flush_when(w.delay(), NOW, NOW - 5), w);
        }
    }

    #[test]
    fn exptimes_follow_memcached() {
        assert_eq!(expiry::absolute(0, NOW), 0);
        assert_eq!(expiry::absolute(-5, NOW), -1);
        assert_eq!(expiry::absolute(10, NOW), i64::from(NOW) + 10);
        assert_eq!(
            expiry::absolute(THIRTY_DAYS, NOW),
            i64::from(NOW) + THIRTY_DAYS
        );
        assert_eq!(expiry::absolute(THIRTY_DAYS + 1, NOW), THIRTY_DAYS + 1);
        // An absolute time in the past is already expired.
        assert_eq!(expiry_of(THIRTY_DAYS + 1, NOW), None);
        assert_eq!(expiry_of(i64::from(NOW), NOW), None);
        assert_eq!(expiry_of(i64::from(NOW) + 1, NOW), Some(NOW + 1));
        assert!(is_expired(NOW, NOW));
        assert!(!is_expired(0, NOW));
    }

    #[test]
    fn store_modes_table() {
        let old = rec("old", 42);
        let new = |cas| {
            Effect::Put(Record {
                flags: 3,
                expiry: 0,
                cas,
                value: Bytes::from_static(b"new"),
                state: ItemState::new(NOW),
            })
        };
        let stored = Response::Stored { cas: 99 };
        use StoreMode::*;
        let table: Vec<(StoreMode, u64, Option<&Record>, Response, Effect)> = vec![
            (Set, 0, None, stored.clone(), new(99)),
            (Set, 0, Some(&old), stored.clone(), new(99)),
            (Add, 0, None, stored.clone(), new(99)),
            (Add, 0, Some(&old), Response::NotStored, Effect::Keep),
            (Replace, 0, None, Response::NotStored, Effect::Keep),
            (Replace, 0, Some(&old), stored.clone(), new(99)),
            (Cas, 42, None, Response::NotFound, Effect::Keep),
            (Cas, 41, Some(&old), Response::Exists, Effect::Keep),
            (Cas, 42, Some(&old), stored.clone(), new(99)),
            // text cas 0 never matches
            (Cas, 0, Some(&old), Response::Exists, Effect::Keep),
            // binary set/add/replace with a cas are cas
            (Set, 41, Some(&old), Response::Exists, Effect::Keep),
            (Set, 42, Some(&old), stored.clone(), new(99)),
            (Set, 42, None, Response::NotFound, Effect::Keep),
            (Add, 42, Some(&old), stored.clone(), new(99)),
            (Replace, 41, Some(&old), Response::Exists, Effect::Keep),
            (Append, 0, None, Response::NotStored, Effect::Keep),
            (Prepend, 0, None, Response::NotStored, Effect::Keep),
            (Append, 41, Some(&old), Response::Exists, Effect::Keep),
        ];
        for (mode, cas, old, reply, effect) in table {
            let got = apply(&store(mode, cas, "new"), old, NOW, 99, 1000);
            assert_eq!(got, (reply, effect), "{mode:?} cas {cas} old {old:?}");
        }
    }

    #[test]
    fn append_keeps_flags_and_expiry_and_respects_the_limit() {
        let mut old = rec("ab", 5);
        old.expiry = NOW + 100;
        let (r, e) = apply(&store(StoreMode::Append, 0, "cd"), Some(&old), NOW, 6, 4);
        assert_eq!(r, Response::Stored { cas: 6 });
        assert_eq!(
            e,
            Effect::Put(Record {
                flags: 7,
                expiry: NOW + 100,
                cas: 6,
                value: Bytes::from_static(b"abcd"),
                state: ItemState::new(NOW),
            })
        );
        let (r, _) = apply(&store(StoreMode::Prepend, 5, "x"), Some(&old), NOW, 6, 100);
        assert_eq!(r, Response::Stored { cas: 6 });
        let (r, e) = apply(&store(StoreMode::Append, 0, "cde"), Some(&old), NOW, 6, 4);
        assert_eq!((r, e), (Response::NotStored, Effect::Keep));
    }

    #[test]
    fn negative_exptime_stores_and_expires_at_once() {
        let mut cmd = store(StoreMode::Set, 0, "v");
        if let Command::Store { exptime, .. } = &mut cmd {
            *exptime = -1;
        }
        assert_eq!(
            apply(&cmd, None, NOW, 9, 10),
            (Response::Stored { cas: 9 }, Effect::Delete)
        );
    }

    #[test]
    fn arithmetic_matches_memcached() {
        assert_eq!(arith_value(b"10", true, 5), Some((15, b"15".to_vec())));
        assert_eq!(arith_value(b"100", false, 1), Some((99, b"99 ".to_vec())));
        assert_eq!(arith_value(b"5", false, 9), Some((0, b"0".to_vec())));
        assert_eq!(
            arith_value(b"18446744073709551615", true, 2),
            Some((1, b"1                   ".to_vec()))
        );
        assert_eq!(arith_value(b"99", true, 1), Some((100, b"100".to_vec())));
        assert_eq!(
            arith_value(b"12\0junk", true, 1),
            Some((13, b"13     ".to_vec()))
        );
        assert_eq!(arith_value(b"abc", true, 1), None);
        let incr = |create| Command::Arith {
            key: Bytes::from_static(b"k"),
            incr: true,
            delta: 1,
            create,
        };
        assert_eq!(
            apply(&incr(None), None, NOW, 3, 10),
            (Response::NotFound, Effect::Keep)
        );
        let (r, e) = apply(&incr(Some((7, 0))), None, NOW, 3, 10);
        assert_eq!(r, Response::Numeric { value: 7, cas: 3 });
        assert!(matches!(e, Effect::Put(Record { flags: 0, .. })));
        assert_eq!(
            apply(&incr(None), Some(&rec("x", 1)), NOW, 3, 10),
            (Response::Error(ErrorReply::NonNumeric), Effect::Keep)
        );
    }

    #[test]
    fn delete_touch_and_gat() {
        let old = rec("v", 5);
        let del = |cas| Command::Delete {
            key: Bytes::from_static(b"k"),
            cas,
        };
        assert_eq!(apply(&del(0), None, NOW, 9, 1).0, Response::NotFound);
        assert_eq!(apply(&del(4), Some(&old), NOW, 9, 1).0, Response::Exists);
        assert_eq!(
            apply(&del(5), Some(&old), NOW, 9, 1),
            (Response::Deleted, Effect::Delete)
        );
        let touch = Command::Touch {
            key: Bytes::from_static(b"k"),
            exptime: 60,
        };
        let (r, e) = apply(&touch, Some(&old), NOW, 9, 1);
        assert_eq!(r, Response::Touched { flags: 7, cas: 5 });
        assert_eq!(
            e,
            Effect::Put(Record {
                expiry: NOW + 60,
                state: ItemState {
                    fetched: true,
                    ..old.state
                },
                ..old.clone()
            })
        );
        let gat = Command::Get {
            keys: vec![Bytes::from_static(b"k")],
            touch: Some(-1),
        };
        let (r, e) = apply(&gat, Some(&old), NOW, 9, 1);
        assert_eq!(
            r,
            Response::Values(vec![old.to_value(&Bytes::from_static(b"k"))])
        );
        assert_eq!(e, Effect::Delete);
    }

    proptest! {
        #![proptest_config(crate::proptest_config("fixtures/proptest-regressions/record.txt"))]
        #[test]
        fn record_round_trip(flags: u32, expiry: u32, cas: u64, value in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let r = Record { flags, expiry, cas, value: Bytes::from(value), state: ItemState::new(expiry) };
            let bytes = r.encode();
            prop_assert_eq!(bytes.len(), RECORD_HEADER + r.value.len());
            prop_assert_eq!(Record::peek(&bytes), Some((expiry, cas)));
            prop_assert_eq!(Record::decode(&bytes), Ok(r));
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Record::decode(&bytes);
            let _ = Record::peek(&bytes);
        }
    }
}
