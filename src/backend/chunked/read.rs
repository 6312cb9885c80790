//! Reading chunked values: the metadata of every key (and its `-ttl`
//! record) in one pipelined round trip, then every chunk of every valid
//! metadata in another, whatever the chunk count; a value is a hit only when
//! every chunk is there and carries the metadata's token.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;

use bytes::{BufMut, Bytes, BytesMut};

use super::layout::{base_key, chunk_key, meta_key, parse_ttl, ttl_key, Meta, TOKEN_LEN};
use super::{absolute, now_unix, unexpected, Chunked, Found};
use crate::backend::record::ItemState;
use crate::backend::{Backend, BackendError};
use crate::protocol::expiry::THIRTY_DAYS;
use crate::protocol::{Command, Response, Value};

/// Each metadata item read, by its key: the record (`None` when it does
/// not parse or passes rend's limits), memcached's cas of it, and the item
/// state its `-ttl` record holds.
type Metas = HashMap<Bytes, (Option<Meta>, u64, Option<ItemState>)>;

impl<B: Backend + Clone> Chunked<B> {
    /// Read and verify `keys` (touching every item when `touch` is given):
    /// two pipelined round trips whatever the chunk count.
    pub(super) async fn read(
        &self,
        keys: &[Bytes],
        touch: Option<i64>,
        with_ttl: bool,
    ) -> Result<Vec<Found>, BackendError> {
        let bases: Vec<Bytes> = keys.iter().map(|k| base_key(k)).collect();
        let touch = touch.map(absolute);
        let metas = self.read_metas(&bases, touch, with_ttl).await?;
        let chunks = self.read_chunks(&bases, &metas, touch).await?;
        // memcached takes a gat's keys one by one: a gat that expires the
        // item serves a key named twice only the first time.
        let expiring = touch.is_some_and(|t| t < 0 || (t > THIRTY_DAYS && t <= now_unix()));
        let mut served = HashSet::new();
        Ok(keys
            .iter()
            .zip(&bases)
            .map(|(key, base)| {
                if expiring && !served.insert(base.clone()) {
                    return Found::Absent;
                }
                match metas.get(&meta_key(base)) {
                    None => Found::Absent,
                    Some((None, cas, _)) => Found::Invalid { meta_cas: *cas },
                    Some((Some(meta), cas, state)) => {
                        // A value no meta command has seen: stored when its
                        // metadata was written, not fetched.
                        let state = state.unwrap_or_else(|| ItemState::new(meta.inserted));
                        self.assemble(key, base, meta, *cas, &chunks, state)
                    }
                }
            })
            .collect())
    }

    /// The metadata of every key in `bases`, and with `with_ttl` the
    /// expiry a touch recorded in `-ttl`, which stands while the value it
    /// touched does.
    async fn read_metas(
        &self,
        bases: &[Bytes],
        touch: Option<i64>,
        with_ttl: bool,
    ) -> Result<Metas, BackendError> {
        let mut meta_keys: Vec<Bytes> = bases.iter().map(|b| meta_key(b)).collect();
        if with_ttl {
            meta_keys.extend(bases.iter().map(|b| ttl_key(b)));
        }
        meta_keys.sort();
        meta_keys.dedup();
        let metas = match self
            .inner
            .call(&Command::Get {
                keys: meta_keys,
                touch,
            })
            .await?
        {
            Response::Values(v) => v,
            other => return Err(unexpected(other)),
        };
        let mut ttls: HashMap<Bytes, Bytes> = HashMap::new();
        let mut metas: Metas = metas
            .into_iter()
            .filter_map(|v| {
                if with_ttl && v.key.ends_with(b"-ttl") {
                    ttls.insert(v.key, v.data);
                    return None;
                }
                // Metadata may come from another process sharing this
                // memcached: past rend's own limits it is a miss, never an
                // allocation of what it claims.
                let meta = Meta::decode(&v.data).filter(|m| self.within_limits(m));
                Some((v.key.clone(), (meta, v.cas, None)))
            })
            .collect();
        // A touch's expiry stands while the value it touched does.
        for base in bases {
            let Some(ttl) = ttls.get(&ttl_key(base)) else {
                continue;
            };
            if let Some((Some(meta), _, state)) = metas.get_mut(&meta_key(base)) {
                if let Some((expiry, kept)) = parse_ttl(ttl, &meta.token) {
                    meta.expiry = expiry;
                    *state = kept;
                }
            }
        }
        Ok(metas)
    }

    /// Every chunk of every valid metadata, in one pipeline, by its key.
    async fn read_chunks(
        &self,
        bases: &[Bytes],
        metas: &Metas,
        touch: Option<i64>,
    ) -> Result<HashMap<Bytes, Bytes>, BackendError> {
        let mut chunk_keys = Vec::new();
        let mut seen = HashSet::new();
        for base in bases {
            if !seen.insert(base.clone()) {
                continue;
            }
            if let Some((Some(m), _, _)) = metas.get(&meta_key(base)) {
                for i in 0..m.chunks as usize {
                    chunk_keys.push(chunk_key(base, i));
                }
            }
        }
        if chunk_keys.is_empty() {
            return Ok(HashMap::new());
        }
        self.stats
            .chunks_read
            .fetch_add(chunk_keys.len() as u64, Ordering::Relaxed);
        match self
            .inner
            .call(&Command::Get {
                keys: chunk_keys,
                touch,
            })
            .await?
        {
            Response::Values(v) => Ok(v.into_iter().map(|v| (v.key, v.data)).collect()),
            other => Err(unexpected(other)),
        }
    }

    fn assemble(
        &self,
        key: &Bytes,
        base: &[u8],
        meta: &Meta,
        cas: u64,
        chunks: &HashMap<Bytes, Bytes>,
        state: ItemState,
    ) -> Found {
        let size = meta.chunk_size as usize;
        let mut data = BytesMut::with_capacity(meta.len as usize);
        for i in 0..meta.chunks as usize {
            let Some(chunk) = chunks.get(&chunk_key(base, i)) else {
                self.stats
                    .missing_chunk_misses
                    .fetch_add(1, Ordering::Relaxed);
                return Found::Invalid { meta_cas: cas };
            };
            if chunk.len() != TOKEN_LEN + size || chunk[..TOKEN_LEN] != meta.token {
                self.stats.token_misses.fetch_add(1, Ordering::Relaxed);
                return Found::Invalid { meta_cas: cas };
            }
            let want = (meta.len as usize - i * size).min(size);
            data.put_slice(&chunk[TOKEN_LEN..TOKEN_LEN + want]);
        }
        Found::Hit {
            value: Value {
                key: key.clone(),
                flags: meta.flags,
                cas,
                data: data.freeze(),
            },
            meta: meta.clone(),
            state,
        }
    }

    pub(super) async fn read_one(&self, key: &Bytes) -> Result<Found, BackendError> {
        let mut found = self.read(std::slice::from_ref(key), None, true).await?;
        Ok(found.pop().unwrap_or(Found::Absent))
    }
}
