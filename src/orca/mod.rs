//! Orchestration policies: given a request, decide which tiers to call and
//! what to answer. An orca returns [`Response`] values and never touches a
//! socket. One file per policy.

pub mod l1_l2;
pub mod l1_l2_batch;
pub mod l1_only;
pub mod two_tier;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};

use crate::backend::{Backend, BackendError};
use crate::metrics::{Counters, VERSION};
use crate::protocol::meta::{MetaReply, Verb};
use crate::protocol::{Command, ErrorReply, Frame, Invalid, Request, Response};
use crate::ratelimit::RateLimit;

pub use l1_only::L1Only;

pub type Reply = Pin<Box<dyn Future<Output = Response> + Send>>;

/// A policy, one instance per client connection.
///
/// `handle` must start the request's first backend call before it returns
/// (see [`crate::backend::Backend::call`]): the connection calls it for every
/// request of a pipelined batch, in order, and then awaits the replies.
pub trait Orca: Send {
    fn handle(&mut self, req: &Request) -> Reply;

    /// True when replies start only when polled (not in `handle`): the
    /// connection then runs requests on different keys together and keeps
    /// requests on one key in order.
    fn orders_by_keys(&self) -> bool {
        false
    }

    /// True when meta commands reach the tier over a connection of their
    /// own (`l1-only`'s meta lane): the connection then never lets a meta
    /// request and another request of its client overlap, so the two
    /// connections cannot reorder them.
    fn meta_apart(&self) -> bool {
        false
    }
}

/// Builds the orca of each new client connection, given the worker thread
/// that will serve it.
pub type OrcaFactory = Arc<dyn Fn(usize) -> Box<dyn Orca> + Send + Sync>;

pub(crate) fn ready(resp: Response) -> Reply {
    Box::pin(std::future::ready(resp))
}

/// Replies every policy gives the same way, without a backend: version,
/// noop, quit, verbosity, the proxy's own stats and requests refused while
/// decoding. `None`: the request needs the policy.
pub(crate) fn answer_locally(req: &Request, counters: &Counters) -> Option<Response> {
    Some(match &req.cmd {
        Command::Version => Response::Version(Bytes::from_static(VERSION.as_bytes())),
        Command::Noop | Command::Verbosity { .. } => Response::Ok,
        // Binary quit is acknowledged (quitq is not); text quit just closes.
        Command::Quit => match req.frame {
            Frame::Binary { .. } => Response::Ok,
            Frame::Text { .. } => Response::Nothing,
        },
        Command::Stats { arg: None } => Response::Stats(counters.stats()),
        // `mn` only marks its place in the replies, which come back in order.
        Command::Meta(m) if m.verb == Verb::Noop => Response::Meta(MetaReply::Noop),
        Command::Invalid(Invalid::TooLarge { delete: Some(_) }) => return None,
        Command::Invalid(invalid) => Response::Error(ErrorReply::from_invalid(invalid)),
        _ => return None,
    })
}

/// What to ask memcached for a `stats <arg>`: `stats l1` is memcached's own
/// `stats`, `stats l1 <group>` its `stats <group>`; any other group goes to
/// memcached as it is.
pub(crate) fn l1_stats(arg: &Option<Bytes>) -> Command {
    Command::Stats {
        arg: arg.as_deref().and_then(l1_group),
    }
}

/// The group of memcached's stats a `stats <arg>` names (`None`: its plain
/// `stats`); see [`l1_stats`].
fn l1_group(arg: &[u8]) -> Option<Bytes> {
    match arg {
        b"l1" => None,
        a if a.starts_with(b"l1 ") => Some(Bytes::copy_from_slice(a[3..].trim_ascii())),
        a => Some(Bytes::copy_from_slice(a)),
    }
}

/// The admin lane ([`crate::backend::admin`]) as the policies hold it.
pub type Admin = Arc<dyn Backend>;

/// memcached's admin and inspection commands, and a text client's `stats
/// <group>`: L1 answers them over the admin lane, as text, and its reply
/// goes back as it is, in every policy (they are about memcached, not
/// about keys). `None`: the request is not one of them.
pub(crate) fn relay_admin(req: &Request, admin: &Admin) -> Option<Reply> {
    let (call, noreply) = match (&req.cmd, &req.frame) {
        (Command::Admin { noreply, .. }, _) => (admin.call(&req.cmd), *noreply),
        (Command::Stats { arg: Some(arg) }, Frame::Text { .. }) => {
            let mut line = BytesMut::from(&b"stats"[..]);
            if let Some(group) = l1_group(arg) {
                line.put_u8(b' ');
                line.put_slice(&group);
            }
            let cmd = Command::Admin {
                line: line.freeze(),
                noreply: false,
            };
            (admin.call(&cmd), false)
        }
        _ => return None,
    };
    Some(Box::pin(async move {
        match call.await {
            Ok(resp) => resp,
            Err(e) => {
                let failure = backend_failure(&e);
                // memcached would have answered nothing either way.
                if noreply {
                    Response::Nothing
                } else {
                    failure
                }
            }
        }
    }))
}

/// A tier failure as the client sees it: `SERVER_ERROR <tier> <what>`
/// (binary: status 0x86 with the same text).
pub(crate) fn backend_failure(e: &BackendError) -> Response {
    static FAILURES: RateLimit = RateLimit::new(10_000);
    if !matches!(e, BackendError::Unsupported(_)) {
        crate::warn_limited!(FAILURES, tier = %e.tier(), "request failed: {e}");
    }
    match e {
        BackendError::Unsupported(_) => Response::Error(ErrorReply::UnknownCommand),
        e => Response::Error(ErrorReply::Server(e.reply_text())),
    }
}
