//! The allow-list of the differential test (tests/differential.rs): rend's
//! deliberate differences from memcached 1.6.18, as predicates on requests.

use super::*;

// ============================================================================
// THE ALLOW-LIST: rend's deliberate differences from memcached 1.6.18.
//
// This is a closed list, the README's "Where rend deliberately differs from
// memcached" (items 1-7, cited below as "README n"): a request matched by none
// of these predicates must get exactly the reference's reply (cas values by
// pattern), and any other divergence fails the test. Each predicate is a test
// on the request bytes alone (AboveMemcachedLimit also on the stream's bound
// on the value a key holds), names the README item it stands for, says how
// the test treats a matching request (`Handling`), and says what rend must
// answer instead (`Allowed::check_rend`). When several match, the first in
// `Allowed::ALL` names the request.
//
//  predicate           README item                              handling
//  ------------------  ---------------------------------------  -------------------------------
//  BadLengthCloses     3: "<bytes> negative or not a number:    not sent to the reference;
//                       the error reply, then close"             rend: CLIENT_ERROR, then EOF
//  SwallowedDataBlock  1: "storage command refused after its     reference gets the command line
//                       <bytes> parsed (key too long, bad        only (its data block withheld,
//                       flags or exptime): data block            since memcached would run it as
//                       discarded"                               a command); replies compared
//  Strict32Bit         2: "flags must fit in 32 bits and         not sent to the reference (it
//                       exptimes in a signed 32-bit integer"     would store/touch/flush with a
//                       (storage, touch, gat/gats, flush_all     wrapped value); rend: CLIENT_ERROR
//                       delay)
//  BoundedInput        7: "a non-get command line longer than    not sent to the reference (it
//                       2048 bytes closes, also when its         would run the line); rend closes
//                       newline has arrived" (complete lines     without a reply. Bytes with no
//                       only); a get or gets line of any         newline past 2048 are not on the
//                       length is compared                       list: both close, compared
//  VersionString       4: "version answers                      sent to both, not compared;
//                       VERSION 1.6.18-rend-<version>"           rend: VERSION 1.6.18-rend-…
//  ProxyStats          4: "stats reports the proxy's counters"  sent to both, not compared;
//                                                                rend: its own pid and version
//  GetE                4: "Rend's GETE/GETEQ (in l1-only         l1-only: not sent to the reference
//                       answered 0x81)"                          (memcached loses sync on it);
//                                                                l1-l2: the reference gets the
//                                                                same packet as GET/GETQ, rend's
//                                                                reply (its expiry checked, then
//                                                                cut from its extras) compared
//  UnknownBinaryOpcode 5: "an opcode memcached does not serve   not sent to the reference
//                       (VERBOSITY 0x1b among them): 0x81,       (memcached loses sync when the
//                       exactly its body skipped" (packets       packet carries a key/extras);
//                       with extras or a key; without them       rend: 0x81, then in step
//                       memcached stays in step: compared)
//  AboveMemcached-     6: "values up to --max-item-size          set/add/replace/cas: the reference
//   Limit               whatever the key length and flags, in    gets it with a 1-byte data block,
//                       --chunked mode and in l1-l2" (the one    replies compared; append/prepend:
//                       predicate that also looks at the         not sent, rend's reply checked
//                       test's bound on the value a key may      against memcached's rule for a
//                       hold, for append/prepend)                join (`check_join`); then rend's
//                                                                value read back, and the key
//                                                                deleted on both sides
// ============================================================================

