//! The tools' memcached client: one connection, text or binary, pipelined.
//!
//! Requests are encoded with the same codecs the proxy uses; replies are
//! matched to requests in order. The connection is split so that a writer
//! can keep sending while a reader task consumes replies (a sliding window
//! of requests in flight).

use std::collections::VecDeque;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::protocol::{binary, text, Frame, FrameError, Request, Response};

/// Which encoding the tools speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    Text,
    Binary,
}

/// A server: `host:port` or `unix:/path`.
pub type ServerAddr = crate::net::Addr;

/// Why a reply could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("server closed the connection")]
    Closed,
    #[error("unreadable reply: {0}")]
    Protocol(&'static str),
}

pub type Reader = Box<dyn AsyncRead + Send + Unpin>;
pub type Writer = Box<dyn AsyncWrite + Send + Unpin>;

/// Open a connection, split into its two halves.
pub async fn connect(addr: &ServerAddr) -> std::io::Result<(Reader, Writer)> {
    addr.connect_split().await
}

/// The frame a request is sent with in `protocol`. Binary requests use the
/// loud opcodes so every request gets exactly one reply.
pub fn frame_for(protocol: Protocol, req: &crate::protocol::Command, with_cas: bool) -> Frame {
    match protocol {
        Protocol::Text => Frame::Text {
            noreply: false,
            cas: with_cas,
        },
        Protocol::Binary => {
            let opcode = binary::RequestPacket::of(req).map_or(binary::Opcode::Noop, |p| p.opcode);
            Frame::Binary {
                opcode: opcode.into(),
                opaque: 0,
            }
        }
    }
}

/// Encode `req` in its own frame's encoding.
pub fn encode(req: &Request, out: &mut BytesMut) {
    match req.frame {
        Frame::Text { .. } => text::encode_request(req, out),
        Frame::Binary { .. } => binary::encode_request(req, out),
    }
}

/// Reads replies in order for the requests it is told about.
pub struct ReplyReader {
    read: Reader,
    buf: BytesMut,
    max_body: usize,
}

impl ReplyReader {
    pub fn new(read: Reader, max_body: usize) -> Self {
        ReplyReader {
            read,
            buf: BytesMut::with_capacity(64 * 1024),
            max_body,
        }
    }

    /// The next reply, which answers `req`. A binary multi-get is not
    /// supported (the tools send one key per binary get).
    pub async fn next(&mut self, req: &Request) -> Result<Response, ClientError> {
        loop {
            let decoded = match req.frame {
                Frame::Text { .. } => text::decode_response(req, &mut self.buf),
                Frame::Binary { .. } => binary::decode_packet(&mut self.buf, self.max_body)
                    .map(|p| p.map(|p| binary_reply(req, &p))),
            };
            match decoded {
                Ok(Some(resp)) => return Ok(resp),
                Ok(None) => {}
                Err(FrameError { reason, .. }) => return Err(ClientError::Protocol(reason)),
            }
            if self.read.read_buf(&mut self.buf).await? == 0 {
                return Err(ClientError::Closed);
            }
        }
    }
}

/// The reply a binary packet carries to `req`.
fn binary_reply(req: &Request, p: &binary::Packet) -> Response {
    let resp = binary::response_from_packet(p);
    match req.cmd {
        crate::protocol::Command::Store {
            mode: crate::protocol::StoreMode::Cas,
            ..
        } => binary::cas_reply(resp),
        _ => resp,
    }
}

/// A simple request/reply connection for sequential use (setget, sizes,
/// tests): send a batch, read its replies.
pub struct Connection {
    reader: ReplyReader,
    write: Writer,
    out: BytesMut,
    pending: VecDeque<Request>,
}

impl Connection {
    pub async fn open(addr: &ServerAddr, max_body: usize) -> std::io::Result<Connection> {
        let (r, w) = connect(addr).await?;
        Ok(Connection {
            reader: ReplyReader::new(r, max_body),
            write: w,
            out: BytesMut::new(),
            pending: VecDeque::new(),
        })
    }

    /// Queue a request (sent at the next `flush`).
    pub fn queue(&mut self, req: Request) {
        encode(&req, &mut self.out);
        self.pending.push_back(req);
    }

    pub async fn flush(&mut self) -> std::io::Result<()> {
        self.write.write_all(&self.out).await?;
        self.out.clear();
        Ok(())
    }

    /// The reply to the oldest queued request.
    pub async fn reply(&mut self) -> Option<(Request, Result<Response, ClientError>)> {
        let req = self.pending.pop_front()?;
        let resp = self.reader.next(&req).await;
        Some((req, resp))
    }

    /// Send one request and wait for its reply.
    pub async fn call(&mut self, req: Request) -> Result<Response, ClientError> {
        self.queue(req);
        self.flush().await?;
        match self.reply().await {
            Some((_, r)) => r,
            None => Err(ClientError::Protocol("no request pending")),
        }
    }
}
