//! `/metrics` over HTTP/1.1, on the proxy's tokio runtime: one request per
//! connection, bounded in size and time, answered and closed. GET (or HEAD)
//! `/metrics` gets the Prometheus text format, or OpenMetrics when the
//! scraper asks for it; anything else gets 404.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use super::exporter::{Exporter, OPENMETRICS_CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE};

/// Largest request head read; a longer one is refused.
const MAX_REQUEST: usize = 8 * 1024;
/// A scrape (reading the request, encoding, writing) that takes longer is
/// dropped.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);
/// Scrapes served at once; further connections are closed unanswered.
const MAX_SCRAPES: usize = 16;

/// `--metrics-listen`: `host:port` (port 0 picks one) or `off`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetricsListen {
    Off,
    At(String),
}

impl std::str::FromStr for MetricsListen {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "off" {
            Ok(MetricsListen::Off)
        } else if s.starts_with("unix:") {
            Err("metrics are served over TCP only: host:port or off".into())
        } else if s.contains(':') {
            Ok(MetricsListen::At(s.to_string()))
        } else {
            Err(format!("expected host:port or off, got {s:?}"))
        }
    }
}

impl std::fmt::Display for MetricsListen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MetricsListen::Off => f.write_str("off"),
            MetricsListen::At(a) => f.write_str(a),
        }
    }
}

pub async fn bind(addr: &str) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serve scrapes until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    exporter: Arc<Exporter>,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(MAX_SCRAPES));
    tokio::pin!(shutdown);
    let mut backoff = Duration::from_millis(1);
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => return,
            a = listener.accept() => a,
        };
        let stream = match accepted {
            Ok((s, _)) => {
                backoff = Duration::from_millis(1);
                s
            }
            Err(e) => {
                tracing::warn!("metrics: accept failed: {e}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_millis(500));
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let exporter = exporter.clone();
        tokio::spawn(async move {
            if let Ok(Err(e)) = tokio::time::timeout(SCRAPE_TIMEOUT, answer(stream, exporter)).await
            {
                tracing::debug!("metrics: scrape failed: {e}");
            }
            drop(slot);
        });
    }
}

/// The request head's end, if it has arrived.
fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

async fn answer(mut stream: TcpStream, exporter: Arc<Exporter>) -> std::io::Result<()> {
    let mut buf = vec![0u8; MAX_REQUEST];
    let mut filled = 0;
    let head = loop {
        if let Some(end) = head_end(&buf[..filled]) {
            break &buf[..end];
        }
        if filled == buf.len() {
            return reply(
                &mut stream,
                "431 Request Header Fields Too Large",
                "text/plain",
                b"request too large\n",
                true,
            )
            .await;
        }
        let n = stream.read(&mut buf[filled..]).await?;
        if n == 0 {
            return Ok(());
        }
        filled += n;
    };
    let head = String::from_utf8_lossy(head);
    let mut lines = head.split("\r\n");
    let mut request = lines.next().unwrap_or("").split(' ');
    let (method, target) = (request.next().unwrap_or(""), request.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let openmetrics = lines.any(|l| {
        l.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("accept")
                && value.contains("application/openmetrics-text")
        })
    });
    match (method, path) {
        ("GET" | "HEAD", "/metrics") => {
            scrape(&mut stream, exporter, openmetrics, method == "GET").await
        }
        _ => {
            reply(
                &mut stream,
                "404 Not Found",
                "text/plain",
                b"not found: try /metrics\n",
                method != "HEAD",
            )
            .await
        }
    }
}

/// Answer a scrape: the metrics in the format asked for (`openmetrics`),
/// the body only for a GET.
async fn scrape(
    stream: &mut TcpStream,
    exporter: Arc<Exporter>,
    openmetrics: bool,
    with_body: bool,
) -> std::io::Result<()> {
    // Reading /proc and RocksDB's properties is blocking work.
    let encoded = tokio::task::spawn_blocking(move || {
        if openmetrics {
            exporter.encode_openmetrics()
        } else {
            exporter.encode()
        }
    })
    .await;
    match encoded {
        Ok(Ok(text)) => {
            let kind = if openmetrics {
                OPENMETRICS_CONTENT_TYPE
            } else {
                PROMETHEUS_CONTENT_TYPE
            };
            reply(stream, "200 OK", kind, text.as_bytes(), with_body).await
        }
        _ => {
            reply(
                stream,
                "500 Internal Server Error",
                "text/plain",
                b"cannot encode metrics\n",
                true,
            )
            .await
        }
    }
}

async fn reply(
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &[u8],
    with_body: bool,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let mut out = Vec::with_capacity(head.len() + body.len());
    out.extend_from_slice(head.as_bytes());
    if with_body {
        out.extend_from_slice(body);
    }
    stream.write_all(&out).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_flag() {
        assert_eq!("off".parse::<MetricsListen>(), Ok(MetricsListen::Off));
        assert_eq!(
            "127.0.0.1:0".parse::<MetricsListen>(),
            Ok(MetricsListen::At("127.0.0.1:0".into()))
        );
        assert!("unix:/tmp/x".parse::<MetricsListen>().is_err());
        assert!("11299".parse::<MetricsListen>().is_err());
    }

    #[test]
    fn finds_the_head() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n"), None);
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\n"), Some(18));
    }

    async fn fetch(addr: std::net::SocketAddr, req: &str) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn serves_metrics_and_404() {
        let listener = bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = crate::metrics::Metrics::new(Arc::new(crate::metrics::Counters::default()));
        let exporter = Arc::new(Exporter::new(metrics));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, exporter, async {
            let _ = rx.await;
        }));
        let ok = fetch(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.contains("text/plain; version=0.0.4"), "{ok}");
        assert!(ok.contains("rend_uptime_seconds"), "{ok}");
        let om = fetch(
            addr,
            "GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text;version=1.0.0\r\n\r\n",
        )
        .await;
        assert!(om.contains("application/openmetrics-text"), "{om}");
        assert!(om.ends_with("# EOF\n"), "{om}");
        let head = fetch(addr, "HEAD /metrics HTTP/1.1\r\n\r\n").await;
        assert!(
            head.starts_with("HTTP/1.1 200 OK\r\n") && head.ends_with("\r\n\r\n"),
            "{head}"
        );
        let nf = fetch(addr, "GET / HTTP/1.1\r\n\r\n").await;
        assert!(nf.starts_with("HTTP/1.1 404 "), "{nf}");
        let post = fetch(addr, "POST /metrics HTTP/1.1\r\n\r\n").await;
        assert!(post.starts_with("HTTP/1.1 404 "), "{post}");
        // Exactly the limit, with no end of head: nothing is left unread,
        // so the reply is not lost to a reset.
        let mut big = String::from("GET /metrics HTTP/1.1\r\nX: ");
        big.push_str(&"a".repeat(MAX_REQUEST - big.len()));
        let mut s = TcpStream::connect(addr).await.unwrap();
        let _ = s.write_all(big.as_bytes()).await;
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
        assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.1 431 "));
        let _ = tx.send(());
        server.await.unwrap();
    }
}
