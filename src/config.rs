//! The proxy's configuration: flags, `REND_*` environment variables and an
//! optional TOML file (`--config`), in that order of precedence over the
//! defaults.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::error::ErrorKind;
use clap::parser::ValueSource;
use clap::{Command, CommandFactory, FromArgMatches, Parser, ValueEnum};
use serde::{Serialize, Serializer};

use crate::backend::memcached::L1Addr;
use crate::backend::rocksdb::Durability;
use crate::protocol::DEFAULT_MAX_VALUE;
use crate::server::ListenAddr;

/// Orchestration policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OrcaKind {
    /// Every request goes to memcached (L1) alone.
    L1Only,
    /// L2 (RocksDB) is the source of truth, L1 (memcached) the hot subset;
    /// a second listener (--batch-listen) serves l1-l2-batch.
    #[value(name = "l1-l2")]
    L1L2,
}

/// rend: a memcached proxy. With no flags it starts its own memcached on a
/// private unix socket as L1, keeps L2 in RocksDB under ./rend-data, and
/// serves l1-l2 on 127.0.0.1:11211 and l1-l2-batch on 127.0.0.1:11212.
///
/// Every setting can also come from the environment variable named after its
/// flag (--l1-timeout-ms: REND_L1_TIMEOUT_MS) or from a TOML file (--config)
/// keyed by flag names; a flag beats the environment, which beats the file,
/// which beats the default.
#[derive(Clone, Debug, Parser, Serialize)]
#[serde(rename_all = "kebab-case")]
#[command(name = "rend", version = crate::metrics::VERSION)]
pub struct Config {
    /// Where to serve: host:port (port 0 picks a free port; the bound address is
    /// logged as "listening on ADDR") or unix:/path.
    #[arg(long, env = "REND_LISTEN", default_value = "127.0.0.1:11211")]
    #[serde(serialize_with = "listen_text")]
    pub listen: ListenAddr,

    /// The L1 memcached: unix:/path or host:port. Without it, rend starts
    /// memcached from PATH and supervises it.
    #[arg(long, env = "REND_L1")]
    #[serde(serialize_with = "opt_display")]
    pub l1: Option<L1Addr>,

    /// Worker threads serving client connections, each with its own
    /// connections to memcached. Default: the cores rend may run on (its CPU
    /// affinity).
    #[arg(long, env = "REND_THREADS", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub threads: Option<u16>,

    /// Connections to memcached per worker thread (in all: threads times
    /// this), shared by the client connections of that thread.
    #[arg(long, env = "REND_L1_CONNS", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub l1_conns: u16,

    /// Requests one memcached connection holds, queued or awaiting replies;
    /// past it a request fails at once (l1-only: SERVER_ERROR L1 overloaded;
    /// l1-l2: served by L2).
    #[arg(long, env = "REND_L1_QUEUE_REQUESTS", default_value_t = 16_384, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub l1_queue_requests: u64,

    /// Bytes of requests one memcached connection holds not yet written;
    /// past it a request fails at once, as above.
    #[arg(long, env = "REND_L1_QUEUE_BYTES", default_value_t = 64 << 20, value_parser = clap::value_parser!(u64).range(65_536..=1 << 34))]
    #[serde(serialize_with = "big")]
    pub l1_queue_bytes: u64,

    /// Per-request timeout for L1 calls, milliseconds.
    #[arg(long, env = "REND_L1_TIMEOUT_MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub l1_timeout_ms: u64,

    /// Memory of the embedded memcached, megabytes (its -m).
    #[arg(long, env = "REND_L1_MEMORY_MB", default_value_t = 64, value_parser = clap::value_parser!(u32).range(8..=1_048_576))]
    pub l1_memory_mb: u32,

    /// The memcached executable for the embedded L1.
    #[arg(long, env = "REND_MEMCACHED", default_value = "memcached")]
    pub memcached: String,

    /// Orchestration policy.
    #[arg(long, env = "REND_ORCA", value_enum, default_value_t = OrcaKind::L1L2)]
    #[serde(serialize_with = "value_enum")]
    pub orca: OrcaKind,

