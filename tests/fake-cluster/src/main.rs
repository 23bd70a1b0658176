//! `fake-cluster`: runs the Kubernetes API stand-in (for tests and demos) until interrupted.
#![forbid(unsafe_code)]

use std::path::PathBuf;

use clap::Parser;
use fake_cluster::{FakeCluster, NodeCapacity, Options};

/// A Kubernetes API stand-in with a simulated Kubeflow training operator (tests and demos only).
#[derive(Parser, Debug)]
#[command(name = "fake-cluster", version)]
struct Cli {
    /// Port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Where to write the kubeconfig.
    #[arg(long)]
    kubeconfig_out: Option<PathBuf>,
    /// Directory of CRD YAML files (recursive); repeatable.
    #[arg(long = "crd-dir")]
    crd_dirs: Vec<PathBuf>,
    /// Serve HTTPS with a generated CA.
    #[arg(long)]
    tls: bool,
    /// Require this bearer token.
    #[arg(long, conflicts_with = "token_file")]
    token: Option<String>,
    /// Require the bearer token held in this file (re-read on every request).
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Write token, ca.crt and namespace here, as a mounted service account.
    #[arg(long)]
    serviceaccount_dir: Option<PathBuf>,
    /// Namespace of the kubeconfig context.
    #[arg(long, default_value = "default")]
    namespace: String,
    /// Registry (host:port) to pull from over plain HTTP; repeatable.
    #[arg(long = "insecure-registry")]
    insecure_registries: Vec<String>,
    /// Extra CA (PEM) trusted for registries.
    #[arg(long)]
    registry_ca: Option<PathBuf>,
    /// Node CPU (cores or millicores, e.g. 8 or 500m).
    #[arg(long, default_value = "8")]
    node_cpu: String,
    /// Node memory (e.g. 32Gi).
    #[arg(long, default_value = "32Gi")]
    node_memory: String,
    /// Node GPUs (nvidia.com/gpu).
    #[arg(long, default_value_t = 0)]
    node_gpus: u64,
    /// Events kept for watch resumption (older resourceVersions get 410 Expired).
    #[arg(long, default_value_t = 1000)]
    history_window: usize,
    /// Working directory (image cache, pod roots); a temp dir when absent.
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Python interpreter used for `python` commands.
    #[arg(long)]
    python: Option<PathBuf>,
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::try_from_env("FAKE_CLUSTER_LOG").unwrap_or_else(|_| "warn".into())).with_writer(std::io::stderr).init();
    let cli = Cli::parse();
    let cpu = match fake_cluster::options::parse_quantity(&cli.node_cpu, 1000.0) {
        Some(c) => c,
        None => {
            eprintln!("error: invalid --node-cpu {:?} (use e.g. 8 or 500m)", cli.node_cpu);
            return std::process::ExitCode::from(2);
        }
    };
    let mem = match fake_cluster::options::parse_quantity(&cli.node_memory, 1.0) {
        Some(m) => m,
        None => {
            eprintln!("error: invalid --node-memory {:?} (use e.g. 32Gi)", cli.node_memory);
            return std::process::ExitCode::from(2);
        }
    };
    let opts = Options {
        port: cli.port,
        crd_dirs: cli.crd_dirs,
        tls: cli.tls,
        token: cli.token,
        token_file: cli.token_file,
        namespace: cli.namespace,
        kubeconfig_out: cli.kubeconfig_out,
        serviceaccount_dir: cli.serviceaccount_dir,
        insecure_registries: cli.insecure_registries,
        registry_ca: cli.registry_ca,
        node: NodeCapacity { cpu_millis: cpu, memory_bytes: mem, gpus: cli.node_gpus },
        history_window: cli.history_window,
        work_dir: cli.work_dir,
        python: cli.python,
        ..Options::default()
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let fc = match FakeCluster::start(opts).await {
            Ok(fc) => fc,
            Err(e) => {
                eprintln!("error: {e}");
                return std::process::ExitCode::FAILURE;
            }
        };
        println!("listening on {}", fc.url());
        println!("kubeconfig {}", fc.kubeconfig_path().display());
        for w in fc.warnings() {
            eprintln!("warning: {w}");
        }
        use std::io::Write;
        let _ = std::io::stdout().flush();
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: cannot install signal handler: {e}");
                return std::process::ExitCode::FAILURE;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        fc.stop();
        std::process::ExitCode::SUCCESS
    })
}
