//! The command line: `ciao kernel`, `ciao install`, `ciao build`, `ciao run`
//! (the last in [`crate::run`]).
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
    /// Build and push the image of one cell (magics + code) without running
    /// it; prints the image reference as the last line of stdout.
    Build(BuildArgs),
    /// Run one cell (magics + code) exactly as the kernel runs it: build,
    /// submit, follow, stream the logs. Exits 0 only if the job succeeded.
    Run(RunArgs),
}

/// `ciao run [--config FILE] [--detach] CELL_FILE`.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// The ciao config file (default: CIAO_CONFIG, else ~/.ciao/config.yaml).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Return once the job exists, printing its name as the last line of stdout.
    #[arg(long)]
    pub detach: bool,
    /// A file holding one cell: magic lines, then code.
    #[arg(value_name = "CELL_FILE")]
    pub cell: PathBuf,
}

/// `ciao build [--config FILE] CELL_FILE`.
#[derive(Debug, Clone, Args)]
pub struct BuildArgs {
    /// The ciao config file (default: CIAO_CONFIG, else ~/.ciao/config.yaml).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// A file holding one cell: magic lines, then code.
    #[arg(value_name = "CELL_FILE")]
    pub cell: PathBuf,
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

/// Logging to stderr, filtered by `CIAO_LOG` (default `info`; the ZeroMQ
/// library at `error`: at shutdown it warns about each IPC socket file the
/// kernel's frame guard has already removed with its private directory).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CIAO_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,zeromq=error"));
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
            Command::Build(args) => build(&args),
            Command::Run(args) => return crate::run::run(&args),
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

/// Phases 1 and 2 on one cell file: progress on stderr, the reference last on stdout.
fn build(args: &BuildArgs) -> Result<(), Box<dyn std::error::Error>> {
    use std::sync::Arc;

    use crate::engine::{ConfigSource, Engine};
    use crate::interpreter::params::Cell;

    let code = std::fs::read_to_string(&args.cell)
        .map_err(|e| format!("cannot read the cell file {}: {e}", args.cell.display()))?;
    let source = args.config.clone().map_or(ConfigSource::Default, ConfigSource::File);
    let engine = Engine::new(source);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let (config, cell, plan) = engine.plan(&code)?;
        let (Cell::Job(job), Some(plan)) = (cell, plan) else {
            return Err(crate::output::CellError::new(
                "NotAJob",
                format!("{} holds a job command or a module, not a job cell; `ciao build` builds job cells", args.cell.display()),
            ));
        };
        let cancel = tokio_util::sync::CancellationToken::new();
        let on_interrupt = cancel.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                on_interrupt.cancel();
            }
        });
        let progress: crate::image::ProgressFn = Arc::new(|p: &crate::image::Progress| {
            if let Some(line) = p.line() {
                eprintln!("{line}");
            }
        });
        let built = engine.build_image(&config, &job, &plan, progress, &cancel).await?;
        if built.pull_reference != built.reference {
            eprintln!("ciao: jobs pull it as {}", built.pull_reference);
        }
        println!("{}", built.reference);
        Ok(())
    })?;
    Ok(())
}
