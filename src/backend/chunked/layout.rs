//! Netflix Rend's layout of a chunked value in memcached: the names of its
//! items (`<key>-meta`, `<key>-<i>`, `<key>-ttl`, hashed names for long
//! keys), the 40-byte metadata record, and how many chunks a value takes.
//! Pure: no I/O; [`super::Chunked`] does the reads and writes.

use bytes::{BufMut, Bytes, BytesMut};
use md5::{Digest, Md5};

use crate::backend::record::ItemState;

pub const META_LEN: usize = 40;
pub const TOKEN_LEN: usize = 16;
/// Rend's default: chunk data of 1097 bytes less the key length, aimed at
/// memcached's 1184-byte slab class.
pub const DEFAULT_CHUNK_BASE: usize = 1097;
/// Client keys longer than this are stored under a hashed name.
pub(super) const MAX_PLAIN_KEY: usize = 240;
/// Hashed names are one byte longer than any plain name, so the two can
/// never meet: a prefix of the key, `#`, and the key's MD5 in hex. With
/// `-meta` that is 246 bytes; chunk numbers may have 8 digits.
pub(super) const HASHED_PREFIX: usize = MAX_PLAIN_KEY + 1 - 33;

/// The metadata record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Meta {
    pub len: u32,
    pub flags: u32,
    pub chunks: u32,
    pub chunk_size: u32,
    pub inserted: u32,
    pub expiry: u32,
    pub token: [u8; TOKEN_LEN],
}

impl Meta {
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(META_LEN);
        for v in [
            self.len,
            self.flags,
            self.chunks,
            self.chunk_size,
            self.inserted,
            self.expiry,
        ] {
            b.put_u32(v);
        }
        b.put_slice(&self.token);
        b.freeze()
    }

    /// Parse a record; `None` unless it is well formed.
    pub fn decode(b: &[u8]) -> Option<Meta> {
        if b.len() != META_LEN {
            return None;
        }
        let u = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let mut token = [0u8; TOKEN_LEN];
        token.copy_from_slice(&b[24..40]);
        let m = Meta {
            len: u(0),
            flags: u(4),
            chunks: u(8),
            chunk_size: u(12),
            inserted: u(16),
            expiry: u(20),
            token,
        };
        (m.chunk_size > 0
            && u64::from(m.chunks) == chunk_count(m.len as usize, m.chunk_size as usize) as u64)
            .then_some(m)
    }
}

pub(super) fn chunk_count(len: usize, chunk_size: usize) -> usize {
    len.div_ceil(chunk_size)
}

/// The name a key's items are stored under.
pub fn base_key(key: &[u8]) -> Bytes {
    if key.len() <= MAX_PLAIN_KEY {
        return Bytes::copy_from_slice(key);
    }
    let digest = Md5::digest(key);
    let mut b = BytesMut::with_capacity(MAX_PLAIN_KEY + 1);
    b.put_slice(&key[..HASHED_PREFIX]);
    b.put_u8(b'#');
    for byte in digest {
        b.put_slice(format!("{byte:02x}").as_bytes());
    }
    b.freeze()
}

pub fn meta_key(base: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(base.len() + 5);
    b.put_slice(base);
    b.put_slice(b"-meta");
    b.freeze()
}

/// `<key>-ttl`: what changes about a value without a new metadata item
/// (rewriting the metadata would change the cas): the token of the value
/// it describes, the expiry touch, gat or a meta `T` set (u32, 0 never),
/// then the item state meta commands see (last access u32, then its bits:
/// [`ItemState::bits`]). Read-modify-write keeps that expiry, as memcached
/// keeps an item's. A record with another value's token is stale and
/// ignored; one of 20 bytes (a rend before meta commands) holds the expiry
/// alone.
pub fn ttl_key(base: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(base.len() + 4);
    b.put_slice(base);
    b.put_slice(b"-ttl");
    b.freeze()
}

/// Bytes of a `-ttl` record.
pub(super) const TTL_RECORD_LEN: usize = TOKEN_LEN + 4 + 4 + 1;

