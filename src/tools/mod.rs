//! The load and verification tools' library: one client ([`client`]), one
//! workload model ([`workload`], [`ketama`]) and one report ([`report`])
//! shared by `blast` ([`blast`]) and by `setget` and `sizes` ([`verify`]).
//! The binaries in `src/bin/` only parse flags and call these.

pub mod args;
pub mod blast;
pub mod client;
pub mod ketama;
pub mod report;
pub mod verify;
pub mod workload;

/// Why a tool run failed (exit code 2; verification failures are 1).
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("{0}")]
    Usage(String),
    #[error("cannot connect to {0}: {1}")]
    Connect(String, std::io::Error),
    #[error("{0}")]
    Io(String),
    #[error("{0}")]
    Internal(String),
    #[error("cannot write the report: {0}")]
    Report(String),
}

impl From<std::io::Error> for ToolError {
    fn from(e: std::io::Error) -> Self {
        ToolError::Io(e.to_string())
    }
}

/// Print the summary and write the files the common options ask for.
pub fn finish_report(rec: &report::Recorder, common: &args::Common) -> Result<(), ToolError> {
    let report = rec.report();
    let mut out = std::io::stdout().lock();
    report
        .print_summary(&mut out)
        .map_err(|e| ToolError::Report(e.to_string()))?;
    if let Some(dir) = &common.csv_dir {
        report
            .write_csv_dir(dir)
            .map_err(|e| ToolError::Report(e.to_string()))?;
    }
    if let Some(path) = &common.plot {
        report
            .plot(path)
            .map_err(|e| ToolError::Report(e.to_string()))?;
    }
    Ok(())
}
