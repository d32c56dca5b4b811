//! `daytwo logs templates`: being written (the log pipeline issue).

use crate::cli::LogsArgs;
use anyhow::Result;
use std::process::ExitCode;

pub fn run(_args: LogsArgs) -> Result<ExitCode> {
    Err(crate::config::usage(
        "daytwo logs templates is not available in this build yet",
    ))
}
