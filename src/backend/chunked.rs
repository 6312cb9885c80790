//! `Chunked<B>`: stores every value in the tier it wraps as fixed-size
//! chunks, so all of a memcached's items land in one slab class and its
//! memory cannot be stranded when the value sizes shift. It is itself a
//! backend. The layout is Netflix Rend's, so both can share a memcached:
//!
//! - `<key>-meta`: 40 bytes, big-endian u32s: value length, the client's
//!   flags, chunk count, chunk data size, insert time (Unix s), absolute
//!   expiry (0 = never), then a 16-byte token fresh for every write;
//! - `<key>-<i>` for i from 0: the token, then `chunk data size` bytes of the
//!   value (the last chunk padded with zeros, so every chunk item has one
//!   size).
//!
//! A read is a hit only when the metadata parses, every chunk is there and
//! every chunk carries the metadata's token; anything else is a miss, never
//! a value with a hole or from two writes. Such a value is absent for every
//! verb (add stores over it, replace and append do not) and is removed by the
//! next write or delete of its key.
//!
//! Keys whose internal names would pass memcached's 250 bytes (client keys
//! over 240 bytes) are stored under a 241-byte name: the key's first 208
//! bytes, `#`, and the hex MD5 of the key. Being longer than any plain name,
//! it never aliases a plain key.
//!
//! The cas of a chunked value is the cas memcached gives its metadata item:
//! new on every write (every write rewrites the metadata), unchanged by touch
//! and gat (memcached's touch keeps an item's cas). Because touch must not
//! change the cas, it does not rewrite the metadata's expiry field, which
//! therefore records the expiry given at write time; touch and gat move
//! memcached's expiry of the metadata and every chunk alike, and record the
//! new expiry in `<key>-ttl` (see [`ttl_key`]) for read-modify-write to keep.
//!
//! Round trips: reads take two (metadata, then every chunk with keys echoed,
//! pipelined), a set one (metadata and quiet chunk sets in one pipeline), an
//! add/replace/cas/append/incr a verifying read and then the write; never
//! one per chunk. With key locks on (the default), writers of a key run one
//! at a time and readers share.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};

use super::record::arith_value;
use super::{Backend, BackendError, BackendFuture, Tier};
use crate::locks::{Guard, KeyLocks};
use crate::protocol::expiry::{self, THIRTY_DAYS};
use crate::protocol::{Command, ErrorReply, Response, StoreMode, Value};

mod layout;
pub use layout::{
    base_key, chunk_key, meta_key, route_key, ttl_key, Meta, DEFAULT_CHUNK_BASE, META_LEN,
    TOKEN_LEN,
};
use layout::{chunk_count, ttl_record};

/// Attempts of a read-modify-write that loses its cas to another writer.
const RMW_TRIES: u32 = 100;

#[derive(Clone, Debug)]
pub struct ChunkedOptions {
    /// Chunk data size; `None`: 1097 less the key length (at least 16).
    pub chunk_size: Option<usize>,
    /// Largest value accepted.
    pub max_value: usize,
}

/// What chunking did, for `stats` and metrics.
#[derive(Default, Debug)]
pub struct ChunkStats {
    pub chunks_written: AtomicU64,
    pub chunks_read: AtomicU64,
    /// Reads that found a chunk from another write.
    pub token_misses: AtomicU64,
    /// Reads that found a chunk missing (evicted, deleted).
    pub missing_chunk_misses: AtomicU64,
}

impl crate::metrics::StatsSource for ChunkStats {
    fn stats(&self) -> Vec<(&'static str, u64)> {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        vec![
            ("chunks_written", load(&self.chunks_written)),
            ("chunks_read", load(&self.chunks_read)),
            ("chunk_token_misses", load(&self.token_misses)),
            ("chunk_missing_misses", load(&self.missing_chunk_misses)),
        ]
    }
}

fn now_unix() -> i64 {
    i64::from(expiry::now())
}

/// memcached's exptime as one absolute time, so the metadata and every chunk
/// expire together (see [`expiry::absolute`]).
fn absolute(exptime: i64) -> i64 {
    expiry::absolute(exptime, expiry::now())
}

