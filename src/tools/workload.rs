//! The workload model the load tools share: which key a request touches
//! ([`KeyDist`], [`KeyGen`]), how big a value is ([`ValueSizes`]), which
//! command is sent ([`Op`], [`Mix`]), what a value must contain so that a
//! reader can check it byte for byte ([`value_for`], [`flags_for`],
//! [`verify`], [`len_for`]), and how one `--seed` becomes every worker's
//! random generator ([`worker_rng`]).
//!
//! Everything here is pure and deterministic given a seed, so a run can be
//! repeated exactly and a verifying reader needs no shared state with the
//! writer: the expected value is recomputed from (seed, key).

use std::fmt;
use std::str::FromStr;

use bytes::{BufMut, Bytes, BytesMut};
use rand::distributions::{Distribution, WeightedIndex};
use rand::rngs::SmallRng;
use rand::{Rng, RngCore, SeedableRng};
use rand_distr::Zipf;

/// memcached's key limit; a generated key must fit it.
pub const MAX_KEY_LENGTH: usize = 250;

/// Prefix of generated keys when there is room for it: it makes tool
/// traffic recognisable in a server's dump or a packet capture.
const KEY_PREFIX: &[u8] = b"key:";

// ---------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------

/// How key indices are drawn from `0..key_space`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum KeyDist {
    /// Every key equally likely.
    Uniform,
    /// Zipf with exponent `s` (> 0): index 0 is the hottest key.
    Zipf(f64),
    /// 0, 1, 2, … wrapping at the key space, per generator.
    Sequential,
}

impl FromStr for KeyDist {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const FORMS: &str = "expected uniform, zipf:S (S > 0, e.g. zipf:0.99) or sequential";
        let t = s.trim();
        match t {
            "uniform" => return Ok(KeyDist::Uniform),
            "sequential" => return Ok(KeyDist::Sequential),
            _ => {}
        }
        if let Some(exp) = t.strip_prefix("zipf:") {
            let s_val: f64 = exp
                .trim()
                .parse()
                .map_err(|_| format!("bad zipf exponent {exp:?}: {FORMS}"))?;
            // NaN and infinities fail this test too: Zipf needs a finite
            // positive exponent (0 would just be uniform, said the slow way).
            if !(s_val.is_finite() && s_val > 0.0) {
                return Err(format!("zipf exponent must be > 0, got {exp:?}: {FORMS}"));
            }
            return Ok(KeyDist::Zipf(s_val));
        }
        Err(format!("unknown key distribution {s:?}: {FORMS}"))
    }
}

impl fmt::Display for KeyDist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyDist::Uniform => f.write_str("uniform"),
            KeyDist::Zipf(s) => write!(f, "zipf:{s}"),
            KeyDist::Sequential => f.write_str("sequential"),
        }
    }
}

/// Draws key indices and turns them into fixed-length printable keys.
///
/// One per worker: the sequential cursor is per generator, so workers
/// walking the key space in step do not share a lock.
#[derive(Debug, Clone)]
pub struct KeyGen {
    key_space: u64,
    dist: KeyDist,
    key_length: usize,
    /// Built once: `Zipf::new` does floating-point set-up we do not want
    /// per request.
    zipf: Option<Zipf<f64>>,
    /// Digits of the index in a key (zero-padded to this width).
    digits: usize,
    /// Whether `key:` precedes the digits (only when there is room).
    prefixed: bool,
    next_seq: u64,
}

