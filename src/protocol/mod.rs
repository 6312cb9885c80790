//! Wire formats: one protocol-neutral request/response model and its two
//! encodings, memcached's text protocol ([`text`]) and binary protocol
//! ([`binary`]); the text decoder reads memcached's meta commands with
//! [`meta`], their codec.
//!
//! Nothing here touches a socket. Decoders are incremental: `Ok(Some(_))`
//! consumed one frame, `Ok(None)` needs more bytes, and `Err(_)` is a framing
//! error after which the stream cannot be trusted and the connection must
//! close. A client mistake that memcached answers and survives (a bad number,
//! a key too long, a value too large) decodes to a [`Command::Invalid`] value
//! so the connection can answer it and go on.

pub mod binary;
pub mod expiry;
pub mod meta;
pub mod number;
pub mod out;
pub mod text;

#[cfg(test)]
pub(crate) mod proptests;
#[cfg(test)]
mod tests;

use bytes::Bytes;

/// memcached's key limit (`KEY_MAX_LENGTH`).
pub const MAX_KEY_LEN: usize = 250;

/// The largest value memcached 1.6.18 stores with `-I 1m` (its default): a
/// 1-byte key, zero flags. Its item header counts against the 1 MiB item, so a
/// 250-byte key leaves 1,048,267 bytes; memcached itself refuses the values
/// between, and rend passes its refusal on.
pub const DEFAULT_MAX_VALUE: usize = 1_048_516;

/// Limits a decoder enforces before it buffers anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest value (data block) accepted; a larger one is refused with the
    /// too-large reply and its bytes are discarded as they arrive.
    pub max_value: usize,
    /// A command line longer than this closes the connection (memcached's
    /// 2048), except a `get` or `gets` line: that is decoded in segments of
    /// at most this many bytes, however long it is (as memcached takes it).
    pub max_line: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_value: DEFAULT_MAX_VALUE,
            max_line: 2048,
        }
    }
}

/// The storage verbs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StoreMode {
    Set,
    Add,
    Replace,
    Append,
    Prepend,
    /// The text protocol's `cas`: store only if the item's cas matches.
    Cas,
}

/// What a client asked for, whichever encoding it used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// get / gets / gat / gats (text, many keys) and the binary get and gat
    /// family (one key). `touch` carries gat's exptime.
    Get {
        keys: Vec<Bytes>,
        touch: Option<i64>,
    },
    /// Rend's GETE/GETEQ: the value with its flags and absolute expiry.
    GetE {
        key: Bytes,
    },
    Store {
        mode: StoreMode,
        key: Bytes,
        flags: u32,
        exptime: i64,
        /// Compare-and-swap value; 0 means none, except for `StoreMode::Cas`
        /// where memcached compares 0 like any other value (and never matches).
        cas: u64,
        value: Bytes,
    },
    Delete {
        key: Bytes,
        cas: u64,
    },
    Touch {
        key: Bytes,
        exptime: i64,
    },
    Arith {
        key: Bytes,
        incr: bool,
        delta: u64,
        /// Binary only: the value to create a missing key with, and its
        /// exptime; `None` (text, or binary expiry 0xffffffff) never creates.
        create: Option<(u64, i64)>,
    },
    Flush {
        delay: i64,
    },
    Version,
    Verbosity {
        level: u32,
    },
    /// `stats` (None) or `stats <arg>`.
    Stats {
        arg: Option<Bytes>,
    },
    /// Text only: one of memcached's admin and inspection commands
    /// (`cache_memlimit`, `slabs …`, `lru …`, `lru_crawler …`), which the
    /// binary protocol cannot carry. `line` is the command line as memcached
    /// would read it (no line end; cut at a NUL), for L1 to answer as it is.
    Admin {
        line: Bytes,
        /// The line ends in `noreply`: memcached answers some of these
        /// silently, so a failure to reach it is silent too.
        noreply: bool,
    },
    Noop,
    Quit,
    /// Text only: a meta command (`mg`, `ms`, `md`, `ma`, `mn`, `me`), its
    /// flags checked as memcached 1.6.18 checks them.
    /// Shared, so a backend that forwards it holds it without a copy.
    Meta(std::sync::Arc<meta::MetaRequest>),
    /// A request that was refused while decoding; the reply is the error.
    Invalid(Invalid),
}

/// A request memcached refuses, with the reply it gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Invalid {
    /// Text `ERROR` / binary 0x81 "Unknown command".
    UnknownCommand,
    /// Text `CLIENT_ERROR <msg>` / binary 0x04 "Invalid arguments".
    Client(&'static str),
    /// The declared value is larger than the limit. memcached also deletes the
    /// key on a refused `set`, so a stale value cannot outlive a failed write:
    /// `delete` carries the key when the verb was set.
    TooLarge { delete: Option<Bytes> },
    /// Text: the data block did not end with `\r\n`.
    BadDataChunk,
}

/// How the reply is framed: the encoding and its per-request details.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    Text {
        /// `noreply`: no reply at all, errors included (memcached's rule).
        noreply: bool,
        /// gets/gats: replies carry the cas.
        cas: bool,
    },
    Binary {
        /// The opcode as the client sent it; replies echo it.
        opcode: u8,
        opaque: u32,
    },
}

