//! The binary opcode model: which opcodes exist, their quiet forms, which
//! return the key, and the one mapping from a [`Command`] to the packet that
//! carries it to a memcached ([`RequestPacket`]). The L1 client, the tools'
//! client and the request encoder all build their packets here.

use bytes::Bytes;

use super::{arith_extras, store_extras, Header};
use crate::protocol::expiry;
use crate::protocol::out::Sink;
use crate::protocol::{Command, Response, StoreMode};

/// memcached's binary opcodes, and Rend's GETE. Frames keep the wire byte
/// (`u8`), since an unknown opcode is echoed back as sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Opcode {
    Get = 0x00,
    Set = 0x01,
    Add = 0x02,
    Replace = 0x03,
    Delete = 0x04,
    Increment = 0x05,
    Decrement = 0x06,
    Quit = 0x07,
    Flush = 0x08,
    GetQ = 0x09,
    Noop = 0x0a,
    Version = 0x0b,
    GetK = 0x0c,
    GetKQ = 0x0d,
    Append = 0x0e,
    Prepend = 0x0f,
    Stat = 0x10,
    SetQ = 0x11,
    AddQ = 0x12,
    ReplaceQ = 0x13,
    DeleteQ = 0x14,
    IncrementQ = 0x15,
    DecrementQ = 0x16,
    QuitQ = 0x17,
    FlushQ = 0x18,
    AppendQ = 0x19,
    PrependQ = 0x1a,
    Verbosity = 0x1b,
    Touch = 0x1c,
    Gat = 0x1d,
    GatQ = 0x1e,
    GatK = 0x23,
    GatKQ = 0x24,
    /// Rend's get with the absolute expiry in the extras.
    GetE = 0x40,
    GetEQ = 0x41,
}

/// Every opcode, loud and quiet, in wire order.
const ALL: [Opcode; 35] = {
    use Opcode::*;
    [
        Get, Set, Add, Replace, Delete, Increment, Decrement, Quit, Flush, GetQ, Noop, Version,
        GetK, GetKQ, Append, Prepend, Stat, SetQ, AddQ, ReplaceQ, DeleteQ, IncrementQ, DecrementQ,
        QuitQ, FlushQ, AppendQ, PrependQ, Verbosity, Touch, Gat, GatQ, GatK, GatKQ, GetE, GetEQ,
    ]
};

/// Each opcode that has a quiet form, with it.
const QUIET_PAIRS: [(Opcode, Opcode); 15] = {
    use Opcode::*;
    [
        (Get, GetQ),
        (GetK, GetKQ),
        (Set, SetQ),
        (Add, AddQ),
        (Replace, ReplaceQ),
        (Delete, DeleteQ),
        (Increment, IncrementQ),
        (Decrement, DecrementQ),
        (Quit, QuitQ),
        (Flush, FlushQ),
        (Append, AppendQ),
        (Prepend, PrependQ),
        (Gat, GatQ),
        (GatK, GatKQ),
        (GetE, GetEQ),
    ]
};

/// Lookup tables over the wire byte, built from the two lists above.
const BY_BYTE: [Option<Opcode>; 256] = {
    let mut table = [None; 256];
    let mut i = 0;
    while i < ALL.len() {
        table[ALL[i] as usize] = Some(ALL[i]);
        i += 1;
    }
    table
};

/// Indexed by an opcode's byte: its quiet form (`QUIET`) and loud form
/// (`LOUD`); an opcode without a pair maps to itself.
const QUIET: [Opcode; 256] = pair_table(true);
const LOUD: [Opcode; 256] = pair_table(false);

const fn pair_table(to_quiet: bool) -> [Opcode; 256] {
    let mut table = [Opcode::Noop; 256];
    let mut i = 0;
    while i < ALL.len() {
        table[ALL[i] as usize] = ALL[i];
        i += 1;
    }
    let mut i = 0;
    while i < QUIET_PAIRS.len() {
        let (loud, quiet) = QUIET_PAIRS[i];
        if to_quiet {
            table[loud as usize] = quiet;
        } else {
            table[quiet as usize] = loud;
        }
        i += 1;
    }
    table
}

impl Opcode {
    /// The opcode a wire byte names, if any.
    pub fn from_wire(byte: u8) -> Option<Opcode> {
        BY_BYTE[usize::from(byte)]
    }