/// One deliberate difference: a named predicate on requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) enum Allowed {
    /// Text storage command whose `<bytes>` is negative or not a number
    /// (rend: the error reply unless noreply, then it closes the connection).
    BadLengthCloses,
    /// Text storage command with a valid `<bytes>` refused for its key
    /// (> 250 bytes), flags, exptime or cas token not being numbers.
    SwallowedDataBlock,
    /// Text flags >= 2^32, or an exptime (storage, touch, gat/gats, the
    /// flush_all delay) that is a number outside i32: memcached truncates or
    /// wraps, rend refuses.
    Strict32Bit,
    /// A complete non-get text command line (its newline sent with it) longer
    /// than 2048 bytes, which memcached runs and rend refuses by closing the
    /// connection. (A get or gets line of any length is compared.)
    BoundedInput,
    /// Text `version`, binary VERSION (no body).
    VersionString,
    /// Text `stats …`, binary STAT.
    ProxyStats,
    /// Binary GETE 0x40 / GETEQ 0x41.
    GetE,
    /// A binary opcode memcached 1.6.18 does not dispatch (VERBOSITY 0x1b
    /// included), whose packet carries extras or a key (with only a value,
    /// memcached stays in step and the replies are compared).
    UnknownBinaryOpcode,
    /// Chunked or l1-l2 mode only: a storage request whose item memcached
    /// -I 1m would refuse as too large while rend's own limit (1 MiB of value
    /// chunked, 1,048,516 bytes of value in l1-l2 whatever the key and flags)
    /// takes it: the data block alone, or (append/prepend) the data block
    /// plus the largest value the key may hold (`Run::len_bound`). See
    /// `Run::above_memcached_limit`.
    AboveMemcachedLimit,
}

/// How the test treats a request an allow-list predicate matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Handling {
    /// Sent to rend only; rend's reply is checked against its documented
    /// behaviour.
    NotSentToReference,
    /// The reference gets the command line without its data block; replies
    /// compared byte for byte (and rend's checked).
    DataBlockWithheld,
    /// Sent to both; replies not compared; each side's checked for its shape.
    NotCompared,
    /// A storage request above memcached's item limit. A set, add, replace
    /// or cas goes to the reference with a one-byte data block, which
    /// memcached answers as it would the request without its limit (the
    /// key's state and the cas decide, not the value's size), and the
    /// replies are compared byte for byte. An append or prepend is not sent
    /// (joined to the key's value even one byte may pass memcached's limit):
    /// rend's reply is checked against memcached's rule for joins, with the
    /// key's item read from the reference before (`Run::check_join`). Then
    /// rend's value is read back and must be what the outcome says (the
    /// value written, the joined one, or the old one untouched), and the key
    /// is deleted on both sides, which hold different values under it.
    AsWithoutMemcachedLimit,
    /// l1-l2 GETE/GETEQ: the reference gets the same packet as GET/GETQ
    /// (memcached has no GETE); rend's reply is checked (GETE's opcode, an
    /// expiry that has not passed), then compared with the reference's as the
    /// GET reply it contains (opcode GET/GETQ, extras cut to the flags).
    ComparedAsGet,
}

impl Allowed {
    /// In precedence order.
    pub(super) const ALL: [Allowed; 9] = [
        Allowed::BadLengthCloses,
        Allowed::SwallowedDataBlock,
        Allowed::Strict32Bit,
        Allowed::BoundedInput,
        Allowed::VersionString,
        Allowed::ProxyStats,
        Allowed::GetE,
        Allowed::UnknownBinaryOpcode,
        Allowed::AboveMemcachedLimit,
    ];

