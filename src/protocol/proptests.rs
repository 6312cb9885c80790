//! Property tests of the codec: encode→decode round trips of requests and
//! replies in both encodings, split invariance of both request decoders, and
//! arbitrary input that must neither panic nor make a decoder buffer past its
//! limits.
//!
//! The case count defaults to 256 and follows `PROPTEST_CASES` when it is set
//! (CI sets it); the heavier properties run a fraction of that.

use bytes::{BufMut, Bytes, BytesMut};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::{select, Index};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::binary::{self, op, status, HEADER_LEN, REQ_MAGIC, RES_MAGIC};
use super::meta::{Flag, MetaRequest, Verb};
use super::text;
use super::{
    msg, Command, ErrorReply, Frame, FrameError, Invalid, Limits, Request, Response, StoreMode,
    Value, MAX_KEY_LEN,
};

// ---------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------

/// `PROPTEST_CASES` when set, else 256; divided by `div` for heavy properties.
/// Failures persist in fixtures/proptest-regressions/protocol.txt.
fn config(div: u32) -> ProptestConfig {
    let mut c = crate::proptest_config("fixtures/proptest-regressions/protocol.txt");
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = 256;
    }
    c.cases = (c.cases / div).max(1);
    c
}

/// Small limits, so the edges are reachable by generated input.
const SMALL: Limits = Limits {
    max_value: 4096,
    max_line: 2048,
};

/// The most a text decoder may hold while it waits for more bytes: a command
/// line (a long get line is taken in segments of at most that size), or a
/// data block short of its end.
fn text_bound(l: Limits) -> usize {
    l.max_line.max(l.max_value + 1)
}

/// The most a binary decoder may hold while it waits: a header, extras and a
/// key, and a value within the limit.
fn binary_bound(l: Limits) -> usize {
    HEADER_LEN + 255 + MAX_KEY_LEN + l.max_value
}

// ---------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------

/// A key the text protocol can carry: 1..=250 bytes, no space, no control
/// character (so no newline, \r or NUL).
fn text_key() -> impl Strategy<Value = Bytes> {
    vec(prop_oneof![0x21u8..=0x7e, 0x80u8..=0xff], 1..=MAX_KEY_LEN).prop_map(Bytes::from)
}

/// A key the binary protocol can carry: any 1..=250 bytes.
fn binary_key() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 1..=MAX_KEY_LEN).prop_map(Bytes::from)
}

fn data() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..300).prop_map(Bytes::from)
}

/// Printable text without CR or LF (reply lines, messages).
fn printable(max: usize) -> impl Strategy<Value = Bytes> {
    vec(0x20u8..=0x7e, 0..max).prop_map(Bytes::from)
}

/// One token: printable, no space.
fn token(max: usize) -> impl Strategy<Value = Bytes> {
    vec(0x21u8..=0x7e, 1..max).prop_map(Bytes::from)
}

fn text_frame(noreply: bool, cas: bool) -> Frame {
    Frame::Text { noreply, cas }
}

/// Every request shape the text protocol can carry.
fn text_request() -> impl Strategy<Value = Request> {
    let get = (
        vec(text_key(), 1..5),
        any::<bool>(),
        option::of(any::<i32>()),
    )
        .prop_map(|(keys, cas, touch)| Request {
            cmd: Command::Get {
                keys,
                touch: touch.map(i64::from),
            },
            frame: text_frame(false, cas),
        });
    let store = (
        select(vec![
            StoreMode::Set,
            StoreMode::Add,
            StoreMode::Replace,
            StoreMode::Append,
            StoreMode::Prepend,
            StoreMode::Cas,
        ]),
        text_key(),
        any::<u32>(),
        any::<i32>(),
        any::<u64>(),
        data(),
        any::<bool>(),
    )
        .prop_map(|(mode, key, flags, exptime, cas, value, noreply)| Request {
            cmd: Command::Store {
                mode,
                key,
                flags,
                exptime: i64::from(exptime),
                cas: if mode == StoreMode::Cas { cas } else { 0 },
                value,
            },
            frame: text_frame(noreply, false),
        });
    let delete = (text_key(), any::<bool>()).prop_map(|(key, noreply)| Request {
        cmd: Command::Delete { key, cas: 0 },
        frame: text_frame(noreply, false),
    });
    let touch = (text_key(), any::<i32>(), any::<bool>()).prop_map(|(key, e, noreply)| Request {
        cmd: Command::Touch {
            key,
            exptime: i64::from(e),
        },
        frame: text_frame(noreply, false),
    });
    let arith = (text_key(), any::<bool>(), any::<u64>(), any::<bool>()).prop_map(
        |(key, incr, delta, noreply)| Request {
            cmd: Command::Arith {
                key,
                incr,
                delta,
                create: None,
            },
            frame: text_frame(noreply, false),
        },
    );
    let flush =
        (prop_oneof![Just(0), any::<i32>()], any::<bool>()).prop_map(|(d, noreply)| Request {
            cmd: Command::Flush {
                delay: i64::from(d),
            },
            frame: text_frame(noreply, false),
        });
    let verbosity = (any::<u32>(), any::<bool>()).prop_map(|(level, noreply)| Request {
        cmd: Command::Verbosity { level },
        frame: text_frame(noreply, false),
    });
    let stats = option::of(vec(token(12), 1..4)).prop_map(|toks| Request {
        cmd: Command::Stats {
            arg: toks.map(|t| Bytes::from(t.join(&b' '))),
        },
        frame: text_frame(false, false),
    });
    let plain = select(vec![Command::Version, Command::Quit]).prop_map(|cmd| Request {
        cmd,
        frame: text_frame(false, false),
    });
    let admin = (
        select(vec!["cache_memlimit", "slabs", "lru", "lru_crawler"]),
        vec(token(12), 0..4),
        any::<bool>(),
    )
        .prop_map(|(verb, args, noreply)| {
            let mut line = BytesMut::from(verb.as_bytes());
            for a in &args {
                line.put_u8(b' ');
                line.put_slice(a);
            }
            if noreply {
                line.put_slice(b" noreply");
            }
            let noreply = noreply || args.last().is_some_and(|a| &a[..] == b"noreply");
            Request {
                cmd: Command::Admin {
                    line: line.freeze(),
                    noreply,
                },
                frame: text_frame(false, false),
            }
        });
    prop_oneof![
        get,
        store,
        delete,
        touch,
        arith,
        flush,
        verbosity,
        stats,
        plain,
        admin,
        meta_request()
    ]
}

