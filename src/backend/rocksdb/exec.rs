//! One call on the store, as its [`Mode`] allows: reads see only live
//! records (present, not expired, not flushed), and every write is a
//! read-modify-write of the key's record ([`apply`]) under the key's
//! stripe lock.

use std::sync::atomic::Ordering;
use std::sync::Mutex;

use ::rocksdb::{WriteBatch, WriteOptions};

use super::{lock, stop, Durability, Inner, Mode, Stop};
use crate::backend::record::meta::{apply_meta, needs_cas};
use crate::backend::record::{apply, Effect, Record};
use crate::backend::{BackendError, Tier};
use crate::protocol::expiry;
use crate::protocol::meta::{MetaRequest, Verb};
use crate::protocol::{Command, ErrorReply, Response, StoreMode};
use crate::ratelimit::RateLimit;

impl Inner {
    /// Write options for the mode, or `WouldBlock` when every write waits
    /// (`sync`: an fsync each).
    fn write_opts(&self, mode: Mode) -> Result<WriteOptions, Stop> {
        let mut w = WriteOptions::default();
        match self.durability {
            Durability::Sync if mode == Mode::Now => return Err(Stop::WouldBlock),
            Durability::Sync => w.set_sync(true),
            Durability::Wal => {}
            Durability::None => w.disable_wal(true),
        }
        w.set_no_slowdown(mode == Mode::Now);
        Ok(w)
    }

    /// On the blocking pool a write puts its own log bytes in the file (on
    /// a worker, [`WalGroup`] does it for many).
    fn flush_if_waiting(&self, mode: Mode) -> Result<(), Stop> {
        if mode == Mode::Wait && self.wal.is_some() {
            self.db.flush_wal(false).map_err(|e| stop(e, mode))?;
        }
        Ok(())
    }

    /// The live record of `key`: present, not expired, not flushed.
    fn live(&self, key: &[u8], now: u32, mode: Mode) -> Result<Option<Record>, Stop> {
        let found = match mode {
            Mode::Wait => self.db.get_pinned(key),
            Mode::Now => {
                let mut r = ::rocksdb::ReadOptions::default();
                r.set_read_tier(::rocksdb::ReadTier::BlockCache);
                self.db.get_pinned_opt(key, &r)
            }
        };
        let Some(bytes) = found.map_err(|e| stop(e, mode))? else {
            return Ok(None);
        };
        let rec = match Record::decode(&bytes) {
            Ok(r) => r,
            Err(e) => {
                static UNREADABLE: RateLimit = RateLimit::new(10_000);
                crate::warn_limited!(UNREADABLE, tier = "L2", error = %e, "unreadable record treated as absent");
                return Ok(None);
            }
        };
        Ok((!rec.is_expired(now) && rec.cas >= self.flush.effective(now)).then_some(rec))
    }

