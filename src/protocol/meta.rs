//! memcached's meta protocol (`mg`, `ms`, `md`, `ma`, `mn`, `me`): requests
//! parsed and refused as memcached 1.6.18 does, replies written and read
//! byte for byte as it writes them.
//!
//! Nothing here touches a socket or runs a command. [`parse`] turns one
//! request line into a [`MetaRequest`] (for `ms`, the caller then reads the
//! data block and hands it to [`MetaRequest::attach_value`]) or into a
//! [`MetaError`]: memcached's reply line and what to do with the bytes that
//! follow. [`MetaRequest::encode`] writes a request back out (to forward it
//! to memcached), [`MetaReply::encode`] writes a reply, and
//! [`MetaReply::decode`] reads one incrementally.
//!
//! memcached 1.6.18 is the reference, and where its binary and its
//! `protocol.txt` disagree the binary wins (each case says so below). The
//! shape of its parser, which this module follows step by step:
//!
//! - The line is split on spaces only (a tab is part of a token) and ends at
//!   its `\n` (a `\r` before it is dropped) or at a NUL.
//! - Every meta command accepts every flag letter any meta command knows
//!   (`b c f h k l q s t u v I N R T O P L F C M J D`), each at most once;
//!   tokens memcached reads as numbers are checked for all commands (so `mg
//!   k Fx` is refused though `mg` ignores `F`). Any other letter is `invalid
//!   flag`; a repeated one, or any byte of 127 or more, is `duplicate flag`.
//! - Errors do not stop the scan of the flags (the last bad token names the
//!   error), except an unknown or repeated flag, which ends it.
//! - `md` and `ma` answer every flag error with `CLIENT_ERROR invalid or
//!   duplicate flag`.
//! - A line of more than 19 tokens (17 flags for `mg`, `md`, `ma`; 16 for
//!   `ms`) is refused: `options flags are too long` for `mg`, `options flags
//!   too long` for the others.
//! - Errors are always sent, `q` or not.
//!
//! Where memcached silently truncates a number (an exptime `T`/`N`/`R` or an
//! `ms` data length beyond a signed 32-bit integer, client flags `F` beyond
//! 32 bits), rend refuses it with the error memcached gives a non-numeric
//! token there, as it does for the classic commands (README, "Where rend
//! deliberately differs from memcached", items 2 and 3). [`MetaError`] says
//! when memcached would have answered otherwise.

pub mod base64;
mod reply;
#[cfg(test)]
mod tests;

pub use reply::{Code, MetaReply};

use std::ops::Range;

use bytes::Bytes;

use super::number::{parse_i32, parse_u32, parse_u64};
use super::out::Sink;
use super::text::push_u64;
use super::{Invalid, Limits, StoreMode, MAX_KEY_LEN};

/// memcached refuses a meta line of more than this many tokens (its
/// `MFLAG_MAX_OPT_LENGTH`, 20, counts a final empty token too).
pub const MAX_LINE_TOKENS: usize = 19;

/// The longest opaque memcached echoes: its limit of 32 bytes counts the
/// token with its `O` (`protocol.txt` says "up to 32 bytes" of opaque; the
/// binary refuses `O` and 32 bytes).
pub const MAX_OPAQUE: usize = 31;

/// The longest reply line [`MetaReply::decode`] waits for. memcached's
/// longest meta reply line is well under 1 KB (a base64 key of 250 bytes,
/// an opaque of 32, a handful of numbers).
pub const MAX_REPLY_LINE: usize = 2048;