/// A meta command memcached 1.6.18 accepts: a verb, a key (sent base64
/// with `b` a third of the time, any bytes then), and a random subset of
/// the flags that verb takes, in random order, with valid tokens.
pub(crate) fn meta_request() -> impl Strategy<Value = Request> {
    let verb = select(vec![
        Verb::Get,
        Verb::Set,
        Verb::Delete,
        Verb::Arith,
        Verb::Noop,
    ]);
    let key = prop_oneof![
        2 => text_key().prop_map(|k| (k, false)),
        1 => vec(any::<u8>(), 1..=186).prop_map(|k| (Bytes::from(k), true)),
    ];
    let numbers = (any::<u32>(), 0..i32::MAX, any::<u64>(), any::<u64>());
    let opaque = vec(0x21u8..=0x7e, 0..=31);
    let modes = (0usize..5, 0usize..4);
    (verb, key, numbers, opaque, modes, data(), any::<u64>()).prop_map(
        |(verb, (key, b), (f, ttl, cas, n), opaque, (ms, ma), value, pick)| {
            if verb == Verb::Noop {
                return meta(verb, Bytes::new(), Vec::new(), None);
            }
            let num = |v: u64| Bytes::from(v.to_string());
            let mut offered: Vec<Flag> = [b'k', b'q']
                .into_iter()
                .map(|c| Flag::new(c, Bytes::new()))
                .collect();
            offered.push(Flag::new(b'O', opaque));
            offered.push(Flag::new(b'T', num(ttl as u64)));
            let bare: &[u8] = match verb {
                Verb::Get => b"cfhlstuv",
                Verb::Set => b"cI",
                Verb::Delete => b"I",
                _ => b"ctv",
            };
            offered.extend(bare.iter().map(|&c| Flag::new(c, Bytes::new())));
            match verb {
                Verb::Get => {
                    offered.push(Flag::new(b'N', num(n % 1000)));
                    offered.push(Flag::new(b'R', num(n % 100)));
                }
                Verb::Set => {
                    offered.push(Flag::new(b'F', num(u64::from(f))));
                    offered.push(Flag::new(b'C', num(cas)));
                    offered.push(Flag::new(b'M', Bytes::from(&b"SEAPR"[ms..=ms])));
                }
                Verb::Delete => offered.push(Flag::new(b'C', num(cas))),
                _ => {
                    offered.push(Flag::new(b'N', num(n % 1000)));
                    offered.push(Flag::new(b'J', num(cas)));
                    offered.push(Flag::new(b'D', num(n)));
                    offered.push(Flag::new(b'M', Bytes::from(&b"ID+-"[ma..=ma])));
                }
            }
            // A subset, in an order the pick decides.
            let mut flags: Vec<Flag> = Vec::new();
            let mut bits = pick;
            for (i, flag) in offered.into_iter().enumerate() {
                if bits & 1 == 1 {
                    let at = (bits >> 1) as usize % (flags.len() + 1);
                    flags.insert(at, flag);
                }
                bits = bits.rotate_right(3) ^ (i as u64);
            }
            if b {
                flags.insert(0, Flag::new(b'b', Bytes::new()));
            }
            let value = (verb == Verb::Set).then_some(value);
            meta(verb, key, flags, value)
        },
    )
}

fn meta(verb: Verb, key: Bytes, flags: Vec<Flag>, value: Option<Bytes>) -> Request {
    Request {
        cmd: Command::Meta(std::sync::Arc::new(MetaRequest {
            verb,
            key,
            flags,
            datalen: value.as_ref().map(Bytes::len),
            value,
        })),
        frame: text_frame(false, false),
    }
}

/// A binary exptime: what fits the 32-bit wire field.
fn wire_time() -> impl Strategy<Value = i64> {
    any::<u32>().prop_map(i64::from)
}

