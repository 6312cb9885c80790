//! Command-line options the three tools share (clap), spelled as Netflix
//! Rend's tools spell them where clap allows (`--binary`, `-w`, `-n`).

use std::path::PathBuf;

use super::client::{Protocol, ServerAddr};
use super::workload::{KeyDist, ValueSizes};

#[derive(clap::Args, Clone, Debug)]
pub struct Common {
    /// Server to talk to: host:port or unix:/path. Repeat it to spread keys
    /// over several servers by ketama consistent hashing.
    #[arg(short = 's', long = "server", default_value = "127.0.0.1:11211")]
    pub servers: Vec<ServerAddr>,

    /// Wire protocol.
    #[arg(long, value_enum, default_value_t = Protocol::Text)]
    pub protocol: Protocol,

    /// Same as --protocol binary.
    #[arg(long, conflicts_with = "text")]
    pub binary: bool,

    /// Same as --protocol text.
    #[arg(long)]
    pub text: bool,

    /// Workers; each has its own connection to every server.
    #[arg(short = 'w', long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub workers: u64,

    /// Requests in flight per worker.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=65_536))]
    pub pipeline: u64,

    /// Seed of every random choice: the same seed gives the same run.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,

    /// Key length in bytes (1-250).
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

impl Common {
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

    /// Names ketama hashes, as twemproxy and libmemcached's ketama spell
    /// them (`host:port`, but plain `host` for port 11211; a unix address
    /// verbatim), so keys land where those clients would put them.
    pub fn server_names(&self) -> Vec<String> {
        self.servers
            .iter()
            .map(|s| super::ketama::point_name(&s.to_string()).to_string())
            .collect()
    }
}