    /// With l1-l2: where the batch port (l1-l2-batch) listens, host:port or
    /// unix:/path; "off" serves no batch port.
    #[arg(long, env = "REND_BATCH_LISTEN", default_value = "127.0.0.1:11212")]
    #[serde(serialize_with = "batch_text")]
    pub batch_listen: BatchListen,

    /// L2's data directory (RocksDB). One rend per directory.
    #[arg(long, env = "REND_L2_PATH", default_value = "./rend-data")]
    pub l2_path: PathBuf,

    /// L2's block cache, megabytes (index and filter blocks included).
    #[arg(long, env = "REND_L2_CACHE_MB", default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=1_048_576))]
    pub l2_cache_mb: u64,

    /// Refuse stores once L2's files (SSTs, write-ahead log, manifest) reach this many bytes
    /// (SERVER_ERROR out of memory storing object); unbounded when absent.
    #[arg(long, env = "REND_L2_MAX_BYTES", value_parser = clap::value_parser!(u64).range(1..))]
    #[serde(serialize_with = "big")]
    pub l2_max_bytes: Option<u64>,

    /// What an acknowledged write survives: wal (a crash of rend), sync (a
    /// crash of the machine; fsync per write), none (neither).
    #[arg(long, env = "REND_L2_DURABILITY", value_enum, default_value_t = Durability::Wal)]
    #[serde(serialize_with = "value_enum")]
    pub l2_durability: Durability,

    /// Client connections served at once; one more gets
    /// "ERROR Too many open connections" and is closed.
    #[arg(long, env = "REND_MAX_CONNS", default_value_t = 16_384, value_parser = clap::value_parser!(u64).range(1..))]
    #[serde(serialize_with = "big")]
    pub max_conns: u64,

    /// Largest value accepted, bytes. Default: what memcached -I 1m stores
    /// for a 1-byte key (1048516; its item header counts against the 1 MiB),
    /// or 1 MiB with --chunked (chunking lifts memcached's limit: up to 1 GiB).
    #[arg(long, env = "REND_MAX_ITEM_SIZE", visible_alias = "max-value-size", value_parser = parse_item_size)]
    pub max_item_size: Option<usize>,

    /// Store values as fixed-size chunks in memcached (Rend's layout), so
    /// every item lands in one slab class.
    #[arg(long, env = "REND_CHUNKED", value_parser = BoolishValueParser::new())]
    pub chunked: bool,

    /// Chunk data size in bytes. Default: 1097 less the key's length (aimed
    /// at memcached's 1184-byte slab class).
    #[arg(long, env = "REND_CHUNK_SIZE", value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub chunk_size: Option<u64>,