/// The reply lines of refused meta requests, exactly as memcached 1.6.18
/// sends them (without `\r\n`).
pub mod replies {
    /// Not a command: a two-letter `m?` memcached does not know, or a meta
    /// command without its key.
    pub const ERROR: &str = "ERROR";
    pub const BAD_FORMAT: &str = "CLIENT_ERROR bad command line format";
    /// A bad `N`, `T`, `R` or `C` token.
    pub const BAD_TOKEN: &str = "CLIENT_ERROR bad token in command line format";
    pub const INVALID_FLAG: &str = "CLIENT_ERROR invalid flag";
    pub const DUPLICATE_FLAG: &str = "CLIENT_ERROR duplicate flag";
    /// `md` and `ma`: any error among the flags.
    pub const INVALID_OR_DUPLICATE_FLAG: &str = "CLIENT_ERROR invalid or duplicate flag";
    /// `mg` with more than 17 flags.
    pub const MG_TOO_MANY_FLAGS: &str = "CLIENT_ERROR options flags are too long";
    /// `ms`, `md`, `ma` with too many flags.
    pub const TOO_MANY_FLAGS: &str = "CLIENT_ERROR options flags too long";
    pub const OPAQUE_TOO_LONG: &str = "CLIENT_ERROR opaque token too long";
    pub const BAD_BASE64_KEY: &str = "CLIENT_ERROR error decoding key";
    pub const BAD_MODE_LENGTH: &str = "CLIENT_ERROR incorrect length for M token";
    pub const BAD_MS_MODE: &str = "CLIENT_ERROR invalid mode for ms M token";
    pub const BAD_MA_MODE: &str = "CLIENT_ERROR invalid mode for ma M token";
    pub const BAD_INITIAL: &str = "CLIENT_ERROR invalid numeric initial value";
    pub const BAD_DELTA: &str = "CLIENT_ERROR invalid numeric delta value";
    /// An `ms` data block not followed by `\r\n`.
    pub const BAD_DATA_CHUNK: &str = "CLIENT_ERROR bad data chunk";
    pub const TOO_LARGE: &str = "SERVER_ERROR object too large for cache";
}

/// The meta commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verb {
    /// `mg`
    Get,
    /// `ms`
    Set,
    /// `md`
    Delete,
    /// `ma`
    Arith,
    /// `mn`
    Noop,
    /// `me`
    Debug,
}

impl Verb {
    /// The command as it is written (`mg`, `ms`, …).
    pub fn as_bytes(self) -> &'static [u8] {
        match self {
            Verb::Get => b"mg",
            Verb::Set => b"ms",
            Verb::Delete => b"md",
            Verb::Arith => b"ma",
            Verb::Noop => b"mn",
            Verb::Debug => b"me",
        }
    }
}

/// One flag of a request or a reply: its letter and the token after it
/// (`T30` is `T` and `30`; `v` has an empty token).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Flag {
    pub code: u8,
    pub token: Bytes,
}

impl Flag {
    pub fn new(code: u8, token: impl Into<Bytes>) -> Flag {
        Flag {
            code,
            token: token.into(),
        }
    }
}

/// `ma`'s direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ArithMode {
    Incr,
    Decr,
}

/// A parsed meta request. [`parse`] only returns requests whose every
/// number-bearing token is valid, so the typed accessors below never see a
/// bad one (on a request built by hand they read a bad token as absent).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetaRequest {
    pub verb: Verb,
    /// The key as memcached looks it up: decoded when the request has the
    /// `b` flag. Empty for `mn`.
    pub key: Bytes,
    /// The flags in request order, `b` included. For `me`, only `b` (memcached
    /// ignores its other tokens); none for `mn`.
    pub flags: Vec<Flag>,
    /// `ms`: the data length its line declared.
    pub datalen: Option<usize>,
    /// `ms`: the data block, once [attached](MetaRequest::attach_value).
    pub value: Option<Bytes>,
}

impl MetaRequest {
    /// The first flag with this letter (a parsed request has each at most
    /// once).
    pub fn flag(&self, code: u8) -> Option<&Flag> {
        self.flags.iter().find(|f| f.code == code)
    }

    pub fn has(&self, code: u8) -> bool {
        self.flag(code).is_some()
    }

    /// The token after a flag's letter.
    pub fn token(&self, code: u8) -> Option<&Bytes> {
        self.flag(code).map(|f| &f.token)
    }

    /// `b`: the key travels base64 encoded (and `k` returns it so).
    pub fn base64(&self) -> bool {
        self.has(b'b')
    }

    /// `q`: nominal replies are left out (see [`MetaRequest::hides`]).
    pub fn quiet(&self) -> bool {
        self.has(b'q')
    }

    /// `O`: the opaque to echo (at most [`MAX_OPAQUE`] bytes).
    pub fn opaque(&self) -> Option<&Bytes> {
        self.token(b'O')
    }