/// One key as read back.
enum Found {
    Hit {
        value: Value,
        meta: Meta,
    },
    /// Metadata present (with this cas) but the value failed verification.
    Invalid {
        meta_cas: u64,
    },
    Absent,
}

/// How the metadata write decides (the client's verb, or a cas guard for
/// read-modify-write).
#[derive(Clone, Copy)]
enum MetaWrite {
    Set,
    Add,
    Replace,
    Cas(u64),
}

pub struct Chunked<B> {
    inner: B,
    opts: Arc<ChunkedOptions>,
    locks: Option<Arc<KeyLocks>>,
    stats: Arc<ChunkStats>,
}

impl<B: Clone> Clone for Chunked<B> {
    fn clone(&self) -> Self {
        Chunked {
            inner: self.inner.clone(),
            opts: self.opts.clone(),
            locks: self.locks.clone(),
            stats: self.stats.clone(),
        }
    }
}

impl<B: Backend + Clone> Chunked<B> {
    pub fn new(
        inner: B,
        opts: Arc<ChunkedOptions>,
        locks: Option<Arc<KeyLocks>>,
        stats: Arc<ChunkStats>,
    ) -> Self {
        Chunked {
            inner,
            opts,
            locks,
            stats,
        }
    }

    fn chunk_size_for(&self, key: &[u8]) -> usize {
        self.opts
            .chunk_size
            .unwrap_or_else(|| DEFAULT_CHUNK_BASE.saturating_sub(key.len()).max(16))
    }

    /// Whether `meta` describes a value rend could have written: no longer
    /// than `max_value`, in no more chunks than the smallest chunk size
    /// rend uses would take for it.
    fn within_limits(&self, meta: &Meta) -> bool {
        let smallest = self.chunk_size_for(&[0; crate::protocol::MAX_KEY_LEN]);
        let max_chunks = self.opts.max_value.div_ceil(smallest);
        meta.len as usize <= self.opts.max_value && meta.chunks as usize <= max_chunks
    }

    async fn lock_read(&self, keys: &[Bytes]) -> Option<Guard> {
        match &self.locks {
            Some(l) => Some(l.read(keys.iter().map(|k| &k[..])).await),
            None => None,
        }
    }

    async fn lock_write(&self, keys: &[Bytes]) -> Option<Guard> {
        match &self.locks {
            Some(l) => Some(l.write(keys.iter().map(|k| &k[..])).await),
            None => None,
        }
    }