    /// Serialise work on each key with striped locks (writers alone,
    /// readers together). On by default with --chunked.
    #[arg(
        long,
        env = "REND_LOCKED",
        num_args = 0..=1,
        default_missing_value = "true",
        value_parser = BoolishValueParser::new()
    )]
    pub locked: Option<bool>,

    /// Move memcached's slab pages from the class with the oldest items to a
    /// class that evicts (`slabs reassign`), so a shift in value sizes does
    /// not leave memory stranded in the old sizes' classes. On by default
    /// for the embedded memcached without --chunked; off for one given with
    /// --l1 (which may be shared, and must run with slab_reassign,
    /// memcached's default) and with --chunked (a page taken from the chunk
    /// class takes chunks of live values with it).
    #[arg(
        long,
        env = "REND_SLAB_BALANCER",
        num_args = 0..=1,
        default_missing_value = "true",
        value_parser = BoolishValueParser::new()
    )]
    pub slab_balancer: Option<bool>,

    /// With the slab balancer and without --chunked: how long, in
    /// milliseconds, a store may wait for the balancer to move a page to
    /// its slab class when that class has no free chunk left and another
    /// class holds older items (0: stores never wait). The client's later
    /// requests wait behind it.
    #[arg(long, env = "REND_SLAB_PACING", default_value_t = 20, value_parser = clap::value_parser!(u64).range(0..=10_000))]
    pub slab_pacing: u64,

    /// Number of lock stripes.
    #[arg(long, env = "REND_LOCK_STRIPES", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=1_048_576))]
    pub lock_stripes: u64,

    /// Requests one client connection may have started and not yet been
    /// answered (each key of a multi-get counts one). At the cap rend stops
    /// reading that client until replies drain.
    #[arg(long, env = "REND_CONN_MAX_REQUESTS", default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=65_536))]
    pub conn_max_requests: u64,

    /// Bytes one client connection may hold: replies not yet written, values
    /// of requests not yet answered, and the replies it expects. At the cap
    /// rend stops reading that client until replies drain.
    #[arg(long, env = "REND_CONN_MAX_BYTES", default_value_t = 1 << 20, value_parser = clap::value_parser!(u64).range(4096..=1 << 34))]
    #[serde(serialize_with = "big")]
    pub conn_max_bytes: u64,

    /// Close a client connection that completes no request for this many
    /// seconds (idle, or trickling a request); 0 never closes. At most a
    /// year.
    #[arg(long, env = "REND_IDLE_TIMEOUT", default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=31_536_000))]
    pub idle_timeout: u64,

    /// How long shutdown waits for connections to finish, seconds (at most
    /// a day).
    #[arg(long, env = "REND_SHUTDOWN_GRACE", default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=86_400))]
    pub shutdown_grace: u64,

    /// A TOML file of settings whose keys are the flag names
    /// (`l1-timeout-ms = 500`, `chunked = true`). Flags and REND_* variables
    /// override it; it overrides the defaults.
    #[arg(long, env = "REND_CONFIG", value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// Print the effective configuration (flags, environment, --config file
    /// and defaults combined) as TOML that --config accepts, and exit.
    #[arg(long)]
    #[serde(skip)]
    pub print_config: bool,

    /// Where Prometheus scrapes /metrics: host:port (port 0 picks one; the
    /// bound address is logged as "metrics listening on ADDR") or "off".
    #[arg(long, env = "REND_METRICS_LISTEN", default_value = "127.0.0.1:11299")]
    #[serde(serialize_with = "display")]
    pub metrics_listen: crate::metrics::MetricsListen,
}

/// The batch port's address, or none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BatchListen {
    Off,
    At(ListenAddr),
}

impl std::str::FromStr for BatchListen {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "off" {
            Ok(BatchListen::Off)
        } else {
            s.parse().map(BatchListen::At)
        }
    }
}

fn parse_item_size(s: &str) -> Result<usize, String> {
    let v: usize = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of bytes"))?;
    if !(1..=1 << 30).contains(&v) {
        return Err(format!("{v} is out of range 1..=1073741824"));
    }
    Ok(v)
}

/// Arguments that are not settings: no `--config` key or `--print-config`
/// line.
const NOT_SETTINGS: &[&str] = &["config", "print_config", "help", "version"];

impl Config {
    /// This process's configuration: its flags, environment and `--config`
    /// file. On an error, prints it and exits with status 2 (0 for `--help`
    /// and `--version`).
    pub fn load() -> Config {
        Self::load_from(std::env::args_os()).unwrap_or_else(|e| e.exit())
    }

