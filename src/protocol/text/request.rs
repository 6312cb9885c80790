//! Decoding text requests as memcached 1.6.18 parses them: a command line
//! split into tokens on spaces, checked against memcached's argument counts
//! and answered with its error strings, then a storage command's data
//! block. A get line longer than `max_line` is decoded in segments, so no
//! line is ever buffered whole.

use std::ops::Range;
use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::protocol::meta::{self, After, MetaRequest};
use crate::protocol::number::{parse_i32, parse_u32, parse_u64};
use crate::protocol::{
    msg, Command, Frame, FrameError, Invalid, Limits, Request, StoreMode, MAX_KEY_LEN,
};

#[derive(Debug)]
enum State {
    /// Waiting for a command line; `scanned` bytes hold no newline.
    Line { scanned: usize },
    /// A storage command whose line parsed: waiting for `len` bytes of data
    /// plus `\r\n`. The line is not parsed again when more bytes arrive.
    Data { head: StoreHead, len: usize },
    /// An `ms` whose line parsed: waiting for `len` bytes of data plus
    /// `\r\n`.
    MetaData { req: Box<MetaRequest>, len: usize },
    /// Discarding the data block of a refused storage command.
    Swallow { remaining: usize },
    /// A `get`/`gets` line longer than `max_line`, decoded in segments: the
    /// command and the keys up to here are consumed, and more keys follow.
    GetRest { cas: bool, emitted: bool },
    /// A long get line named a key too long: the keys before it were
    /// decoded; the error comes next, then (`swallow`) the rest of the line
    /// is discarded.
    GetFailed { swallow: bool },
    /// Discarding the rest of a long get line after a bad key.
    SwallowLine,
}

#[derive(Debug)]
struct StoreHead {
    mode: StoreMode,
    key: Bytes,
    flags: u32,
    exptime: i64,
    cas: u64,
    noreply: bool,
}

/// What one step of [`RequestDecoder::decode`] came to.
enum Step {
    /// What `decode` returns: a request, or `None` for more bytes.
    Done(Option<Request>),
    /// The state changed and the bytes left may go further: step again.
    Again,
}

impl Step {
    /// A request if one was decoded, else step again.
    fn found(req: Option<Request>) -> Step {
        match req {
            Some(req) => Step::Done(Some(req)),
            None => Step::Again,
        }
    }
}

/// Incremental decoder of text requests.
#[derive(Debug)]
pub struct RequestDecoder {
    limits: Limits,
    state: State,
}

impl RequestDecoder {
    pub fn new(limits: Limits) -> Self {
        RequestDecoder {
            limits,
            state: State::Line { scanned: 0 },
        }
    }