/// Every request shape the binary protocol can carry, with its opcode.
fn binary_request() -> impl Strategy<Value = Request> {
    let get = (
        binary_key(),
        select(vec![op::GET, op::GETQ, op::GETK, op::GETKQ]),
    )
        .prop_map(|(key, opcode)| {
            (
                opcode,
                Command::Get {
                    keys: vec![key],
                    touch: None,
                },
            )
        });
    let gat = (
        binary_key(),
        wire_time(),
        select(vec![op::GAT, op::GATQ, op::GATK, op::GATKQ]),
    )
        .prop_map(|(key, e, opcode)| {
            (
                opcode,
                Command::Get {
                    keys: vec![key],
                    touch: Some(e),
                },
            )
        });
    let gete = (binary_key(), select(vec![op::GETE, op::GETEQ]))
        .prop_map(|(key, opcode)| (opcode, Command::GetE { key }));
    let touch = (binary_key(), wire_time())
        .prop_map(|(key, exptime)| (op::TOUCH, Command::Touch { key, exptime }));
    let store = (
        select(vec![
            (op::SET, StoreMode::Set),
            (op::SETQ, StoreMode::Set),
            (op::ADD, StoreMode::Add),
            (op::ADDQ, StoreMode::Add),
            (op::REPLACE, StoreMode::Replace),
            (op::REPLACEQ, StoreMode::Replace),
        ]),
        binary_key(),
        any::<u32>(),
        wire_time(),
        any::<u64>(),
        data(),
    )
        .prop_map(|((opcode, mode), key, flags, exptime, cas, value)| {
            (
                opcode,
                Command::Store {
                    mode,
                    key,
                    flags,
                    exptime,
                    cas,
                    value,
                },
            )
        });
    let concat = (
        select(vec![
            (op::APPEND, StoreMode::Append),
            (op::APPENDQ, StoreMode::Append),
            (op::PREPEND, StoreMode::Prepend),
            (op::PREPENDQ, StoreMode::Prepend),
        ]),
        binary_key(),
        any::<u64>(),
        data(),
    )
        .prop_map(|((opcode, mode), key, cas, value)| {
            (
                opcode,
                Command::Store {
                    mode,
                    key,
                    flags: 0,
                    exptime: 0,
                    cas,
                    value,
                },
            )
        });
    let delete = (
        select(vec![op::DELETE, op::DELETEQ]),
        binary_key(),
        any::<u64>(),
    )
        .prop_map(|(opcode, key, cas)| (opcode, Command::Delete { key, cas }));
    let arith = (
        select(vec![
            (op::INCREMENT, true),
            (op::INCREMENTQ, true),
            (op::DECREMENT, false),
            (op::DECREMENTQ, false),
        ]),
        binary_key(),
        any::<u64>(),
        // Expiry 0xffffffff means "do not create"; anything below creates.
        option::of((any::<u64>(), 0..u32::MAX)),
    )
        .prop_map(|((opcode, incr), key, delta, create)| {
            (
                opcode,
                Command::Arith {
                    key,
                    incr,
                    delta,
                    create: create.map(|(initial, e)| (initial, i64::from(e))),
                },
            )
        });
    let flush = (
        select(vec![op::FLUSH, op::FLUSHQ]),
        prop_oneof![Just(0), wire_time()],
    )
        .prop_map(|(opcode, delay)| (opcode, Command::Flush { delay }));
    // No VERBOSITY: memcached 1.6.18 does not serve it, and rend decodes it
    // as an unknown opcode.
    let stats = option::of(binary_key()).prop_map(|arg| (op::STAT, Command::Stats { arg }));
    let plain = select(vec![
        (op::NOOP, Command::Noop),
        (op::VERSION, Command::Version),
        (op::QUIT, Command::Quit),
        (op::QUITQ, Command::Quit),
    ]);
    (
        prop_oneof![get, gat, gete, touch, store, concat, delete, arith, flush, stats, plain],
        any::<u32>(),
    )
        .prop_map(|((opcode, cmd), opaque)| Request {
            cmd,
            frame: Frame::Binary { opcode, opaque },
        })
}

fn value_strategy(key: impl Strategy<Value = Bytes>) -> impl Strategy<Value = Value> {
    (key, any::<u32>(), any::<u64>(), data()).prop_map(|(key, flags, cas, data)| Value {
        key,
        flags,
        cas,
        data,
    })
}

const GET_OPS: [u8; 8] = [
    op::GET,
    op::GETQ,
    op::GETK,
    op::GETKQ,
    op::GAT,
    op::GATQ,
    op::GATK,
    op::GATKQ,
];

fn is_key_op(opcode: u8) -> bool {
    matches!(opcode, op::GETK | op::GETKQ | op::GATK | op::GATKQ)
}

/// A command of the right family for `opcode`; encode_response looks at it
/// only to tell gets from the rest and to find the key.
fn binary_cmd_for(opcode: u8, key: Bytes) -> Command {
    match opcode {
        op::GET | op::GETQ | op::GETK | op::GETKQ => Command::Get {
            keys: vec![key],
            touch: None,
        },
        op::GAT | op::GATQ | op::GATK | op::GATKQ => Command::Get {
            keys: vec![key],
            touch: Some(0),
        },
        op::GETE | op::GETEQ => Command::GetE { key },
        op::SET
        | op::SETQ
        | op::ADD
        | op::ADDQ
        | op::REPLACE
        | op::REPLACEQ
        | op::APPEND
        | op::APPENDQ
        | op::PREPEND
        | op::PREPENDQ => Command::Store {
            mode: StoreMode::Set,
            key,
            flags: 0,
            exptime: 0,
            cas: 0,
            value: Bytes::new(),
        },
        op::DELETE | op::DELETEQ => Command::Delete { key, cas: 0 },
        op::INCREMENT | op::INCREMENTQ | op::DECREMENT | op::DECREMENTQ => Command::Arith {
            key,
            incr: true,
            delta: 1,
            create: None,
        },
        op::TOUCH => Command::Touch { key, exptime: 0 },
        op::FLUSH | op::FLUSHQ => Command::Flush { delay: 0 },
        op::VERBOSITY => Command::Verbosity { level: 0 },
        op::STAT => Command::Stats { arg: None },
        op::NOOP => Command::Noop,
        op::VERSION => Command::Version,
        _ => Command::Quit,
    }
}

const ALL_OPS: [u8; 35] = [
    op::GET,
    op::SET,
    op::ADD,
    op::REPLACE,
    op::DELETE,
    op::INCREMENT,
    op::DECREMENT,
    op::QUIT,
    op::FLUSH,
    op::GETQ,
    op::NOOP,
    op::VERSION,
    op::GETK,
    op::GETKQ,
    op::APPEND,
    op::PREPEND,
    op::STAT,
    op::SETQ,
    op::ADDQ,
    op::REPLACEQ,
    op::DELETEQ,
    op::INCREMENTQ,
    op::DECREMENTQ,
    op::QUITQ,
    op::FLUSHQ,
    op::APPENDQ,
    op::PREPENDQ,
    op::VERBOSITY,
    op::TOUCH,
    op::GAT,
    op::GATQ,
    op::GATK,
    op::GATKQ,
    op::GETE,
    op::GETEQ,
];