impl KeyGen {
    /// `key_space` ≥ 1 keys of exactly `key_length` bytes (1..=250).
    ///
    /// Fails when the length cannot hold the decimal digits of the largest
    /// index, since keys would then collide.
    pub fn new(key_space: u64, dist: KeyDist, key_length: usize) -> Result<KeyGen, String> {
        if key_space == 0 {
            return Err("key space must be at least 1".to_string());
        }
        if !(1..=MAX_KEY_LENGTH).contains(&key_length) {
            return Err(format!(
                "key length must be 1..={MAX_KEY_LENGTH}, got {key_length}"
            ));
        }
        let needed = decimal_digits(key_space - 1);
        if key_length < needed {
            return Err(format!(
                "key length {key_length} cannot hold {key_space} distinct keys \
                 (needs at least {needed} bytes)"
            ));
        }
        let zipf = match dist {
            KeyDist::Zipf(s) => Some(
                Zipf::new(key_space, s).map_err(|e| format!("zipf:{s} over {key_space}: {e}"))?,
            ),
            KeyDist::Uniform | KeyDist::Sequential => None,
        };
        // Prefer `key:` + digits; fall back to bare digits when the length
        // is too short for the prefix, so short keys still work.
        let prefixed = key_length >= KEY_PREFIX.len() + needed;
        let digits = if prefixed {
            key_length - KEY_PREFIX.len()
        } else {
            key_length
        };
        Ok(KeyGen {
            key_space,
            dist,
            key_length,
            zipf,
            digits,
            prefixed,
            next_seq: 0,
        })
    }

    pub fn key_space(&self) -> u64 {
        self.key_space
    }

    pub fn key_length(&self) -> usize {
        self.key_length
    }

    pub fn dist(&self) -> KeyDist {
        self.dist
    }

    /// The next key index, in `0..key_space`.
    pub fn next_index(&mut self, rng: &mut impl Rng) -> u64 {
        match self.dist {
            KeyDist::Uniform => rng.gen_range(0..self.key_space),
            KeyDist::Sequential => {
                let i = self.next_seq;
                self.next_seq = if i + 1 >= self.key_space { 0 } else { i + 1 };
                i
            }
            KeyDist::Zipf(_) => match &self.zipf {
                // Rank r (1 = hottest) becomes index r-1. The sample is a
                // whole number in [1, n] but arrives as f64; clamp in case
                // rounding near a huge n pushes it over.
                Some(z) => {
                    let r = z.sample(rng);
                    (r as u64).saturating_sub(1).min(self.key_space - 1)
                }
                None => rng.gen_range(0..self.key_space),
            },
        }
    }

    /// The key for `index`: exactly `key_length` printable bytes, distinct
    /// for distinct indices in `0..key_space`. An index outside the key space
    /// is reduced modulo it so the length promise always holds.
    pub fn key(&self, index: u64) -> Bytes {
        let index = index % self.key_space;
        let mut out = BytesMut::with_capacity(self.key_length);
        if self.prefixed {
            out.put_slice(KEY_PREFIX);
        }
        let mut digits = [0u8; 20];
        let n = write_decimal(index, &mut digits);
        // Zero-pad on the left up to the width; `new` made sure n fits.
        out.put_bytes(b'0', self.digits.saturating_sub(n));
        out.put_slice(&digits[20 - n..]);
        out.freeze()
    }

    /// Convenience: draw an index and return its key.
    pub fn next_key(&mut self, rng: &mut impl Rng) -> Bytes {
        let i = self.next_index(rng);
        self.key(i)
    }
}

fn decimal_digits(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 10 {
        v /= 10;
        n += 1;
    }
    n
}

/// Writes `v` right-aligned into `buf`, returning how many digits it took.
fn write_decimal(mut v: u64, buf: &mut [u8; 20]) -> usize {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    buf.len() - i
}

// ---------------------------------------------------------------------------
// Value sizes
// ---------------------------------------------------------------------------

/// Value sizes in bytes: `N`, `A-B` (inclusive, uniform) or a weighted list
/// `100:90,1000:9,100000:1` (size:weight).
#[derive(Debug, Clone, PartialEq)]
pub enum ValueSizes {
    Fixed(usize),
    Range(usize, usize),
    Weighted {
        /// (size, weight) in the order given, for display.
        entries: Vec<(usize, u32)>,
        /// Built once so sampling is O(log n) without re-summing weights.
        index: WeightedIndex<u32>,
    },
}