    /// Read and verify `keys` (touching every item when `touch` is given):
    /// two pipelined round trips whatever the chunk count.
    async fn read(
        &self,
        keys: &[Bytes],
        touch: Option<i64>,
        with_ttl: bool,
    ) -> Result<Vec<Found>, BackendError> {
        let bases: Vec<Bytes> = keys.iter().map(|k| base_key(k)).collect();
        let mut meta_keys: Vec<Bytes> = bases.iter().map(|b| meta_key(b)).collect();
        if with_ttl {
            meta_keys.extend(bases.iter().map(|b| ttl_key(b)));
        }
        meta_keys.sort();
        meta_keys.dedup();
        let touch = touch.map(absolute);
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
        let mut metas: HashMap<Bytes, (Option<Meta>, u64)> = metas
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
                Some((v.key.clone(), (meta, v.cas)))
            })
            .collect();
        // A touch's expiry stands while the value it touched does.
        for base in &bases {
            let Some(ttl) = ttls.get(&ttl_key(base)) else {
                continue;
            };
            if let Some((Some(meta), _)) = metas.get_mut(&meta_key(base)) {
                if ttl.len() == TOKEN_LEN + 4 && ttl[..TOKEN_LEN] == meta.token {
                    meta.expiry = u32::from_be_bytes([ttl[16], ttl[17], ttl[18], ttl[19]]);
                }
            }
        }
        // Every chunk of every valid metadata, in one pipeline.
        let mut chunk_keys = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for base in &bases {
            if !seen.insert(base.clone()) {
                continue;
            }
            if let Some((Some(m), _)) = metas.get(&meta_key(base)) {
                for i in 0..m.chunks as usize {
                    chunk_keys.push(chunk_key(base, i));
                }
            }
        }
        let chunks: HashMap<Bytes, Bytes> = if chunk_keys.is_empty() {
            HashMap::new()
        } else {
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
                Response::Values(v) => v.into_iter().map(|v| (v.key, v.data)).collect(),
                other => return Err(unexpected(other)),
            }
        };
        // memcached takes a gat's keys one by one: a gat that expires the
        // item serves a key named twice only the first time.
        let expiring = touch.is_some_and(|t| t < 0 || (t > THIRTY_DAYS && t <= now_unix()));
        let mut served = std::collections::HashSet::new();
        Ok(keys
            .iter()
            .zip(&bases)
            .map(|(key, base)| {
                if expiring && !served.insert(base.clone()) {
                    return Found::Absent;
                }
                match metas.get(&meta_key(base)) {
                    None => Found::Absent,
                    Some((None, cas)) => Found::Invalid { meta_cas: *cas },
                    Some((Some(meta), cas)) => self.assemble(key, base, meta, *cas, &chunks),
                }
            })
            .collect())
    }

    fn assemble(
        &self,
        key: &Bytes,
        base: &[u8],
        meta: &Meta,
        cas: u64,
        chunks: &HashMap<Bytes, Bytes>,
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
        }
    }

    async fn read_one(&self, key: &Bytes) -> Result<Found, BackendError> {
        let mut found = self.read(std::slice::from_ref(key), None, true).await?;
        Ok(found.pop().unwrap_or(Found::Absent))
    }

    /// Write a whole value: the metadata with `how`, then the chunks.
    async fn write(
        &self,
        key: &[u8],
        flags: u32,
        expiry: i64,
        value: &[u8],
        how: MetaWrite,
    ) -> Result<Response, BackendError> {
        let base = base_key(key);
        let size = self.chunk_size_for(key);
        let count = chunk_count(value.len(), size);
        let token: [u8; TOKEN_LEN] = rand::random();
        let meta = Meta {
            len: value.len() as u32,
            flags,
            chunks: count as u32,
            chunk_size: size as u32,
            inserted: now_unix() as u32,
            expiry: if expiry > 0 { expiry as u32 } else { 0 },
            token,
        };
        let (mode, cas) = match how {
            MetaWrite::Set => (StoreMode::Set, 0),
            MetaWrite::Add => (StoreMode::Add, 0),
            MetaWrite::Replace => (StoreMode::Replace, 0),
            MetaWrite::Cas(c) => (StoreMode::Cas, c),
        };
        let meta_cmd = Command::Store {
            mode,
            key: meta_key(&base),
            flags: 0,
            exptime: expiry,
            cas,
            value: meta.encode(),
        };
        let chunk_cmds: Vec<Command> = (0..count)
            .map(|i| {
                let mut item = BytesMut::with_capacity(TOKEN_LEN + size);
                item.put_slice(&token);
                let data = &value[i * size..((i + 1) * size).min(value.len())];
                item.put_slice(data);
                item.put_bytes(0, size - data.len());
                Command::Store {
                    mode: StoreMode::Set,
                    key: chunk_key(&base, i),
                    flags: 0,
                    exptime: expiry,
                    cas: 0,
                    value: item.freeze(),
                }
            })
            .collect();
        self.stats
            .chunks_written
            .fetch_add(count as u64, Ordering::Relaxed);
        let meta_reply = if matches!(how, MetaWrite::Set) {
            // Unconditional: the metadata and the chunks in one pipeline.
            let meta_call = self.inner.call(&meta_cmd);
            let chunk_call = (!chunk_cmds.is_empty()).then(|| self.inner.call_many(chunk_cmds));
            let meta_reply = meta_call.await?;
            if let Some(c) = chunk_call {
                let replies = c.await?;
                if let Some(failed) = first_failure(&replies) {
                    self.remove(&base, count).await;
                    return Ok(failed);
                }
            }
            meta_reply
        } else {
            let meta_reply = self.inner.call(&meta_cmd).await?;
            if matches!(meta_reply, Response::Stored { .. }) && !chunk_cmds.is_empty() {
                let replies = self.inner.call_many(chunk_cmds).await?;
                if let Some(failed) = first_failure(&replies) {
                    self.remove(&base, count).await;
                    return Ok(failed);
                }
            }
            meta_reply
        };
        Ok(meta_reply)
    }

    /// Best-effort removal of a key's metadata and chunks.
    async fn remove(&self, base: &[u8], chunks: usize) {
        let mut cmds = vec![Command::Delete {
            key: meta_key(base),
            cas: 0,
        }];
        cmds.extend((0..chunks).map(|i| Command::Delete {
            key: chunk_key(base, i),
            cas: 0,
        }));
        let _ = self.inner.call_many(cmds).await;
    }

    /// Without key locks another writer may be between its metadata and its
    /// chunks, which reads as a broken value for a moment: true (after a
    /// short pause) when that is possible and worth reading again.
    async fn mid_write_possible(&self) -> bool {
        if self.locks.is_some() {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        true
    }

    /// After losing a cas: wait a random while, longer each time, so that
    /// writers racing on one key spread out instead of colliding again.
    async fn back_off(attempt: u32) {
        let ceiling_us = 100u64 << attempt.min(6);
        let wait = rand::random::<u64>() % ceiling_us;
        tokio::time::sleep(std::time::Duration::from_micros(wait)).await;
    }

    /// append/prepend: verify, join, write guarded by the metadata's cas.
    /// Losing the cas to another writer (a second rend on this memcached, or
    /// key locks off) retries on the new value.
    async fn append(
        &self,
        key: &Bytes,
        append: bool,
        cas: u64,
        value: &[u8],
    ) -> Result<Response, BackendError> {
        for attempt in 0..RMW_TRIES {
            if attempt > 0 {
                Self::back_off(attempt).await;
            }
            let (old, meta) = match self.read_one(key).await? {
                Found::Hit { value, meta } => (value, meta),
                Found::Invalid { .. } if self.mid_write_possible().await => continue,
                _ => return Ok(Response::NotStored),
            };
            if cas != 0 && cas != old.cas {
                return Ok(Response::Exists);
            }
            let total = old.data.len() + value.len();
            if total > self.opts.max_value {
                return Ok(Response::NotStored);
            }
            let mut joined = BytesMut::with_capacity(total);
            if append {
                joined.put_slice(&old.data);
                joined.put_slice(value);
            } else {
                joined.put_slice(value);
                joined.put_slice(&old.data);
            }
            let expiry = i64::from(meta.expiry);
            match self
                .write(key, meta.flags, expiry, &joined, MetaWrite::Cas(old.cas))
                .await?
            {
                Response::Exists => continue,
                Response::NotFound => return Ok(Response::NotStored),
                other => return Ok(other),
            }
        }
        Ok(busy())
    }

    /// incr/decr with memcached's arithmetic, written like `append`.
    async fn arith(
        &self,
        key: &Bytes,
        incr: bool,
        delta: u64,
        create: Option<(u64, i64)>,
    ) -> Result<Response, BackendError> {
        for attempt in 0..RMW_TRIES {
            if attempt > 0 {
                Self::back_off(attempt).await;
            }
            let (old, meta) = match self.read_one(key).await? {
                Found::Hit { value, meta } => (value, meta),
                Found::Invalid { .. } if self.mid_write_possible().await => continue,
                found => {
                    // Binary incr with an initial value creates the key
                    // (over a broken value too: it is absent).
                    let Some((initial, exptime)) = create else {
                        return Ok(Response::NotFound);
                    };
                    let digits = initial.to_string().into_bytes();
                    let how = match found {
                        Found::Invalid { meta_cas } => MetaWrite::Cas(meta_cas),
                        _ => MetaWrite::Add,
                    };
                    match self.write(key, 0, absolute(exptime), &digits, how).await? {
                        Response::Stored { cas } => {
                            return Ok(Response::Numeric {
                                value: initial,
                                cas,
                            })
                        }
                        Response::Exists | Response::NotStored | Response::NotFound => continue,
                        other => return Ok(other),
                    }
                }
            };
            let Some((new, digits)) = arith_value(&old.data, incr, delta) else {
                return Ok(Response::Error(ErrorReply::NonNumeric));
            };
            let expiry = i64::from(meta.expiry);
            match self
                .write(key, meta.flags, expiry, &digits, MetaWrite::Cas(old.cas))
                .await?
            {
                Response::Stored { cas } => return Ok(Response::Numeric { value: new, cas }),
                Response::Exists => continue,
                Response::NotFound => return Ok(Response::NotFound),
                other => return Ok(other),
            }
        }
        Ok(busy())
    }

    async fn run(&self, cmd: Command) -> Result<Response, BackendError> {
        match cmd {
            Command::Get { keys, touch } => {
                let _guard = if touch.is_some() {
                    self.lock_write(&keys).await
                } else {
                    self.lock_read(&keys).await
                };
                let found = self.read(&keys, touch, false).await?;
                if let Some(exptime) = touch.map(absolute).filter(|&e| e >= 0) {
                    let records: Vec<Command> = found
                        .iter()
                        .filter_map(|f| match f {
                            Found::Hit { value, meta } => Some(Command::Store {
                                mode: StoreMode::Set,
                                key: ttl_key(&base_key(&value.key)),
                                flags: 0,
                                exptime,
                                cas: 0,
                                value: ttl_record(&meta.token, exptime),
                            }),
                            _ => None,
                        })
                        .collect();
                    if !records.is_empty() {
                        self.inner.call_many(records).await?;
                    }
                }
                Ok(Response::Values(
                    found
                        .into_iter()
                        .filter_map(|f| match f {
                            Found::Hit { value, .. } => Some(value),
                            _ => None,
                        })
                        .collect(),
                ))
            }
            Command::Store {
                mode,
                key,
                flags,
                exptime,
                cas,
                value,
            } => {
                let _guard = self.lock_write(std::slice::from_ref(&key)).await;
                let expiry = absolute(exptime);
                // As memcached does, a storage command carrying a cas (binary
                // set/add/replace) is a cas.
                let mode = match mode {
                    StoreMode::Set | StoreMode::Add | StoreMode::Replace if cas != 0 => {
                        StoreMode::Cas
                    }
                    m => m,
                };
                match mode {
                    StoreMode::Set => {
                        self.write(&key, flags, expiry, &value, MetaWrite::Set)
                            .await
                    }
                    StoreMode::Add => match self.read_one(&key).await? {
                        Found::Hit { .. } => Ok(Response::NotStored),
                        // Present but broken: absent for add, so store over
                        // it unless someone else wrote meanwhile.
                        Found::Invalid { meta_cas } => {
                            match self
                                .write(&key, flags, expiry, &value, MetaWrite::Cas(meta_cas))
                                .await?
                            {
                                Response::Exists | Response::NotFound => Ok(Response::NotStored),
                                other => Ok(other),
                            }
                        }
                        Found::Absent => {
                            self.write(&key, flags, expiry, &value, MetaWrite::Add)
                                .await
                        }
                    },
                    StoreMode::Replace => match self.read_one(&key).await? {
                        Found::Hit { .. } => {
                            self.write(&key, flags, expiry, &value, MetaWrite::Replace)
                                .await
                        }
                        _ => Ok(Response::NotStored),
                    },
                    StoreMode::Cas => match self.read_one(&key).await? {
                        Found::Hit { .. } => {
                            // memcached's text cas never matches 0.
                            let cas = if cas == 0 { u64::MAX } else { cas };
                            self.write(&key, flags, expiry, &value, MetaWrite::Cas(cas))
                                .await
                        }
                        _ => Ok(Response::NotFound),
                    },
                    StoreMode::Append | StoreMode::Prepend => {
                        self.append(&key, mode == StoreMode::Append, cas, &value)
                            .await
                    }
                }
            }
            Command::Arith {
                key,
                incr,
                delta,
                create,
            } => {
                let _guard = self.lock_write(std::slice::from_ref(&key)).await;
                self.arith(&key, incr, delta, create).await
            }
            Command::Delete { key, cas } => {
                let _guard = self.lock_write(std::slice::from_ref(&key)).await;
                let base = base_key(&key);
                match self.read_one(&key).await? {
                    Found::Hit { meta, .. } => {
                        let reply = self
                            .inner
                            .call(&Command::Delete {
                                key: meta_key(&base),
                                cas,
                            })
                            .await?;
                        if matches!(reply, Response::Deleted) {
                            let chunks = (0..meta.chunks as usize)
                                .map(|i| Command::Delete {
                                    key: chunk_key(&base, i),
                                    cas: 0,
                                })
                                .collect::<Vec<_>>();
                            if !chunks.is_empty() {
                                let _ = self.inner.call_many(chunks).await;
                            }
                        }
                        Ok(reply)
                    }
                    Found::Invalid { .. } => {
                        // Clean up what is left, and report the miss.
                        let _ = self
                            .inner
                            .call(&Command::Delete {
                                key: meta_key(&base),
                                cas: 0,
                            })
                            .await;
                        Ok(Response::NotFound)
                    }
                    Found::Absent => Ok(Response::NotFound),
                }
            }
            Command::Touch { key, exptime } => {
                let _guard = self.lock_write(std::slice::from_ref(&key)).await;
                let base = base_key(&key);
                match self.read_one(&key).await? {
                    Found::Hit { value, meta } => {
                        let exptime = absolute(exptime);
                        let mut cmds = vec![Command::Touch {
                            key: meta_key(&base),
                            exptime,
                        }];
                        cmds.extend((0..meta.chunks as usize).map(|i| Command::Touch {
                            key: chunk_key(&base, i),
                            exptime,
                        }));
                        let touched = cmds.len();
                        if exptime >= 0 {
                            cmds.push(Command::Store {
                                mode: StoreMode::Set,
                                key: ttl_key(&base),
                                flags: 0,
                                exptime,
                                cas: 0,
                                value: ttl_record(&meta.token, exptime),
                            });
                        }
                        let replies = self.inner.call_many(cmds).await?;
                        if replies
                            .iter()
                            .take(touched)
                            .all(|r| matches!(r, Response::Touched { .. }))
                        {
                            Ok(Response::Touched {
                                flags: meta.flags,
                                cas: value.cas,
                            })
                        } else {
                            Ok(Response::NotFound)
                        }
                    }
                    _ => Ok(Response::NotFound),
                }
            }
            Command::GetE { .. } => Err(BackendError::Unsupported(Tier::L1)),
            other => self.inner.call(&other).await,
        }
    }
}

