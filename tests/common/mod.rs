//! Shared test harness: real memcached processes on unix sockets in temp
//! dirs, rend as a child process on an OS-chosen port, and a small raw
//! client. Everything started here is killed when its handle drops.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const REND: &str = env!("CARGO_BIN_EXE_rend");

/// A memcached on a unix socket in its own temp dir.
pub struct Memcached {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    args: Vec<String>,
}

impl Memcached {
    pub fn start() -> Memcached {
        Self::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> Memcached {
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = dir.path().join("mc.sock");
        let args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let child = spawn_memcached(&socket, &args);
        Memcached {
            child,
            dir,
            socket,
            args,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `unix:/path` for rend's `--l1`.
    pub fn l1_arg(&self) -> String {
        format!("unix:{}", self.socket.display())
    }

    pub fn connect(&self) -> Conn {
        Conn::unix(&self.socket)
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Kill and start again on the same socket.
    pub fn restart(&mut self) {
        self.kill();
        let _ = std::fs::remove_file(&self.socket);
        self.child = spawn_memcached(&self.socket, &self.args);
    }

    pub fn signal(&self, sig: &str) {
        signal(self.pid(), sig);
    }
}

impl Drop for Memcached {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn_memcached(socket: &Path, extra: &[String]) -> Child {
    let _ = std::fs::remove_file(socket);
    let child = Command::new("memcached")
        .arg("-s")
        .arg(socket)
        .args(["-U", "0", "-u", "root", "-m", "64", "-t", "2"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("memcached must be installed (apt-get install memcached)");
    wait_for(Duration::from_secs(5), || {
        UnixStream::connect(socket).is_ok()
    })
    .expect("memcached did not open its socket");
    child
}

/// Send a signal with kill(1) (no libc, no unsafe).
/// SIGCONTs a process when dropped, so a failing assert never leaves a
/// memcached the test stopped stopped.
pub struct Resume(pub u32);

impl Drop for Resume {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-CONT")
            .arg(self.0.to_string())
            .status();
    }
}

/// A SIGSTOP returns once every thread of the process has stopped: the
/// signal takes effect when each is next scheduled, and a test that sends
/// a request right after must not find memcached still answering.
pub fn signal(pid: u32, sig: &str) {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .expect("kill(1)");
    assert!(status.success(), "kill -{sig} {pid} failed");
    if sig == "STOP" {
        wait_stopped(pid);
    }
}

/// Wait until every thread of `pid` has stopped.
pub fn wait_stopped(pid: u32) {
    let all_stopped = || {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            return false;
        };
        tasks.flatten().all(|t| {
            std::fs::read_to_string(t.path().join("stat"))
                .map(|s| {
                    s.rsplit(')')
                        .next()
                        .unwrap_or("")
                        .trim_start()
                        .starts_with('T')
                })
                .unwrap_or(false)
        })
    };
    wait_for(Duration::from_secs(5), all_stopped).expect("the process did not stop");
}

/// Poll `f` until it holds or the deadline passes.
/// A TCP port on 127.0.0.1 that was free a moment ago (for servers that
/// need a port fixed before they start: memcached, nutcracker, a rend that
/// must come back on the same port).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn wait_for(within: Duration, mut f: impl FnMut() -> bool) -> Result<(), ()> {
    let deadline = Instant::now() + within;
    loop {
        if f() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// rend as a child process.
pub struct Rend {
    pub child: Child,
    pub addr: String,
    /// The batch port (l1-l2-batch), when rend serves one.
    pub batch: Option<String>,
    log: Arc<Mutex<String>>,
}

impl Rend {
    /// Start rend in front of `mc`, l1-only, with extra flags.
    pub fn start(mc: &Memcached, extra: &[&str]) -> Rend {
        let mut args = vec![
            "--listen".to_string(),
            "127.0.0.1:0".to_string(),
            "--orca".to_string(),
            "l1-only".to_string(),
            "--l1".to_string(),
            mc.l1_arg(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        Rend::start_args(&args)
    }

    /// Start rend in front of `mc` in l1-l2 with L2 in `l2`, the batch port
    /// on a free port, and extra flags.
    pub fn start_two_tier(mc: &Memcached, l2: &std::path::Path, extra: &[&str]) -> Rend {
        let mut args = vec![
            "--listen".to_string(),
            "127.0.0.1:0".to_string(),
            "--batch-listen".to_string(),
            "127.0.0.1:0".to_string(),
            "--orca".to_string(),
            "l1-l2".to_string(),
            "--l1".to_string(),
            mc.l1_arg(),
            "--l2-path".to_string(),
            l2.display().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        Rend::start_args(&args)
    }

    /// A client of the batch port.
    pub fn connect_batch(&self) -> Conn {
        Conn::tcp(self.batch.as_deref().expect("rend serves a batch port"))
    }

    /// Start rend with exactly these flags (must include a --listen).
    pub fn start_args(args: &[String]) -> Rend {
        let flag = |name: &str| {
            args.windows(2)
                .find(|w| w[0] == name)
                .map(|w| w[1].as_str())
        };
        let expect_batch = flag("--orca") == Some("l1-l2") && flag("--batch-listen") != Some("off");
        let mut child = Command::new(REND)
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start rend");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let (batch_tx, batch_rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            let mut batch_tx = Some(batch_tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(i) = line.find("batch port (l1-l2-batch) listening on ") {
                    let addr = line[i + 38..]
                        .split_whitespace()
                        .next()
                        .unwrap_or("")
                        .to_string();
                    if let Some(tx) = batch_tx.take() {
                        let _ = tx.send(addr);
                    }
                } else if let Some(i) = line.find("listening on ") {
                    let addr = line[i + 13..]
                        .split_whitespace()
                        .next()
                        .unwrap_or("")
                        .to_string();
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(addr);
                    }
                }
                eprintln!("[rend] {line}");
                sink.lock().unwrap().push_str(&line);
                sink.lock().unwrap().push('\n');
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("rend did not log its listening address");
        let batch = expect_batch.then(|| {
            batch_rx
                .recv_timeout(Duration::from_secs(10))
                .expect("rend did not log its batch port")
        });
        Rend {
            child,
            addr,
            batch,
            log,
        }
    }

    pub fn connect(&self) -> Conn {
        Conn::tcp(&self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// SIGTERM, then wait for the exit status (at most `within`).
    pub fn terminate(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        signal(self.pid(), "TERM");
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Rend {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A blocking raw client over TCP or a unix socket.
pub struct Conn {
    stream: Box<dyn Stream>,
    pub buf: Vec<u8>,
}

pub trait Stream: Read + Write + Send {
    fn set_timeout(&self, t: Duration);
}

impl Stream for TcpStream {
    fn set_timeout(&self, t: Duration) {
        self.set_read_timeout(Some(t)).unwrap();
    }
}

impl Stream for UnixStream {
    fn set_timeout(&self, t: Duration) {
        self.set_read_timeout(Some(t)).unwrap();
    }
}

impl Conn {
    pub fn tcp(addr: &str) -> Conn {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_nodelay(true).unwrap();
        Conn::new(Box::new(s))
    }

    pub fn unix(path: &Path) -> Conn {
        Conn::new(Box::new(UnixStream::connect(path).expect("connect unix")))
    }

    fn new(stream: Box<dyn Stream>) -> Conn {
        stream.set_timeout(Duration::from_secs(5));
        Conn {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// Read until the buffer ends with `suffix` (or 5 s pass); return and
    /// clear what was read.
    pub fn read_until(&mut self, suffix: &[u8]) -> Vec<u8> {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.buf.ends_with(suffix) && Instant::now() < deadline {
            if !self.fill() {
                break;
            }
        }
        std::mem::take(&mut self.buf)
    }

    /// Read until `done(buffer)` holds (or 5 s pass); return and clear.
    pub fn read_until_with(&mut self, done: impl Fn(&[u8]) -> bool) -> Vec<u8> {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !done(&self.buf) && Instant::now() < deadline {
            if !self.fill() {
                break;
            }
        }
        std::mem::take(&mut self.buf)
    }

    /// The reply to a text get: `END` after any values, or one error line.
    pub fn get_reply(&mut self, req: &[u8]) -> String {
        self.send(req);
        let reply = self.read_until_with(|b| {
            b.ends_with(b"END\r\n")
                || (b.ends_with(b"\r\n")
                    && (b.starts_with(b"SERVER_ERROR")
                        || b.starts_with(b"CLIENT_ERROR")
                        || b.starts_with(b"ERROR")))
        });
        String::from_utf8_lossy(&reply).into_owned()
    }

    /// Read exactly `n` bytes.
    pub fn read_exact_n(&mut self, n: usize) -> Vec<u8> {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.buf.len() < n && Instant::now() < deadline {
            if !self.fill() {
                break;
            }
        }
        let rest = self.buf.split_off(n.min(self.buf.len()));
        std::mem::replace(&mut self.buf, rest)
    }

    /// One read; false on EOF or timeout.
    fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 65536];
        match self.stream.read(&mut chunk) {
            Ok(0) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Err(_) => false,
        }
    }

    /// Send a request and read one reply ending in `suffix`.
    pub fn req(&mut self, bytes: &[u8], suffix: &[u8]) -> Vec<u8> {
        self.send(bytes);
        self.read_until(suffix)
    }

    /// Send a one-line-reply text command and return the reply as a string.
    pub fn line(&mut self, bytes: &[u8]) -> String {
        String::from_utf8_lossy(&self.req(bytes, b"\r\n")).into_owned()
    }

    /// True if the peer closed the connection (EOF) within `within`.
    pub fn closed_within(&mut self, within: Duration) -> bool {
        self.stream.set_timeout(within);
        let mut chunk = [0u8; 4096];
        let deadline = Instant::now() + within;
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return true,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
            if Instant::now() > deadline {
                return false;
            }
        }
    }

    /// Read one binary response packet.
    pub fn packet(&mut self) -> Packet {
        let head = self.read_exact_n(24);
        assert_eq!(head.len(), 24, "short binary header: {head:?}");
        let body_len = u32::from_be_bytes([head[8], head[9], head[10], head[11]]) as usize;
        let body = self.read_exact_n(body_len);
        Packet::parse(&head, &body)
    }
}

/// A binary packet, for tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    pub magic: u8,
    pub opcode: u8,
    pub status: u16,
    pub opaque: u32,
    pub cas: u64,
    pub extras: Vec<u8>,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
}

impl Packet {
    fn parse(head: &[u8], body: &[u8]) -> Packet {
        let keylen = u16::from_be_bytes([head[2], head[3]]) as usize;
        let extlen = head[4] as usize;
        Packet {
            magic: head[0],
            opcode: head[1],
            status: u16::from_be_bytes([head[6], head[7]]),
            opaque: u32::from_be_bytes([head[12], head[13], head[14], head[15]]),
            cas: u64::from_be_bytes(head[16..24].try_into().unwrap()),
            extras: body[..extlen].to_vec(),
            key: body[extlen..extlen + keylen].to_vec(),
            value: body[extlen + keylen..].to_vec(),
        }
    }
}

/// Encode a binary request.
pub fn bin_req(
    opcode: u8,
    opaque: u32,
    cas: u64,
    extras: &[u8],
    key: &[u8],
    value: &[u8],
) -> Vec<u8> {
    let mut out = vec![0x80, opcode];
    out.extend_from_slice(&(key.len() as u16).to_be_bytes());
    out.push(extras.len() as u8);
    out.push(0);
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&((extras.len() + key.len() + value.len()) as u32).to_be_bytes());
    out.extend_from_slice(&opaque.to_be_bytes());
    out.extend_from_slice(&cas.to_be_bytes());
    out.extend_from_slice(extras);
    out.extend_from_slice(key);
    out.extend_from_slice(value);
    out
}

/// Extras of a binary set: flags and exptime.
pub fn set_extras(flags: u32, exptime: u32) -> Vec<u8> {
    let mut e = flags.to_be_bytes().to_vec();
    e.extend_from_slice(&exptime.to_be_bytes());
    e
}

/// A memcached started and rend in front of it, l1-only.
pub fn proxy(extra: &[&str]) -> (Memcached, Rend) {
    let mc = Memcached::start();
    let rend = Rend::start(&mc, extra);
    (mc, rend)
}

/// memccapable against rend's TCP address; returns its output.
pub fn memccapable(rend: &Rend) -> String {
    memccapable_at(&rend.addr)
}

/// memccapable against `addr` (`host:port`; TCP only). It flushes its target
/// first. Returns its output; a non-zero exit fails here.
pub fn memccapable_at(addr: &str) -> String {
    let (host, port) = addr.rsplit_once(':').expect("tcp address");
    let out = Command::new("memccapable")
        .args(["-h", host, "-p", port, "-t", "10"])
        .output()
        .expect("memccapable must be installed (apt-get install libmemcached-tools)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "memccapable against {addr} failed:\n{text}"
    );
    text
}

pub fn assert_all_pass(text: &str) {
    let passed = text
        .lines()
        .filter(|l| l.trim_end().ends_with("[pass]"))
        .count();
    let other: Vec<&str> = text
        .lines()
        .filter(|l| l.contains('[') && !l.trim_end().ends_with("[pass]"))
        .collect();
    assert!(other.is_empty(), "not passed: {other:?}\n{text}");
    assert_eq!(passed, 54, "memccapable must pass all 54 tests:\n{text}");
}

/// One `\r\n`-terminated line from `c` (kept buffered past it), for
/// replies whose length is not known up front (memcached meta commands).
/// Fails on EOF or timeout.
pub fn read_line(c: &mut Conn) -> Vec<u8> {
    loop {
        if let Some(i) = c.buf.windows(2).position(|w| w == b"\r\n") {
            let rest = c.buf.split_off(i + 2);
            return std::mem::replace(&mut c.buf, rest);
        }
        let want = c.buf.len() + 1;
        let mut got = c.read_exact_n(want);
        let short = got.len() < want;
        got.append(&mut c.buf);
        c.buf = got;
        assert!(
            !short,
            "no complete line (EOF or timeout): {:?}",
            String::from_utf8_lossy(&c.buf)
        );
    }
}

/// Resident set size of process `pid` in bytes (`VmRSS` in
/// `/proc/<pid>/status`).
/// `pid`'s RSS once it has settled: two readings 200 ms apart within 1 MiB
/// of each other (or the last reading after 10 s). A wait on a condition,
/// not a fixed sleep, before a baseline is taken.
pub fn settled_rss(pid: u32) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = rss_bytes(pid);
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let now = rss_bytes(pid);
        if now.abs_diff(last) < 1 << 20 || Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}

pub fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS for {pid}:\n{status}"));
    kb * 1024
}

/// One value of a text get reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    pub key: Vec<u8>,
    pub flags: u32,
    pub data: Vec<u8>,
    pub cas: Option<u64>,
}

/// The values of a text get/gets/gat reply, up to its END.
pub fn read_values(c: &mut Conn) -> Vec<Item> {
    try_read_values(c).unwrap_or_else(|line| panic!("not a VALUE line: {line:?}"))
}

/// The values of a text get/gets/gat reply, up to its END; `Err` with the
/// line when one is neither a VALUE line nor END.
pub fn try_read_values(c: &mut Conn) -> Result<Vec<Item>, String> {
    let mut out = Vec::new();
    loop {
        let line = read_line(c);
        if line == b"END\r\n" {
            return Ok(out);
        }
        let text = String::from_utf8_lossy(&line).into_owned();
        let t: Vec<&[u8]> = line[..line.len() - 2]
            .split(|&b| b == b' ')
            .filter(|t| !t.is_empty())
            .collect();
        if t.len() < 4 || t[0] != b"VALUE" {
            return Err(text);
        }
        let num = |b: &[u8]| -> u64 {
            std::str::from_utf8(b)
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("bad number in {text:?}"))
        };
        let len = num(t[3]) as usize;
        let mut data = c.read_exact_n(len + 2);
        assert_eq!(data.len(), len + 2, "short value after {text:?}");
        assert_eq!(&data[len..], b"\r\n", "value not followed by CRLF");
        data.truncate(len);
        out.push(Item {
            key: t[1].to_vec(),
            flags: num(t[2]) as u32,
            data,
            cas: t.get(4).map(|c| num(c)),
        });
    }
}