    /// The README item ("Where rend deliberately differs from memcached")
    /// the predicate stands for.
    pub(super) fn bullet(self) -> &'static str {
        match self {
            Allowed::BadLengthCloses => "README 3: a <bytes> field that is negative or not a number: the error reply, then close",
            Allowed::SwallowedDataBlock => "README 1: a storage command refused after its <bytes> parsed has its data block discarded",
            Allowed::Strict32Bit => "README 2: flags must fit in 32 bits and exptimes in a signed 32-bit integer",
            Allowed::BoundedInput => "README 7: a complete non-get line over 2048 bytes closes",
            Allowed::VersionString => "README 4: what memcached does not have: the version string",
            Allowed::ProxyStats => "README 4: what memcached does not have: stats with the proxy's counters",
            Allowed::GetE => "README 4: what memcached does not have: GETE/GETEQ",
            Allowed::UnknownBinaryOpcode => "README 5: an opcode memcached does not serve: 0x81, exactly its body skipped, connection kept",
            Allowed::AboveMemcachedLimit => "README 6: values up to --max-item-size whatever the key and flags, in chunked mode and in l1-l2",
        }
    }

    pub(super) fn handling(self, mode: Mode) -> Handling {
        match self {
            Allowed::GetE if mode.two_tier() => Handling::ComparedAsGet,
            Allowed::SwallowedDataBlock => Handling::DataBlockWithheld,
            Allowed::VersionString | Allowed::ProxyStats => Handling::NotCompared,
            Allowed::AboveMemcachedLimit => Handling::AsWithoutMemcachedLimit,
            Allowed::BadLengthCloses
            | Allowed::Strict32Bit
            | Allowed::BoundedInput
            | Allowed::GetE
            | Allowed::UnknownBinaryOpcode => Handling::NotSentToReference,
        }
    }

    /// The predicate, on the bytes of the request as rend receives them
    /// (`AboveMemcachedLimit`: as the stream's generator found it, see
    /// `Run::above_memcached_limit`).
    pub(super) fn matches(self, step: &Step) -> bool {
        if self == Allowed::AboveMemcachedLimit {
            return step.above_limit.is_some();
        }
        match step.proto {
            Proto::Text => self.matches_text(&step.req_r),
            Proto::Binary => self.matches_binary(&step.req_r),
        }
    }

    pub(super) fn matches_text(self, req: &[u8]) -> bool {
        let line = first_line(req);
        let t = tokens(line);
        let verb = t.first().copied().unwrap_or(b"");
        let store = StorageLine::parse(&t);
        match self {
            Allowed::BadLengthCloses => store.is_some_and(|s| !s.bytes_ok()),
            Allowed::SwallowedDataBlock => store.is_some_and(|s| {
                s.bytes_ok()
                    && (s.key.len() > 250
                        || dec_u64(s.flags).is_none()
                        || dec_i64(s.exptime).is_none()
                        || s.cas.is_some_and(|c| dec_u64(c).is_none()))
            }),
            Allowed::Strict32Bit => {
                let wide_exptime =
                    |tok: &[u8]| dec_i64(tok).is_some_and(|e| i32::try_from(e).is_err());
                if let Some(s) = store {
                    return s.bytes_ok()
                        && (dec_u64(s.flags).is_some_and(|f| f > u64::from(u32::MAX))
                            || wide_exptime(s.exptime));
                }
                match verb {
                    b"touch" => (t.len() == 3 || t.len() == 4) && wide_exptime(t[2]),
                    b"gat" | b"gats" => t.len() >= 2 && wide_exptime(t[1]),
                    // flush_all's delay is an exptime too.
                    b"flush_all" => (2..=3).contains(&t.len()) && wide_exptime(t[1]),
                    _ => false,
                }
            }
            Allowed::BoundedInput => long_complete_line(req),
            Allowed::VersionString => verb == b"version",
            Allowed::ProxyStats => verb == b"stats",
            Allowed::GetE | Allowed::UnknownBinaryOpcode | Allowed::AboveMemcachedLimit => false,
        }
    }

    pub(super) fn matches_binary(self, req: &[u8]) -> bool {
        let Some(h) = Header::parse(req) else {
            return false;
        };
        match self {
            Allowed::VersionString => h.opcode == op::VERSION && h.bodylen == 0,
            Allowed::ProxyStats => h.opcode == op::STAT && h.extlen == 0 && h.bodylen == h.keylen,
            Allowed::GetE => matches!(h.opcode, op::GETE | op::GETEQ),
            Allowed::UnknownBinaryOpcode => {
                !memcached_dispatches(h.opcode)
                    && (h.extlen > 0 || h.keylen > 0)
                    && h.keylen <= 250
                    && h.keylen + h.extlen <= h.bodylen
            }
            _ => false,
        }
    }

    /// What rend must answer instead. `reply` is everything read for the
    /// request (including the sync or NOOP reply that followed it).
    pub(super) fn check_rend(
        self,
        mode: Mode,
        step: &Step,
        reply: &[u8],
        closed: bool,
        rend_pid: u32,
    ) -> Result<(), String> {
        let noreply = step.proto == Proto::Text
            && tokens(first_line(&step.req_r)).last() == Some(&&b"noreply"[..]);
        let err = |msg: &str| {
            if noreply {
                String::new()
            } else {
                format!("{msg}\r\n")
            }
        };
        let expect = |want: &[u8]| {
            if reply == want {
                Ok(())
            } else {
                Err(format!(
                    "rend answered {}, the allow-list says {}",
                    show(reply),
                    show(want)
                ))
            }
        };
        let opaque = Header::parse(&step.req_r).map(|h| h.opaque).unwrap_or(0);
        match self {
            Allowed::BadLengthCloses => {
                expect(err("CLIENT_ERROR bad command line format").as_bytes())?;
                closed
                    .then_some(())
                    .ok_or_else(|| "rend kept the connection open".to_string())
            }
            Allowed::SwallowedDataBlock => {
                expect(format!("{}END\r\n", err("CLIENT_ERROR bad command line format")).as_bytes())
            }
            Allowed::Strict32Bit => {
                let verb = tokens(first_line(&step.req_r))[0];
                let msg = if matches!(verb, b"touch" | b"gat" | b"gats" | b"flush_all") {
                    "CLIENT_ERROR invalid exptime argument"
                } else {
                    "CLIENT_ERROR bad command line format"
                };
                expect(format!("{}END\r\n", err(msg)).as_bytes())
            }
            Allowed::BoundedInput => {
                expect(b"")?;
                closed
                    .then_some(())
                    .ok_or_else(|| "rend kept the connection open".to_string())
            }
            Allowed::VersionString => match step.proto {
                Proto::Text => {
                    let ok = reply.starts_with(b"VERSION 1.6.18-rend-")
                        && reply.ends_with(b"\r\n")
                        && find_crlf(reply, 0) == Some(reply.len() - 2);
                    ok.then_some(())
                        .ok_or_else(|| format!("bad version line {}", show(reply)))
                }
                Proto::Binary => {
                    let p = packets(reply);
                    let ok = p.len() == 1
                        && p[0].opcode == op::VERSION
                        && p[0].status == 0
                        && p[0].opaque == opaque
                        && p[0].value.starts_with(b"1.6.18-rend-");
                    ok.then_some(())
                        .ok_or_else(|| format!("bad version packet {}", show(reply)))
                }
            },
            Allowed::ProxyStats => {
                let stats = parse_stats(step.proto, reply)?;
                let version = stats
                    .iter()
                    .find(|(k, _)| k == b"version")
                    .map(|(_, v)| v.clone());
                let pid = stats
                    .iter()
                    .find(|(k, _)| k == b"pid")
                    .map(|(_, v)| v.clone());
                if !version.is_some_and(|v| v.starts_with(b"1.6.18-rend-")) {
                    return Err(format!(
                        "proxy stats without rend's version: {}",
                        show(reply)
                    ));
                }
                if pid != Some(rend_pid.to_string().into_bytes()) {
                    return Err(format!(
                        "proxy stats do not carry rend's pid {rend_pid}: {}",
                        show(reply)
                    ));
                }
                Ok(())
            }
            Allowed::GetE if mode.two_tier() => check_gete(step, reply),
            Allowed::GetE | Allowed::UnknownBinaryOpcode => {
                let p = packets(reply);
                let h = Header::parse(&step.req_r).ok_or("no header")?;
                let first_ok = p.first().is_some_and(|f| {
                    f.magic == 0x81
                        && f.opcode == h.opcode
                        && f.opaque == opaque
                        && f.status == 0x81
                        && f.value == b"Unknown command"
                });
                // The NOOP sent after it must be answered: the stream stayed in step.
                let in_step = p.len() == 2 && p[1].opcode == op::NOOP && p[1].opaque == NOOP_OPAQUE;
                (first_ok && in_step)
                    .then_some(())
                    .ok_or_else(|| format!("rend answered {}", show(reply)))
            }
            // Compared with the reference's answer to the request without
            // memcached's limit, then read back (`Run::check_read_back`).
            Allowed::AboveMemcachedLimit => Ok(()),
        }
    }

    /// For requests sent to both and not compared: the reference's reply must
    /// still have memcached's shape (so the test knows what it skipped).
    pub(super) fn check_reference(self, step: &Step, reply: &[u8]) -> Result<(), String> {
        match (self, step.proto) {
            (Allowed::VersionString, Proto::Text) => (reply == b"VERSION 1.6.18\r\n")
                .then_some(())
                .ok_or_else(|| format!("reference version {}", show(reply))),
            (Allowed::VersionString, Proto::Binary) => {
                let p = packets(reply);
                (p.len() == 1 && p[0].status == 0 && p[0].value == b"1.6.18")
                    .then_some(())
                    .ok_or_else(|| format!("reference version {}", show(reply)))
            }
            (Allowed::ProxyStats, proto) => {
                let stats = parse_stats(proto, reply)?;
                stats
                    .iter()
                    .any(|(k, v)| k == b"version" && v == b"1.6.18")
                    .then_some(())
                    .ok_or_else(|| format!("reference stats without its version: {}", show(reply)))
            }
            _ => Ok(()),
        }
    }
}

