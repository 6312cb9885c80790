//! Sockets, TCP or unix: [`Addr`], the one address type (`host:port` or
//! `unix:/path`) of rend's listener, its memcached and the tools' servers;
//! and [`Stream`], a connected socket driven by readiness: wait until it is
//! readable or writable, then read or write what the kernel takes without
//! blocking. Both the client connections and the pooled memcached
//! connections use it, so one task can read and write one socket at once
//! and a read buffer is needed only when bytes have arrived.

use std::io::{self, IoSlice};

use bytes::BytesMut;
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::{TcpStream, UnixStream};

use crate::protocol::out::OutBuf;

/// An address: `host:port` (a name or an IP, `[v6]` in brackets; port 0
/// lets a listener pick one) or `unix:/path`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Addr {
    Tcp(String),
    Unix(std::path::PathBuf),
}

impl std::str::FromStr for Addr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("unix: needs a socket path".into());
            }
            return Ok(Addr::Unix(path.into()));
        }
        match s.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                Ok(Addr::Tcp(s.to_string()))
            }
            _ => Err(format!("expected host:port or unix:/path, got {s:?}")),
        }
    }
}

impl std::fmt::Display for Addr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Addr::Tcp(a) => f.write_str(a),
            Addr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

impl Addr {
    /// Connect (TCP without Nagle's delay).
    pub async fn connect(&self) -> io::Result<Stream> {
        Ok(match self {
            Addr::Unix(path) => Stream::Unix(UnixStream::connect(path).await?),
            Addr::Tcp(addr) => {
                let s = TcpStream::connect(addr.as_str()).await?;
                s.set_nodelay(true)?;
                Stream::Tcp(s)
            }
        })
    }

    /// Connect, as owned read and write halves.
    pub async fn connect_split(
        &self,
    ) -> io::Result<(
        Box<dyn tokio::io::AsyncRead + Send + Unpin>,
        Box<dyn tokio::io::AsyncWrite + Send + Unpin>,
    )> {
        Ok(match self.connect().await? {
            Stream::Tcp(s) => {
                let (r, w) = s.into_split();
                (Box::new(r), Box::new(w))
            }
            Stream::Unix(s) => {
                let (r, w) = s.into_split();
                (Box::new(r), Box::new(w))
            }
        })
    }
}

/// Most slices handed to one `writev` (Linux allows 1024).
const MAX_IOV: usize = 64;

#[derive(Debug)]
pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    pub async fn readable(&self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.readable().await,
            Stream::Unix(s) => s.readable().await,
        }
    }

    pub async fn writable(&self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.writable().await,
            Stream::Unix(s) => s.writable().await,
        }
    }

    /// Read what has arrived into `buf`'s spare capacity; `WouldBlock` when
    /// nothing has.
    ///
    /// A read that leaves room in `buf` took everything the socket held, so
    /// the socket's readiness is cleared here: otherwise the next wait for
    /// it would return at once and cost a read that finds nothing (one
    /// syscall per request at pipeline depth 1). Bytes that arrive after
    /// the read raise a new readiness event, so none is missed.
    pub fn try_read_buf(&self, buf: &mut BytesMut) -> io::Result<usize> {
        let room = buf.capacity() - buf.len();
        let n = match self {
            Stream::Tcp(s) => s.try_read_buf(buf),
            Stream::Unix(s) => s.try_read_buf(buf),
        }?;
        if n > 0 && n < room {
            let drained = || Err::<(), _>(io::Error::from(io::ErrorKind::WouldBlock));
            let _ = match self {
                Stream::Tcp(s) => s.try_io(Interest::READABLE, drained),
                Stream::Unix(s) => s.try_io(Interest::READABLE, drained),
            };
        }
        Ok(n)
    }

    /// Write as much of `out` as the socket takes now (vectored, values
    /// uncopied) and drop it from `out`. `Ok(true)` when `out` is empty.
    pub fn try_write_out(&self, out: &mut OutBuf) -> io::Result<bool> {
        while !out.is_empty() {
            let mut iov = [IoSlice::new(&[]); MAX_IOV];
            let n = out.slices(&mut iov);
            let written = match self {
                Stream::Tcp(s) => s.try_write_vectored(&iov[..n]),
                Stream::Unix(s) => s.try_write_vectored(&iov[..n]),
            };
            match written {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(w) => out.consume(w),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Write all of `out`, waiting for the socket as needed.
    pub async fn write_out(&self, out: &mut OutBuf) -> io::Result<()> {
        while !self.try_write_out(out)? {
            self.writable().await?;
        }
        Ok(())
    }

    /// Send FIN after what has been written.
    pub async fn shutdown(&mut self) {
        let _ = match self {
            Stream::Tcp(s) => s.shutdown().await,
            Stream::Unix(s) => s.shutdown().await,
        };
    }
}

#[cfg(test)]
mod addr_tests {
    use super::Addr;

    #[test]
    fn parses_and_displays_both_forms() {
        for ok in [
            "127.0.0.1:11211",
            "localhost:0",
            "[::1]:11211",
            "unix:/tmp/mc.sock",
        ] {
            let a: Addr = ok.parse().unwrap();
            assert_eq!(a.to_string(), ok);
        }
        assert_eq!(
            "unix:/run/m.sock".parse::<Addr>(),
            Ok(Addr::Unix("/run/m.sock".into()))
        );
        for bad in [
            "nowhere",
            "11211",
            ":11211",
            "host:",
            "host:port",
            "host:70000",
        ] {
            let e = bad.parse::<Addr>().unwrap_err();
            assert!(e.contains("expected host:port or unix:/path"), "{bad}: {e}");
        }
        assert_eq!(
            "unix:".parse::<Addr>().unwrap_err(),
            "unix: needs a socket path"
        );
    }
}
