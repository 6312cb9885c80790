//! Relaying memcached's admin and inspection commands ([`Command::Admin`])
//! to L1 over text: the command line goes out followed by a fence, so rend
//! can tell where a reply of any shape ends.
//!
//! [`Command::Admin`]: crate::protocol::Command::Admin

use super::find_crlf;
use crate::protocol::out::Sink;

/// How the reply to a relayed admin command ends (see [`encode_admin`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdminEnd {
    /// The line was followed by `mn`, memcached's meta no-op: the reply is
    /// everything before `mn`'s `MN\r\n`, whatever its shape (one line, a
    /// group ending in `END`, or nothing at all after `noreply`). No line
    /// of an admin reply is `MN`.
    Fence,
    /// `lru_crawler metadump`: memcached hands the connection to its
    /// crawler, which streams the dump, and reads what follows only when
    /// more bytes arrive, so a fence would not come back. The dump's lines
    /// end in a bare `\n`, so the first `\r\n` ends the reply: the
    /// dump's `END`, or a one-line refusal.
    FirstCrlf,
}

/// `MN\r\n`, the fence's reply.
pub const ADMIN_FENCE_REPLY: &[u8] = b"MN\r\n";

/// Write an admin command line (see
/// [`Command::Admin`](crate::protocol::Command::Admin)) for memcached, and
/// say how its reply ends.
pub fn encode_admin<S: Sink + ?Sized>(line: &[u8], out: &mut S) -> AdminEnd {
    out.emit(line);
    out.emit(b"\r\n");
    let mut words = line.split(|&b| b == b' ').filter(|w| !w.is_empty());
    if words.next() == Some(&b"lru_crawler"[..]) && words.next() == Some(&b"metadump"[..]) {
        return AdminEnd::FirstCrlf;
    }
    out.emit(b"mn\r\n");
    AdminEnd::Fence
}

/// Where the reply to an admin command ends in `buf`, once it has all
/// arrived: `(reply, consumed)`, the reply's length and the bytes it took
/// with its fence. `scanned` carries how far earlier calls searched, so
/// a long dump is not searched again from its start.
pub fn admin_reply_end(end: AdminEnd, buf: &[u8], scanned: &mut usize) -> Option<(usize, usize)> {
    match end {
        AdminEnd::Fence => {
            // memcached sends nothing after the fence's reply, so it ends
            // the buffer, as a whole line.
            let reply = buf.len().checked_sub(ADMIN_FENCE_REPLY.len())?;
            let whole_line = reply == 0 || buf[reply - 1] == b'\n';
            (buf.ends_with(ADMIN_FENCE_REPLY) && whole_line).then_some((reply, buf.len()))
        }
        AdminEnd::FirstCrlf => {
            let from = scanned.saturating_sub(1);
            match find_crlf(&buf[from.min(buf.len())..]) {
                Some(at) => Some((from + at + 2, from + at + 2)),
                None => {
                    *scanned = buf.len();
                    None
                }
            }
        }
    }
}
