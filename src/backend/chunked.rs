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
//!
//! The pieces: `chunked/layout.rs` is Rend's layout (names and the
//! metadata record), `chunked/read.rs` reads and verifies, `chunked/write.rs`
//! writes a whole value, `chunked/rmw.rs` is append and arithmetic, and
//! `chunked/meta.rs` the meta commands (their item state in `-ttl`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;

use super::record::ItemState;
use super::{Backend, BackendError, BackendFuture, Tier};
use crate::locks::{Guard, KeyLocks};
use crate::protocol::expiry;
use crate::protocol::{Command, Response, StoreMode, Value};

mod layout;
mod meta;
mod read;
mod rmw;
mod write;

use layout::ttl_record;
pub use layout::{
    base_key, chunk_key, meta_key, route_key, ttl_key, Meta, DEFAULT_CHUNK_BASE, META_LEN,
    TOKEN_LEN,
};

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
        /// What meta commands see (from `-ttl`).
        state: ItemState,
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

/// A whole value to write: the client's key, its flags, the absolute
/// expiry and the bytes.
struct Item<'a> {
    key: &'a Bytes,
    flags: u32,
    expiry: i64,
    value: &'a [u8],
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

    /// One command: each verb under its keys' locks (write locks for
    /// anything that writes), the rest passed on to the tier.
    async fn run(&self, cmd: Command) -> Result<Response, BackendError> {
        match cmd {
            Command::Get { keys, touch } => self.get(&keys, touch).await,
            Command::Store {
                mode,
                key,
                flags,
                exptime,
                cas,
                value,
            } => {
                let _guard = self.lock_write(std::slice::from_ref(&key)).await;
                let item = Item {
                    key: &key,
                    flags,
                    expiry: absolute(exptime),
                    value: &value,
                };
                self.store(mode, cas, item).await
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
                self.delete(&key, cas).await
            }
            Command::Touch { key, exptime } => {
                let _guard = self.lock_write(std::slice::from_ref(&key)).await;
                self.touch(&key, exptime).await
            }
            Command::GetE { .. } => Err(BackendError::Unsupported(Tier::L1)),
            Command::Meta(req) => self.meta(&req).await,
            other => self.inner.call(&other).await,
        }
    }

    /// get and gat: a gat touches every item, and records the new expiry
    /// in `-ttl` for read-modify-write to keep.
    async fn get(&self, keys: &[Bytes], touch: Option<i64>) -> Result<Response, BackendError> {
        let _guard = if touch.is_some() {
            self.lock_write(keys).await
        } else {
            self.lock_read(keys).await
        };
        let found = self.read(keys, touch, false).await?;
        if let Some(exptime) = touch.map(absolute).filter(|&e| e >= 0) {
            let records: Vec<Command> = found
                .iter()
                .filter_map(|f| match f {
                    Found::Hit { value, meta, state } => Some(Command::Store {
                        mode: StoreMode::Set,
                        key: ttl_key(&base_key(&value.key)),
                        flags: 0,
                        exptime,
                        cas: 0,
                        value: ttl_record(&meta.token, exptime, &fetched(state)),
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

    /// set, add, replace, cas, append and prepend of `item`, under its
    /// key's write lock.
    async fn store(
        &self,
        mode: StoreMode,
        cas: u64,
        item: Item<'_>,
    ) -> Result<Response, BackendError> {
        // As memcached does, a storage command carrying a cas (binary
        // set/add/replace) is a cas.
        let mode = match mode {
            StoreMode::Set | StoreMode::Add | StoreMode::Replace if cas != 0 => StoreMode::Cas,
            m => m,
        };
        match mode {
            StoreMode::Set => self.write(&item, MetaWrite::Set).await,
            StoreMode::Add => match self.read_one(item.key).await? {
                Found::Hit { .. } => Ok(Response::NotStored),
                // Present but broken: absent for add, so store over it
                // unless someone else wrote meanwhile.
                Found::Invalid { meta_cas } => {
                    match self.write(&item, MetaWrite::Cas(meta_cas)).await? {
                        Response::Exists | Response::NotFound => Ok(Response::NotStored),
                        other => Ok(other),
                    }
                }
                Found::Absent => self.write(&item, MetaWrite::Add).await,
            },
            StoreMode::Replace => match self.read_one(item.key).await? {
                Found::Hit { .. } => self.write(&item, MetaWrite::Replace).await,
                _ => Ok(Response::NotStored),
            },
            StoreMode::Cas => match self.read_one(item.key).await? {
                Found::Hit { .. } => {
                    // memcached's text cas never matches 0.
                    let cas = if cas == 0 { u64::MAX } else { cas };
                    self.write(&item, MetaWrite::Cas(cas)).await
                }
                _ => Ok(Response::NotFound),
            },
            StoreMode::Append | StoreMode::Prepend => {
                self.append(item.key, mode == StoreMode::Append, cas, item.value)
                    .await
            }
        }
    }

    /// delete: the metadata (with the client's cas), then the chunks; a
    /// broken value's metadata is cleaned up and the miss reported.
    async fn delete(&self, key: &Bytes, cas: u64) -> Result<Response, BackendError> {
        let base = base_key(key);
        match self.read_one(key).await? {
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

    /// touch: memcached's expiry of the metadata and every chunk moves, and
    /// `-ttl` records it; the metadata and its cas stay as they are.
    async fn touch(&self, key: &Bytes, exptime: i64) -> Result<Response, BackendError> {
        let base = base_key(key);
        match self.read_one(key).await? {
            Found::Hit { value, meta, state } => {
                let exptime = absolute(exptime);
                let mut cmds = touches(&base, &meta, exptime);
                let touched = cmds.len();
                if exptime >= 0 {
                    cmds.push(Command::Store {
                        mode: StoreMode::Set,
                        key: ttl_key(&base),
                        flags: 0,
                        exptime,
                        cas: 0,
                        value: ttl_record(&meta.token, exptime, &fetched(&state)),
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
}

/// Touches of the metadata and every chunk of the value `meta` describes:
/// memcached's expiry of each moves to `exptime`.
fn touches(base: &[u8], meta: &Meta, exptime: i64) -> Vec<Command> {
    let mut cmds = vec![Command::Touch {
        key: meta_key(base),
        exptime,
    }];
    cmds.extend((0..meta.chunks as usize).map(|i| Command::Touch {
        key: chunk_key(base, i),
        exptime,
    }));
    cmds
}

/// An item's state after memcached's touch and gat, which fetch it.
fn fetched(state: &ItemState) -> ItemState {
    let mut state = *state;
    state.bump(expiry::now());
    state
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
