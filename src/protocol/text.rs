//! memcached's text protocol: requests as memcached 1.6.18 parses them
//! (tokens split on spaces, its argument counts, its error strings) and
//! replies as it writes them.
//!
//! Where memcached is unsafe, rend is deliberately stricter (DESIGN §2): a
//! refused storage command whose `<bytes>` parsed has its data block
//! discarded, so the block is never run as a command; a `<bytes>` that does
//! not parse closes the connection; flags and exptimes that memcached would
//! truncate are refused.
//!
//! The server side is [`RequestDecoder`] (in `text/request.rs`) and
//! [`encode_response`] (`text/response.rs`); the client side, for the
//! tools and tests, is [`encode_request`] and [`decode_response`]
//! (`text/client.rs`); `text/admin.rs` relays memcached's admin commands
//! to L1.

mod admin;
mod client;
mod request;
mod response;

pub use admin::{admin_reply_end, encode_admin, AdminEnd, ADMIN_FENCE_REPLY};
pub use client::{decode_response, encode_request};
pub use request::RequestDecoder;
pub use response::{encode_response, encode_value};

use super::out::Sink;

fn push_line<S: Sink + ?Sized>(out: &mut S, parts: &[&[u8]]) {
    for p in parts {
        out.emit(p);
    }
    out.emit(b"\r\n");
}

/// Decimal digits of `v`, without going through `fmt` on the hot path.
pub(crate) fn push_u64<S: Sink + ?Sized>(out: &mut S, mut v: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.emit(&digits[i..]);
}

fn find_crlf(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\r\n")
}
