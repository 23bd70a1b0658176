//! # fake-cluster
//!
//! **A stand-in for tests and demos — not a Kubernetes API server.** It speaks enough of
//! the Kubernetes REST API, as kube-rs 5 and the Python client use it, for ciao's backend to
//! be tested end to end without a cluster: discovery, CRUD, list/watch with
//! resourceVersions, patches, deletion with garbage collection, pod logs, and `Status`
//! errors shaped like the real server's. Inside it run simulated controllers (Kubeflow
//! training operator v1.9, mpi-operator v2beta1, batch Job, a TrainJob equivalent) and a
//! single simulated node whose kubelet pulls images from a real OCI registry and runs each
//! container's command as a host process (`python` is the host interpreter).
//!
//! Limits (not simulated): no etcd semantics beyond one process; no RBAC (403s only by
//! injected faults); no admission webhooks besides the TrainJob runtime check; no CEL
//! validation rules; no field managers (server-side apply is a merge); no networking —
//! Services and DNS names exist as objects only, and replicas cannot reach each other
//! through them; containers are not isolated (no namespaces, cgroups or chroot): commands
//! run on the host with paths inside the image mapped to the extracted root; init
//! containers, probes, resource limits enforcement, node selectors/affinity, preemption,
//! multiple nodes and protobuf are not supported. See README.md and the admin API in
//! [`admin`] / `/_fake/`.
#![forbid(unsafe_code)]
// API errors carry the whole Status (message, details, causes) by value, as handlers return them.
#![allow(clippy::result_large_err)]

pub mod admin;
pub mod cluster;
pub mod controllers;
pub mod crd;
mod defaults;
pub mod error;
pub mod faults;
pub mod kubeconfig;
pub mod kubelet;
pub mod options;
pub mod patch;
pub mod resources;
pub mod selectors;
mod server;
mod stream;
pub mod store;
pub mod tls;
pub mod validation;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

pub use cluster::Cluster;
pub use faults::Fault;
pub use kubelet::ProcessEntry;
pub use options::{NodeCapacity, Options};

/// Errors starting the stand-in.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The port could not be bound.
    #[error("cannot listen on 127.0.0.1:{port}: {source}")]
    Bind { port: u16, source: std::io::Error },
    /// A CRD directory or file was unusable.
    #[error(transparent)]
    Crd(#[from] crd::CrdError),
    /// TLS material could not be generated.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// Files (kubeconfig, service account, work dir) could not be written.
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    /// The image puller could not be set up.
    #[error("{0}")]
    Puller(String),
}

/// A running stand-in; stopped (processes killed, listener closed) on drop.
pub struct FakeCluster {
    cluster: Arc<Cluster>,
    shutdown: tokio::sync::watch::Sender<bool>,
    kubeconfig: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl FakeCluster {
    /// Starts the stand-in on the current tokio runtime.
    pub async fn start(mut opts: Options) -> Result<FakeCluster, StartError> {
        let tmp = if opts.work_dir.is_none() { Some(tempfile::Builder::new().prefix("fake-cluster-").tempdir().map_err(|source| StartError::Write { path: std::env::temp_dir(), source })?) } else { None };
        let work_dir = opts.work_dir.clone().unwrap_or_else(|| tmp.as_ref().expect("temp dir").path().to_path_buf());
        std::fs::create_dir_all(&work_dir).map_err(|source| StartError::Write { path: work_dir.clone(), source })?;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", opts.port)).await.map_err(|source| StartError::Bind { port: opts.port, source })?;
        let port = listener.local_addr().map_err(|source| StartError::Bind { port: opts.port, source })?.port();
        opts.port = port;
        let tls = if opts.tls { Some(tls::generate()?) } else { None };
        let extra_ca = match &opts.registry_ca {
            Some(p) => Some(std::fs::read(p).map_err(|e| StartError::Puller(format!("cannot read registry CA {}: {e}", p.display())))?),
            None => None,
        };
        let puller = kubelet::image::Puller::new(work_dir.join("images"), opts.insecure_registries.clone(), extra_ca.as_deref()).map_err(StartError::Puller)?;
        let tools = kubelet::exec::HostTools::discover(opts.python.as_deref(), &work_dir);
        if let Err(e) = &tools {
            tracing::warn!("containers cannot run: {e}");
        }
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://127.0.0.1:{port}");
        let cluster = Arc::new(Cluster {
            store: store::Store::new(opts.history_window),
            registry: resources::Registry::new(),
            faults: faults::Faults::default(),
            node: Mutex::new(opts.node),
            kubelet: kubelet::Kubelet::new(&work_dir, puller, tools),
            ca_pem: tls.as_ref().map(|t| t.ca_pem.clone()),
            url: Mutex::new(url.clone()),
            work_dir: work_dir.clone(),
            warnings: Mutex::new(Vec::new()),
            opts: opts.clone(),
        });
        bootstrap(&cluster)?;
        let kubeconfig = opts.kubeconfig_out.clone().unwrap_or_else(|| work_dir.join("kubeconfig"));
        kubeconfig::write(&kubeconfig, &url, &opts, cluster.ca_pem.as_deref()).map_err(|source| StartError::Write { path: kubeconfig.clone(), source })?;
        if let Some(dir) = &opts.serviceaccount_dir {
            kubeconfig::write_serviceaccount(dir, &opts, cluster.ca_pem.as_deref()).map_err(|source| StartError::Write { path: dir.clone(), source })?;
        }
        let (tx, rx) = tokio::sync::watch::channel(false);
        let t1 = tokio::spawn(server::serve(cluster.clone(), listener, tls.map(|t| t.server_config), rx.clone()));
        let t2 = controllers::start(cluster.clone(), rx);
        Ok(FakeCluster { cluster, shutdown: tx, kubeconfig, _tmp: tmp, tasks: Mutex::new(vec![t1, t2]) })
    }

    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        self.cluster.url()
    }

