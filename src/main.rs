//! The `ciao` command: see `ciao --help`.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    ciao::cli::Cli::parse().run()
}
