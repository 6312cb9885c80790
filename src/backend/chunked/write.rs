//! Writing a whole chunked value: the metadata item with a fresh token
//! (stored as the client's verb says, or guarded by a cas for
//! read-modify-write), then every chunk; a set sends them in one pipeline.
//! A write whose chunks fail is removed again.

use std::sync::atomic::Ordering;

use bytes::{BufMut, BytesMut};

use super::layout::{base_key, chunk_count, chunk_key, meta_key, Meta, TOKEN_LEN};
use super::meta::state_store;
use super::{now_unix, Chunked, Item, MetaWrite};
use crate::backend::record::ItemState;
use crate::backend::{Backend, BackendError};
use crate::protocol::{Command, ErrorReply, Response, StoreMode};

impl<B: Backend + Clone> Chunked<B> {
    /// Write a whole value: the metadata with `how`, then the chunks.
    pub(super) async fn write(
        &self,
        item: &Item<'_>,
        how: MetaWrite,
    ) -> Result<Response, BackendError> {
        self.write_state(item, how, None).await
    }

    /// [`Chunked::write`], and with `state` the value's `-ttl` record
    /// holding it (what meta commands see), sent with the chunks.
    pub(super) async fn write_state(
        &self,
        item: &Item<'_>,
        how: MetaWrite,
        state: Option<ItemState>,
    ) -> Result<Response, BackendError> {
        let token: [u8; TOKEN_LEN] = rand::random();
        let base = base_key(item.key);
        let size = self.chunk_size_for(item.key);
        let count = chunk_count(item.value.len(), size);
        let meta = Meta {
            len: item.value.len() as u32,
            flags: item.flags,
            chunks: count as u32,
            chunk_size: size as u32,
            inserted: now_unix() as u32,
            expiry: if item.expiry > 0 {
                item.expiry as u32
            } else {
                0
            },
            token,
        };
        let meta_cmd = meta_store(how, &base, item.expiry, &meta);
        let mut chunk_cmds = chunk_stores(&base, &meta, item.value, item.expiry);
        if let Some(state) = state {
            chunk_cmds.push(state_store(&base, &token, item.expiry, &state));
        }
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
}

/// The store of the metadata item `<base>-meta`, as `how` decides.
fn meta_store(how: MetaWrite, base: &[u8], expiry: i64, meta: &Meta) -> Command {
    let (mode, cas) = match how {
        MetaWrite::Set => (StoreMode::Set, 0),
        MetaWrite::Add => (StoreMode::Add, 0),
        MetaWrite::Replace => (StoreMode::Replace, 0),
        MetaWrite::Cas(c) => (StoreMode::Cas, c),
    };
    Command::Store {
        mode,
        key: meta_key(base),
        flags: 0,
        exptime: expiry,
        cas,
        value: meta.encode(),
    }
}

/// The sets of every chunk item of `value`: the metadata's token, then the
/// chunk's bytes, the last one padded with zeros.
fn chunk_stores(base: &[u8], meta: &Meta, value: &[u8], expiry: i64) -> Vec<Command> {
    let size = meta.chunk_size as usize;
    (0..meta.chunks as usize)
        .map(|i| {
            let mut item = BytesMut::with_capacity(TOKEN_LEN + size);
            item.put_slice(&meta.token);
            let data = &value[i * size..((i + 1) * size).min(value.len())];
            item.put_slice(data);
            item.put_bytes(0, size - data.len());
            Command::Store {
                mode: StoreMode::Set,
                key: chunk_key(base, i),
                flags: 0,
                exptime: expiry,
                cas: 0,
                value: item.freeze(),
            }
        })
        .collect()
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