    /// The quiet form, which suppresses the success reply (a get's: its
    /// miss); an opcode without one is its own.
    pub fn quiet(self) -> Opcode {
        QUIET[self as usize]
    }

    /// The form that always replies.
    pub fn loud(self) -> Opcode {
        LOUD[self as usize]
    }

    pub fn is_quiet(self) -> bool {
        self.loud() != self
    }

    /// Whether a reply carries the key (GETK and GATK, loud or quiet).
    pub fn returns_key(self) -> bool {
        matches!(self.loud(), Opcode::GetK | Opcode::GatK)
    }
}

impl From<Opcode> for u8 {
    fn from(op: Opcode) -> u8 {
        op as u8
    }
}

/// A request packet's parts. [`RequestPacket::of`] is the one place that
/// maps a [`Command`] to the packet memcached understands it from.
#[derive(Clone, Copy, Debug)]
pub struct RequestPacket<'a> {
    pub opcode: Opcode,
    pub cas: u64,
    extras: [u8; 20],
    extras_len: usize,
    pub key: &'a [u8],
    pub value: Option<&'a Bytes>,
}

impl<'a> RequestPacket<'a> {
    /// The loud packet that carries `cmd`; for a get, the key-returning
    /// form for its first key (see [`RequestPacket::for_key`] for the rest).
    /// `None` for what binary has no request for (invalid requests, text
    /// admin and meta commands).
    pub fn of(cmd: &'a Command) -> Option<RequestPacket<'a>> {
        let p = |opcode: Opcode| RequestPacket {
            opcode,
            ..RequestPacket::noop()
        };
        Some(match cmd {
            Command::Get { keys, touch } => {
                let key = keys.first().map_or(&[][..], |k| &k[..]);
                match touch {
                    Some(e) => p(Opcode::GatK).exptime(*e).for_key(key),
                    None => p(Opcode::GetK).for_key(key),
                }
            }
            Command::GetE { key } => p(Opcode::GetE).for_key(key),
            Command::Store {
                mode,
                key,
                flags,
                exptime,
                cas,
                value,
            } => {
                let (opcode, cas) = match mode {
                    StoreMode::Set => (Opcode::Set, *cas),
                    StoreMode::Add => (Opcode::Add, *cas),
                    StoreMode::Replace => (Opcode::Replace, *cas),
                    StoreMode::Append => (Opcode::Append, *cas),
                    StoreMode::Prepend => (Opcode::Prepend, *cas),
                    // Text cas goes as a replace carrying the cas: with a
                    // cas, memcached treats every storage opcode as cas,
                    // but a refused (too large) binary *set* also drops the
                    // old value, which a text cas does not. Text cas
                    // compares a cas of 0 like any other and never matches
                    // it, while binary reads 0 as "no cas"; a cas no item
                    // can have gives the same answers (too large, EXISTS or
                    // NOT_FOUND, see [`cas_reply`]) and stores nothing.
                    StoreMode::Cas => (Opcode::Replace, if *cas == 0 { u64::MAX } else { *cas }),
                };
                let packet = RequestPacket {
                    cas,
                    value: Some(value),
                    ..p(opcode).for_key(key)
                };
                match mode {
                    StoreMode::Append | StoreMode::Prepend => packet,
                    _ => packet.extras(&store_extras(*flags, *exptime)),
                }
            }
            Command::Delete { key, cas } => RequestPacket {
                cas: *cas,
                ..p(Opcode::Delete).for_key(key)
            },
            Command::Touch { key, exptime } => p(Opcode::Touch).exptime(*exptime).for_key(key),
            Command::Arith {
                key,
                incr,
                delta,
                create,
            } => {
                let opcode = if *incr {
                    Opcode::Increment
                } else {
                    Opcode::Decrement
                };
                p(opcode)
                    .extras(&arith_extras(*delta, *create))
                    .for_key(key)
            }
            // A delay of zero or less flushes now; binary says that with no
            // extras (a negative one would read as a time long past).
            Command::Flush { delay } if *delay > 0 => p(Opcode::Flush).exptime(*delay),
            Command::Flush { .. } => p(Opcode::Flush),
            Command::Verbosity { level } => p(Opcode::Verbosity).extras(&level.to_be_bytes()),
            Command::Stats { arg } => p(Opcode::Stat).for_key(arg.as_deref().unwrap_or(&[])),
            Command::Noop => p(Opcode::Noop),
            Command::Version => p(Opcode::Version),
            Command::Quit => p(Opcode::Quit),
            Command::Invalid(_) | Command::Admin { .. } | Command::Meta(_) => return None,
        })
    }

    /// The quiet form of this request.
    pub fn quiet(self) -> RequestPacket<'a> {
        RequestPacket {
            opcode: self.opcode.quiet(),
            ..self
        }
    }

