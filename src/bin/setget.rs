//! setget: write every key of the key space with a self-verifying value,
//! read them all back, and check every byte and the flags. Exit 1 on any
//! mismatch, miss or error.

use std::process::ExitCode;

use clap::Parser;
use rend::tools::args::ToolArgs;
use rend::tools::{args::Common, finish_report, verify};

#[derive(Parser, Debug)]
#[command(
    name = "setget",
    version,
    about = "Set values, read them back, verify every byte"
)]
struct Args {
    #[command(flatten)]
    common: Common,
}

impl ToolArgs for Args {
    fn common(&mut self) -> &mut Common {
        &mut self.common
    }
}

fn main() -> ExitCode {
    let args = Args::parse_rend();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("setget: {e}");
            return ExitCode::from(2);
        }
    };
    let (found, rec) = match runtime.block_on(verify::setget(&args.common)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("setget: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = finish_report(&rec, &args.common) {
        eprintln!("setget: {e}");
        return ExitCode::from(2);
    }
    let _ = found.print(&mut std::io::stdout().lock());
    if found.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
