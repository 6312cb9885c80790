//! Which key a request touches: key indices drawn from `0..key_space` as
//! [`KeyDist`] says, turned by [`KeyGen`] into fixed-length printable keys.

use std::fmt;
use std::str::FromStr;

use bytes::{BufMut, Bytes, BytesMut};
use rand::distributions::Distribution;
use rand::Rng;
use rand_distr::Zipf;

/// memcached's key limit; a generated key must fit it.
pub const MAX_KEY_LENGTH: usize = 250;

/// Prefix of generated keys when there is room for it: it makes tool
/// traffic recognisable in a server's dump or a packet capture.
const KEY_PREFIX: &[u8] = b"key:";

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
