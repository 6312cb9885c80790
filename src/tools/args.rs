//! Command-line options the three tools share (clap). Netflix Rend's tools'
//! flags work as Rend spells them: `-b/--binary`, `-t/--text`, `-n/--num-ops`,
//! `-w/--workers`, `-p/--port`, `--host` and the two-letter `-kl`, which
//! clap cannot parse and [`rend_argv`] rewrites to `--key-length` first.
//! Where they differ: `-h` is help (Rend's `-h` is the host), and the default
//! target is 127.0.0.1:11211 (Rend's is localhost:11212).

use std::ffi::OsString;
use std::path::PathBuf;

use super::client::{Protocol, ServerAddr};
use super::workload::{KeyDist, ValueSizes};

/// Where `--host` and `--port` point when neither is given.
pub const DEFAULT_HOST: &str = "127.0.0.1";
pub const DEFAULT_PORT: u16 = 11211;

/// One `--server`: an address, optionally named (`NAME=ADDR`). Ketama hashes
/// the name when there is one, as twemproxy hashes a server's name
/// (`- 127.0.0.1:22122:1 node1`), so a node keeps its keys when its address
/// changes; without a name it hashes the address as twemproxy and
/// libmemcached do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Server {
    pub addr: ServerAddr,
    pub name: Option<String>,
}

impl std::str::FromStr for Server {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        // A name has no ':' or '/', so "unix:/a=b" and "[::1]:1" stay addresses.
        match s.split_once('=') {
            Some((name, addr)) if !name.is_empty() && !name.contains([':', '/']) => Ok(Server {
                addr: addr.parse()?,
                name: Some(name.to_string()),
            }),
            _ => Ok(Server {
                addr: s.parse()?,
                name: None,
            }),
        }
    }
}

impl std::fmt::Display for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.name {
            Some(n) => write!(f, "{n}={}", self.addr),
            None => write!(f, "{}", self.addr),
        }
    }
}

#[derive(clap::Args, Clone, Debug)]
pub struct Common {
    /// Server to talk to: host:port, unix:/path, or NAME=ADDR to hash a
    /// name as twemproxy does. Repeat it to spread keys over several servers
    /// by ketama consistent hashing. Default: --host and --port.
    #[arg(short = 's', long = "server", conflicts_with_all = ["host", "port"])]
    pub servers: Vec<Server>,

    /// Host to connect to (Rend's --host); default 127.0.0.1.
    #[arg(long)]
    pub host: Option<String>,

    /// Port to connect to (Rend's -p/--port); default 11211.
    #[arg(short = 'p', long)]
    pub port: Option<u16>,

    /// Wire protocol.
    #[arg(long, value_enum, default_value_t = Protocol::Text)]
    pub protocol: Protocol,

    /// Same as --protocol binary.
    #[arg(short = 'b', long, conflicts_with = "text")]
    pub binary: bool,

    /// Same as --protocol text.
    #[arg(short = 't', long)]
    pub text: bool,

    /// How much work: blast's requests in total over all workers (warmup
    /// excluded; default 100000 unless --duration), setget's set+get pairs
    /// (default: one per key of --key-space), sizes' rounds of its sweep
    /// (default 1).
    #[arg(short = 'n', long = "num-ops", value_parser = clap::value_parser!(u64).range(1..))]
    pub num_ops: Option<u64>,

    /// Workers; each has its own connection to every server.
    #[arg(short = 'w', long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub workers: u64,

    /// Requests in flight per worker.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=65_536))]
    pub pipeline: u64,

    /// Seed of every random choice: the same seed gives the same run.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,

    /// Key length in bytes (1-250); Rend's -kl works too.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=250))]
    pub key_length: u64,

    /// Number of distinct keys.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub key_space: u64,

    /// Key popularity: uniform, zipf:S or sequential.
    #[arg(long, default_value = "uniform")]
    pub key_dist: KeyDist,

    /// Value sizes: N, A-B (uniform) or a weighted list size:weight,...
    #[arg(long, default_value = "100")]
    pub value_size: ValueSizes,

    /// Write summary.csv and timeseries.csv into this directory.
    #[arg(long)]
    pub csv_dir: Option<PathBuf>,

    /// Draw the latency percentile distribution to this file (.svg or .png).
    #[arg(long)]
    pub plot: Option<PathBuf>,
}

/// The tools' arguments, with Rend's `-kl` rewritten and `--host`/`--port`
/// folded into the server list.
pub trait ToolArgs: clap::Parser {
    fn common(&mut self) -> &mut Common;

    fn parse_rend() -> Self {
        let mut args = Self::parse_from(rend_argv(std::env::args_os()));
        args.common().settle();
        args
    }
}