    /// The configuration from `args` (the first is the program's name), this
    /// process's `REND_*` environment variables and the `--config` file (or
    /// `REND_CONFIG`), in that order of precedence over the defaults. Every
    /// value is checked, whichever source it comes from, and an error names
    /// its source, the flag and what is allowed.
    pub fn load_from<I, T>(args: I) -> Result<Config, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
        let cmd = Config::command();
        // The command line alone first (its errors are clap's own), then
        // each variable it leaves in force, checked alone so that its error
        // can name it.
        let bare = cmd.clone().mut_args(|a| a.env(None));
        let given = match bare.clone().try_get_matches_from(&args) {
            Ok(m) => m,
            Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
                // Help from the full command: it shows the variables.
                return Err(cmd.try_get_matches_from(&args).err().unwrap_or(e));
            }
            Err(e) => return Err(e),
        };
        for arg in cmd.get_arguments() {
            let id = arg.get_id().as_str();
            if given.value_source(id) == Some(ValueSource::CommandLine) {
                continue;
            }
            let Some(name) = arg.get_env() else { continue };
            if let Some(value) = std::env::var_os(name) {
                let origin = format!("environment variable {}", name.to_string_lossy());
                check(&bare, id, value, &origin)?;
            }
        }
        let matches = cmd.clone().try_get_matches_from(&args)?;
        let Some(path) = matches.get_one::<PathBuf>("config") else {
            return Config::from_arg_matches(&matches);
        };
        // The file's values become the defaults: flags and the environment
        // still win.
        let cmd = file_settings(&bare, path)?
            .into_iter()
            .fold(cmd, |cmd, (id, value)| {
                cmd.mut_arg(id, |a| a.default_value(value))
            });
        Config::from_arg_matches(&cmd.try_get_matches_from(&args)?)
    }

    /// The configuration as a TOML file that `--config` accepts: every
    /// setting in the order of `--help`; one that is absent (so derived or
    /// off) is a comment saying what is in force.
    #[allow(
        clippy::expect_used,
        reason = "Config holds only strings, numbers and booleans, which TOML can always hold"
    )]
    pub fn to_toml(&self) -> String {
        let table = toml::Table::try_from(self).expect("the configuration is TOML");
        let mut out = String::from(
            "# rend's effective configuration (flags > REND_* environment > --config file > defaults)\n",
        );
        for key in Config::command()
            .get_arguments()
            .filter(|a| is_setting(a))
            .filter_map(|a| a.get_long())
        {
            match table.get(key) {
                Some(value) => out.push_str(&format!("{key} = {value}\n")),
                None => {
                    let note = match key {
                        "l1" => "rend starts and supervises its own memcached".to_string(),
                        "l2-max-bytes" => "unbounded".to_string(),
                        "max-item-size" => format!("{} (follows chunked)", self.max_item_size()),
                        "chunk-size" => "1097 less the key's length".to_string(),
                        "locked" => format!("{} (follows chunked)", self.locked()),
                        _ => "none".to_string(),
                    };
                    out.push_str(&format!("# {key}: unset: {note}\n"));
                }
            }
        }
        out
    }

    /// The value limit in force.
    pub fn max_item_size(&self) -> usize {
        self.max_item_size.unwrap_or(if self.chunked {
            1 << 20
        } else {
            DEFAULT_MAX_VALUE
        })
    }

    /// Whether key locks are on.
    pub fn locked(&self) -> bool {
        self.locked.unwrap_or(self.chunked)
    }

    pub fn slab_balancer(&self) -> bool {
        self.slab_balancer
            .unwrap_or(self.l1.is_none() && !self.chunked)
    }

    /// How long a store may wait for a page, when stores are paced
    /// (`--slab-pacing`): only with the balancer and unchunked values,
    /// whose class rend can tell from the request.
    pub fn slab_pacing(&self) -> Option<Duration> {
        (self.slab_balancer() && !self.chunked && self.slab_pacing > 0)
            .then(|| Duration::from_millis(self.slab_pacing))
    }

    pub fn l1_timeout(&self) -> Duration {
        Duration::from_millis(self.l1_timeout_ms)
    }

    /// Worker threads in force.
    pub fn threads(&self) -> usize {
        self.threads
            .map(usize::from)
            .unwrap_or_else(crate::server::default_threads)
    }

    pub fn idle_timeout(&self) -> Option<Duration> {
        (self.idle_timeout > 0).then(|| Duration::from_secs(self.idle_timeout))
    }
}

/// Check one value for one argument as clap would take it from the command
/// line; an error names `origin`, the flag and what it allows.
fn check(bare: &Command, id: &str, value: OsString, origin: &str) -> Result<(), clap::Error> {
    let probe = bare.clone().mut_arg(id, |a| a.default_value(value));
    match probe.try_get_matches_from(["rend"]) {
        Ok(_) => Ok(()),
        Err(e) => {
            let text = e.render().to_string();
            let text = text.strip_prefix("error: ").unwrap_or(&text);
            let text = text
                .split("\n\nFor more information")
                .next()
                .unwrap_or(text)
                .trim_end();
            Err(failure(e.kind(), format!("{origin}: {text}")))
        }
    }
}