/// l1-l2: rend's reply to a GETE/GETEQ (then the NOOP's): GETE's opcode and
/// the request's opaque; a hit carries 8 bytes of extras, flags then an
/// absolute expiry that is 0 (never) or not yet past; a miss is GETE's
/// "Not found", or nothing for GETEQ. The value itself is compared with the
/// reference's GET reply (`gete_as_get`).
pub(super) fn check_gete(step: &Step, reply: &[u8]) -> Result<(), String> {
    let h = Header::parse(&step.req_r).ok_or("no header")?;
    let p = packets(reply);
    let bad = |why: &str| Err(format!("{why}: rend answered {}", show(reply)));
    let in_step = p
        .last()
        .is_some_and(|l| l.opcode == op::NOOP && l.opaque == NOOP_OPAQUE);
    if !in_step || p.len() > 2 {
        return bad("not one reply, then the NOOP's");
    }
    if p.len() == 1 {
        return if h.opcode == op::GETEQ {
            Ok(())
        } else {
            bad("GETE answered nothing")
        };
    }
    let f = &p[0];
    if f.magic != 0x81 || f.opcode != h.opcode || f.opaque != h.opaque {
        return bad("not GETE's reply");
    }
    match f.status {
        0 => {
            let head = Header::parse(reply).ok_or("no header")?;
            let extras = reply.get(24..24 + head.extlen).unwrap_or(&[]);
            if extras.len() != 8 || head.keylen != 0 {
                return bad("a hit without 8 bytes of extras (or with a key)");
            }
            let expiry = u32::from_be_bytes(extras[4..8].try_into().expect("4 bytes"));
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            if expiry != 0 && u64::from(expiry) < now {
                return bad("an expiry already past");
            }
            Ok(())
        }
        1 if h.opcode == op::GETE => Ok(()),
        _ => bad("unexpected status"),
    }
}