impl Command {
    /// The keys this request works on: a get's keys; the one key of GETE,
    /// a storage command, delete, touch and arithmetic, and of a value
    /// refused as too large that memcached deletes; none for the rest.
    pub fn keys(&self) -> &[Bytes] {
        match self {
            Command::Get { keys, .. } => keys,
            Command::GetE { key }
            | Command::Store { key, .. }
            | Command::Delete { key, .. }
            | Command::Touch { key, .. }
            | Command::Arith { key, .. }
            | Command::Invalid(Invalid::TooLarge { delete: Some(key) }) => {
                std::slice::from_ref(key)
            }
            Command::Meta(m) if m.verb != meta::Verb::Noop => std::slice::from_ref(&m.key),
            _ => &[],
        }
    }
}

/// One decoded request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub cmd: Command,
    pub frame: Frame,
}

/// One stored item as a get returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Value {
    pub key: Bytes,
    pub flags: u32,
    pub cas: u64,
    pub data: Bytes,
}

/// A reply, whichever encoding carries it. Outcomes are values: a miss is
/// `NotFound` or an empty `Values`, not an error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    /// Hits of a get (none: a miss; text sends just `END`).
    Values(Vec<Value>),
    /// GETE hit: flags and absolute expiry (0 = never).
    ValueE {
        value: Value,
        expiry: u32,
    },
    Stored {
        cas: u64,
    },
    NotStored,
    Exists,
    NotFound,
    Deleted,
    Touched {
        flags: u32,
        cas: u64,
    },
    Numeric {
        value: u64,
        cas: u64,
    },
    /// flush_all, verbosity, noop.
    Ok,
    Version(Bytes),
    Stats(Vec<(Bytes, Bytes)>),
    /// memcached's text reply to an admin command (or a text `stats
    /// <group>`), every byte as it sent them, line ends included.
    Raw(Bytes),
    /// A meta command's reply, as memcached writes it.
    Meta(meta::MetaReply),
    Error(ErrorReply),
    /// No reply on the wire (quit).
    Nothing,
}

/// Errors as replies. Each maps to memcached's text line and binary status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ErrorReply {
    UnknownCommand,
    /// `CLIENT_ERROR <text>`.
    Client(Bytes),
    TooLarge,
    BadDataChunk,
    NonNumeric,
    /// memcached ran out of memory for a store.
    OutOfMemory,
    /// A backend failed; the text is the part after `SERVER_ERROR `.
    Server(Bytes),
    /// A binary reply whose status has no neutral name (kept as is).
    Status(u16, Bytes),
}

impl ErrorReply {
    pub fn from_invalid(invalid: &Invalid) -> ErrorReply {
        match invalid {
            Invalid::UnknownCommand => ErrorReply::UnknownCommand,
            Invalid::Client(msg) => ErrorReply::Client(Bytes::from_static(msg.as_bytes())),
            Invalid::TooLarge { .. } => ErrorReply::TooLarge,
            Invalid::BadDataChunk => ErrorReply::BadDataChunk,
        }
    }
}

/// The client error strings memcached uses, kept in one place.
pub mod msg {
    pub const BAD_FORMAT: &str = "bad command line format";
    pub const BAD_DELETE: &str = "bad command line format.  Usage: delete <key> [noreply]";
    pub const BAD_EXPTIME: &str = "invalid exptime argument";
    pub const BAD_DELTA: &str = "invalid numeric delta argument";
    pub const NON_NUMERIC: &str = "cannot increment or decrement non-numeric value";
    pub const BAD_DATA_CHUNK: &str = "bad data chunk";
    pub const TOO_LARGE: &str = "object too large for cache";
    pub const OUT_OF_MEMORY: &str = "out of memory storing object";
}

/// A stream that cannot be resynchronised: the connection must close (after
/// sending `reply`, when there is one).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct FrameError {
    pub reason: &'static str,
    /// Bytes to send before closing (memcached answers some of these).
    pub reply: Option<Bytes>,
}

impl FrameError {
    pub fn close(reason: &'static str) -> FrameError {
        FrameError {
            reason,
            reply: None,
        }
    }
}

/// Either decoder, chosen by sniffing the first byte of a connection.
#[derive(Debug)]
pub enum Decoder {
    Text(text::RequestDecoder),
    Binary(binary::RequestDecoder),
}

impl Decoder {
    /// `0x80` starts a binary connection; anything else is text.
    pub fn sniff(first: u8, limits: Limits) -> Decoder {
        if first == binary::REQ_MAGIC {
            Decoder::Binary(binary::RequestDecoder::new(limits))
        } else {
            Decoder::Text(text::RequestDecoder::new(limits))
        }
    }

    pub fn decode(&mut self, buf: &mut bytes::BytesMut) -> Result<Option<Request>, FrameError> {
        match self {
            Decoder::Text(d) => d.decode(buf),
            Decoder::Binary(d) => d.decode(buf),
        }
    }

    /// Whether the request just decoded is a segment of a long text get
    /// line whose further keys are still to come.
    pub fn continues(&self) -> bool {
        match self {
            Decoder::Text(d) => d.continues(),
            Decoder::Binary(_) => false,
        }
    }
}

/// Encode a reply to `req` in the request's own encoding.
pub fn encode_response<S: out::Sink + ?Sized>(req: &Request, resp: &Response, out: &mut S) {
    match req.frame {
        Frame::Text { .. } => text::encode_response(req, resp, out),
        Frame::Binary { .. } => binary::encode_response(req, resp, out),
    }
}