impl ValueSizes {
    pub fn sample(&self, rng: &mut impl Rng) -> usize {
        match self {
            ValueSizes::Fixed(n) => *n,
            ValueSizes::Range(a, b) => rng.gen_range(*a..=*b),
            ValueSizes::Weighted { entries, index } => {
                // The index was built from `entries`, so it is in range;
                // `get` keeps that an invariant rather than a panic site.
                entries.get(index.sample(rng)).map_or(0, |e| e.0)
            }
        }
    }

    /// The largest size this can produce (for sizing buffers).
    pub fn max(&self) -> usize {
        match self {
            ValueSizes::Fixed(n) => *n,
            ValueSizes::Range(_, b) => *b,
            ValueSizes::Weighted { entries, .. } => entries
                .iter()
                .filter(|e| e.1 > 0)
                .map(|e| e.0)
                .max()
                .unwrap_or(0),
        }
    }
}

impl FromStr for ValueSizes {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const FORMS: &str = "expected N, A-B or a weighted list like 100:90,1000:9,100000:1";
        let t = s.trim();
        let size = |v: &str| -> Result<usize, String> {
            v.trim()
                .parse::<usize>()
                .map_err(|_| format!("bad size {v:?} in {s:?}: {FORMS}"))
        };
        if t.contains(':') {
            let mut entries = Vec::new();
            for part in t.split(',') {
                let (sz, w) = part
                    .split_once(':')
                    .ok_or_else(|| format!("bad entry {part:?} in {s:?}: {FORMS}"))?;
                let w: u32 = w
                    .trim()
                    .parse()
                    .map_err(|_| format!("bad weight {w:?} in {s:?}: {FORMS}"))?;
                entries.push((size(sz)?, w));
            }
            let index = WeightedIndex::new(entries.iter().map(|e| e.1))
                .map_err(|_| format!("value sizes {s:?} need a positive total weight: {FORMS}"))?;
            Ok(ValueSizes::Weighted { entries, index })
        } else if let Some((a, b)) = t.split_once('-') {
            let (a, b) = (size(a)?, size(b)?);
            if a > b {
                return Err(format!("range {s:?} is empty (A > B): {FORMS}"));
            }
            Ok(ValueSizes::Range(a, b))
        } else {
            Ok(ValueSizes::Fixed(size(t)?))
        }
    }
}

impl fmt::Display for ValueSizes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValueSizes::Fixed(n) => write!(f, "{n}"),
            ValueSizes::Range(a, b) => write!(f, "{a}-{b}"),
            ValueSizes::Weighted { entries, .. } => {
                for (i, (sz, w)) in entries.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{sz}:{w}")?;
                }
                Ok(())
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------

/// A command `blast` can send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    Set,
    Add,
    Replace,
    Append,
    Prepend,
    Get,
    MultiGet,
    Gets,
    Cas,
    Incr,
    Decr,
    Delete,
    Touch,
    Gat,
}

impl Op {
    /// Every op, in a fixed order (reports list them in this order).
    pub const ALL: [Op; 14] = [
        Op::Set,
        Op::Add,
        Op::Replace,
        Op::Append,
        Op::Prepend,
        Op::Get,
        Op::MultiGet,
        Op::Gets,
        Op::Cas,
        Op::Incr,
        Op::Decr,
        Op::Delete,
        Op::Touch,
        Op::Gat,
    ];

    /// Lowercase name, as accepted by `--mix` and shown in reports.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Set => "set",
            Op::Add => "add",
            Op::Replace => "replace",
            Op::Append => "append",
            Op::Prepend => "prepend",
            Op::Get => "get",
            Op::MultiGet => "multiget",
            Op::Gets => "gets",
            Op::Cas => "cas",
            Op::Incr => "incr",
            Op::Decr => "decr",
            Op::Delete => "delete",
            Op::Touch => "touch",
            Op::Gat => "gat",
        }
    }

    fn valid_names() -> String {
        Op::ALL.iter().map(Op::name).collect::<Vec<_>>().join(", ")
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Op {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim().to_ascii_lowercase();
        // The issue spells it "multi-get"; accept that as well.
        let t = if t == "multi-get" { "multiget" } else { &t };
        Op::ALL
            .iter()
            .copied()
            .find(|op| op.name() == t)
            .ok_or_else(|| {
                format!(
                    "unknown command {s:?}; valid commands: {}",
                    Op::valid_names()
                )
            })
    }
}