/// GETE/GETEQ as the GET/GETQ memcached serves (same opaque and key).
pub(super) fn gete_as_get(req: &[u8]) -> Vec<u8> {
    let mut out = req.to_vec();
    out[1] = if out[1] == op::GETEQ {
        op::GETQ
    } else {
        op::GET
    };
    out
}

/// rend's GETE/GETEQ reply as the GET/GETQ reply it contains: opcode
/// GET/GETQ, extras cut to the flags (the expiry was checked by
/// `check_gete`); other packets unchanged.
pub(super) fn gete_reply_as_get(reply: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(reply.len());
    let mut at = 0;
    while let Some(h) = Header::parse(&reply[at..]) {
        let end = (at + 24 + h.bodylen).min(reply.len());
        let mut head = reply[at..at + 24].to_vec();
        let body = &reply[at + 24..end];
        if matches!(h.opcode, op::GETE | op::GETEQ) {
            head[1] = if h.opcode == op::GETEQ {
                op::GETQ
            } else {
                op::GET
            };
            if h.extlen == 8 && body.len() >= 8 {
                head[4] = 4;
                head[8..12].copy_from_slice(&((h.bodylen - 4) as u32).to_be_bytes());
                out.extend_from_slice(&head);
                out.extend_from_slice(&body[..4]);
                out.extend_from_slice(&body[8..]);
                at = end;
                continue;
            }
        }
        out.extend_from_slice(&head);
        out.extend_from_slice(body);
        at = end;
    }
    out.extend_from_slice(&reply[at..]);
    out
}

/// What a storage request's reply said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum StoreOutcome {
    Stored,
    NotStored,
    Exists,
    NotFound,
    TooLarge,
}