/// A reply binary can carry, with an opcode that carries it unchanged.
fn binary_exchange() -> impl Strategy<Value = (u8, Response)> {
    let hit = (select(GET_OPS.to_vec()), value_strategy(binary_key())).prop_map(|(opcode, v)| {
        // Only the K forms carry the key.
        let key = if is_key_op(opcode) {
            v.key
        } else {
            Bytes::new()
        };
        (opcode, Response::Values(vec![Value { key, ..v }]))
    });
    let miss = select(vec![op::GET, op::GETK, op::GAT, op::GATK])
        .prop_map(|opcode| (opcode, Response::Values(vec![])));
    let gete = (
        select(vec![op::GETE, op::GETEQ]),
        value_strategy(Just(Bytes::new())),
        any::<u32>(),
    )
        .prop_map(|(opcode, value, expiry)| (opcode, Response::ValueE { value, expiry }));
    let stored = (
        select(vec![op::SET, op::ADD, op::REPLACE, op::APPEND, op::PREPEND]),
        any::<u64>(),
    )
        .prop_map(|(opcode, cas)| (opcode, Response::Stored { cas }));
    let not_stored = select(vec![
        op::SET,
        op::SETQ,
        op::ADD,
        op::ADDQ,
        op::REPLACE,
        op::REPLACEQ,
        op::APPEND,
        op::APPENDQ,
        op::PREPEND,
        op::PREPENDQ,
    ])
    .prop_map(|opcode| (opcode, Response::NotStored));
    let exists = select(vec![
        op::SET,
        op::SETQ,
        op::REPLACE,
        op::REPLACEQ,
        op::APPEND,
        op::PREPENDQ,
        op::DELETE,
        op::DELETEQ,
    ])
    .prop_map(|opcode| (opcode, Response::Exists));
    let not_found = select(vec![
        op::SET,
        op::SETQ,
        op::APPEND,
        op::DELETE,
        op::DELETEQ,
        op::INCREMENT,
        op::INCREMENTQ,
        op::DECREMENT,
        op::DECREMENTQ,
        op::TOUCH,
    ])
    .prop_map(|opcode| (opcode, Response::NotFound));
    let deleted = Just((op::DELETE, Response::Deleted));
    let touched = (any::<u32>(), any::<u64>())
        .prop_map(|(flags, cas)| (op::TOUCH, Response::Touched { flags, cas }));
    let numeric = (
        select(vec![op::INCREMENT, op::DECREMENT]),
        any::<u64>(),
        any::<u64>(),
    )
        .prop_map(|(opcode, value, cas)| (opcode, Response::Numeric { value, cas }));
    let ok = select(vec![op::FLUSH, op::NOOP, op::VERBOSITY, op::QUIT])
        .prop_map(|opcode| (opcode, Response::Ok));
    let version =
        vec(any::<u8>(), 0..64).prop_map(|v| (op::VERSION, Response::Version(Bytes::from(v))));
    let stats = vec((binary_key(), vec(any::<u8>(), 0..64)), 0..8).prop_map(|s| {
        (
            op::STAT,
            Response::Stats(s.into_iter().map(|(k, v)| (k, Bytes::from(v))).collect()),
        )
    });
    let error = (
        select(ALL_OPS.to_vec()),
        prop_oneof![
            Just(ErrorReply::UnknownCommand),
            Just(ErrorReply::TooLarge),
            Just(ErrorReply::NonNumeric),
            Just(ErrorReply::OutOfMemory),
            // Statuses with no neutral name, and a message.
            (
                select(vec![
                    status::EINVAL,
                    0x07,
                    0x08,
                    0x20,
                    0x21,
                    0x83,
                    status::EINTERNAL,
                    0x85,
                    status::ETMPFAIL
                ]),
                vec(any::<u8>(), 1..40)
            )
                .prop_map(|(code, m)| ErrorReply::Status(code, Bytes::from(m))),
        ],
    )
        .prop_map(|(opcode, e)| (opcode, Response::Error(e)));
    prop_oneof![
        hit, miss, gete, stored, not_stored, exists, not_found, deleted, touched, numeric, ok,
        version, stats, error
    ]
}

/// A text request and a reply to it: gets and stats get their multi-line
/// replies, the rest one-line replies; errors go to either.
fn text_exchange() -> impl Strategy<Value = (Request, Response)> {
    let get_req = || {
        (vec(text_key(), 1..4), any::<bool>()).prop_map(|(keys, cas)| Request {
            cmd: Command::Get { keys, touch: None },
            frame: text_frame(false, cas),
        })
    };
    let stats_req = Just(Request {
        cmd: Command::Stats { arg: None },
        frame: text_frame(false, false),
    });
    let other_req = || {
        text_key().prop_map(|key| Request {
            cmd: Command::Delete { key, cas: 0 },
            frame: text_frame(false, false),
        })
    };
    let error = prop_oneof![
        Just(ErrorReply::UnknownCommand),
        printable(60).prop_map(ErrorReply::Client),
        Just(ErrorReply::Client(Bytes::from_static(
            msg::BAD_DATA_CHUNK.as_bytes()
        ))),
        Just(ErrorReply::TooLarge),
        Just(ErrorReply::BadDataChunk),
        Just(ErrorReply::NonNumeric),
        Just(ErrorReply::OutOfMemory),
        printable(60).prop_map(ErrorReply::Server),
        (any::<u16>(), printable(60)).prop_map(|(c, m)| ErrorReply::Status(c, m)),
    ];
    let gets = (get_req(), vec(value_strategy(text_key()), 0..5))
        .prop_map(|(req, values)| (req, Response::Values(values)));
    let stats = (stats_req.clone(), vec((token(30), printable(40)), 0..8))
        .prop_map(|(req, s)| (req, Response::Stats(s)));
    let one_line = prop_oneof![
        any::<u64>().prop_map(|cas| Response::Stored { cas }),
        Just(Response::NotStored),
        Just(Response::Exists),
        Just(Response::NotFound),
        Just(Response::Deleted),
        (any::<u32>(), any::<u64>()).prop_map(|(flags, cas)| Response::Touched { flags, cas }),
        (any::<u64>(), any::<u64>()).prop_map(|(value, cas)| Response::Numeric { value, cas }),
        Just(Response::Ok),
        printable(40).prop_map(Response::Version),
    ];
    let others = (other_req(), one_line);
    let errors = (
        prop_oneof![get_req(), stats_req, other_req()],
        error.prop_map(Response::Error),
    );
    prop_oneof![gets, stats, others, errors]
}