/// Rewrite Rend's two-letter `-kl` (also `--kl`, `-kl=N`, `--kl=N`) as
/// `--key-length`, up to a bare `--`.
pub fn rend_argv(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut out = Vec::new();
    let mut done = false;
    for a in args {
        if done {
            out.push(a);
            continue;
        }
        let rewritten = match a.to_str() {
            Some("--") => {
                done = true;
                None
            }
            Some("-kl" | "--kl") => Some("--key-length".to_string()),
            Some(s) => s
                .strip_prefix("-kl=")
                .or_else(|| s.strip_prefix("--kl="))
                .map(|v| format!("--key-length={v}")),
            None => None,
        };
        out.push(rewritten.map(OsString::from).unwrap_or(a));
    }
    out
}

impl Common {
    /// Fill in the server list from --host and --port when no --server was
    /// given.
    pub fn settle(&mut self) {
        if self.servers.is_empty() {
            let host = self.host.as_deref().unwrap_or(DEFAULT_HOST);
            let port = self.port.unwrap_or(DEFAULT_PORT);
            // An IPv6 literal needs brackets before its port.
            let host = if host.contains(':') && !host.starts_with('[') {
                format!("[{host}]")
            } else {
                host.to_string()
            };
            self.servers.push(Server {
                addr: ServerAddr::Tcp(format!("{host}:{port}")),
                name: None,
            });
        }
    }

    /// The protocol after the --binary/--text aliases.
    pub fn protocol(&self) -> Protocol {
        if self.binary {
            Protocol::Binary
        } else if self.text {
            Protocol::Text
        } else {
            self.protocol
        }
    }

    /// Names ketama hashes: a server's NAME when it has one, else its address
    /// as twemproxy and libmemcached's ketama spell it (`host:port`, but
    /// plain `host` for port 11211; a unix address verbatim), so keys land
    /// where those clients would put them.
    pub fn server_names(&self) -> Vec<String> {
        self.servers
            .iter()
            .map(|s| match &s.name {
                Some(n) => n.clone(),
                None => super::ketama::point_name(&s.addr.to_string()).to_string(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Args {
        #[command(flatten)]
        common: Common,
    }

    impl ToolArgs for Args {
        fn common(&mut self) -> &mut Common {
            &mut self.common
        }
    }

    fn parse(line: &str) -> Result<Common, clap::Error> {
        let argv = rend_argv(line.split_whitespace().map(OsString::from));
        let mut a = Args::try_parse_from(argv)?;
        a.common().settle();
        Ok(a.common)
    }

    #[test]
    fn rends_seed_lines_parse_as_written() {
        let c = parse("blast --binary -n 1000000 -p 11211 -w 10 -kl 5").unwrap();
        assert_eq!(c.protocol(), Protocol::Binary);
        assert_eq!(
            (c.num_ops, c.workers, c.key_length),
            (Some(1_000_000), 10, 5)
        );
        assert_eq!(c.servers[0].addr, ServerAddr::Tcp("127.0.0.1:11211".into()));
        let c = parse("setget --binary -n 100000 -p 11300 -w 10").unwrap();
        assert_eq!(c.servers[0].addr, ServerAddr::Tcp("127.0.0.1:11300".into()));
        let c = parse("sizes -b --host ::1 -p 7 -kl=9").unwrap();
        assert_eq!(c.protocol(), Protocol::Binary);
        assert_eq!(c.key_length, 9);
        assert_eq!(c.servers[0].addr, ServerAddr::Tcp("[::1]:7".into()));
        let c = parse("blast -t --host localhost --kl 3 --num-ops 5 --workers 2").unwrap();
        assert_eq!(c.protocol(), Protocol::Text);
        assert_eq!((c.num_ops, c.workers, c.key_length), (Some(5), 2, 3));
        assert_eq!(c.servers[0].addr, ServerAddr::Tcp("localhost:11211".into()));
    }

    #[test]
    fn rend_flags_are_checked() {
        // -h stays help, not Rend's host.
        assert_eq!(
            parse("blast -h").unwrap_err().kind(),
            clap::error::ErrorKind::DisplayHelp
        );
        for bad in [
            "blast -b -t",
            "blast -n 0",
            "blast -kl 0",
            "blast -kl 251",
            "blast -p 70000",
            "blast -p 1 -s 127.0.0.1:2",
            "blast --host h -s 127.0.0.1:2",
            "blast -k 5",
        ] {
            assert!(parse(bad).is_err(), "{bad} parsed");
        }
        // After a bare --, -kl is left alone.
        assert_eq!(
            rend_argv(["a", "--", "-kl"].map(OsString::from)),
            ["a", "--", "-kl"].map(OsString::from)
        );
    }

    #[test]
    fn servers_may_be_named() {
        let c = parse("setget -s node1=127.0.0.1:5 -s 127.0.0.1:11211 -s unix:/x=y").unwrap();
        assert_eq!(c.server_names(), ["node1", "127.0.0.1", "unix:/x=y"]);
        assert_eq!(c.servers[0].addr, ServerAddr::Tcp("127.0.0.1:5".into()));
        assert_eq!(c.servers[0].to_string(), "node1=127.0.0.1:5");
        assert!(parse("setget -s node1=nope").is_err());
    }
}