    /// `T`: the TTL to set (memcached's exptime rules: 0 never expires,
    /// negative has expired, beyond 30 days is a Unix time).
    pub fn ttl(&self) -> Option<i32> {
        self.token(b'T').and_then(|t| parse_i32(t))
    }

    /// `N`: vivify on a miss, with this TTL.
    pub fn vivify(&self) -> Option<i32> {
        self.token(b'N').and_then(|t| parse_i32(t))
    }

    /// `R`: win the recache when the remaining TTL is below this.
    pub fn recache(&self) -> Option<i32> {
        self.token(b'R').and_then(|t| parse_i32(t))
    }

    /// `F`: the client flags to store (`ms`; 0 when absent).
    pub fn client_flags(&self) -> Option<u32> {
        self.token(b'F').and_then(|t| parse_u32(t))
    }

    /// `C`: the cas value to compare.
    pub fn compare_cas(&self) -> Option<u64> {
        self.token(b'C').and_then(|t| strtoull(t))
    }

    /// `J`: `ma`'s initial value on a vivified miss (memcached's default 0).
    pub fn initial(&self) -> Option<u64> {
        self.token(b'J').and_then(|t| strtoull(t))
    }

    /// `D`: `ma`'s delta (memcached's default 1).
    pub fn delta(&self) -> Option<u64> {
        self.token(b'D').and_then(|t| strtoull(t))
    }

    /// `ms`: how to store, as memcached decides it: `M` picks set (`S`, the
    /// default), add (`E`), replace (`R`), append (`A`) or prepend (`P`),
    /// and a `C` turns set and replace into [`StoreMode::Cas`] (append and
    /// prepend compare the cas themselves; add ignores it). `None` for the
    /// other commands.
    pub fn store_mode(&self) -> Option<StoreMode> {
        if self.verb != Verb::Set {
            return None;
        }
        let mode = match self.token(b'M').map(|t| &t[..]) {
            None | Some(b"S") => StoreMode::Set,
            Some(b"E") => StoreMode::Add,
            Some(b"R") => StoreMode::Replace,
            Some(b"A") => StoreMode::Append,
            Some(b"P") => StoreMode::Prepend,
            Some(_) => return None,
        };
        let cas = self.has(b'C') && matches!(mode, StoreMode::Set | StoreMode::Replace);
        Some(if cas { StoreMode::Cas } else { mode })
    }

    /// `ma`: increment (`MI`, `M+`, the default) or decrement (`MD`, `M-`).
    /// `None` for the other commands.
    pub fn arith_mode(&self) -> Option<ArithMode> {
        if self.verb != Verb::Arith {
            return None;
        }
        match self.token(b'M').map(|t| &t[..]) {
            None | Some(b"I") | Some(b"+") => Some(ArithMode::Incr),
            Some(b"D") | Some(b"-") => Some(ArithMode::Decr),
            Some(_) => None,
        }
    }

    /// Take an `ms` data block: the `datalen` bytes the line declared and
    /// the `\r\n` after them, exactly `datalen + 2` bytes. A block that does
    /// not end in `\r\n` is memcached's `bad data chunk` (sent even under
    /// `q`), after which the next byte starts a new command.
    pub fn attach_value(&mut self, mut block: Bytes) -> Result<(), MetaError> {
        let len = self.datalen.unwrap_or(0);
        if block.len().checked_sub(2) != Some(len) || !block.ends_with(b"\r\n") {
            return Err(MetaError {
                reply: replies::BAD_DATA_CHUNK,
                next: After::Continue,
                memcached: Some(After::Continue),
                delete: None,
            });
        }
        block.truncate(len);
        self.value = Some(block);
        Ok(())
    }