    /// Decode one request from the front of `buf`, consuming its bytes.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Request>, FrameError> {
        loop {
            let step = match &mut self.state {
                State::Swallow { remaining } => {
                    let n = (*remaining).min(buf.len());
                    buf.advance(n);
                    *remaining -= n;
                    if *remaining > 0 {
                        Step::Done(None)
                    } else {
                        self.state = State::Line { scanned: 0 };
                        Step::Again
                    }
                }
                State::Data { len, .. } => {
                    if buf.len() < *len + 2 {
                        Step::Done(None)
                    } else {
                        let State::Data { head, len } =
                            std::mem::replace(&mut self.state, State::Line { scanned: 0 })
                        else {
                            unreachable!("matched above")
                        };
                        Step::Done(Some(data_request(head, len, buf)))
                    }
                }
                State::MetaData { len, .. } => {
                    if buf.len() < *len + 2 {
                        Step::Done(None)
                    } else {
                        let State::MetaData { req, len } =
                            std::mem::replace(&mut self.state, State::Line { scanned: 0 })
                        else {
                            unreachable!("matched above")
                        };
                        Step::Done(Some(meta_data_request(req, len, buf)))
                    }
                }
                State::GetFailed { swallow } => {
                    self.state = if *swallow {
                        State::SwallowLine
                    } else {
                        State::Line { scanned: 0 }
                    };
                    Step::Done(Some(bad_key_reply()))
                }
                State::SwallowLine => match buf.iter().position(|&b| b == b'\n') {
                    Some(pos) => {
                        buf.advance(pos + 1);
                        self.state = State::Line { scanned: 0 };
                        Step::Again
                    }
                    None => {
                        buf.clear();
                        Step::Done(None)
                    }
                },
                State::GetRest { cas, emitted } => {
                    let (cas, emitted) = (*cas, *emitted);
                    self.get_rest(buf, cas, emitted)?
                }
                State::Line { scanned } => {
                    let from = *scanned;
                    self.line(buf, from)?
                }
            };
            if let Step::Done(req) = step {
                return Ok(req);
            }
        }
    }

    /// Whether the request just decoded is a segment of a long get line
    /// whose further keys are still to come: the reply's `END` waits for
    /// the last segment.
    pub fn continues(&self) -> bool {
        matches!(self.state, State::GetRest { .. } | State::GetFailed { .. })
    }

    /// A command line, `from` bytes of it already searched for its newline.
    fn line(&mut self, buf: &mut BytesMut, from: usize) -> Result<Step, FrameError> {
        let newline = buf[from..].iter().position(|&b| b == b'\n');
        let end = newline.map_or(buf.len(), |pos| from + pos);
        // A line past max_line: only get and gets may be that long (as in
        // memcached), and they are taken in segments, so no line is ever
        // buffered whole. The same bounds hold whether or not the newline
        // has arrived, so the outcome does not depend on how the bytes
        // were cut.
        if end > self.limits.max_line {
            let spaces = buf.iter().take_while(|&&b| b == b' ').count();
            if !is_get_line(&buf[..end]) {
                return Err(FrameError::close("command line too long"));
            }
            let cas = buf[spaces..].starts_with(b"gets ");
            return Ok(Step::found(self.get_segment_of(buf, cas, true)?));
        }
        if newline.is_none() {
            self.state = State::Line { scanned: buf.len() };
            return Ok(Step::Done(None));
        }
        let line = buf.split_to(end + 1).freeze();
        self.state = State::Line { scanned: 0 };
        // A storage command (`None`): go round to wait for its data.
        Ok(Step::found(self.parse_line(line)?))
    }

    /// More of a long get line ([`State::GetRest`]): its last segment once
    /// the newline is in sight, else the keys of the next `max_line` bytes.
    fn get_rest(
        &mut self,
        buf: &mut BytesMut,
        cas: bool,
        emitted: bool,
    ) -> Result<Step, FrameError> {
        let max = self.limits.max_line;
        match buf.iter().take(max + 1).position(|&b| b == b'\n') {
            Some(end) => {
                // The line's last segment.
                let line = buf.split_to(end + 1).freeze();
                self.state = State::Line { scanned: 0 };
                let line = line.slice(..trim_line_end(&line));
                let keys: Vec<Bytes> = tokenize(&line).into_iter().map(|r| line.slice(r)).collect();
                if keys.is_empty() && !emitted {
                    // `get` and spaces only.
                    return Ok(Step::Done(Some(unknown_command())));
                }
                Ok(Step::Done(Some(self.get_segment(keys, cas, true))))
            }
            None if buf.len() > max => Ok(Step::found(self.get_segment_of(buf, cas, false)?)),
            None => Ok(Step::Done(None)),
        }
    }

    /// Take the complete keys from the first `max_line` bytes of a long get
    /// line (`first`: the line's start, command included). `None` when the
    /// bytes consumed held no key. The line's last segment may name none.
    fn get_segment_of(
        &mut self,
        buf: &mut BytesMut,
        cas: bool,
        first: bool,
    ) -> Result<Option<Request>, FrameError> {
        let window = &buf[..self.limits.max_line];
        let Some(last_space) = window.iter().rposition(|&b| b == b' ') else {
            // No separator in max_line bytes: a key longer than any allowed.
            return Ok(Some(self.bad_get_key()));
        };
        let mut tokens = tokenize(&window[..last_space]);
        if first && !tokens.is_empty() {
            tokens.remove(0);
        }
        let emitted = match self.state {
            State::GetRest { emitted, .. } => emitted,
            _ => false,
        };
        if !emitted && tokens.iter().any(|r| r.len() > MAX_KEY_LEN) {
            // Nothing answered yet: only the error, as memcached answers.
            return Ok(Some(self.bad_get_key()));
        }
        let taken = buf.split_to(last_space + 1).freeze();
        self.state = State::GetRest {
            cas,
            emitted: emitted || !tokens.is_empty(),
        };
        if tokens.is_empty() {
            return Ok(None);
        }
        let keys = tokens.into_iter().map(|r| taken.slice(r)).collect();
        Ok(Some(self.get_segment(keys, cas, false)))
    }

    /// A segment's keys as a request (`last`: the line's last segment). At
    /// a key too long, the keys before it are the segment, and memcached's
    /// error comes next (memcached, which holds the whole line, answers the
    /// error alone; rend has answered the earlier segments by then).
    fn get_segment(&mut self, mut keys: Vec<Bytes>, cas: bool, last: bool) -> Request {
        if let Some(bad) = keys.iter().position(|k| k.len() > MAX_KEY_LEN) {
            let swallow = !last;
            if bad == 0 {
                self.state = if swallow {
                    State::SwallowLine
                } else {
                    State::Line { scanned: 0 }
                };
                return bad_key_reply();
            }
            keys.truncate(bad);
            self.state = State::GetFailed { swallow };
        }
        Request {
            cmd: Command::Get { keys, touch: None },
            frame: Frame::Text {
                noreply: false,
                cas,
            },
        }
    }

    /// A long get line with no separator in max_line bytes: memcached's
    /// error, and the rest of the line is discarded.
    fn bad_get_key(&mut self) -> Request {
        self.state = State::SwallowLine;
        bad_key_reply()
    }

    /// Parse one complete line (newline included). `Ok(None)` means a
    /// storage command is now waiting for its data block.
    fn parse_line(&mut self, line: Bytes) -> Result<Option<Request>, FrameError> {
        if meta::is_meta(&line) {
            return self.parse_meta(line);
        }
        let line = CommandLine::new(line.slice(..trim_line_end(&line)));
        if line.count() == 0 || line.get(0).len() < 2 {
            return Ok(Some(unknown_command()));
        }
        let req = match line.get(0) {
            b"get" | b"gets" | b"gat" | b"gats" | b"bget" => parse_get(&line),
            b"set" | b"add" | b"replace" | b"append" | b"prepend" | b"cas" => {
                return self.parse_store(&line)
            }
            b"incr" | b"decr" => parse_arith(&line),
            b"delete" => parse_delete(&line),
            b"touch" => parse_touch(&line),
            b"flush_all" => parse_flush(&line),
            b"version" => text_request(Command::Version, false),
            b"quit" => text_request(Command::Quit, false),
            b"verbosity" => parse_verbosity(&line),
            b"stats" => parse_stats(&line),
            // memcached's admin and inspection commands: L1 answers them
            // (over a text connection; the binary protocol has no form for
            // them), so the line goes on as memcached would read it and
            // memcached checks its arguments. `noreply` is where memcached
            // looks for it: the last of the first 23 tokens.
            b"cache_memlimit" | b"slabs" | b"lru" | b"lru_crawler" => text_request(
                Command::Admin {
                    noreply: line.last_scanned() == b"noreply",
                    line: line.text.clone(),
                },
                false,
            ),
            _ => parse_unknown(&line)?,
        };
        Ok(Some(req))
    }

    /// A storage command's line: the decoder then waits for its data block
    /// (`Ok(None)`), or discards the block of a refused one.
    fn parse_store(&mut self, line: &CommandLine) -> Result<Option<Request>, FrameError> {
        let (mode, base) = match line.get(0) {
            b"set" => (StoreMode::Set, 5),
            b"add" => (StoreMode::Add, 5),
            b"replace" => (StoreMode::Replace, 5),
            b"append" => (StoreMode::Append, 5),
            b"prepend" => (StoreMode::Prepend, 5),
            _ => (StoreMode::Cas, 6),
        };
        let n = line.count();
        if n != base && n != base + 1 {
            return Ok(Some(unknown_command()));
        }
        let noreply = line.noreply_at_end();
        // The data length decides whether the stream can be followed at
        // all; without it, close (DESIGN §2).
        let len = match parse_i32(line.get(4)) {
            Some(v) if (0..=i32::MAX - 2).contains(&v) => v as usize,
            _ => {
                return Err(FrameError {
                    reason: "bad data length",
                    reply: (!noreply)
                        .then(|| Bytes::from_static(b"CLIENT_ERROR bad command line format\r\n")),
                })
            }
        };
        let head = match store_head(line, mode, noreply) {
            Ok(head) if len > self.limits.max_value => Err(Invalid::TooLarge {
                delete: (mode == StoreMode::Set).then_some(head.key),
            }),
            other => other,
        };
        match head {
            Ok(head) => {
                self.state = State::Data { head, len };
                Ok(None)
            }
            Err(invalid) => {
                self.state = State::Swallow { remaining: len + 2 };
                Ok(Some(text_request(Command::Invalid(invalid), noreply)))
            }
        }
    }
}