pub(super) fn ttl_record(token: &[u8; TOKEN_LEN], expiry: i64, state: &ItemState) -> Bytes {
    let mut b = BytesMut::with_capacity(TTL_RECORD_LEN);
    b.put_slice(token);
    b.put_u32(u32::try_from(expiry.max(0)).unwrap_or(u32::MAX));
    b.put_u32(state.accessed);
    b.put_u8(state.bits());
    b.freeze()
}

/// A `-ttl` record of the value with `token`: its expiry, and its item
/// state when it has one. `None`: another value's, or not a record.
pub(super) fn parse_ttl(ttl: &[u8], token: &[u8; TOKEN_LEN]) -> Option<(u32, Option<ItemState>)> {
    if ttl.len() < TOKEN_LEN + 4 || ttl[..TOKEN_LEN] != token[..] {
        return None;
    }
    let u = |i: usize| u32::from_be_bytes([ttl[i], ttl[i + 1], ttl[i + 2], ttl[i + 3]]);
    match ttl.len() {
        20 => Some((u(16), None)),
        TTL_RECORD_LEN => Some((u(16), Some(ItemState::from_bits(u(20), ttl[24])))),
        _ => None,
    }
}

pub fn chunk_key(base: &[u8], i: usize) -> Bytes {
    let mut b = BytesMut::with_capacity(base.len() + 8);
    b.put_slice(base);
    b.put_u8(b'-');
    b.put_slice(i.to_string().as_bytes());
    b.freeze()
}

/// The client key's part of an item name this layout writes (`<base>-meta`,
/// `<base>-ttl`, `<base>-<i>`): the bytes before the last `-`. A pool routed
/// by it ([`MemcachedL1::keyed_by`](super::memcached::MemcachedL1::keyed_by))
/// sends every L1 request for one client key on one connection, in order.
pub fn route_key(item: &[u8]) -> &[u8] {
    match item.iter().rposition(|&b| b == b'-') {
        Some(dash) => &item[..dash],
        None => item,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names() {
        assert_eq!(&meta_key(b"foo")[..], b"foo-meta");
        assert_eq!(&chunk_key(b"foo", 12)[..], b"foo-12");
        assert_eq!(&base_key(&[b'k'; 240])[..], &[b'k'; 240][..]);
        let long = base_key(&[b'k'; 250]);
        assert_eq!(long.len(), MAX_PLAIN_KEY + 1);
        assert_eq!(long[HASHED_PREFIX], b'#');
        assert_ne!(long, base_key(&[b'j'; 250]));
    }

    #[test]
    fn meta_layout_is_rends() {
        let m = Meta {
            len: 0x01020304,
            flags: 5,
            chunks: 0x01020304u32.div_ceil(1000),
            chunk_size: 1000,
            inserted: 7,
            expiry: 8,
            token: [9; 16],
        };
        let b = m.encode();
        assert_eq!(b.len(), 40);
        assert_eq!(&b[..8], &[1, 2, 3, 4, 0, 0, 0, 5]);
        assert_eq!(&b[12..16], &1000u32.to_be_bytes());
        assert_eq!(Meta::decode(&b), Some(m));
        assert_eq!(Meta::decode(&b[..39]), None);
    }

    proptest! {
        #![proptest_config(crate::proptest_config("fixtures/proptest-regressions/chunked.txt"))]
        #[test]
        fn meta_round_trip(len in 0u32..100_000_000, size in 1u32..100_000, flags: u32, inserted: u32, expiry: u32, token: [u8; 16]) {
            let m = Meta { len, flags, chunks: len.div_ceil(size), chunk_size: size, inserted, expiry, token };
            prop_assert_eq!(Meta::decode(&m.encode()), Some(m));
        }

        #[test]
        fn split_and_reassemble(value in proptest::collection::vec(any::<u8>(), 0..5000), size in 1usize..700) {
            let count = chunk_count(value.len(), size);
            let mut out = Vec::new();
            for i in 0..count {
                let data = &value[i * size..((i + 1) * size).min(value.len())];
                let mut item = data.to_vec();
                item.resize(size, 0);
                out.extend_from_slice(&item[..(value.len() - i * size).min(size)]);
            }
            prop_assert_eq!(out, value);
        }
    }
}