/// An error to print as it is ("error: MESSAGE"), exit status 2.
fn failure(kind: ErrorKind, message: String) -> clap::Error {
    clap::Error::raw(kind, format!("{message}\n"))
}

/// The settings of a `--config` file, each checked: (argument id, value).
fn file_settings(bare: &Command, path: &Path) -> Result<Vec<(String, OsString)>, clap::Error> {
    let file = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| {
        failure(
            ErrorKind::Io,
            format!("cannot read the configuration file {file}: {e}"),
        )
    })?;
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        failure(
            ErrorKind::Io,
            format!(
                "configuration file {file} is not valid TOML: {}",
                e.to_string().trim_end()
            ),
        )
    })?;
    let settings: Vec<&clap::Arg> = bare.get_arguments().filter(|a| is_setting(a)).collect();
    let mut out: Vec<(String, OsString)> = Vec::new();
    for (key, value) in &table {
        let Some(arg) = settings.iter().find(|a| {
            a.get_long() == Some(key.as_str())
                || a.get_all_aliases()
                    .is_some_and(|aliases| aliases.contains(&key.as_str()))
        }) else {
            let keys: Vec<&str> = settings.iter().filter_map(|a| a.get_long()).collect();
            return Err(failure(
                ErrorKind::UnknownArgument,
                format!(
                    "configuration file {file}: unknown key `{key}` (the keys are the flag names: {})",
                    keys.join(", ")
                ),
            ));
        };
        let id = arg.get_id().as_str().to_owned();
        if out.iter().any(|(seen, _)| *seen == id) {
            return Err(failure(
                ErrorKind::ArgumentConflict,
                format!(
                    "configuration file {file}: key `{key}` sets --{} a second time",
                    arg.get_long().unwrap_or(key)
                ),
            ));
        }
        let origin = format!("configuration file {file}, key `{key}`");
        let value = match value {
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            other => {
                return Err(failure(
                    ErrorKind::InvalidValue,
                    format!(
                        "{origin}: expected a string, a number or a boolean, not {}",
                        other.type_str()
                    ),
                ))
            }
        };
        check(bare, &id, value.clone().into(), &origin)?;
        out.push((id, value.into()));
    }
    Ok(out)
}

/// Whether an argument is a setting (a `--config` key, a `--print-config`
/// line).
fn is_setting(arg: &clap::Arg) -> bool {
    !NOT_SETTINGS.contains(&arg.get_id().as_str())
}

// How settings are written as TOML: as the text their flag takes.

fn display<T: std::fmt::Display, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

fn opt_display<T: std::fmt::Display, S: Serializer>(
    v: &Option<T>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.collect_str(v),
        None => s.serialize_none(),
    }
}

fn listen_text<S: Serializer>(a: &ListenAddr, s: S) -> Result<S::Ok, S::Error> {
    match a {
        ListenAddr::Tcp(t) => s.serialize_str(t),
        ListenAddr::Unix(p) => s.collect_str(&format_args!("unix:{}", p.display())),
    }
}

fn batch_text<S: Serializer>(b: &BatchListen, s: S) -> Result<S::Ok, S::Error> {
    match b {
        BatchListen::Off => s.serialize_str("off"),
        BatchListen::At(a) => listen_text(a, s),
    }
}

fn value_enum<T: ValueEnum, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    match v.to_possible_value() {
        Some(p) => s.serialize_str(p.get_name()),
        None => s.serialize_none(),
    }
}

/// An integer, or past TOML's (i64) a string, which `--config` accepts too.
fn big<T: Copy + Into<Option<u64>>, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    match (*v).into() {
        None => s.serialize_none(),
        Some(n) => match i64::try_from(n) {
            Ok(i) => s.serialize_i64(i),
            Err(_) => s.collect_str(&n),
        },
    }
}