/// What the text protocol keeps of a reply: no cas outside gets/gats, no
/// flags on TOUCHED, and error names recovered from their text.
fn text_carries(req: &Request, resp: &Response) -> Response {
    let with_cas = matches!(req.frame, Frame::Text { cas: true, .. });
    match resp {
        Response::Values(values) => Response::Values(
            values
                .iter()
                .map(|v| Value {
                    cas: if with_cas { v.cas } else { 0 },
                    ..v.clone()
                })
                .collect(),
        ),
        Response::Stored { .. } => Response::Stored { cas: 0 },
        Response::Touched { .. } => Response::Touched { flags: 0, cas: 0 },
        Response::Numeric { value, .. } => Response::Numeric {
            value: *value,
            cas: 0,
        },
        Response::Error(ErrorReply::Client(m)) if &m[..] == msg::BAD_DATA_CHUNK.as_bytes() => {
            Response::Error(ErrorReply::BadDataChunk)
        }
        Response::Error(ErrorReply::Client(m)) if &m[..] == msg::NON_NUMERIC.as_bytes() => {
            Response::Error(ErrorReply::NonNumeric)
        }
        Response::Error(ErrorReply::Server(m)) | Response::Error(ErrorReply::Status(_, m))
            if &m[..] == msg::TOO_LARGE.as_bytes() =>
        {
            Response::Error(ErrorReply::TooLarge)
        }
        Response::Error(ErrorReply::Server(m)) | Response::Error(ErrorReply::Status(_, m))
            if &m[..] == msg::OUT_OF_MEMORY.as_bytes() =>
        {
            Response::Error(ErrorReply::OutOfMemory)
        }
        Response::Error(ErrorReply::Status(_, m)) => Response::Error(ErrorReply::Server(m.clone())),
        other => other.clone(),
    }
}

// ---------------------------------------------------------------------------
// Streams for split invariance
// ---------------------------------------------------------------------------

/// A piece of a stream: an encoded request, or bytes a client should not
/// send (refused, swallowed, or closing the connection).
#[derive(Clone, Debug)]
enum Piece {
    Request(Request),
    Junk(Vec<u8>),
}

fn text_junk() -> impl Strategy<Value = Vec<u8>> {
    let long_key = "k".repeat(MAX_KEY_LEN + 1);
    let long_get: String = (0..30)
        .map(|i| format!(" {i:0>100}"))
        .collect::<Vec<_>>()
        .concat();
    select(vec![
        b"bogus command\r\n".to_vec(),
        b"\r\n".to_vec(),
        b"delete k 1\r\n".to_vec(),
        b"incr k x\r\n".to_vec(),
        b"set k 0 0 3\r\nabcde\r\n".to_vec(),
        b"set k 0 0 1 noreply\r\nxyz\n".to_vec(),
        format!(
            "set k 0 0 {}\r\n{}\r\n",
            SMALL.max_value + 1,
            "x".repeat(SMALL.max_value + 1)
        )
        .into_bytes(),
        format!("set {long_key} 0 0 13\r\ndelete victim\r\n").into_bytes(),
        b"set k 4294967296 0 13\r\ndelete victim\r\n".to_vec(),
        format!("get {long_key}\r\n").into_bytes(),
        format!("get{long_get}\r\n").into_bytes(),
        format!("gets{long_get}\r\n").into_bytes(),
        // These close the connection.
        b"set k 0 0 -1\r\n".to_vec(),
        b"GET / HTTP/1.1\r\n".to_vec(),
        vec![b'x'; SMALL.max_line + 1],
        // Refused meta lines: a connection goes on after them.
        b"mg k v v\r\n".to_vec(),
        b"mg k Zx\r\n".to_vec(),
        b"ma k Nx\r\n".to_vec(),
        b"mg Zm!9v b v\r\n".to_vec(),
        format!("md k O{}\r\n", "o".repeat(40)).into_bytes(),
        b"ms k 2 MX\r\nzz\r\n".to_vec(),
        b"ms k 2\r\nabcd\r\n".to_vec(),
        // This one closes it: its data length cannot be followed.
        b"ms k -1\r\n".to_vec(),
        format!("gat 0{long_get}\r\n").into_bytes(),
    ])
}

fn binary_junk() -> impl Strategy<Value = Vec<u8>> {
    let packet = |opcode: u8, extras: &[u8], key: &[u8], value: &[u8]| {
        let mut out = BytesMut::new();
        binary::Header::request(opcode, 9, 0).write_packet(&mut out, extras, key, value);
        out.to_vec()
    };
    let big = vec![b'v'; SMALL.max_value + 1];
    select(vec![
        packet(0x30, &[], &[], &[]),
        packet(0x30, &[1, 2, 3, 4], b"key", b"value"),
        packet(0xff, &[], b"k", &vec![0; 3000]),
        packet(op::SET, &[0; 8], b"k", &big),
        packet(op::SETQ, &[0; 8], b"k", &big),
        packet(op::APPEND, &[], b"k", &big),
        // These close the connection.
        packet(op::GET, &[0; 4], b"k", &[]),
        packet(op::GET, &[], &[b'k'; MAX_KEY_LEN + 1], &[]),
        {
            let mut p = packet(op::NOOP, &[], &[], &[]);
            p[0] = 0x00;
            p
        },
        {
            let mut p = packet(op::SET, &[0; 8], b"key", b"v");
            p[11] = 5; // body shorter than extras and key
            p
        },
    ])
}