    /// Path of the kubeconfig written at start.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// CA certificate (PEM) when serving TLS.
    pub fn ca_pem(&self) -> Option<&str> {
        self.cluster.ca_pem.as_deref()
    }

    /// The shared state (store, registry, faults, kubelet) for direct inspection.
    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.cluster
    }

    /// Adds a fault rule; returns its id.
    pub fn inject_fault(&self, fault: Fault) -> Result<u64, String> {
        self.cluster.faults.add(fault)
    }

    /// Removes all fault rules.
    pub fn clear_faults(&self) {
        self.cluster.faults.clear(None);
    }

    /// Installs the CRDs of a YAML file or directory.
    pub fn install_crds(&self, path: &Path) -> Result<Vec<String>, String> {
        let docs = if path.is_dir() { crd::load_dir(path).map(|d| d.into_iter().map(|(_, v)| v).collect()) } else { crd::load_file(path) }.map_err(|e| e.to_string())?;
        let mut names = Vec::new();
        for d in docs {
            names.push(self.cluster.install_crd(d)?);
        }
        controllers::after_crd_change(&self.cluster);
        Ok(names)
    }

    /// Uninstalls a CRD by name (e.g. `tfjobs.kubeflow.org`); its kind then answers 404.
    pub fn uninstall_crd(&self, name: &str) -> bool {
        self.cluster.uninstall_crd(name)
    }

    /// Changes the simulated node's capacity.
    pub fn set_node_capacity(&self, n: NodeCapacity) {
        admin::set_node(&self.cluster, n);
    }

    /// Live container processes.
    pub fn processes(&self) -> Vec<ProcessEntry> {
        self.cluster.kubelet.processes()
    }

    /// Drops the watch history: resuming any watch from an older resourceVersion gets 410.
    pub fn compact(&self) {
        self.cluster.store.compact();
    }

    /// Reads a stored object by `plural.group` (`pods`, `tfjobs.kubeflow.org`), namespace, name.
    pub fn object(&self, group_resource: &str, namespace: &str, name: &str) -> Option<Value> {
        self.cluster.store.get(group_resource, namespace, name)
    }

    /// Lists stored objects of a `plural.group` in a namespace.
    pub fn objects(&self, group_resource: &str, namespace: &str) -> Vec<Value> {
        self.cluster.store.list(group_resource, Some(namespace), |_| true).0
    }

    /// Warnings from start-up (e.g. a CRD loaded twice).
    pub fn warnings(&self) -> Vec<String> {
        self.cluster.warnings.lock().expect("warnings lock").clone()
    }

    /// Stops serving and kills every container process.
    pub fn stop(&self) {
        let _ = self.shutdown.send(true);
        self.cluster.kubelet.shutdown();
        for t in self.tasks.lock().expect("tasks lock").drain(..) {
            t.abort();
        }
    }
}

impl Drop for FakeCluster {
    fn drop(&mut self) {
        self.stop();
    }
}

fn bootstrap(cluster: &Arc<Cluster>) -> Result<(), StartError> {
    let find = |g: &str, p: &str| cluster.registry.find(g, "v1", p).expect("built-in kind");
    let ns_rt = find("", "namespaces");
    let mut namespaces = vec!["default".to_string(), "kube-system".to_string(), "kube-public".to_string(), "kube-node-lease".to_string()];
    if !namespaces.contains(&cluster.opts.namespace) {
        namespaces.push(cluster.opts.namespace.clone());
    }
    for ns in &namespaces {
        let _ = cluster.create_object(&ns_rt, "", json!({"metadata": {"name": ns}}));
        let _ = cluster.create_object(&find("", "serviceaccounts"), ns, json!({"metadata": {"name": "default"}}));
    }
    let n = *cluster.node.lock().expect("node lock");
    let res = admin::node_resources(&n);
    let node = json!({
        "metadata": {"name": kubelet::NODE_NAME, "labels": {"kubernetes.io/hostname": kubelet::NODE_NAME, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64", "node-role.kubernetes.io/control-plane": ""}},
        "spec": {"podCIDR": "127.0.1.0/24"},
        "status": {
            "capacity": res, "allocatable": res,
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status", "lastHeartbeatTime": store::now_rfc3339(), "lastTransitionTime": store::now_rfc3339()}],
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": kubelet::NODE_NAME}],
            "nodeInfo": {"kubeletVersion": "v1.33.0", "containerRuntimeVersion": "containerd://2.0.0", "operatingSystem": "linux", "architecture": "amd64", "osImage": "fake-cluster", "kernelVersion": "", "kubeProxyVersion": "", "machineID": "", "systemUUID": "", "bootID": ""},
        },
    });
    let _ = cluster.create_object(&find("", "nodes"), "", node);
    let mut seen = std::collections::HashMap::new();
    for dir in cluster.opts.crd_dirs.clone() {
        cluster.load_crd_dir(&dir, &mut seen)?;
    }
    Ok(())
}