/// A read-modify-write that kept losing its cas to other writers.
fn busy() -> Response {
    Response::Error(ErrorReply::Server(Bytes::from_static(
        b"value changed by other writers too often; try again",
    )))
}

fn first_failure(replies: &[Response]) -> Option<Response> {
    replies
        .iter()
        .find(|r| !matches!(r, Response::Stored { .. }))
        .map(|r| match r {
            Response::Error(_) => r.clone(),
            _ => Response::Error(ErrorReply::OutOfMemory),
        })
}

fn unexpected(r: Response) -> BackendError {
    tracing::debug!("chunked: unexpected reply {r:?}");
    BackendError::Protocol(Tier::L1, "unexpected reply to a chunk read")
}

impl<B: Backend + Clone> Backend for Chunked<B> {
    fn starts_eagerly(&self) -> bool {
        false
    }

    /// Every item of a client key travels where its metadata does (over a
    /// pool routed by [`route_key`]).
    fn unsettled(&self, key: Option<&[u8]>) -> bool {
        match key {
            Some(k) => self.inner.unsettled(Some(&meta_key(&base_key(k)))),
            None => self.inner.unsettled(None),
        }
    }

    fn call(&self, cmd: &Command) -> BackendFuture {
        let this = self.clone();
        let cmd = cmd.clone();
        Box::pin(async move { this.run(cmd).await })
    }
}

#[cfg(test)]
mod tests {
    use super::layout::{HASHED_PREFIX, MAX_PLAIN_KEY};
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