/// A weighted command mix, `get=80,set=20,...`.
#[derive(Debug, Clone, PartialEq)]
pub struct Mix {
    /// (op, weight) in the order given, zero weights included.
    entries: Vec<(Op, u32)>,
    index: WeightedIndex<u32>,
}

impl Mix {
    pub fn sample(&self, rng: &mut impl Rng) -> Op {
        // The index was built from `entries`; `get` keeps that an invariant
        // rather than a panic site.
        self.entries
            .get(self.index.sample(rng))
            .map_or(Op::Get, |e| e.0)
    }

    /// Ops with a positive weight, in the order given.
    pub fn ops(&self) -> Vec<Op> {
        self.entries
            .iter()
            .filter(|e| e.1 > 0)
            .map(|e| e.0)
            .collect()
    }

    /// Weight of `op` (0 if absent).
    pub fn weight(&self, op: Op) -> u32 {
        self.entries.iter().find(|e| e.0 == op).map_or(0, |e| e.1)
    }

    /// (op, weight) pairs as given.
    pub fn entries(&self) -> &[(Op, u32)] {
        &self.entries
    }
}

impl FromStr for Mix {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut entries: Vec<(Op, u32)> = Vec::new();
        for part in s.split(',') {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let (name, w) = part.split_once('=').ok_or_else(|| {
                format!("bad mix entry {part:?} in {s:?}: expected name=weight, e.g. get=80,set=20")
            })?;
            let op: Op = name.parse()?;
            let w: u32 = w
                .trim()
                .parse()
                .map_err(|_| format!("bad weight {w:?} for {op} in mix {s:?}"))?;
            // A repeated name is almost certainly a typo for another one.
            if entries.iter().any(|e| e.0 == op) {
                return Err(format!("{op} appears twice in mix {s:?}"));
            }
            entries.push((op, w));
        }
        let index = WeightedIndex::new(entries.iter().map(|e| e.1)).map_err(|_| {
            format!(
                "mix {s:?} needs at least one command with a positive weight \
                 (e.g. get=80,set=20); valid commands: {}",
                Op::valid_names()
            )
        })?;
        Ok(Mix { entries, index })
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (op, w)) in self.entries.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{op}={w}")?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Self-verifying values
// ---------------------------------------------------------------------------

/// SplitMix64: a tiny, fast, well-mixed generator whose output is fixed by
/// this code alone (unlike `SmallRng`, which may change between rand
/// versions or platforms), so a value written by one build can be checked by
/// another.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix64(self.0)
    }
}

