//! A text multi-get answered in pieces: one that names more keys than a
//! piece holds, names a key twice, or is a get line too long to read whole
//! is split into gets of at most [`PIECE_KEYS`](super::PIECE_KEYS) keys, each started when the
//! connection's caps allow, and its reply streams out piece by piece with
//! one `END`. Its figures are counted once, at its end.

use std::collections::VecDeque;

use bytes::Bytes;

use super::pool::take_flight;
use super::{Session, Slot};
use crate::metrics::ops::Classified;
use crate::protocol::out::Sink;
use crate::protocol::{encode_response, text, Command, Decoder, Frame, Request, Response};

/// A piece of a text multi-get.
pub(super) struct Piece {
    /// Which multi-get of this connection.
    get: u64,
    /// The keys as the client named them, when some were named twice (the
    /// request asks for each once).
    names: Option<Vec<Bytes>>,
    last: bool,
}

/// A multi-get whose later pieces are still to be started.
pub(super) struct Split {
    get: u64,
    keys: VecDeque<Bytes>,
    touch: Option<i64>,
    frame: Frame,
    /// A long get line whose further keys the decoder has still to read.
    open: bool,
    /// The line ended in an error reply instead of `END`.
    failed: bool,
}

/// Figures of a multi-get answered in pieces, counted once at its end.
pub(super) struct Tally {
    get: u64,
    touch: bool,
    keys: usize,
    hits: usize,
    arrived: std::time::Instant,
}