    /// Write the request as memcached reads it: the line (a `b` key encoded
    /// again, which memcached decodes to the same bytes) and, for `ms` with
    /// its value attached, the data block. An `ms` line declares the
    /// attached value's length (else `datalen`).
    pub fn encode<S: Sink + ?Sized>(&self, out: &mut S) {
        out.emit(self.verb.as_bytes());
        if self.verb == Verb::Noop {
            out.emit(b"\r\n");
            return;
        }
        out.emit(b" ");
        if self.base64() {
            out.emit(&base64::encode(&self.key));
        } else {
            out.emit(&self.key);
        }
        if self.verb == Verb::Set {
            let len = self
                .value
                .as_ref()
                .map_or(self.datalen.unwrap_or(0), Bytes::len);
            out.emit(b" ");
            push_u64(out, len as u64);
        }
        for f in &self.flags {
            out.emit(&[b' ', f.code]);
            out.emit(&f.token);
        }
        out.emit(b"\r\n");
        if let (Verb::Set, Some(value)) = (self.verb, &self.value) {
            out.emit_shared(value);
            out.emit(b"\r\n");
        }
    }

    /// Whether memcached leaves `reply` out because of `q`: a miss of `mg`
    /// (`EN`), the `HD` of a stored `ms` and of a deleted or invalidated
    /// `md`, and a successful `ma` (`HD`, or `VA` with `v`) unless it
    /// `created` the item (memcached 1.6.18 answers a vivified `ma` even
    /// under `q`; `protocol.txt` does not say). Errors and every other code
    /// are always sent.
    pub fn hides(&self, reply: &MetaReply, created: bool) -> bool {
        if !self.quiet() {
            return false;
        }
        match (self.verb, reply) {
            (Verb::Get, MetaReply::Status { code, .. }) => *code == Code::Miss,
            (Verb::Set | Verb::Delete, MetaReply::Status { code, .. }) => *code == Code::Header,
            (Verb::Arith, MetaReply::Status { code, .. }) => *code == Code::Header && !created,
            (Verb::Arith, MetaReply::Value { .. }) => !created,
            _ => false,
        }
    }
}

/// What the connection does with the bytes after a refused request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum After {
    /// Read the next command from the next byte.
    Continue,
    /// Discard this many bytes first (an `ms` data block and its `\r\n`).
    Swallow(usize),
    /// Send the reply, then close: the stream cannot be followed.
    Close,
}

/// A refused meta request: the reply to send and what to do next.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reply}")]
pub struct MetaError {
    /// The reply line, without `\r\n`: memcached's own, byte for byte,
    /// whenever `memcached` is `Some`.
    pub reply: &'static str,
    /// What the caller must do with the bytes that follow. This is
    /// `memcached`'s choice, except for `ms`, where rend is stricter (README,
    /// "Where rend deliberately differs from memcached", items 1 and 3): a
    /// refused `ms` whose data length parsed always has its data block
    /// swallowed (memcached runs it as a command when the key is too long or
    /// the flags too many), and one whose data length is there but is not a
    /// number from 0 to 2^31 - 3 closes the connection (memcached runs the
    /// block as a command). An `ms` with no data length at all continues.
    pub next: After,
    /// What memcached 1.6.18 does after sending this same reply. `None`
    /// where memcached answers the line otherwise: it truncates a number
    /// rend refuses (see the module doc).
    ///
    /// memcached sends an `ms` error only once it has swallowed the data
    /// block, so the reply to a too-large value comes after its last byte;
    /// rend may answer at once, as nothing is answered in between either way.
    pub memcached: Option<After>,
    /// An `ms` too large to store: memcached also deletes the key, so a stale
    /// value does not outlive a failed write (in every mode, append and add
    /// too).
    pub delete: Option<Bytes>,
}

impl MetaError {
    /// The refusal as the crate's neutral [`Invalid`].
    pub fn to_invalid(&self) -> Invalid {
        match self.reply {
            replies::ERROR => Invalid::UnknownCommand,
            replies::TOO_LARGE => Invalid::TooLarge {
                delete: self.delete.clone(),
            },
            replies::BAD_DATA_CHUNK => Invalid::BadDataChunk,
            r => Invalid::Client(r.strip_prefix("CLIENT_ERROR ").unwrap_or(r)),
        }
    }

    /// Write the reply line.
    pub fn encode<S: Sink + ?Sized>(&self, out: &mut S) {
        out.emit(self.reply.as_bytes());
        out.emit(b"\r\n");
    }
}

/// Whether memcached reads `line` as a meta command: its first token is
/// two bytes and starts with `m`. Such a line goes to [`parse`], which
/// answers the unknown ones (`mz`) with `ERROR` as memcached does.
pub fn is_meta(line: &[u8]) -> bool {
    let content = &line[..content_len(line)];
    tokenize(content, 1)
        .first()
        .is_some_and(|t| t.len() == 2 && content[t.start] == b'm')
}