/// Parse the reply to one storage request (a text line, or nothing before a
/// sync's END; a binary packet, or a quiet one's failure before the NOOP).
pub(super) fn storage_outcome(
    step: &Step,
    reply: &[u8],
    too_large_ok: bool,
) -> Result<StoreOutcome, String> {
    let bad = || format!("not a storage reply: {}", show(reply));
    let outcome = match step.proto {
        Proto::Text => {
            let line = match step.shape {
                Shape::UntilSync => reply.strip_suffix(b"END\r\n").ok_or_else(bad)?,
                _ => reply,
            };
            match line {
                b"" if step.shape == Shape::UntilSync => StoreOutcome::Stored,
                b"STORED\r\n" => StoreOutcome::Stored,
                b"NOT_STORED\r\n" => StoreOutcome::NotStored,
                b"EXISTS\r\n" => StoreOutcome::Exists,
                b"NOT_FOUND\r\n" => StoreOutcome::NotFound,
                b"SERVER_ERROR object too large for cache\r\n" => StoreOutcome::TooLarge,
                _ => return Err(bad()),
            }
        }
        Proto::Binary => {
            let p = packets(reply);
            let first = p.first().ok_or_else(bad)?;
            let quiet_success = step.shape == Shape::UntilNoop && p.len() == 1;
            if step.shape == Shape::UntilNoop
                && !(p.last().is_some_and(|l| l.opcode == op::NOOP) && p.len() <= 2)
            {
                return Err(bad());
            }
            match first.status {
                _ if quiet_success => StoreOutcome::Stored,
                0 => StoreOutcome::Stored,
                1 => StoreOutcome::NotFound,
                2 => StoreOutcome::Exists,
                5 => StoreOutcome::NotStored,
                3 => StoreOutcome::TooLarge,
                _ => return Err(bad()),
            }
        }
    };
    if outcome == StoreOutcome::TooLarge && !too_large_ok {
        return Err(format!("refused as too large: {}", show(reply)));
    }
    Ok(outcome)
}

/// An item as a binary GET shows it.
#[derive(Clone, Debug)]
pub(super) struct Held {
    pub(super) flags: u32,
    pub(super) data: Vec<u8>,
    pub(super) cas: u64,
}

/// What `c` holds under `key` (a binary GET), if anything.
pub(super) fn held_via(c: &mut Conn, key: &[u8]) -> Option<Held> {
    c.send(&bin_req(op::GET, 0, 0, &[], key, &[]));
    let p = c.packet();
    match p.status {
        0 => Some(Held {
            flags: u32::from_be_bytes(p.extras[..4].try_into().expect("flags")),
            data: p.value,
            cas: p.cas,
        }),
        1 => None,
        _ => panic!("reading {} back: {p:?}", show(key)),
    }
}