fn pieces(
    request: impl Strategy<Value = Request>,
    junk: impl Strategy<Value = Vec<u8>>,
) -> impl Strategy<Value = Vec<Piece>> {
    vec(
        prop_oneof![
            4 => request.prop_map(Piece::Request),
            1 => junk.prop_map(Piece::Junk),
        ],
        1..10,
    )
}

fn stream(pieces: &[Piece], encode: fn(&Request, &mut BytesMut)) -> Vec<u8> {
    let mut out = BytesMut::new();
    for p in pieces {
        match p {
            Piece::Request(r) => encode(r, &mut out),
            Piece::Junk(j) => out.put_slice(j),
        }
    }
    out.to_vec()
}

/// Cut points in `0..=len`, sorted.
fn cuts(len: usize, idx: &[Index]) -> Vec<usize> {
    let mut c: Vec<usize> = idx.iter().map(|i| i.index(len + 1)).collect();
    c.sort_unstable();
    c.dedup();
    c
}

type Outcome = Vec<Result<Request, FrameError>>;

trait Decode {
    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Request>, FrameError>;

    /// The request just decoded is a segment of a long get line.
    fn continues(&self) -> bool {
        false
    }
}

impl Decode for text::RequestDecoder {
    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Request>, FrameError> {
        text::RequestDecoder::decode(self, buf)
    }

    fn continues(&self) -> bool {
        text::RequestDecoder::continues(self)
    }
}

impl Decode for binary::RequestDecoder {
    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Request>, FrameError> {
        binary::RequestDecoder::decode(self, buf)
    }
}

/// Feed `input` cut at `at`, decoding all that each piece allows, up to the
/// first framing error. After every `Ok(None)` the decoder must hold at most
/// `bound` bytes. The segments of a long get line (where the cuts fall
/// decides where they split) are joined into the one get they make up.
fn feed<D: Decode>(d: &mut D, input: &[u8], at: &[usize], bound: usize) -> Outcome {
    let mut out = Vec::new();
    let mut buf = BytesMut::new();
    let mut from = 0;
    let mut segments: Option<Request> = None;
    for &to in at.iter().chain(std::iter::once(&input.len())) {
        buf.put_slice(&input[from..to]);
        from = to;
        loop {
            match d.decode(&mut buf) {
                Ok(Some(r)) => {
                    let r = match segments.take() {
                        Some(mut joined) => match (&mut joined.cmd, r.cmd) {
                            (Command::Get { keys, .. }, Command::Get { keys: more, .. }) => {
                                keys.extend(more);
                                joined
                            }
                            (_, cmd) => {
                                out.push(Ok(joined));
                                Request {
                                    cmd,
                                    frame: r.frame,
                                }
                            }
                        },
                        None => r,
                    };
                    if d.continues() {
                        segments = Some(r);
                    } else {
                        out.push(Ok(r));
                    }
                }
                Ok(None) => {
                    assert!(
                        buf.len() <= bound,
                        "decoder holds {} bytes, bound {bound}",
                        buf.len()
                    );
                    break;
                }
                Err(e) => {
                    out.push(Err(e));
                    return out;
                }
            }
        }
    }
    out
}