impl RequestDecoder {
    /// A meta command's line (see [`meta::parse`]): an `ms` then waits for
    /// its data block (`Ok(None)`); a refused line leaves the stream as
    /// the refusal says (go on, discard a data block, or close).
    fn parse_meta(&mut self, line: Bytes) -> Result<Option<Request>, FrameError> {
        match meta::parse(&line, &self.limits) {
            Ok(req) if req.verb == meta::Verb::Set => {
                let len = req.datalen.unwrap_or(0);
                self.state = State::MetaData {
                    req: Box::new(req),
                    len,
                };
                Ok(None)
            }
            Ok(req) => Ok(Some(text_request(Command::Meta(Arc::new(req)), false))),
            Err(e) => {
                let refused = text_request(Command::Invalid(e.to_invalid()), false);
                match e.next {
                    After::Continue => Ok(Some(refused)),
                    After::Swallow(n) => {
                        self.state = State::Swallow { remaining: n };
                        Ok(Some(refused))
                    }
                    After::Close => {
                        let mut reply = BytesMut::new();
                        e.encode(&mut reply);
                        Err(FrameError {
                            reason: "bad meta data length",
                            reply: Some(reply.freeze()),
                        })
                    }
                }
            }
        }
    }
}

/// An `ms` with its data block, now in `buf`.
fn meta_data_request(mut req: Box<MetaRequest>, len: usize, buf: &mut BytesMut) -> Request {
    let block = buf.split_to(len + 2).freeze();
    let cmd = match req.attach_value(block) {
        Ok(()) => Command::Meta(Arc::from(req)),
        Err(e) => Command::Invalid(e.to_invalid()),
    };
    text_request(cmd, false)
}