/// What memcached `mc` holds under `key`, asked on a fresh connection.
pub(super) fn held(mc: &Memcached, key: &[u8]) -> Option<Held> {
    held_via(&mut mc.connect(), key)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum StoreVerb {
    Set,
    Add,
    Replace,
    Append,
    Prepend,
    Cas,
}

/// A storage request's parts, text or binary.
pub(super) struct StoreReq {
    pub(super) verb: StoreVerb,
    pub(super) key: Vec<u8>,
    /// The flags it stores (0 for append/prepend, which keep the item's).
    pub(super) flags: u32,
    /// The cas it must match (0: none).
    pub(super) cas: u64,
    pub(super) data: Vec<u8>,
}

impl StoreReq {
    pub(super) fn parse(proto: Proto, req: &[u8]) -> Option<StoreReq> {
        match proto {
            Proto::Text => {
                let line = first_line(req);
                let t = tokens(line);
                let s = StorageLine::parse(&t)?;
                let verb = match t[0] {
                    b"set" => StoreVerb::Set,
                    b"add" => StoreVerb::Add,
                    b"replace" => StoreVerb::Replace,
                    b"append" => StoreVerb::Append,
                    b"prepend" => StoreVerb::Prepend,
                    _ => StoreVerb::Cas,
                };
                let n = usize::try_from(dec_u64(s.bytes)?).ok()?;
                let from = req.iter().position(|&b| b == b'\n')? + 1;
                Some(StoreReq {
                    verb,
                    key: s.key.to_vec(),
                    flags: u32::try_from(dec_u64(s.flags)?).ok()?,
                    cas: s.cas.map_or(Some(0), dec_u64)?,
                    data: req.get(from..from + n)?.to_vec(),
                })
            }
            Proto::Binary => {
                let h = Header::parse(req)?;
                let body = req.get(24..24 + h.bodylen)?;
                let (verb, flags) = match h.opcode {
                    op::APPEND | op::APPENDQ => (StoreVerb::Append, 0),
                    op::PREPEND | op::PREPENDQ => (StoreVerb::Prepend, 0),
                    o @ (op::SET | op::SETQ | op::ADD | op::ADDQ | op::REPLACE | op::REPLACEQ)
                        if h.extlen == 8 =>
                    {
                        let verb = match o {
                            op::SET | op::SETQ => StoreVerb::Set,
                            op::ADD | op::ADDQ => StoreVerb::Add,
                            _ => StoreVerb::Replace,
                        };
                        (verb, u32::from_be_bytes(body[..4].try_into().ok()?))
                    }
                    _ => return None,
                };
                Some(StoreReq {
                    verb,
                    key: body.get(h.extlen..h.extlen + h.keylen)?.to_vec(),
                    flags,
                    cas: h.cas,
                    data: body.get(h.extlen + h.keylen..)?.to_vec(),
                })
            }
        }
    }

    pub(super) fn joins(&self) -> bool {
        matches!(self.verb, StoreVerb::Append | StoreVerb::Prepend)
    }

    /// `req` (this request) with `data` as its data block.
    pub(super) fn with_data(&self, proto: Proto, req: &[u8], data: &[u8]) -> Vec<u8> {
        match proto {
            Proto::Text => {
                let t = tokens(first_line(req));
                let len = data.len().to_string();
                let mut line: Vec<&[u8]> = t.clone();
                line[4] = len.as_bytes();
                let mut out = line.join(&b' ');
                out.extend_from_slice(b"\r\n");
                out.extend_from_slice(data);
                out.extend_from_slice(b"\r\n");
                out
            }
            Proto::Binary => {
                let h = Header::parse(req).expect("a header");
                let head_len = 24 + h.extlen + h.keylen;
                let mut out = req[..head_len].to_vec();
                let body = (h.extlen + h.keylen + data.len()) as u32;
                out[8..12].copy_from_slice(&body.to_be_bytes());
                out.extend_from_slice(data);
                out
            }
        }
    }
}

/// A complete text command line (its newline is in `req`) longer than 2048
/// bytes before that newline, that memcached does not take for a multi-get
/// (at most 100 spaces, then "get " or "gets "): memcached runs it, rend
/// closes the connection (README 7).
pub(super) fn long_complete_line(req: &[u8]) -> bool {
    let Some(end) = req.iter().position(|&b| b == b'\n') else {
        return false;
    };
    let line = &req[..end];
    let spaces = line.iter().take_while(|&&b| b == b' ').count();
    let rest = &line[spaces..];
    let get = spaces <= 100 && (rest.starts_with(b"get ") || rest.starts_with(b"gets "));
    end > 2048 && !get
}

/// The largest item memcached -I 1m stores, and its size for a value: the
/// item header (48 bytes), the key and its NUL, 4 bytes of flags unless they
/// are 0, the value and its CRLF, the cas (measured against 1.6.18: a 1-byte
/// key with flags 0 takes 1,048,516 value bytes, with flags 1,048,512).
pub(super) const MEMCACHED_ITEM_MAX: usize = 1 << 20;
pub(super) fn memcached_item_size(key_len: usize, flags: bool, value_len: usize) -> usize {
    48 + key_len + 1 + if flags { 4 } else { 0 } + value_len + 2 + 8
}

/// rend's value limit with --chunked (its default).
pub(super) const CHUNKED_MAX_VALUE: usize = 1 << 20;
/// rend's value limit without --chunked (its default, README "Limits": what
/// memcached -I 1m stores for a 1-byte key and flags 0). It counts value
/// bytes only; in l1-l2 L2 applies it, so a value memcached would refuse for
/// its longer key or nonzero flags is kept in L2 (README 6: "a value L2
/// accepts but L1 refuses lives in L2 alone and is served from there").
pub(super) const PLAIN_MAX_VALUE: usize = 1_048_516;

/// The opcodes memcached 1.6.18's binary dispatch knows (SASL included: it
/// answers them even without SASL support); everything else is "unknown".
pub(super) fn memcached_dispatches(opcode: u8) -> bool {
    matches!(opcode, 0x00..=0x1a | 0x1c..=0x1e | 0x20..=0x24)
}

/// The first predicate that matches, if any.
pub(super) fn classify(step: &Step) -> Option<Allowed> {
    Allowed::ALL.into_iter().find(|a| a.matches(step))
}