fn only_requests(pieces: &[Piece]) -> Option<Vec<Request>> {
    pieces
        .iter()
        .map(|p| match p {
            Piece::Request(r) => Some(r.clone()),
            Piece::Junk(_) => None,
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Arbitrary input
// ---------------------------------------------------------------------------

/// Bytes that steer the text decoder into its states: command words,
/// numbers at their edges, line ends, and noise.
fn text_noise() -> impl Strategy<Value = Vec<u8>> {
    let words: Vec<&'static [u8]> = vec![
        b"get ",
        b"gets ",
        b"gat ",
        b"gats ",
        b"set ",
        b"add ",
        b"cas ",
        b"append ",
        b"replace ",
        b"prepend ",
        b"delete ",
        b"incr ",
        b"decr ",
        b"touch ",
        b"flush_all",
        b"version",
        b"verbosity ",
        b"stats",
        b"quit",
        b"bget ",
        b"noreply",
        b" ",
        b"  ",
        b"\r\n",
        b"\n",
        b"\r",
        b"\0",
        b"0",
        b"1",
        b"5",
        b"-1",
        b"13",
        b"4096",
        b"4097",
        b"4294967296",
        b"2147483648",
        b"2147483645",
        b"18446744073709551615",
        b"18446744073709551616",
        b"k",
        b"HTTP/1.1",
        b"VALUE ",
        b"END",
        b"STAT ",
    ];
    vec(
        prop_oneof![
            3 => select(words).prop_map(|w| w.to_vec()),
            1 => vec(any::<u8>(), 1..16),
        ],
        0..80,
    )
    .prop_map(|parts| parts.concat())
}

/// Binary packets with plausible and implausible headers, then noise.
fn binary_noise() -> impl Strategy<Value = Vec<u8>> {
    let header = (
        prop_oneof![4 => Just(REQ_MAGIC), 1 => any::<u8>()],
        prop_oneof![3 => select(ALL_OPS.to_vec()), 1 => any::<u8>()],
        prop_oneof![0u16..8, 0u16..300, any::<u16>()],
        prop_oneof![select(vec![0u8, 4, 8, 20]), any::<u8>()],
        prop_oneof![0u32..64, 0u32..6000, any::<u32>()],
        vec(any::<u8>(), 0..300),
    )
        .prop_map(|(magic, opcode, keylen, extlen, extra_body, tail)| {
            let bodylen = u32::from(keylen)
                .saturating_add(u32::from(extlen))
                .saturating_add(extra_body);
            let mut p = vec![magic, opcode];
            p.extend_from_slice(&keylen.to_be_bytes());
            p.push(extlen);
            p.push(0);
            p.extend_from_slice(&[0, 0]);
            p.extend_from_slice(&bodylen.to_be_bytes());
            p.extend_from_slice(&[0; 12]);
            p.extend(tail);
            p
        });
    vec(header, 1..6).prop_map(|ps| ps.concat())
}

fn random_bytes(seed: u64, len: usize, exclude: Option<u8>) -> Vec<u8> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = vec![0u8; len];
    rng.fill(&mut out[..]);
    if let Some(x) = exclude {
        for b in &mut out {
            if *b == x {
                *b = x.wrapping_add(1);
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(1))]

    /// (a) text: encode_request then decode gives the same request.
    #[test]
    fn text_request_round_trip(req in text_request()) {
        let mut buf = BytesMut::new();
        text::encode_request(&req, &mut buf);
        let mut d = text::RequestDecoder::new(Limits::default());
        prop_assert_eq!(d.decode(&mut buf), Ok(Some(req)));
        prop_assert!(buf.is_empty());
        prop_assert_eq!(d.decode(&mut buf), Ok(None));
    }

    /// (a) binary: encode_request then decode gives the same request.
    #[test]
    fn binary_request_round_trip(req in binary_request()) {
        let mut buf = BytesMut::new();
        binary::encode_request(&req, &mut buf);
        let mut d = binary::RequestDecoder::new(Limits::default());
        prop_assert_eq!(d.decode(&mut buf), Ok(Some(req)));
        prop_assert!(buf.is_empty());
        prop_assert_eq!(d.decode(&mut buf), Ok(None));
    }

    /// (b) binary: encode_response → decode_packet → response_from_packet
    /// gives the reply back, echoing opcode and opaque.
    #[test]
    fn binary_response_round_trip(
        (opcode, resp) in binary_exchange(),
        opaque in any::<u32>(),
        key in binary_key(),
    ) {
        let req = Request {
            cmd: binary_cmd_for(opcode, key),
            frame: Frame::Binary { opcode, opaque },
        };
        let mut buf = BytesMut::new();
        binary::encode_response(&req, &resp, &mut buf);
        let mut packets = Vec::new();
        while let Some(p) = binary::decode_packet(&mut buf, usize::MAX).unwrap() {
            prop_assert_eq!(p.magic, RES_MAGIC);
            prop_assert_eq!(p.opcode, opcode);
            prop_assert_eq!(p.opaque, opaque);
            packets.push(p);
        }
        prop_assert!(buf.is_empty());
        let got = if matches!(resp, Response::Stats(_)) {
            // One packet per statistic, then the empty terminator.
            let mut stats = Vec::new();
            let (last, each) = packets.split_last().expect("a terminator");
            prop_assert_eq!(binary::response_from_packet(last), Response::Stats(vec![]));
            for p in each {
                match binary::response_from_packet(p) {
                    Response::Stats(mut s) => stats.append(&mut s),
                    other => prop_assert!(false, "not a stat: {:?}", other),
                }
            }
            Response::Stats(stats)
        } else {
            prop_assert_eq!(packets.len(), 1);
            binary::response_from_packet(&packets[0])
        };
        prop_assert_eq!(got, resp);
    }

    /// (b) text: encode_response → decode_response gives the reply back, as
    /// far as text can carry it.
    #[test]
    fn text_response_round_trip((req, resp) in text_exchange(), cut in any::<Index>()) {
        let mut wire = BytesMut::new();
        text::encode_response(&req, &resp, &mut wire);
        // Any strict prefix is incomplete.
        let cut = cut.index(wire.len());
        let mut part = BytesMut::from(&wire[..cut]);
        prop_assert_eq!(text::decode_response(&req, &mut part), Ok(None));
        let got = text::decode_response(&req, &mut wire);
        prop_assert_eq!(got, Ok(Some(text_carries(&req, &resp))));
        prop_assert!(wire.is_empty());
    }

    /// (c) text: cutting a stream anywhere changes nothing.
    #[test]
    fn text_split_invariance(
        ps in pieces(text_request(), text_junk()),
        idx in vec(any::<Index>(), 0..12),
    ) {
        let input = stream(&ps, text::encode_request);
        let bound = text_bound(SMALL);
        let whole = feed(&mut text::RequestDecoder::new(SMALL), &input, &[], usize::MAX);
        let at = cuts(input.len(), &idx);
        let split = feed(&mut text::RequestDecoder::new(SMALL), &input, &at, bound);
        prop_assert_eq!(&split, &whole);
        let every: Vec<usize> = (0..input.len()).collect();
        let bytewise = feed(&mut text::RequestDecoder::new(SMALL), &input, &every, bound);
        prop_assert_eq!(&bytewise, &whole);
        if let Some(reqs) = only_requests(&ps) {
            let want: Outcome = reqs.into_iter().map(Ok).collect();
            prop_assert_eq!(whole, want);
        }
    }

    /// (c) binary: cutting a stream anywhere changes nothing.
    #[test]
    fn binary_split_invariance(
        ps in pieces(binary_request(), binary_junk()),
        idx in vec(any::<Index>(), 0..12),
    ) {
        let input = stream(&ps, binary::encode_request);
        let bound = binary_bound(SMALL);
        let whole = feed(&mut binary::RequestDecoder::new(SMALL), &input, &[], usize::MAX);
        let at = cuts(input.len(), &idx);
        let split = feed(&mut binary::RequestDecoder::new(SMALL), &input, &at, bound);
        prop_assert_eq!(&split, &whole);
        let every: Vec<usize> = (0..input.len()).collect();
        let bytewise = feed(&mut binary::RequestDecoder::new(SMALL), &input, &every, bound);
        prop_assert_eq!(&bytewise, &whole);
        if let Some(reqs) = only_requests(&ps) {
            let want: Outcome = reqs.into_iter().map(Ok).collect();
            prop_assert_eq!(whole, want);
        }
    }

    /// (c) binary: a store whose value passes the limit, cut anywhere (in the
    /// header, the extras, the key or the value), is refused as too large
    /// once its key is in, its value discarded, and the request after it
    /// read in step; the decoder never holds more than a bounded packet.
    #[test]
    fn binary_oversized_store_split_anywhere(
        (opcode, extras) in select(vec![
            (op::SET, 8usize),
            (op::SETQ, 8),
            (op::ADD, 8),
            (op::REPLACEQ, 8),
            (op::APPEND, 0),
            (op::PREPENDQ, 0),
        ]),
        key in binary_key(),
        over in 1usize..3000,
        next in binary_request(),
        idx in vec(any::<Index>(), 1..12),
    ) {
        let value = vec![b'v'; SMALL.max_value + over];
        let mut input = BytesMut::new();
        binary::Header::request(opcode, 7, 0).write_packet(&mut input, &vec![0; extras], &key, &value);
        binary::encode_request(&next, &mut input);
        let at = cuts(input.len(), &idx);
        let got = feed(
            &mut binary::RequestDecoder::new(SMALL),
            &input,
            &at,
            binary_bound(SMALL),
        );
        let delete = matches!(opcode, op::SET | op::SETQ).then(|| key.clone());
        let want: Outcome = vec![
            Ok(Request {
                cmd: Command::Invalid(super::Invalid::TooLarge { delete }),
                frame: Frame::Binary { opcode, opaque: 7 },
            }),
            Ok(next),
        ];
        prop_assert_eq!(got, want);
    }

    /// (d) text: arbitrary bytes in arbitrary chunks never panic, and the
    /// decoder never holds more than its limits allow.
    #[test]
    fn text_arbitrary_bytes(
        input in prop_oneof![vec(any::<u8>(), 0..4096), text_noise()],
        idx in vec(any::<Index>(), 0..16),
    ) {
        let at = cuts(input.len(), &idx);
        feed(&mut text::RequestDecoder::new(SMALL), &input, &at, text_bound(SMALL));
    }

    /// (d) binary: the same, for bytes that start as a binary connection.
    #[test]
    fn binary_arbitrary_bytes(
        input in prop_oneof![
            vec(any::<u8>(), 0..4096).prop_map(|v| [&[REQ_MAGIC][..], &v].concat()),
            binary_noise(),
        ],
        idx in vec(any::<Index>(), 0..16),
    ) {
        let at = cuts(input.len(), &idx);
        feed(&mut binary::RequestDecoder::new(SMALL), &input, &at, binary_bound(SMALL));
    }

    /// (d) the reply decoders: arbitrary bytes never panic.
    #[test]
    fn reply_decoders_arbitrary_bytes(
        input in prop_oneof![vec(any::<u8>(), 0..2048), text_noise(), binary_noise()],
        which in 0..3usize,
    ) {
        let req = Request {
            cmd: match which {
                0 => Command::Get { keys: vec![Bytes::from_static(b"k")], touch: None },
                1 => Command::Stats { arg: None },
                _ => Command::Delete { key: Bytes::from_static(b"k"), cas: 0 },
            },
            frame: text_frame(false, which == 0),
        };
        let mut buf = BytesMut::from(&input[..]);
        while let Ok(Some(_)) = text::decode_response(&req, &mut buf) {}
        let mut buf = BytesMut::from(&input[..]);
        while let Ok(Some(p)) = binary::decode_packet(&mut buf, 1 << 16) {
            binary::response_from_packet(&p);
        }
    }
}

proptest! {
    #![proptest_config(config(8))]

    /// (d) text: 1 MiB without a newline is never buffered. A line that is
    /// not a get closes the connection within max_line bytes; a get line is
    /// taken in segments (memcached takes any length), each a get or
    /// memcached's error for a key too long.
    #[test]
    fn text_endless_line_is_refused_or_taken_in_segments(
        seed in any::<u64>(),
        prefix in select(vec![&b""[..], b"get ", b"gets ", b"   get ", b"set ", b"gat "]),
        chunk in 1usize..8192,
    ) {
        const MIB: usize = 1 << 20;
        let get = prefix.trim_ascii_start().starts_with(b"get");
        let mut d = text::RequestDecoder::new(SMALL);
        let mut buf = BytesMut::from(prefix);
        let noise = random_bytes(seed, MIB, Some(b'\n'));
        let mut fed = prefix.len();
        let refused = loop {
            match d.decode(&mut buf) {
                Ok(None) => {}
                Ok(Some(r)) => {
                    prop_assert!(get, "decoded {:?}", r);
                    prop_assert!(
                        matches!(
                            r.cmd,
                            Command::Get { touch: None, .. }
                                | Command::Invalid(Invalid::Client(msg::BAD_FORMAT))
                        ),
                        "{:?}",
                        r
                    );
                    continue;
                }
                Err(_) => break true,
            }
            prop_assert!(buf.len() <= text_bound(SMALL));
            if fed >= MIB {
                break false;
            }
            let n = chunk.min(MIB - fed);
            buf.put_slice(&noise[fed..fed + n]);
            fed += n;
        };
        if get {
            prop_assert!(!refused, "a get line closed the connection");
        } else {
            prop_assert!(refused, "1 MiB without a newline was never refused");
            prop_assert!(fed <= SMALL.max_line + chunk + prefix.len());
        }
    }

    /// (d) binary: 1 MiB of noise after 0x80 never makes the decoder hold
    /// more than one bounded packet.
    #[test]
    fn binary_noise_stays_bounded(seed in any::<u64>(), chunk in 1usize..8192) {
        let mut input = random_bytes(seed, 1 << 20, None);
        input[0] = REQ_MAGIC;
        let at: Vec<usize> = (chunk..input.len()).step_by(chunk).collect();
        feed(&mut binary::RequestDecoder::new(SMALL), &input, &at, binary_bound(SMALL));
    }
}