/// A command line without its line end, and where its tokens are.
struct CommandLine {
    text: Bytes,
    tokens: Vec<Range<usize>>,
}

impl CommandLine {
    fn new(text: Bytes) -> CommandLine {
        let tokens = tokenize(&text);
        CommandLine { text, tokens }
    }

    fn count(&self) -> usize {
        self.tokens.len()
    }

    /// Token `i`.
    fn get(&self, i: usize) -> &[u8] {
        &self.text[self.tokens[i].clone()]
    }

    /// Token `i`, sharing the line's bytes.
    fn bytes(&self, i: usize) -> Bytes {
        self.text.slice(self.tokens[i].clone())
    }

    /// Whether token `i`, a key, is longer than memcached allows.
    fn key_too_long(&self, i: usize) -> bool {
        self.tokens[i].len() > MAX_KEY_LEN
    }

    /// Whether the last token is `noreply`.
    fn noreply_at_end(&self) -> bool {
        self.get(self.count() - 1) == b"noreply"
    }

    /// The last token memcached's tokenizer reads: the last of the first
    /// 23.
    fn last_scanned(&self) -> &[u8] {
        self.get(self.count().min(23) - 1)
    }
}

/// get, gets, gat and gats (and bget, memcached's other name for get).
fn parse_get(line: &CommandLine) -> Request {
    let (cmd, n) = (line.get(0), line.count());
    if n < 2 {
        return unknown_command();
    }
    let with_cas = cmd == b"gets" || cmd == b"gats";
    let mut first_key = 1;
    let mut exptime = None;
    if cmd.starts_with(b"gat") {
        match parse_i32(line.get(1)) {
            Some(e) => exptime = Some(i64::from(e)),
            None => return client_error(msg::BAD_EXPTIME, false),
        }
        first_key = 2;
    }
    let keys: Vec<Bytes> = (first_key..n).map(|i| line.bytes(i)).collect();
    if keys.iter().any(|k| k.len() > MAX_KEY_LEN) {
        return client_error(msg::BAD_FORMAT, false);
    }
    Request {
        cmd: Command::Get {
            keys,
            touch: exptime,
        },
        frame: Frame::Text {
            noreply: false,
            cas: with_cas,
        },
    }
}

