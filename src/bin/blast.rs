//! blast: drive a weighted mix of memcached commands at one or more servers
//! and report latency percentiles and outcomes.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use rend::tools::args::ToolArgs;
use rend::tools::{args::Common, blast, finish_report, workload::Mix};

#[derive(Parser, Debug)]
#[command(
    name = "blast",
    version,
    about = "Load a memcached-protocol server with a mix of commands"
)]
struct Args {
    #[command(flatten)]
    common: Common,

    /// Run for this many seconds instead of a request count.
    #[arg(long)]
    duration: Option<f64>,

    /// Seconds of unrecorded traffic before measuring.
    #[arg(long, default_value_t = 0.0)]
    warmup: f64,

    /// Command weights, e.g. get=80,set=20 (set, add, replace, append,
    /// prepend, get, multiget, gets, cas, incr, decr, delete, touch, gat,
    /// and mg: the meta get `mg <key> v f t`, text only).
    #[arg(long, default_value = "get=90,set=10")]
    mix: Mix,

    /// Open loop: send this many requests per second in all, on a fixed
    /// schedule, and measure latency from the intended send times too.
    #[arg(long)]
    rate: Option<f64>,

    /// Keys per multi-get.
    #[arg(long, default_value_t = 10)]
    multiget: usize,

    /// Exptime for sets, touch and gat (0 = never).
    #[arg(long, default_value_t = 0)]
    exptime: i64,
}

impl ToolArgs for Args {
    fn common(&mut self) -> &mut Common {
        &mut self.common
    }
}

fn main() -> ExitCode {
    let args = Args::parse_rend();
    let secs = |s: f64| Duration::from_secs_f64(s.max(0.0));
    let opts = blast::BlastOptions {
        num_ops: args.common.num_ops.or(if args.duration.is_none() {
            Some(100_000)
        } else {
            None
        }),
        duration: args.duration.map(secs),
        warmup: secs(args.warmup),
        mix: args.mix,
        rate: args.rate,
        multiget: args.multiget.max(1),
        exptime: args.exptime,
        common: args.common.clone(),
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("blast: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime
        .block_on(blast::run(opts))
        .and_then(|rec| finish_report(&rec, &args.common))
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("blast: {e}");
            ExitCode::from(2)
        }
    }
}
