//! The command line: `ciao kernel`, `ciao install`, `ciao build`, `ciao run`.
//!
//! Each subcommand validates its options, builds what it needs and calls one
//! function; errors become a message on stderr and a non-zero exit status.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// A Jupyter kernel for Kubeflow: a cell becomes an image and a distributed training job.
#[derive(Debug, Parser)]
#[command(name = "ciao", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the kernel (what kernel.json launches).
    Kernel {
        /// The connection file written by the Jupyter client.
        #[arg(long)]
        connection_file: PathBuf,
    },
    /// Install the kernelspec where `jupyter kernelspec list` finds it.
    Install(InstallArgs),
}

/// Where and under which name the kernelspec goes.
#[derive(Debug, Clone, Args)]
pub struct InstallArgs {
    /// Install for the current user (the default).
    #[arg(long, conflicts_with_all = ["sys_prefix", "prefix"])]
    pub user: bool,
    /// Install into the Python environment's prefix (sys.prefix).
    #[arg(long, conflicts_with = "prefix")]
    pub sys_prefix: bool,
    /// Install into DIR/share/jupyter/kernels/NAME.
    #[arg(long, value_name = "DIR")]
    pub prefix: Option<PathBuf>,
    /// The kernelspec's directory name.
    #[arg(long, default_value = "ciao")]
    pub name: String,
    /// The name shown in the launcher and the kernel picker.
    #[arg(long, default_value = "ciao (Kubeflow)")]
    pub display_name: String,
}

/// Logging to stderr, filtered by `CIAO_LOG` (default `info`; the ZeroMQ library at `warn`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CIAO_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,zeromq=warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).try_init();
}

impl Cli {
    /// Runs the subcommand and maps its outcome to an exit status.
    pub fn run(self) -> ExitCode {
        init_logging();
        let result = match self.command {
            Command::Kernel { connection_file } => crate::kernel::run_kernel(&connection_file),
            Command::Install(args) => crate::kernel::install::install(&args).map(|dir| {
                println!("Installed kernelspec {} in {}", args.name, dir.display());
            }),
        };
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("ciao: {e}");
                ExitCode::FAILURE
            }
        }
    }
}