impl RngCore for SplitMix64 {
    fn next_u32(&mut self) -> u32 {
        (self.next() >> 32) as u32
    }
    fn next_u64(&mut self) -> u64 {
        self.next()
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for chunk in dest.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

/// SplitMix64's finaliser: spreads every input bit over the output.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A 64-bit hash of (seed, domain, key). The domain keeps content, flags and
/// length independent of each other for the same key.
fn key_hash(seed: u64, domain: u64, key: &[u8]) -> u64 {
    // FNV-1a over the key, then mixed with the seed: cheap and adequate, as
    // this only needs to spread keys, not resist an adversary.
    let mut h: u64 = 0xCBF2_9CE4_8422_2325;
    for &b in key {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01B3);
    }
    mix64(h ^ mix64(seed ^ domain.wrapping_mul(0x9E37_79B9_7F4A_7C15)))
}

const DOMAIN_VALUE: u64 = 1;
const DOMAIN_FLAGS: u64 = 2;
const DOMAIN_LEN: u64 = 3;

/// Value bytes are drawn from this 64-character alphabet so that a value seen
/// in a dump or a mismatch report is readable.
const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// The value stored under `key` in a run with `seed`: `len` deterministic
/// printable bytes. A shorter length gives a prefix of a longer one, so a
/// reader can check a value of any length.
pub fn value_for(seed: u64, key: &[u8], len: usize) -> Bytes {
    let mut out = BytesMut::with_capacity(len);
    fill_value(seed, key, len, &mut out);
    out.freeze()
}

fn fill_value(seed: u64, key: &[u8], len: usize, out: &mut BytesMut) {
    let mut g = SplitMix64(key_hash(seed, DOMAIN_VALUE, key));
    let mut left = len;
    while left > 0 {
        let w = g.next().to_le_bytes();
        let n = left.min(8);
        for &b in &w[..n] {
            out.put_u8(ALPHABET[usize::from(b & 63)]);
        }
        left -= n;
    }
}

/// The flags stored with `key` in a run with `seed`.
pub fn flags_for(seed: u64, key: &[u8]) -> u32 {
    (key_hash(seed, DOMAIN_FLAGS, key) >> 32) as u32
}

/// A deterministic size for `key` drawn from `sizes`, so a reader knows the
/// length the writer chose without being told.
pub fn len_for(seed: u64, key: &[u8], sizes: &ValueSizes) -> usize {
    let mut g = SplitMix64(key_hash(seed, DOMAIN_LEN, key));
    sizes.sample(&mut g)
}

/// What differed between a value read back and the one expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Mismatch {
    #[error("flags {got} != expected {expected}")]
    Flags { expected: u32, got: u32 },
    #[error("byte {offset} of {len} is {got:#04x}, expected {expected:#04x}")]
    Data {
        offset: usize,
        len: usize,
        expected: u8,
        got: u8,
    },
}