/// Parse one meta request line, as it arrived: with its `\n` (or `\r\n`),
/// or without; a NUL ends it, as in memcached. An `ms` whose line parses
/// has `datalen` set: the caller reads `datalen + 2` bytes and hands them
/// to [`MetaRequest::attach_value`]. `limits.max_value` is the largest
/// value accepted; larger is memcached's too-large refusal.
pub fn parse(line: &Bytes, limits: &Limits) -> Result<MetaRequest, MetaError> {
    let refusal = match check(line, limits, Numbers::Strict) {
        Ok(req) => return Ok(req),
        Err(refusal) => refusal,
    };
    // memcached's own reading of the same line: does it refuse it alike?
    let memcached = match check(line, limits, Numbers::Lax) {
        Err(m) if m.reply == refusal.reply => Some(m.memcached),
        _ => None,
    };
    Err(MetaError {
        reply: refusal.reply,
        next: refusal.rend,
        memcached,
        delete: refusal.delete,
    })
}

/// How [`check`] reads numbers: rend's way, or memcached's (which
/// truncates instead of refusing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Numbers {
    Strict,
    Lax,
}

impl Numbers {
    /// An exptime token (`N`, `T`, `R`): `safe_strtol`.
    fn exptime_ok(self, t: &[u8]) -> bool {
        match self {
            Numbers::Strict => parse_i32(t).is_some(),
            Numbers::Lax => strtol(t).is_some(),
        }
    }

    /// Client flags (`F`): `safe_strtoul`, a u64 on memcached's platforms.
    fn client_flags_ok(self, t: &[u8]) -> bool {
        match self {
            Numbers::Strict => parse_u32(t).is_some(),
            Numbers::Lax => strtoull(t).is_some(),
        }
    }

    /// `ms`'s data length: `safe_strtol` into an int32 (memcached keeps the
    /// low 32 bits), then 0 to `INT_MAX - 2`.
    fn datalen(self, t: &[u8]) -> Option<usize> {
        let v = match self {
            Numbers::Strict => parse_i32(t)?,
            Numbers::Lax => strtol(t)? as i32,
        };
        if v > i32::MAX - 2 {
            return None;
        }
        usize::try_from(v).ok()
    }
}

/// What [`check`] refuses: the reply, what memcached and rend do next, and
/// the key a too-large `ms` deletes.
#[derive(Debug)]
struct Refusal {
    reply: &'static str,
    memcached: After,
    rend: After,
    delete: Option<Bytes>,
}