    pub(super) fn stripe(&self, key: &[u8]) -> &Mutex<()> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut h);
        &self.stripes[(h.finish() % self.stripes.len() as u64) as usize]
    }

    fn grows(cmd: &Command) -> Option<usize> {
        match cmd {
            Command::Store { key, value, .. } => Some(key.len() + value.len()),
            Command::Arith { key, .. } => Some(key.len() + 20),
            Command::Meta(m) => match m.verb {
                Verb::Set => Some(m.key.len() + m.value.as_ref().map_or(0, |v| v.len())),
                Verb::Arith => Some(m.key.len() + 20),
                _ => None,
            },
            _ => None,
        }
    }

    /// One command, as `mode` allows.
    pub(super) fn exec(&self, cmd: &Command, mode: Mode) -> Result<Response, Stop> {
        let now = expiry::now();
        match cmd {
            Command::Get { keys, touch: None } => {
                let mut hits = Vec::new();
                for key in keys {
                    if let Some(r) = self.live(key, now, mode)? {
                        hits.push(r.to_value(key));
                    }
                }
                Ok(Response::Values(hits))
            }
            Command::Get {
                keys,
                touch: Some(exptime),
            } => {
                // Touching several keys is several writes: run them where
                // they may wait, so none is half done.
                if mode == Mode::Now && keys.len() > 1 {
                    return Err(Stop::WouldBlock);
                }
                let mut hits = Vec::new();
                for key in keys {
                    let one = Command::Get {
                        keys: vec![key.clone()],
                        touch: Some(*exptime),
                    };
                    if let Response::Values(v) = self.write(key, &one, now, mode)? {
                        hits.extend(v);
                    }
                }
                Ok(Response::Values(hits))
            }
            Command::GetE { key } => Ok(match self.live(key, now, mode)? {
                Some(r) => Response::ValueE {
                    expiry: r.expiry,
                    value: r.to_value(key),
                },
                None => Response::NotFound,
            }),
            Command::Store { key, .. }
            | Command::Arith { key, .. }
            | Command::Delete { key, .. }
            | Command::Touch { key, .. } => {
                if let (Some(max), Some(adds)) = (self.max_bytes, Self::grows(cmd)) {
                    if self.used() + adds as u64 > max {
                        self.stats.refused_full.fetch_add(1, Ordering::Relaxed);
                        return Ok(Response::Error(ErrorReply::OutOfMemory));
                    }
                }
                self.write(key, cmd, now, mode)
            }
            Command::Meta(m) => self.exec_meta(cmd, m, mode).map(|(r, _)| r),
            Command::Flush { .. } if mode == Mode::Now => Err(Stop::WouldBlock),
            Command::Flush { delay } => Ok(self.flush_all(*delay, now)?),
            _ => Err(Stop::Failed(BackendError::Unsupported(Tier::L2))),
        }
    }

    fn write(&self, key: &[u8], cmd: &Command, now: u32, mode: Mode) -> Result<Response, Stop> {
        let _g = lock(self.stripe(key), mode, "key lock")?;
        let opts = self.write_opts(mode)?;
        // A plain set decides nothing from the old record: skip the lookup
        // (a memtable search, a tenth of rend's CPU under a set-heavy load).
        let blind = matches!(
            cmd,
            Command::Store {
                mode: StoreMode::Set,
                cas: 0,
                ..
            }
        );
        let old = if blind {
            None
        } else {
            self.live(key, now, mode)?
        };
        // A cas is issued for every write that may create a new version.
        let cas = match cmd {
            Command::Store { .. } | Command::Arith { .. } => self.next_cas(mode)?,
            _ => 0,
        };
        let (resp, effect) = apply(cmd, old.as_ref(), now, cas, self.max_value);
        self.store(key, effect, &opts, mode)?;
        Ok(resp)
    }

    /// A meta command (`cmd`, which is `req`): memcached's rules
    /// ([`apply_meta`]) on the key's record, under its stripe lock, as a
    /// write is; and whether it wrote. One that changes nothing (most
    /// `mg`s, once the item is fetched) writes nothing, so it neither waits
    /// for the log nor, with `--l2-durability sync`, for the pool.
    pub(super) fn exec_meta(
        &self,
        cmd: &Command,
        req: &MetaRequest,
        mode: Mode,
    ) -> Result<(Response, bool), Stop> {
        if let (Some(max), Some(adds)) = (self.max_bytes, Self::grows(cmd)) {
            if self.used() + adds as u64 > max {
                self.stats.refused_full.fetch_add(1, Ordering::Relaxed);
                return Ok((Response::Error(ErrorReply::OutOfMemory), false));
            }
        }
        let now = expiry::now();
        let key = &req.key[..];
        let _g = lock(self.stripe(key), mode, "key lock")?;
        let old = self.live(key, now, mode)?;
        let cas = if needs_cas(req) {
            self.next_cas(mode)?
        } else {
            0
        };
        let out = apply_meta(req, old.as_ref(), now, cas, self.max_value);
        let wrote = out.effect != Effect::Keep;
        if wrote {
            let opts = self.write_opts(mode)?;
            self.store(key, out.effect, &opts, mode)?;
        }
        Ok((out.reply.map_or(Response::Nothing, Response::Meta), wrote))
    }

    /// Carry out what a command decided for `key`'s record.
    fn store(
        &self,
        key: &[u8],
        effect: Effect,
        opts: &WriteOptions,
        mode: Mode,
    ) -> Result<(), Stop> {
        match effect {
            Effect::Keep => {}
            Effect::Put(rec) => {
                let bytes = rec.encode();
                let size = (key.len() + bytes.len()) as u64;
                let mut batch = WriteBatch::default();
                batch.put(key, bytes);
                self.db.write_opt(batch, opts).map_err(|e| stop(e, mode))?;
                self.written.fetch_add(size, Ordering::Relaxed);
                self.flush_if_waiting(mode)?;
            }
            Effect::Delete => {
                self.db.delete_opt(key, opts).map_err(|e| stop(e, mode))?;
                self.written
                    .fetch_add(key.len() as u64 + 16, Ordering::Relaxed);
                self.flush_if_waiting(mode)?;
            }
        }
        Ok(())
    }
}
