//! `daytwo replay`: being written (the collector's brain issue).

use crate::cli::ReplayArgs;
use anyhow::Result;
use std::process::ExitCode;

pub fn run(_args: ReplayArgs) -> Result<ExitCode> {
    Err(crate::config::usage("daytwo replay is not available in this build yet"))
}
