//! Codec micro-benchmark: decode requests and encode replies, text and
//! binary, for a get and for a set of 100 B and of 1 MiB; the cost of
//! rend's protocol layer alone, no sockets. It tells a change to the hot
//! path whether it made parsing or encoding slower.
//!
//!     cargo run --release --example codec_bench            # ~10 s
//!     cargo run --release --example codec_bench -- 0.1     # seconds per case
//!
//! Prints one CSV row per case: case, iterations, ns per operation, and
//! MB/s of wire bytes (`results/codec_bench.csv` holds a run, pinned with
//! `taskset -c 1`). A decode row includes copying the request into a fresh
//! read buffer; the baseline row before it is that copy alone. It runs in the release profile, like everything
//! else here (a `cargo bench` target would build every dependency again in
//! the bench profile). Compare runs on one machine, one after the other.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use rend::protocol::out::OutBuf;
use rend::protocol::{binary, text, Command, Frame, Limits, Request, Response, StoreMode, Value};

/// Run `op` for about `budget`; returns (iterations, ns per iteration).
fn time(budget: Duration, mut op: impl FnMut()) -> (u64, f64) {
    // Warm up, then grow the batch until one takes a tenth of the budget.
    let mut batch = 1u64;
    loop {
        let t = Instant::now();
        for _ in 0..batch {
            op();
        }
        if t.elapsed() >= budget / 10 || batch >= 1 << 30 {
            break;
        }
        batch *= 2;
    }
    let (mut n, start) = (0u64, Instant::now());
    while start.elapsed() < budget {
        for _ in 0..batch {
            op();
        }
        n += batch;
    }
    (n, start.elapsed().as_nanos() as f64 / n as f64)
}

fn report(name: &str, wire: usize, (n, ns): (u64, f64)) {
    let mbps = wire as f64 / ns * 1e9 / 1e6;
    println!("{name},{n},{ns:.1},{mbps:.1}");
}

/// Time encoding `resp` as the reply to `req`.
fn encode_case(name: &str, req: &Request, resp: &Response, budget: Duration) {
    let mut out = OutBuf::default();
    rend::protocol::encode_response(req, resp, &mut out);
    let reply_len = out.len();
    report(
        name,
        reply_len,
        time(budget, || {
            let mut out = OutBuf::default();
            rend::protocol::encode_response(req, resp, &mut out);
            black_box(out.len());
        }),
    );
}

fn store(value: usize) -> Command {
    Command::Store {
        mode: StoreMode::Set,
        key: Bytes::from_static(b"key:00001234"),
        flags: 0,
        exptime: 0,
        cas: 0,
        value: Bytes::from(vec![b'v'; value]),
    }
}

fn get() -> Command {
    Command::Get {
        keys: vec![Bytes::from_static(b"key:00001234")],
        touch: None,
    }
}

fn hit(value: usize) -> Response {
    Response::Values(vec![Value {
        key: Bytes::from_static(b"key:00001234"),
        flags: 0,
        cas: 7,
        data: Bytes::from(vec![b'v'; value]),
    }])
}

fn main() {
    let secs: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.6);
    let budget = Duration::from_secs_f64(secs);
    let limits = Limits {
        max_value: 2 << 20,
        ..Limits::default()
    };
    println!("case,iterations,ns_per_op,wire_mb_per_s");
    let text_frame = Frame::Text {
        noreply: false,
        cas: false,
    };
    let cases: [(&str, Command, Option<usize>); 3] = [
        ("get", get(), Some(100)),
        ("set 100 B", store(100), None),
        ("set 1 MiB", store(1 << 20), None),
    ];
    for (name, cmd, hit_size) in cases {
        let opcode = match cmd {
            Command::Get { .. } => 0x0c, // GETK: the reply carries the key
            _ => 0x01,
        };
        for (proto, frame) in [
            ("text", text_frame.clone()),
            ("binary", Frame::Binary { opcode, opaque: 1 }),
        ] {
            let req = Request {
                cmd: cmd.clone(),
                frame,
            };
            let mut wire = BytesMut::new();
            match proto {
                "text" => text::encode_request(&req, &mut wire),
                _ => binary::encode_request(&req, &mut wire),
            }
            let wire = wire.freeze();
            // Decode: the whole request is in the buffer, as after one read.
            // Each round copies it into a fresh buffer first; the copy alone
            // is the baseline row beside it.
            report(
                &format!("copy {proto} {name} into a read buffer (baseline)"),
                wire.len(),
                time(budget, || {
                    black_box(BytesMut::from(&wire[..]));
                }),
            );
            report(
                &format!("decode {proto} {name}"),
                wire.len(),
                time(budget, || {
                    let mut buf = BytesMut::from(&wire[..]);
                    let decoded = match proto {
                        "text" => text::RequestDecoder::new(limits).decode(&mut buf),
                        _ => binary::RequestDecoder::new(limits).decode(&mut buf),
                    };
                    assert!(matches!(decoded, Ok(Some(_))));
                    black_box(decoded.ok());
                }),
            );
            // Encode the reply: a hit of `hit_size` bytes for a get, STORED
            // for a set.
            let resp = match hit_size {
                Some(size) => hit(size),
                None => Response::Stored { cas: 7 },
            };
            encode_case(
                &format!("encode {proto} reply to {name}"),
                &req,
                &resp,
                budget,
            );
        }
    }
    // A 1 MiB hit, the reply that costs most to encode.
    for (proto, frame) in [
        ("text", text_frame),
        (
            "binary",
            Frame::Binary {
                opcode: 0x0c,
                opaque: 1,
            },
        ),
    ] {
        let req = Request { cmd: get(), frame };
        encode_case(
            &format!("encode {proto} 1 MiB hit"),
            &req,
            &hit(1 << 20),
            budget,
        );
    }
}