/// Checks a value read back for `key`: flags must be [`flags_for`] and the
/// data must equal [`value_for`] at the data's own length (any length is
/// accepted, since append/prepend or a size mix may change it).
pub fn verify(seed: u64, key: &[u8], flags: u32, data: &[u8]) -> Result<(), Mismatch> {
    let expected_flags = flags_for(seed, key);
    if flags != expected_flags {
        return Err(Mismatch::Flags {
            expected: expected_flags,
            got: flags,
        });
    }
    // Regenerate chunk by chunk rather than allocating a full copy: values
    // can be megabytes.
    let mut g = SplitMix64(key_hash(seed, DOMAIN_VALUE, key));
    for (ci, chunk) in data.chunks(8).enumerate() {
        let w = g.next().to_le_bytes();
        for (j, (&got, &r)) in chunk.iter().zip(w.iter()).enumerate() {
            let expected = ALPHABET[usize::from(r & 63)];
            if got != expected {
                return Err(Mismatch::Data {
                    offset: ci * 8 + j,
                    len: data.len(),
                    expected,
                    got,
                });
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Seeds
// ---------------------------------------------------------------------------

/// Worker `worker`'s generator, derived from the run's one `--seed`
/// (rpc-perf style): the same seed gives every worker the same stream again,
/// and workers get independent streams.
pub fn worker_rng(seed: u64, worker: usize) -> SmallRng {
    // Two rounds of mixing so seed s/worker w+1 and seed s+1/worker w do not
    // land on related states.
    let w = (worker as u64).wrapping_add(1);
    SmallRng::seed_from_u64(mix64(mix64(seed) ^ w.wrapping_mul(0xD6E8_FEB8_6659_FD93)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn key_dist_parses() {
        assert_eq!("uniform".parse::<KeyDist>(), Ok(KeyDist::Uniform));
        assert_eq!("sequential".parse::<KeyDist>(), Ok(KeyDist::Sequential));
        assert_eq!("zipf:0.99".parse::<KeyDist>(), Ok(KeyDist::Zipf(0.99)));
        assert_eq!("zipf:1.2".parse::<KeyDist>(), Ok(KeyDist::Zipf(1.2)));
        for bad in [
            "", "zipf", "zipf:", "zipf:0", "zipf:-1", "zipf:nan", "zipf:inf", "zipf:x", "normal",
        ] {
            let e = bad.parse::<KeyDist>().unwrap_err();
            assert!(e.contains("uniform") && e.contains("zipf:S"), "{bad}: {e}");
        }
        // Display round-trips.
        let d: KeyDist = "zipf:0.99".parse().unwrap();
        assert_eq!(d.to_string().parse::<KeyDist>(), Ok(d));
    }

    #[test]
    fn keygen_rejects_bad_shapes() {
        assert!(KeyGen::new(0, KeyDist::Uniform, 10).is_err());
        assert!(KeyGen::new(10, KeyDist::Uniform, 0).is_err());
        assert!(KeyGen::new(10, KeyDist::Uniform, 251).is_err());
        // 1000 keys need 3 digits (indices 0..=999).
        assert!(KeyGen::new(1000, KeyDist::Uniform, 2).is_err());
        assert!(KeyGen::new(1000, KeyDist::Uniform, 3).is_ok());
        assert!(KeyGen::new(1001, KeyDist::Uniform, 3).is_err());
        assert!(KeyGen::new(u64::MAX, KeyDist::Uniform, 20).is_ok());
        assert!(KeyGen::new(u64::MAX, KeyDist::Uniform, 19).is_err());
    }

    #[test]
    fn keys_are_fixed_length_printable_and_unique() {
        for (space, len) in [
            (1000u64, 3usize),
            (1000, 5),
            (1000, 7),
            (1000, 16),
            (7, 250),
        ] {
            let g = KeyGen::new(space, KeyDist::Uniform, len).unwrap();
            let mut seen = std::collections::HashSet::new();
            for i in 0..space {
                let k = g.key(i);
                assert_eq!(k.len(), len);
                assert!(k.iter().all(|b| b.is_ascii_graphic()), "{k:?}");
                assert!(seen.insert(k));
            }
            // Out-of-range indices still give a well-formed key.
            assert_eq!(g.key(u64::MAX).len(), len);
        }
        let g = KeyGen::new(1000, KeyDist::Uniform, 10).unwrap();
        assert_eq!(&g.key(42)[..], b"key:000042");
        let g = KeyGen::new(1000, KeyDist::Uniform, 5).unwrap();
        assert_eq!(&g.key(42)[..], b"00042");
        let g = KeyGen::new(u64::MAX, KeyDist::Uniform, 24).unwrap();
        assert_eq!(&g.key(u64::MAX - 1)[..], b"key:18446744073709551614");
    }

    fn sequence(dist: KeyDist, seed: u64, n: usize) -> Vec<u64> {
        let mut g = KeyGen::new(1000, dist, 16).unwrap();
        let mut rng = worker_rng(seed, 0);
        (0..n).map(|_| g.next_index(&mut rng)).collect()
    }

    #[test]
    fn same_seed_same_sequence() {
        for dist in [KeyDist::Uniform, KeyDist::Zipf(0.99), KeyDist::Zipf(1.2)] {
            let a = sequence(dist, 7, 1000);
            assert_eq!(a, sequence(dist, 7, 1000));
            assert_ne!(a, sequence(dist, 8, 1000));
            assert!(a.iter().all(|&i| i < 1000));
        }
        // Workers of one seed get different streams; the same worker again
        // gets the same one.
        let mut a = worker_rng(1, 0);
        let mut b = worker_rng(1, 1);
        let mut a2 = worker_rng(1, 0);
        let va: Vec<u64> = (0..8).map(|_| a.gen()).collect();
        let vb: Vec<u64> = (0..8).map(|_| b.gen()).collect();
        let va2: Vec<u64> = (0..8).map(|_| a2.gen()).collect();
        assert_ne!(va, vb);
        assert_eq!(va, va2);
    }

    fn top10_share(dist: KeyDist) -> f64 {
        let mut g = KeyGen::new(1000, dist, 16).unwrap();
        let mut rng = worker_rng(42, 0);
        let mut counts: HashMap<u64, u64> = HashMap::new();
        let n = 100_000;
        for _ in 0..n {
            *counts.entry(g.next_index(&mut rng)).or_default() += 1;
        }
        let mut c: Vec<u64> = counts.into_values().collect();
        c.sort_unstable_by(|a, b| b.cmp(a));
        c.iter().take(10).sum::<u64>() as f64 / n as f64
    }

    #[test]
    fn zipf_is_skewed_uniform_is_not() {
        let z = top10_share(KeyDist::Zipf(1.0));
        let u = top10_share(KeyDist::Uniform);
        // Zipf(1) over 1000 keys: H(10)/H(1000) ≈ 2.93/7.49 ≈ 39%.
        assert!(z > 0.30, "zipf top-10 share {z}");
        // Uniform: 10/1000 = 1% plus noise.
        assert!(u < 0.03, "uniform top-10 share {u}");
        // And the hottest zipf key is index 0 (rank 1).
        let mut g = KeyGen::new(1000, KeyDist::Zipf(1.0), 16).unwrap();
        let mut rng = worker_rng(3, 0);
        let zeros = (0..10_000).filter(|_| g.next_index(&mut rng) == 0).count();
        assert!(zeros > 1000, "index 0 drawn {zeros} times of 10000");
    }

    #[test]
    fn sequential_wraps_per_generator() {
        let mut g = KeyGen::new(3, KeyDist::Sequential, 8).unwrap();
        let mut rng = worker_rng(0, 0);
        let v: Vec<u64> = (0..7).map(|_| g.next_index(&mut rng)).collect();
        assert_eq!(v, [0, 1, 2, 0, 1, 2, 0]);
        let mut h = KeyGen::new(3, KeyDist::Sequential, 8).unwrap();
        assert_eq!(h.next_index(&mut rng), 0);
        let mut one = KeyGen::new(1, KeyDist::Sequential, 1).unwrap();
        assert_eq!(one.next_index(&mut rng), 0);
        assert_eq!(one.next_index(&mut rng), 0);
    }

    #[test]
    fn value_sizes_parse() {
        assert_eq!("100".parse::<ValueSizes>(), Ok(ValueSizes::Fixed(100)));
        assert_eq!("0".parse::<ValueSizes>(), Ok(ValueSizes::Fixed(0)));
        assert_eq!("10-20".parse::<ValueSizes>(), Ok(ValueSizes::Range(10, 20)));
        assert_eq!("5-5".parse::<ValueSizes>(), Ok(ValueSizes::Range(5, 5)));
        let w: ValueSizes = "100:90,1000:9,100000:1".parse().unwrap();
        assert_eq!(w.max(), 100_000);
        assert_eq!(w.to_string(), "100:90,1000:9,100000:1");
        // A zero-weight entry is never drawn, so it does not count for max.
        let w: ValueSizes = "100:1,5000:0".parse().unwrap();
        assert_eq!(w.max(), 100);
        assert_eq!("10-20".parse::<ValueSizes>().unwrap().max(), 20);
        for bad in [
            "",
            "x",
            "-1",
            "20-10",
            "1-",
            "-",
            "100:0",
            "100:0,200:0",
            "100:x",
            "a:1",
            "100:1,",
            "1.5",
        ] {
            assert!(bad.parse::<ValueSizes>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn value_sizes_sample() {
        let mut rng = worker_rng(9, 0);
        let r: ValueSizes = "10-12".parse().unwrap();
        let mut seen = [0u32; 3];
        for _ in 0..3000 {
            let s = r.sample(&mut rng);
            assert!((10..=12).contains(&s));
            seen[s - 10] += 1;
        }
        assert!(seen.iter().all(|&c| c > 800), "{seen:?}");

        let w: ValueSizes = "100:90,1000:9,100000:1".parse().unwrap();
        let mut counts: HashMap<usize, u32> = HashMap::new();
        let n = 100_000;
        for _ in 0..n {
            *counts.entry(w.sample(&mut rng)).or_default() += 1;
        }
        assert_eq!(counts.len(), 3);
        let share = |s| f64::from(counts[&s]) / f64::from(n);
        assert!((share(100) - 0.90).abs() < 0.01, "{counts:?}");
        assert!((share(1000) - 0.09).abs() < 0.01, "{counts:?}");
        assert!((share(100_000) - 0.01).abs() < 0.005, "{counts:?}");
    }

    #[test]
    fn ops_and_mix_parse() {
        for op in Op::ALL {
            assert_eq!(op.name().parse::<Op>(), Ok(op));
            assert_eq!(op.name(), op.name().to_lowercase());
        }
        assert_eq!("multi-get".parse::<Op>(), Ok(Op::MultiGet));
        let e = "frobnicate".parse::<Op>().unwrap_err();
        assert!(e.contains("multiget") && e.contains("gat"), "{e}");

        let m: Mix = "get=80,set=20".parse().unwrap();
        assert_eq!(m.ops(), [Op::Get, Op::Set]);
        assert_eq!(m.weight(Op::Get), 80);
        assert_eq!(m.weight(Op::Delete), 0);
        assert_eq!(m.to_string(), "get=80,set=20");
        let m: Mix = " get = 1 , delete=0 ,cas=3".parse().unwrap();
        assert_eq!(m.ops(), [Op::Get, Op::Cas]);

        let e = "get=80,fetch=20".parse::<Mix>().unwrap_err();
        assert!(e.contains("fetch") && e.contains("multiget"), "{e}");
        for bad in [
            "",
            "get",
            "get=",
            "get=-1",
            "get=x",
            "get=0",
            "get=0,set=0",
            "get=1,get=2",
        ] {
            assert!(bad.parse::<Mix>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn mix_respects_weights() {
        let m: Mix = "get=80,set=20,delete=0".parse().unwrap();
        let mut rng = worker_rng(5, 2);
        let mut counts: HashMap<Op, u32> = HashMap::new();
        for _ in 0..100_000 {
            *counts.entry(m.sample(&mut rng)).or_default() += 1;
        }
        assert!(!counts.contains_key(&Op::Delete));
        let g = f64::from(counts[&Op::Get]) / 100_000.0;
        assert!((g - 0.8).abs() < 0.01, "{counts:?}");
    }

    #[test]
    fn values_round_trip_and_detect_damage() {
        let key = b"key:000042";
        let v = value_for(1, key, 1000);
        assert_eq!(v.len(), 1000);
        assert!(v.iter().all(|b| b.is_ascii_graphic()));
        assert_eq!(v, value_for(1, key, 1000));
        // Shorter is a prefix of longer, so any length verifies.
        assert_eq!(&value_for(1, key, 13)[..], &v[..13]);
        assert_ne!(v, value_for(2, key, 1000));
        assert_ne!(v, value_for(1, b"key:000043", 1000));

        let f = flags_for(1, key);
        assert_eq!(verify(1, key, f, &v), Ok(()));
        assert_eq!(verify(1, key, f, &v[..999]), Ok(()));
        assert_eq!(verify(1, key, f, b""), Ok(()));
        assert_eq!(
            verify(1, key, f ^ 1, &v),
            Err(Mismatch::Flags {
                expected: f,
                got: f ^ 1
            })
        );
        for pos in [0usize, 7, 8, 500, 999] {
            let mut bad = v.to_vec();
            bad[pos] ^= 0x01;
            match verify(1, key, f, &bad) {
                Err(Mismatch::Data { offset, len, .. }) => {
                    assert_eq!((offset, len), (pos, 1000));
                }
                other => panic!("flip at {pos} gave {other:?}"),
            }
        }
        // Another key's value does not pass for this one.
        let other = value_for(1, b"key:000043", 100);
        assert!(verify(1, key, f, &other).is_err());
    }

    #[test]
    fn len_for_is_deterministic_and_in_range() {
        let sizes: ValueSizes = "10-1000".parse().unwrap();
        let mut distinct = std::collections::HashSet::new();
        for i in 0..200u32 {
            let key = format!("key:{i}");
            let l = len_for(3, key.as_bytes(), &sizes);
            assert!((10..=1000).contains(&l));
            assert_eq!(l, len_for(3, key.as_bytes(), &sizes));
            distinct.insert(l);
        }
        // Different keys get different lengths (not one constant).
        assert!(distinct.len() > 100, "{}", distinct.len());
        assert_eq!(len_for(3, b"k", &ValueSizes::Fixed(77)), 77);
    }
}
