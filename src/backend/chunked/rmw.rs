//! Read-modify-write of chunked values (append, prepend, incr, decr):
//! read and verify the value, compute the new one, and write it guarded by
//! the metadata's cas. Losing the cas to another writer (a second rend on
//! this memcached, or key locks off) retries on the new value, after a
//! random wait that grows with each attempt.

use bytes::Bytes;

use super::{absolute, Chunked, Found, Item, Meta, MetaWrite};
use crate::backend::record::{arith_value, joined};
use crate::backend::{Backend, BackendError};
use crate::protocol::expiry;
use crate::protocol::{ErrorReply, Response};

/// Attempts of a read-modify-write that loses its cas to another writer.
pub(super) const RMW_TRIES: u32 = 100;

impl<B: Backend + Clone> Chunked<B> {
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
    pub(super) async fn back_off(attempt: u32) {
        let ceiling_us = 100u64 << attempt.min(6);
        let wait = rand::random::<u64>() % ceiling_us;
        tokio::time::sleep(std::time::Duration::from_micros(wait)).await;
    }

    /// append/prepend: verify, join, write guarded by the metadata's cas.
    /// Losing the cas to another writer (a second rend on this memcached, or
    /// key locks off) retries on the new value.
    pub(super) async fn append(
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
                Found::Hit { value, meta, .. } => (value, meta),
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
            let joined = joined(&old.data, value, append);
            match self
                .write(&rewrite(key, &meta, &joined), MetaWrite::Cas(old.cas))
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
    pub(super) async fn arith(
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
            let (old, meta, state) = match self.read_one(key).await? {
                Found::Hit { value, meta, state } => (value, meta, state),
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
                    let item = Item {
                        key,
                        flags: 0,
                        expiry: absolute(exptime),
                        value: &digits,
                    };
                    match self.write(&item, how).await? {
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
            // memcached changes a number that fits in place: the item keeps
            // its state (what meta commands see).
            let kept = (digits.len() <= old.data.len()).then(|| {
                let mut state = state;
                state.update(expiry::now());
                state
            });
            let item = rewrite(key, &meta, &digits);
            match self
                .write_state(&item, MetaWrite::Cas(old.cas), kept)
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
}

/// `key`'s new value, under the flags and expiry its metadata holds.
fn rewrite<'a>(key: &'a Bytes, meta: &Meta, value: &'a [u8]) -> Item<'a> {
    Item {
        key,
        flags: meta.flags,
        expiry: i64::from(meta.expiry),
        value,
    }
}

/// A read-modify-write that kept losing its cas to other writers.
pub(super) fn busy() -> Response {
    Response::Error(ErrorReply::Server(Bytes::from_static(
        b"value changed by other writers too often; try again",
    )))
}