/// memcached 1.6.18's `process_m*_command` up to where it touches the
/// cache: the same checks in the same order, with numbers read `numbers`'
/// way.
///
/// It stays one function (about 100 lines) because the order of its checks
/// is the point: it decides which error a line with several gets, and
/// reads top to bottom as memcached's does.
fn check(line: &Bytes, limits: &Limits, numbers: Numbers) -> Result<MetaRequest, Refusal> {
    let content = line.slice(..content_len(line));
    let tokens = tokenize(&content, MAX_LINE_TOKENS + 1);
    let text = |i: usize| &content[tokens[i].clone()];
    let mut refusal = Refusal {
        reply: replies::ERROR,
        memcached: After::Continue,
        rend: After::Continue,
        delete: None,
    };
    let Some(verb) = tokens.first().and_then(|r| verb_of(&content[r.clone()])) else {
        return Err(refusal);
    };
    // memcached answers `mn` whatever follows it.
    if verb == Verb::Noop {
        return Ok(MetaRequest {
            verb,
            key: Bytes::new(),
            flags: Vec::new(),
            datalen: None,
            value: None,
        });
    }
    if verb == Verb::Debug {
        return check_debug(&content, &tokens);
    }
    if verb == Verb::Set {
        // rend's rule for what follows a refused ms (see MetaError::next).
        refusal.rend = match tokens.get(2) {
            None => After::Continue,
            Some(r) => match Numbers::Strict.datalen(&content[r.clone()]) {
                Some(len) => After::Swallow(len + 2),
                None => After::Close,
            },
        };
    }
    let refuse = |mut refusal: Refusal, reply: &'static str| {
        refusal.reply = reply;
        Err(refusal)
    };
    if tokens.len() < 2 {
        return refuse(refusal, replies::ERROR);
    }
    if tokens[1].len() > MAX_KEY_LEN {
        return refuse(refusal, replies::BAD_FORMAT);
    }
    let mut datalen = None;
    if verb == Verb::Set && tokens.len() == 2 {
        return refuse(refusal, replies::BAD_FORMAT);
    }
    if tokens.len() > MAX_LINE_TOKENS {
        let reply = if verb == Verb::Get {
            replies::MG_TOO_MANY_FLAGS
        } else {
            replies::TOO_MANY_FLAGS
        };
        return refuse(refusal, reply);
    }
    if verb == Verb::Set {
        let Some(len) = numbers.datalen(text(2)) else {
            return refuse(refusal, replies::BAD_FORMAT);
        };
        datalen = Some(len);
        // From here on memcached swallows the data block of a refusal.
        refusal.memcached = After::Swallow(len + 2);
    }
    // md and ma answer every error of the flags alike.
    let flag_error = |reply: &'static str| match verb {
        Verb::Delete | Verb::Arith => replies::INVALID_OR_DUPLICATE_FLAG,
        _ => reply,
    };

    let first_flag = if verb == Verb::Set { 3 } else { 2 };
    let key = content.slice(tokens[1].clone());
    let (key, flags) = match preparse(&content, &tokens[first_flag..], key, numbers) {
        Ok(parsed) => parsed,
        Err(reply) => return refuse(refusal, flag_error(reply)),
    };

    let req = MetaRequest {
        verb,
        key,
        flags,
        datalen,
        value: None,
    };
    let opaque_too_long = req.opaque().is_some_and(|o| o.len() > MAX_OPAQUE);
    match verb {
        Verb::Arith if req.arith_mode().is_none() => refuse(refusal, replies::BAD_MA_MODE),
        // ms checks the opaque first but names the mode's error first.
        Verb::Set if req.store_mode().is_none() => refuse(refusal, replies::BAD_MS_MODE),
        _ if opaque_too_long => refuse(refusal, replies::OPAQUE_TOO_LONG),
        Verb::Set if datalen.is_some_and(|len| len > limits.max_value) => {
            refusal.delete = Some(req.key);
            refuse(refusal, replies::TOO_LARGE)
        }
        _ => Ok(req),
    }
}

/// The meta command a first token names.
fn verb_of(token: &[u8]) -> Option<Verb> {
    Some(match token {
        b"mg" => Verb::Get,
        b"ms" => Verb::Set,
        b"md" => Verb::Delete,
        b"ma" => Verb::Arith,
        b"mn" => Verb::Noop,
        b"me" => Verb::Debug,
        _ => return None,
    })
}

/// memcached's `_meta_flag_preparse`: the flags of `tokens`, each at most
/// once, their number tokens checked `numbers`' way, and the key decoded
/// when `b` is among them. `Err` is the reply (before `md` and `ma` reword
/// it): an unknown or repeated flag ends the scan, other errors do not (the
/// last one named wins).
fn preparse(
    content: &Bytes,
    tokens: &[Range<usize>],
    mut key: Bytes,
    numbers: Numbers,
) -> Result<(Bytes, Vec<Flag>), &'static str> {
    let mut flags = Vec::with_capacity(tokens.len());
    let mut seen = [false; 127];
    let mut error: Option<&'static str> = None;
    for range in tokens {
        let token = content.slice(range.clone());
        let code = token[0];
        let arg = &token[1..];
        match seen.get_mut(usize::from(code)) {
            Some(seen) if !*seen => *seen = true,
            _ => return Err(replies::DUPLICATE_FLAG),
        }
        let bad = match code {
            b'b' => match base64::decode(&key) {
                Some(decoded) => {
                    key = Bytes::from(decoded);
                    None
                }
                None => Some(replies::BAD_BASE64_KEY),
            },
            b'N' | b'T' | b'R' => (!numbers.exptime_ok(arg)).then_some(replies::BAD_TOKEN),
            // memcached flags an error here without naming one: the reply
            // is the last error named before, or the default.
            b'F' => (!numbers.client_flags_ok(arg)).then_some(error.unwrap_or(replies::BAD_FORMAT)),
            b'C' => strtoull(arg).is_none().then_some(replies::BAD_TOKEN),
            b'M' => (token.len() != 2).then_some(replies::BAD_MODE_LENGTH),
            b'J' => strtoull(arg).is_none().then_some(replies::BAD_INITIAL),
            b'D' => strtoull(arg).is_none().then_some(replies::BAD_DELTA),
            b'c' | b'f' | b'h' | b'k' | b'l' | b'q' | b's' | b't' | b'u' | b'v' | b'I' | b'O'
            | b'P' | b'L' => None,
            _ => return Err(replies::INVALID_FLAG),
        };
        if bad.is_some() {
            error = bad;
        }
        flags.push(Flag {
            code,
            token: token.slice(1..),
        });
    }
    match error {
        Some(reply) => Err(reply),
        None => Ok((key, flags)),
    }
}

