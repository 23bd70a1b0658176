//! Start-up options of the stand-in.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Allocatable resources of the single simulated node.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct NodeCapacity {
    /// CPU in millicores.
    pub cpu_millis: u64,
    /// Memory in bytes.
    pub memory_bytes: u64,
    /// `nvidia.com/gpu` count.
    pub gpus: u64,
}

impl Default for NodeCapacity {
    fn default() -> Self {
        NodeCapacity { cpu_millis: 8000, memory_bytes: 32 * 1024 * 1024 * 1024, gpus: 0 }
    }
}

/// How the stand-in is started.
#[derive(Debug, Clone)]
pub struct Options {
    /// TCP port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// Directories searched (recursively) for CRD YAML files.
    pub crd_dirs: Vec<PathBuf>,
    /// Serve HTTPS with a generated CA.
    pub tls: bool,
    /// Required bearer token.
    pub token: Option<String>,
    /// File holding the required bearer token, re-read on each request.
    pub token_file: Option<PathBuf>,
    /// Namespace of the kubeconfig context (created at start with `default`).
    pub namespace: String,
    /// Where to write a kubeconfig.
    pub kubeconfig_out: Option<PathBuf>,
    /// Where to write `token`, `ca.crt` and `namespace` as a mounted service account has them.
    pub serviceaccount_dir: Option<PathBuf>,
    /// Registries (`host:port`) pulled over plain HTTP.
    pub insecure_registries: Vec<String>,
    /// Extra CA (PEM) trusted for registries.
    pub registry_ca: Option<PathBuf>,
    /// Simulated node capacity.
    pub node: NodeCapacity,
    /// Events kept for watch resumption; older resourceVersions get 410 Expired.
    pub history_window: usize,
    /// Working directory for image caches and pod root filesystems (a temp dir when absent).
    pub work_dir: Option<PathBuf>,
    /// Interpreter that runs `python`/`python3` commands (found on PATH when absent).
    pub python: Option<PathBuf>,
    /// Base delay of image-pull and crash-loop back-offs (doubles up to 10x).
    pub backoff_base: Duration,
    /// Interval of BOOKMARK events on watches that allow them.
    pub bookmark_interval: Duration,
    /// Install the `torch-distributed` ClusterTrainingRuntime when its CRD is served.
    pub install_training_runtimes: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            port: 0,
            crd_dirs: Vec::new(),
            tls: false,
            token: None,
            token_file: None,
            namespace: "default".into(),
            kubeconfig_out: None,
            serviceaccount_dir: None,
            insecure_registries: Vec::new(),
            registry_ca: None,
            node: NodeCapacity::default(),
            history_window: 1000,
            work_dir: None,
            python: None,
            backoff_base: Duration::from_millis(500),
            bookmark_interval: Duration::from_secs(5),
            install_training_runtimes: true,
        }
    }
}

/// Parses a Kubernetes quantity (`500m`, `2`, `4Gi`, `1e3`, `512M`) into a base-unit
/// value scaled by `scale` (1000 for CPU millicores, 1 for bytes).
pub fn parse_quantity(q: &str, scale: f64) -> Option<u64> {
    let q = q.trim();
    let suffixes: &[(&str, f64)] = &[
        ("Ki", 1024.0),
        ("Mi", 1024.0 * 1024.0),
        ("Gi", 1024.0 * 1024.0 * 1024.0),
        ("Ti", 1024f64.powi(4)),
        ("Pi", 1024f64.powi(5)),
        ("Ei", 1024f64.powi(6)),
        ("m", 0.001),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("E", 1e18),
    ];
    for (s, mul) in suffixes {
        if let Some(n) = q.strip_suffix(s) {
            let v: f64 = n.parse().ok()?;
            return Some((v * mul * scale).round() as u64);
        }
    }
    let v: f64 = q.parse().ok()?;
    Some((v * scale).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_parse_like_kubernetes() {
        assert_eq!(parse_quantity("500m", 1000.0), Some(500));
        assert_eq!(parse_quantity("2", 1000.0), Some(2000));
        assert_eq!(parse_quantity("4Gi", 1.0), Some(4 * 1024 * 1024 * 1024));
        assert_eq!(parse_quantity("1k", 1.0), Some(1000));
        assert_eq!(parse_quantity("x", 1.0), None);
    }
}