    pub fn extras_bytes(&self) -> &[u8] {
        &self.extras[..self.extras_len]
    }

    /// Write the packet numbered `opaque`; a sink may share a long value
    /// rather than copy it.
    pub fn write<S: Sink + ?Sized>(&self, opaque: u32, out: &mut S) {
        self.write_as(self.opcode.into(), opaque, out)
    }

    /// The same packet under a wire opcode byte of the caller's: a frame's
    /// own choice of form, which may name no [`Opcode`].
    pub fn write_as<S: Sink + ?Sized>(&self, opcode: u8, opaque: u32, out: &mut S) {
        let head = Header::request(opcode, opaque, self.cas);
        match self.value {
            Some(v) => head.write_shared(out, self.extras_bytes(), self.key, v),
            None => head.write(out, self.extras_bytes(), self.key, 0),
        }
    }

    /// A no-op, which ends a pipeline of quiet requests.
    pub fn noop() -> RequestPacket<'static> {
        RequestPacket {
            opcode: Opcode::Noop,
            cas: 0,
            extras: [0; 20],
            extras_len: 0,
            key: &[],
            value: None,
        }
    }

    /// The same request for another key (a multi-get's next key).
    pub fn for_key(self, key: &'a [u8]) -> RequestPacket<'a> {
        RequestPacket { key, ..self }
    }

    fn extras(mut self, extras: &[u8]) -> RequestPacket<'a> {
        let n = extras.len().min(self.extras.len());
        self.extras[..n].copy_from_slice(&extras[..n]);
        self.extras_len = n;
        self
    }

    fn exptime(self, exptime: i64) -> RequestPacket<'a> {
        self.extras(&expiry::to_wire(exptime).to_be_bytes())
    }
}

/// The reply of a text cas, which travels as a replace (see
/// [`RequestPacket::of`]): "not found" is the cas's own answer where the
/// replace's is "not stored".
pub fn cas_reply(resp: Response) -> Response {
    match resp {
        Response::NotStored => Response::NotFound,
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_opcode_reads_back_from_its_byte() {
        for op in ALL {
            assert_eq!(Opcode::from_wire(op as u8), Some(op));
        }
        assert_eq!(Opcode::from_wire(0x1f), None);
        assert_eq!(Opcode::from_wire(0xff), None);
    }

    #[test]
    fn quiet_and_loud_forms_pair_up() {
        for (loud, quiet) in QUIET_PAIRS {
            assert_eq!(loud.quiet(), quiet);
            assert_eq!(quiet.loud(), loud);
            assert_eq!(quiet.quiet(), quiet);
            assert!(quiet.is_quiet() && !loud.is_quiet());
        }
        // Touch, stat, noop, version and verbosity have no quiet form.
        for op in [
            Opcode::Touch,
            Opcode::Stat,
            Opcode::Noop,
            Opcode::Version,
            Opcode::Verbosity,
        ] {
            assert_eq!(op.quiet(), op);
            assert!(!op.is_quiet());
        }
        let returning: Vec<Opcode> = ALL.into_iter().filter(|o| o.returns_key()).collect();
        assert_eq!(
            returning,
            [Opcode::GetK, Opcode::GetKQ, Opcode::GatK, Opcode::GatKQ]
        );
    }

    #[test]
    fn a_text_cas_goes_as_a_replace_that_cannot_match_a_zero_cas() {
        let cas = |cas| Command::Store {
            mode: StoreMode::Cas,
            key: Bytes::from_static(b"k"),
            flags: 1,
            exptime: 0,
            cas,
            value: Bytes::from_static(b"v"),
        };
        let zero = cas(0);
        let p = RequestPacket::of(&zero).unwrap();
        assert_eq!((p.opcode, p.cas), (Opcode::Replace, u64::MAX));
        let seven = cas(7);
        let p = RequestPacket::of(&seven).unwrap();
        assert_eq!((p.opcode, p.cas), (Opcode::Replace, 7));
        assert_eq!(p.extras_bytes().len(), 8);
    }
}
