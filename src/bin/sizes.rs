//! sizes: set and get values of steadily increasing size (plus the points
//! around chunk boundaries and the item limit), verifying each. Reports the
//! first size that fails; exit 1 on any failure.

use std::process::ExitCode;

use clap::Parser;
use rend::tools::args::ToolArgs;
use rend::tools::{args::Common, verify};

#[derive(Parser, Debug)]
#[command(
    name = "sizes",
    version,
    about = "Probe value sizes from 0 up to a maximum"
)]
struct Args {
    #[command(flatten)]
    common: Common,

    /// Largest size to try. The first size the server refuses as too large
    /// starts a search for its exact item limit, which is reported.
    #[arg(long, default_value_t = 2 * 1024 * 1024)]
    max_size: usize,

    /// Also try kC-1, kC and kC+1 for this chunk size C.
    #[arg(long)]
    chunk_size: Option<usize>,

    /// Assert the server's item limit: sizes up to it must be stored, one
    /// past it must be refused as too large.
    #[arg(long)]
    item_limit: Option<usize>,
}

impl ToolArgs for Args {
    fn common(&mut self) -> &mut Common {
        &mut self.common
    }
}

fn main() -> ExitCode {
    let args = Args::parse_rend();
    let opts = verify::SizesOptions {
        common: args.common,
        max_size: args.max_size,
        chunk_size: args.chunk_size,
        item_limit: args.item_limit,
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sizes: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(verify::sizes(&opts)) {
        Ok(report) => {
            let _ = report.found.print(&mut std::io::stdout().lock());
            println!("{}", report.limit);
            match report.first_failure {
                None => {
                    println!("all sizes passed");
                    ExitCode::SUCCESS
                }
                Some(n) => {
                    println!("first failing size: {n}");
                    ExitCode::from(1)
                }
            }
        }
        Err(e) => {
            eprintln!("sizes: {e}");
            ExitCode::from(2)
        }
    }
}