/// What a storage command's line says after its verb and length, or why
/// memcached refuses it.
fn store_head(line: &CommandLine, mode: StoreMode, noreply: bool) -> Result<StoreHead, Invalid> {
    if line.key_too_long(1) {
        return Err(Invalid::Client(msg::BAD_FORMAT));
    }
    let (Some(flags), Some(exptime)) = (parse_u32(line.get(2)), parse_i32(line.get(3))) else {
        return Err(Invalid::Client(msg::BAD_FORMAT));
    };
    let mut cas = 0;
    if mode == StoreMode::Cas {
        match parse_u64(line.get(5)) {
            Some(c) => cas = c,
            None => return Err(Invalid::Client(msg::BAD_FORMAT)),
        }
    }
    Ok(StoreHead {
        mode,
        key: line.bytes(1),
        flags,
        exptime: i64::from(exptime),
        cas,
        noreply,
    })
}

/// The storage command `head` with its data block, now in `buf`.
fn data_request(head: StoreHead, len: usize, buf: &mut BytesMut) -> Request {
    let block = buf.split_to(len + 2).freeze();
    let frame = Frame::Text {
        noreply: head.noreply,
        cas: false,
    };
    if &block[len..] != b"\r\n" {
        return Request {
            cmd: Command::Invalid(Invalid::BadDataChunk),
            frame,
        };
    }
    Request {
        cmd: Command::Store {
            mode: head.mode,
            key: head.key,
            flags: head.flags,
            exptime: head.exptime,
            cas: head.cas,
            value: block.slice(..len),
        },
        frame,
    }
}

/// What incr, decr and touch share, `<verb> <key> <number> [noreply]`:
/// the key, the number's token and whether the line ends in `noreply`; or
/// memcached's refusal of the line.
fn key_and_number(line: &CommandLine) -> Result<(Bytes, &[u8], bool), Request> {
    let n = line.count();
    if n != 3 && n != 4 {
        return Err(unknown_command());
    }
    let noreply = line.noreply_at_end();
    if line.key_too_long(1) {
        return Err(client_error(msg::BAD_FORMAT, noreply));
    }
    Ok((line.bytes(1), line.get(2), noreply))
}

/// incr and decr.
fn parse_arith(line: &CommandLine) -> Request {
    let (key, number, noreply) = match key_and_number(line) {
        Ok(parts) => parts,
        Err(refused) => return refused,
    };
    let Some(delta) = parse_u64(number) else {
        return client_error(msg::BAD_DELTA, noreply);
    };
    text_request(
        Command::Arith {
            key,
            incr: line.get(0) == b"incr",
            delta,
            create: None,
        },
        noreply,
    )
}

fn parse_delete(line: &CommandLine) -> Request {
    let n = line.count();
    if !(2..=4).contains(&n) {
        return unknown_command();
    }
    let mut noreply = false;
    if n > 2 {
        let hold_is_zero = line.get(2) == b"0";
        noreply = line.noreply_at_end();
        let valid = (n == 3 && (hold_is_zero || noreply)) || (n == 4 && hold_is_zero && noreply);
        if !valid {
            return client_error(msg::BAD_DELETE, noreply);
        }
    }
    if line.key_too_long(1) {
        return client_error(msg::BAD_FORMAT, noreply);
    }
    text_request(
        Command::Delete {
            key: line.bytes(1),
            cas: 0,
        },
        noreply,
    )
}

fn parse_touch(line: &CommandLine) -> Request {
    let (key, number, noreply) = match key_and_number(line) {
        Ok(parts) => parts,
        Err(refused) => return refused,
    };
    let Some(exptime) = parse_i32(number) else {
        return client_error(msg::BAD_EXPTIME, noreply);
    };
    text_request(
        Command::Touch {
            key,
            exptime: i64::from(exptime),
        },
        noreply,
    )
}

fn parse_flush(line: &CommandLine) -> Request {
    let n = line.count();
    if n > 3 {
        return unknown_command();
    }
    let noreply = line.noreply_at_end();
    let mut delay = 0;
    if n != if noreply { 2 } else { 1 } {
        match parse_i32(line.get(1)) {
            Some(d) => delay = i64::from(d),
            None => return client_error(msg::BAD_EXPTIME, noreply),
        }
    }
    text_request(Command::Flush { delay }, noreply)
}

