//! Self-verifying values: what a value must contain ([`value_for`],
//! [`flags_for`], [`len_for`]) is computed from (seed, key) alone, so a
//! reader can check it byte for byte ([`verify`]) without shared state with
//! the writer.

use bytes::{BufMut, Bytes, BytesMut};
use rand::RngCore;

use super::ValueSizes;

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
pub(super) fn mix64(mut z: u64) -> u64 {
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