impl Session<'_> {
    /// One step of the multi-get being split: read on for a full piece of
    /// a long get line, then start the next piece; false when it must wait
    /// (for bytes, or for the caps and the key order).
    pub(super) fn advance_split(&mut self) -> bool {
        let Some(split) = &self.split else {
            return true;
        };
        if split.open && split.keys.len() < self.piece_keys() {
            // A long get line: read on for a full piece.
            if self.decoding() && !self.need_input {
                if let Some(req) = self.decode() {
                    self.extend_split(req);
                    return true;
                }
            }
            if self.closing.is_some() {
                // The line will not be finished: what was read of it is
                // answered, without END.
                if let Some(split) = &mut self.split {
                    split.open = false;
                    split.failed = true;
                }
            } else if self.split.as_ref().is_some_and(|s| s.keys.is_empty()) {
                return false;
            }
        }
        self.start_piece()
    }

    /// The next segment of a long get line: its keys join the split; an
    /// error (a key too long) ends the reply after the keys before it.
    fn extend_split(&mut self, req: Request) {
        let open = self.decoder.as_ref().is_some_and(Decoder::continues);
        let Some(split) = &mut self.split else {
            return;
        };
        match req.cmd {
            Command::Get { keys, .. } => {
                if let Some(t) = self.tallies.iter_mut().find(|t| t.get == split.get) {
                    t.keys += keys.len();
                }
                split.keys.extend(keys);
                split.open = open;
            }
            _ => {
                split.open = false;
                split.failed = true;
                self.parked = Some(req);
            }
        }
    }

    /// A text multi-get answered in pieces (`open`: the first segment of a
    /// long get line, more keys to come).
    pub(super) fn split_get(&mut self, req: Request, open: bool) {
        let Command::Get { keys, touch } = req.cmd else {
            return;
        };
        let get = self.next_get;
        self.next_get += 1;
        self.tallies.push_back(Tally {
            get,
            touch: touch.is_some(),
            keys: keys.len(),
            hits: 0,
            arrived: self.arrived,
        });
        self.split = Some(Split {
            get,
            keys: keys.into(),
            touch,
            frame: req.frame,
            open,
            failed: false,
        });
    }

    /// Start the next piece of the multi-get being split, if the caps and
    /// the key order allow; false when it must wait.
    fn start_piece(&mut self) -> bool {
        let Some(split) = &self.split else {
            return true;
        };
        let n = self.piece_keys().min(split.keys.len());
        if n == 0 {
            if split.open {
                return false;
            }
            // A long line whose last segment named no key: its END still
            // comes after the pieces before.
            let last = !split.failed;
            let (get, frame) = (split.get, split.frame.clone());
            self.split = None;
            if last {
                self.finish_empty(get, frame);
            }
            return true;
        }
        let names: Vec<Bytes> = split.keys.iter().take(n).cloned().collect();
        let mut distinct: Vec<Bytes> = Vec::with_capacity(n);
        for k in &names {
            if split.touch.is_some() || !distinct.contains(k) {
                distinct.push(k.clone());
            }
        }
        let req = Request {
            cmd: Command::Get {
                keys: distinct,
                touch: split.touch,
            },
            frame: split.frame.clone(),
        };
        let lookups = n.max(1);
        if !self.admits(lookups, 0) || !self.in_order(&req.cmd) {
            return false;
        }
        let get = split.get;
        let done = !split.open && split.keys.len() == n;
        let last = done && !split.failed;
        let repeats = matches!(&req.cmd, Command::Get { keys, .. } if keys.len() < names.len());
        if let Some(split) = &mut self.split {
            split.keys.drain(..n);
        }
        if done {
            self.split = None;
        }
        let piece = Piece {
            get,
            names: repeats.then_some(names),
            last,
        };
        self.start(req, lookups, 0, Some(piece));
        true
    }

    /// The last piece of a long get line that named no key in its last
    /// segment: nothing to look up, only the END.
    fn finish_empty(&mut self, get: u64, frame: Frame) {
        if self.flight.capacity() == 0 {
            self.flight = take_flight();
        }
        self.flight.push_back(Slot {
            req: Request {
                cmd: Command::Get {
                    keys: Vec::new(),
                    touch: None,
                },
                frame,
            },
            reply: None,
            resp: Some(Response::Values(Vec::new())),
            lookups: 0,
            cost: 0,
            piece: Some(Piece {
                get,
                names: None,
                last: true,
            }),
            arrived: self.arrived,
            _landing: None,
        });
    }

    /// The answer to one piece: its hits in the order named, and `END`
    /// after the last; an error ends the multi-get.
    pub(super) fn finish_piece(&mut self, req: &Request, piece: Piece, resp: Response) {
        if self.failed_get == Some(piece.get) {
            return;
        }
        let tally = self.tallies.front_mut().filter(|t| t.get == piece.get);
        let with_cas = matches!(req.frame, Frame::Text { cas: true, .. });
        match resp {
            Response::Values(hits) => {
                let asked = match &req.cmd {
                    Command::Get { keys, .. } => keys.len(),
                    _ => 0,
                };
                let (named, found) = match &piece.names {
                    // Each key asked once: the hits, in the order named.
                    Some(names) => {
                        let mut found = 0;
                        for name in names {
                            if let Some(v) = hits.iter().find(|v| v.key == *name) {
                                found += 1;
                                text::encode_value(&mut self.out, v, with_cas);
                            }
                        }
                        (names.len(), found)
                    }
                    None => {
                        for v in &hits {
                            text::encode_value(&mut self.out, v, with_cas);
                        }
                        (asked, hits.len())
                    }
                };
                if let Some(t) = tally {
                    t.hits += found;
                }
                self.counters.record_get(
                    matches!(req.cmd, Command::Get { touch: Some(_), .. }),
                    named as u64,
                    found as u64,
                );
                if piece.last {
                    self.out.emit(b"END\r\n");
                    self.end_tally(piece.get, false);
                }
            }
            other => {
                // The keys answered so far stay sent; the error ends the
                // reply (no END), and the rest of the multi-get is dropped.
                encode_response(req, &other, &mut self.out);
                self.counters.record(&Classified::of(&req.cmd, &other));
                self.failed_get = Some(piece.get);
                if self.split.as_ref().is_some_and(|s| s.get == piece.get) {
                    self.split = None;
                }
                self.end_tally(piece.get, true);
            }
        }
    }

    /// Count a multi-get's figures once, at its end.
    fn end_tally(&mut self, get: u64, failed: bool) {
        if self.tallies.front().is_some_and(|t| t.get == get) {
            if let Some(t) = self.tallies.pop_front() {
                self.figures
                    .ops
                    .record_get(t.touch, t.keys, t.hits, failed, t.arrived.elapsed());
            }
        }
    }
}

/// Whether a key is named more than once.
pub(super) fn has_repeats(keys: &[Bytes]) -> bool {
    keys.iter()
        .enumerate()
        .any(|(i, k)| keys[..i].iter().any(|o| o == k))
}
