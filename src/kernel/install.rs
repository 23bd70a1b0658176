//! `ciao install`: writes the kernelspec. (Implementation pending.)

use std::path::PathBuf;

use crate::cli::InstallArgs;

/// Writes the kernelspec and returns its directory.
pub fn install(args: &InstallArgs) -> Result<PathBuf, Box<dyn std::error::Error>> {
    let _ = args;
    Err("install is not written yet".into())
}