fn parse_verbosity(line: &CommandLine) -> Request {
    let n = line.count();
    if n != 2 && n != 3 {
        return unknown_command();
    }
    let noreply = line.noreply_at_end();
    // memcached keeps the low 32 bits of any level it parses; the level has
    // no effect on rend, so accept the same.
    match parse_u64(line.get(1)) {
        Some(level) => text_request(
            Command::Verbosity {
                level: level as u32,
            },
            noreply,
        ),
        None => client_error(msg::BAD_FORMAT, noreply),
    }
}

fn parse_stats(line: &CommandLine) -> Request {
    let n = line.count();
    let arg = (n > 1).then(|| {
        let mut joined = BytesMut::new();
        for i in 1..n {
            if i > 1 {
                joined.put_u8(b' ');
            }
            joined.put_slice(line.get(i));
        }
        joined.freeze()
    });
    text_request(Command::Stats { arg }, false)
}

/// A command rend does not know: `ERROR`, or a closed connection when it
/// is HTTP.
fn parse_unknown(line: &CommandLine) -> Result<Request, FrameError> {
    let cmd = line.get(0);
    // memcached drops connections that speak HTTP to it, but looks for
    // "HTTP/" only in a command it does not otherwise dispatch: not one
    // starting with a letter it routes by (g s a c i d t), not a two-letter
    // meta command, not one it names; and in the last of the first 23
    // tokens (where its tokenizer stops).
    let dispatched = matches!(cmd[0], b'g' | b's' | b'a' | b'c' | b'i' | b'd' | b't')
        || (cmd[0] == b'm' && cmd.len() == 2)
        || matches!(
            cmd,
            b"lru_crawler" | b"watch" | b"lru" | b"extstore" | b"refresh_certs"
        );
    if !dispatched && line.last_scanned().starts_with(b"HTTP/") {
        return Err(FrameError::close("HTTP request on the memcached port"));
    }
    Ok(unknown_command())
}

/// A decoded text request.
fn text_request(cmd: Command, noreply: bool) -> Request {
    Request {
        cmd,
        frame: Frame::Text {
            noreply,
            cas: false,
        },
    }
}

/// memcached's `ERROR`.
fn unknown_command() -> Request {
    text_request(Command::Invalid(Invalid::UnknownCommand), false)
}

/// memcached's `CLIENT_ERROR <m>`.
fn client_error(m: &'static str, noreply: bool) -> Request {
    text_request(Command::Invalid(Invalid::Client(m)), noreply)
}

/// A key too long in a get: memcached's `CLIENT_ERROR bad command line
/// format`.
fn bad_key_reply() -> Request {
    client_error(msg::BAD_FORMAT, false)
}

/// Split on spaces as memcached does (tabs and other bytes are part of a
/// token). memcached stops tokenising after 23 tokens, but no command it
/// accepts with a fixed argument count has that many, so the difference never
/// shows in a reply; get lines it splits fully, as here.
fn tokenize(line: &[u8]) -> Vec<Range<usize>> {
    let mut tokens = Vec::with_capacity(8);
    let mut start = None;
    for (i, &b) in line.iter().enumerate() {
        if b == b' ' {
            if let Some(s) = start.take() {
                tokens.push(s..i);
            }
        } else if start.is_none() {
            start = Some(i);
        }
    }
    if let Some(s) = start {
        tokens.push(s..line.len());
    }
    tokens
}

/// The length of a line (newline included) as memcached reads it: without
/// its `\r\n` or `\n`, and up to a NUL (memcached handles the line as a C
/// string).
fn trim_line_end(line: &[u8]) -> usize {
    let mut len = line.len() - 1;
    if len > 1 && line[len - 1] == b'\r' {
        len -= 1;
    }
    line[..len].iter().position(|&b| b == 0).unwrap_or(len)
}

/// memcached lets only `get` and `gets` lines grow past 2048 bytes
/// (after at most 100 leading spaces).
fn is_get_line(buf: &[u8]) -> bool {
    let spaces = buf.iter().take_while(|&&b| b == b' ').count();
    if spaces > 100 {
        return false;
    }
    let rest = &buf[spaces..];
    rest.starts_with(b"get ") || rest.starts_with(b"gets ")
}
