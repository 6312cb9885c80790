//! Where encoders write: [`Sink`] takes the bytes of a frame, and lets a sink
//! keep a value by reference instead of copying it. [`OutBuf`] is the sink
//! rend's sockets write from: small pieces are copied into one growing
//! buffer, values of [`SHARE_MIN`] bytes or more stay the `Bytes` they
//! arrived in (a slice of a read buffer) and go out with vectored writes, so
//! a value named many times in one multi-get costs one copy, not many.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, Bytes, BytesMut};

/// Values at least this long are kept by reference; shorter ones are
/// cheaper to copy than to give their own entry in a vectored write.
pub const SHARE_MIN: usize = 512;

/// The target of an encoder.
pub trait Sink {
    /// Copy `s` in.
    fn emit(&mut self, s: &[u8]);
    /// Value bytes: a sink may keep a reference to them instead of a copy.
    fn emit_shared(&mut self, b: &Bytes) {
        self.emit(b)
    }
}

impl Sink for BytesMut {
    fn emit(&mut self, s: &[u8]) {
        self.extend_from_slice(s);
    }
}

/// Bytes waiting to be written, in order: shared segments, then the copy
/// buffer still being filled.
#[derive(Debug, Default)]
pub struct OutBuf {
    segs: VecDeque<Bytes>,
    tail: BytesMut,
    len: usize,
}

impl Sink for OutBuf {
    fn emit(&mut self, s: &[u8]) {
        self.tail.extend_from_slice(s);
        self.len += s.len();
    }

    fn emit_shared(&mut self, b: &Bytes) {
        if b.len() < SHARE_MIN {
            return self.emit(b);
        }
        if !self.tail.is_empty() {
            // `split` keeps the spare capacity in `tail` for what follows.
            self.segs.push_back(self.tail.split().freeze());
        }
        self.segs.push_back(b.clone());
        self.len += b.len();
    }
}

impl OutBuf {
    /// Bytes not yet written.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Up to `dst.len()` slices to write, front first; how many were filled.
    pub fn slices<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        for s in self.segs.iter().map(|b| &b[..]).chain(Some(&self.tail[..])) {
            if n == dst.len() {
                break;
            }
            if !s.is_empty() {
                dst[n] = IoSlice::new(s);
                n += 1;
            }
        }
        n
    }

    /// `n` bytes were written: drop them from the front.
    pub fn consume(&mut self, mut n: usize) {
        self.len -= n.min(self.len);
        while n > 0 {
            match self.segs.front_mut() {
                Some(front) if front.len() <= n => {
                    n -= front.len();
                    self.segs.pop_front();
                }
                Some(front) => {
                    front.advance(n);
                    return;
                }
                None => {
                    self.tail.advance(n.min(self.tail.len()));
                    return;
                }
            }
        }
    }

    /// Give memory back once everything is written: the copy buffer is kept
    /// only while it is small.
    pub fn release(&mut self, keep: usize) {
        if self.len == 0 && self.tail.capacity() > keep {
            self.tail = BytesMut::new();
        }
        if self.segs.is_empty() && self.segs.capacity() > 64 {
            self.segs = VecDeque::new();
        }
    }

    /// Everything, as one contiguous buffer (tests, and writers without
    /// vectored I/O).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.len);
        for s in &self.segs {
            v.extend_from_slice(s);
        }
        v.extend_from_slice(&self.tail);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_values_keep_their_place_and_are_not_copied() {
        let big = Bytes::from(vec![7u8; 4096]);
        let mut o = OutBuf::default();
        o.emit(b"VALUE k 0 4096\r\n");
        o.emit_shared(&big);
        o.emit(b"\r\n");
        o.emit_shared(&big);
        o.emit_shared(&Bytes::from_static(b"small"));
        o.emit(b"END\r\n");
        assert_eq!(o.len(), 16 + 4096 + 2 + 4096 + 5 + 5);
        let mut iov = [IoSlice::new(&[]); 8];
        let n = o.slices(&mut iov);
        assert_eq!(n, 5, "header, value, crlf, value, tail");
        assert_eq!(
            iov[1].as_ptr(),
            big.as_ptr(),
            "the value is the same memory"
        );
        let all = o.to_vec();
        assert!(all.starts_with(b"VALUE k 0 4096\r\n\x07"));
        assert!(all.ends_with(b"\x07smallEND\r\n"));
    }

    #[test]
    fn consume_walks_across_segments_and_the_tail() {
        let big = Bytes::from(vec![1u8; 1000]);
        let mut o = OutBuf::default();
        o.emit(b"abc");
        o.emit_shared(&big);
        o.emit(b"xyz");
        let want = o.to_vec();
        for cut in [1, 3, 500, 1003, 1004] {
            let mut p = OutBuf::default();
            p.emit(b"abc");
            p.emit_shared(&big);
            p.emit(b"xyz");
            p.consume(cut);
            assert_eq!(p.to_vec(), want[cut..].to_vec(), "cut at {cut}");
            assert_eq!(p.len(), want.len() - cut);
        }
        o.consume(o.len());
        assert!(o.is_empty());
        o.release(0);
        let mut iov = [IoSlice::new(&[]); 2];
        assert_eq!(o.slices(&mut iov), 0);
    }
}