/// `me <key> [b]`: memcached reads only whether the token after the key is
/// exactly `b`, and ignores the rest.
fn check_debug(content: &Bytes, tokens: &[Range<usize>]) -> Result<MetaRequest, Refusal> {
    let refuse = || Refusal {
        reply: replies::BAD_FORMAT,
        memcached: After::Continue,
        rend: After::Continue,
        delete: None,
    };
    let Some(key) = tokens.get(1) else {
        return Err(refuse());
    };
    if key.len() > MAX_KEY_LEN {
        return Err(refuse());
    }
    let mut key = content.slice(key.clone());
    let mut flags = Vec::new();
    if tokens.get(2).is_some_and(|b| &content[b.clone()] == b"b") {
        key = Bytes::from(base64::decode(&key).ok_or_else(refuse)?);
        flags.push(Flag::new(b'b', Bytes::new()));
    }
    Ok(MetaRequest {
        verb: Verb::Debug,
        key,
        flags,
        datalen: None,
        value: None,
    })
}

/// The length of a line's content, as memcached's `try_read_command_ascii`
/// and `tokenize_command` see it: without its `\n` and a `\r` before it
/// (kept when it is the line's only byte), and up to a NUL.
fn content_len(line: &[u8]) -> usize {
    let mut len = line.len();
    if len > 0 && line[len - 1] == b'\n' {
        len -= 1;
        if len > 1 && line[len - 1] == b'\r' {
            len -= 1;
        }
    }
    line[..len].iter().position(|&b| b == 0).unwrap_or(len)
}

/// The first `max` space-separated tokens of `content` (memcached splits on
/// spaces only).
fn tokenize(content: &[u8], max: usize) -> Vec<Range<usize>> {
    let mut tokens = Vec::with_capacity(max.min(8));
    let mut start = None;
    for (i, &b) in content.iter().enumerate() {
        if b == b' ' {
            if let Some(s) = start.take() {
                tokens.push(s..i);
                if tokens.len() == max {
                    return tokens;
                }
            }
        } else if start.is_none() {
            start = Some(i);
        }
    }
    if let Some(s) = start {
        tokens.push(s..content.len());
    }
    tokens
}

fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// memcached's `safe_strtoull`. Unlike [`parse_u64`] it refuses a value of
/// 2^63 or more when the token holds a `-` anywhere, even after the number
/// (its `strchr`): `C9223372036854775808\t-` is refused.
fn strtoull(t: &[u8]) -> Option<u64> {
    let v = parse_u64(t)?;
    if i64::try_from(v).is_err() && t.contains(&b'-') {
        return None;
    }
    Some(v)
}

/// memcached's `safe_strtol` before it truncates to 32 bits: C's `strtol`
/// on a 64-bit long, then white space or the end.
fn strtol(t: &[u8]) -> Option<i64> {
    let t = &t[t.iter().take_while(|&&b| is_c_space(b)).count()..];
    let (negative, digits) = match t.first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    if !digits.first().is_some_and(u8::is_ascii_digit) {
        return None;
    }
    let magnitude = parse_u64(digits)?;
    if negative {
        0i64.checked_sub_unsigned(magnitude)
    } else {
        i64::try_from(magnitude).ok()
    }
}
