//! Each worker thread's pool of idle buffers: a connection waiting for its
//! client holds none; it takes a read buffer and a request queue from here
//! when bytes arrive and gives them back once everything read has been
//! answered.

use std::cell::RefCell;
use std::collections::VecDeque;

use bytes::BytesMut;

use super::{Slot, READ_CHUNK};

/// Buffers larger than this are not kept in the per-thread pool.
const POOL_KEEP: usize = 64 * 1024;
/// Buffers kept in each thread's pool.
const POOL_SIZE: usize = 256;

thread_local! {
    /// Read and write buffers of this worker's connections that wait for
    /// their clients.
    static POOL: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
    /// Empty request queues, likewise: a slot is a few hundred bytes, so an
    /// idle connection keeps none, and a busy one does not regrow its queue
    /// on every burst.
    static FLIGHTS: RefCell<Vec<VecDeque<Slot>>> = const { RefCell::new(Vec::new()) };
}

/// Queues of more slots than this are freed rather than pooled.
const FLIGHT_KEEP: usize = 64;

pub(super) fn take_flight() -> VecDeque<Slot> {
    FLIGHTS
        .with(|p| p.borrow_mut().pop())
        .unwrap_or_else(|| VecDeque::with_capacity(16))
}

pub(super) fn give_flight(flight: VecDeque<Slot>) {
    if flight.capacity() == 0 || flight.capacity() > FLIGHT_KEEP || !flight.is_empty() {
        return;
    }
    FLIGHTS.with(|p| {
        let mut p = p.borrow_mut();
        if p.len() < POOL_SIZE {
            p.push(flight);
        }
    });
}

pub(super) fn take_buf() -> BytesMut {
    POOL.with(|p| p.borrow_mut().pop())
        .unwrap_or_else(|| BytesMut::with_capacity(READ_CHUNK))
}

pub(super) fn give_buf(buf: BytesMut) {
    if buf.capacity() < READ_CHUNK / 2 || buf.capacity() > POOL_KEEP {
        return;
    }
    POOL.with(|p| {
        let mut p = p.borrow_mut();
        if p.len() < POOL_SIZE {
            p.push(buf);
        }
    });
}
