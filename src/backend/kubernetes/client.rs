//! Connecting to the cluster the way kubectl does: `KUBECONFIG` (or the
//! `kubeconfig` setting, or `~/.kube/config`) with its current context, else
//! the in-cluster service account. Clients are kept per configuration
//! source and made again when the files behind it change; each keeps the
//! API groups it has discovered.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::discovery::{ApiGroup, ApiResource};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use sha2::{Digest as _, Sha256};

use super::proxy;
use super::token::{TokenFile, TokenFileLayer};
use crate::config::{Config, Env};
use crate::frameworks::JobDescriptor;

/// Where a pod's service account is mounted, unless `CIAO_SERVICEACCOUNT_DIR` says otherwise.
pub const DEFAULT_SERVICEACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Environment variables that change how the client connects.
const PROXY_VARS: [&str; 6] = ["HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy"];

/// Why no client could be made.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "no cluster configured: set KUBECONFIG (or `kubeconfig:` in the ciao config) to a kubeconfig file, \
         run the kernel in a pod with a service account, or use %backend=local"
    )]
    NoCluster,
    #[error("the kubeconfig {0} does not exist: fix KUBECONFIG (or `kubeconfig:` in the ciao config), or use %backend=local")]
    KubeconfigMissing(String),
    #[error("cannot read the kubeconfig {path}: {message}")]
    Kubeconfig { path: String, message: String },
    #[error(
        "in-cluster configuration: {message} (the service account is read from {dir}; set CIAO_SERVICEACCOUNT_DIR \
         if it is mounted elsewhere, or set KUBECONFIG)"
    )]
    InCluster { dir: String, message: String },
    #[error("cannot configure the connection to {server}: {message}")]
    Setup { server: String, message: String },
}

/// Where the connection settings come from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Source {
    Kubeconfig(Vec<PathBuf>),
    InCluster { host: String, port: String, dir: PathBuf },
}

/// A cluster connection: the client, its default namespace, and the API
/// groups discovered through it.
pub struct Cluster {
    pub client: kube::Client,
    /// The kubeconfig context's namespace, the service account's, or `default`.
    pub default_namespace: String,
    /// The API server URL, for messages.
    pub server: String,
    /// Discovered groups; `None` for a group the server does not serve.
    groups: tokio::sync::Mutex<HashMap<String, Option<Arc<ApiGroup>>>>,
}

impl Cluster {
    fn new(client: kube::Client, default_namespace: String, server: String) -> Cluster {
        Cluster { client, default_namespace, server, groups: tokio::sync::Mutex::new(HashMap::new()) }
    }

    /// The resource of a job kind, at the first of the descriptor's
    /// `apiVersions` the server serves; `None` when it serves none. Uses what
    /// was discovered before, and asks the server again before answering `None`.
    ///
    /// # Errors
    /// The discovery requests failed.
    pub async fn job_resource(&self, job: &JobDescriptor) -> Result<Option<ApiResource>, kube::Error> {
        if let Some(found) = self.find(job, false).await? {
            return Ok(Some(found));
        }
        self.find(job, true).await
    }

    async fn find(&self, job: &JobDescriptor, fresh: bool) -> Result<Option<ApiResource>, kube::Error> {
        for api_version in &job.api_versions {
            let (group, version) = split_api_version(api_version);
            let served = self.group(group, fresh).await?;
            if let Some(g) = served
                && let Some((ar, _)) = g.versioned_resources(version).into_iter().find(|(ar, _)| ar.plural == job.plural)
            {
                return Ok(Some(ar));
            }
        }
        Ok(None)
    }

    /// Forgets what was discovered about `group` (after a 404 from it).
    pub async fn forget(&self, group: &str) {
        self.groups.lock().await.remove(group);
    }

    async fn group(&self, name: &str, fresh: bool) -> Result<Option<Arc<ApiGroup>>, kube::Error> {
        let mut groups = self.groups.lock().await;
        if !fresh && let Some(g) = groups.get(name) {
            return Ok(g.clone());
        }
        let found = match kube::discovery::group(&self.client, name).await {
            Ok(g) => Some(Arc::new(g)),
            Err(kube::Error::Discovery(_)) => None,
            Err(kube::Error::Api(s)) if s.code == 404 => None,
            Err(e) => return Err(e),
        };
        groups.insert(name.to_string(), found.clone());
        Ok(found)
    }
}

/// `kubeflow.org/v1` → (`kubeflow.org`, `v1`); `v1` → (``, `v1`).
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    api_version.rsplit_once('/').unwrap_or(("", api_version))
}

/// A cluster and the fingerprint of the files it was made from.
type Cached = ([u8; 32], Arc<Cluster>);

/// The clients of one session, one per configuration source.
pub struct Clients {
    env: Arc<dyn Env + Send + Sync>,
    cache: Mutex<HashMap<Source, Cached>>,
}

impl Clients {
    /// Clients configured from `env` (the process environment in production).
    pub fn new(env: Arc<dyn Env + Send + Sync>) -> Clients {
        Clients { env, cache: Mutex::new(HashMap::new()) }
    }

    /// The cluster `config` points at, connecting when needed.
    ///
    /// # Errors
    /// No cluster configured, unreadable or invalid files, a bad proxy.
    pub async fn get(&self, config: &Config) -> Result<Arc<Cluster>, ClientError> {
        let source = self.source(config)?;
        let fingerprint = self.fingerprint(&source)?;
        if let Some((fp, cluster)) = self.cache.lock().expect("clients lock").get(&source)
            && *fp == fingerprint
        {
            return Ok(cluster.clone());
        }
        let cluster = Arc::new(match &source {
            Source::Kubeconfig(paths) => self.connect_kubeconfig(paths).await?,
            Source::InCluster { host, port, dir } => self.connect_in_cluster(host, port, dir)?,
        });
        self.cache.lock().expect("clients lock").insert(source, (fingerprint, cluster.clone()));
        Ok(cluster)
    }

    fn source(&self, config: &Config) -> Result<Source, ClientError> {
        if let Some(k) = &config.kubeconfig {
            let paths: Vec<PathBuf> = std::env::split_paths(k).filter(|p| !p.as_os_str().is_empty()).collect();
            if !paths.is_empty() {
                return Ok(Source::Kubeconfig(paths));
            }
        }
        if let Some(home) = self.env.var("HOME") {
            let default = Path::new(&home).join(".kube/config");
            if default.is_file() {
                return Ok(Source::Kubeconfig(vec![default]));
            }
        }
        if let Some(host) = self.env.var("KUBERNETES_SERVICE_HOST") {
            let dir = self.env.var("CIAO_SERVICEACCOUNT_DIR").unwrap_or_else(|| DEFAULT_SERVICEACCOUNT_DIR.into());
            let port = self.env.var("KUBERNETES_SERVICE_PORT").unwrap_or_else(|| "443".into());
            return Ok(Source::InCluster { host, port, dir: PathBuf::from(dir) });
        }
        Err(ClientError::NoCluster)
    }

    /// A digest of everything the client is made from, but tokens in files
    /// (the client re-reads those itself).
    fn fingerprint(&self, source: &Source) -> Result<[u8; 32], ClientError> {
        let mut h = Sha256::new();
        for var in PROXY_VARS {
            h.update(var);
            h.update(self.env.var(var).unwrap_or_default());
            h.update([0]);
        }
        match source {
            Source::Kubeconfig(paths) => {
                let mut found = false;
                for p in paths {
                    match std::fs::read(p) {
                        Ok(bytes) => {
                            found = true;
                            h.update(p.as_os_str().as_encoded_bytes());
                            h.update(Sha256::digest(&bytes));
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => {
                            return Err(ClientError::Kubeconfig { path: p.display().to_string(), message: e.to_string() });
                        }
                    }
                }
                if !found {
                    return Err(ClientError::KubeconfigMissing(join_paths(paths)));
                }
            }
            Source::InCluster { host, port, dir } => {
                h.update(format!("{host}\0{port}\0{}\0", dir.display()));
                for f in ["ca.crt", "namespace"] {
                    h.update(Sha256::digest(std::fs::read(dir.join(f)).unwrap_or_default()));
                }
            }
        }
        Ok(h.finalize().into())
    }

    async fn connect_kubeconfig(&self, paths: &[PathBuf]) -> Result<Cluster, ClientError> {
        let shown = join_paths(paths);
        let bad = |message: String| ClientError::Kubeconfig { path: shown.clone(), message };
        let mut merged = Kubeconfig::default();
        for p in paths.iter().filter(|p| p.exists()) {
            let next = Kubeconfig::read_from(p).map_err(|e| bad(e.to_string()))?;
            merged = merged.merge(next).map_err(|e| bad(e.to_string()))?;
        }
        let kubeconfig_proxy = cluster_proxy_url(&merged);
        let mut config = kube::Config::from_custom_kubeconfig(merged, &KubeConfigOptions::default())
            .await
            .map_err(|e| bad(e.to_string()))?;
        let server = config.cluster_url.to_string();
        config.proxy_url = proxy::choose(&config.cluster_url, kubeconfig_proxy.as_deref(), self.env.as_ref())
            .map_err(|message| ClientError::Setup { server: server.clone(), message })?;
        let token = match (config.auth_info.token.is_none(), config.auth_info.token_file.take()) {
            (true, Some(file)) => Some(TokenFile::open(Path::new(&file)).map_err(bad)?),
            _ => None,
        };
        let namespace = config.default_namespace.clone();
        Ok(Cluster::new(build_client(config, token, &server)?, namespace, server))
    }

    fn connect_in_cluster(&self, host: &str, port: &str, dir: &Path) -> Result<Cluster, ClientError> {
        let bad = |message: String| ClientError::InCluster { dir: dir.display().to_string(), message };
        let port: u16 = port.parse().map_err(|_| bad(format!("KUBERNETES_SERVICE_PORT {port:?} is not a port number")))?;
        let host_part = if host.parse::<std::net::Ipv6Addr>().is_ok() { format!("[{host}]") } else { host.to_string() };
        let server = format!("https://{host_part}:{port}");
        let uri: http::Uri =
            server.parse().map_err(|e| bad(format!("KUBERNETES_SERVICE_HOST {host:?} does not make a URL: {e}")))?;
        let mut config = kube::Config::new(uri);
        let ca_path = dir.join("ca.crt");
        let ca = std::fs::read(&ca_path).map_err(|e| bad(format!("cannot read {}: {e}", ca_path.display())))?;
        let certs = CertificateDer::pem_slice_iter(&ca)
            .map(|c| c.map(|c| c.to_vec()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(format!("{} is not a PEM certificate bundle: {e}", ca_path.display())))?;
        if certs.is_empty() {
            return Err(bad(format!("{} holds no certificate", ca_path.display())));
        }
        config.root_cert = Some(certs);
        if let Ok(ns) = std::fs::read_to_string(dir.join("namespace"))
            && !ns.trim().is_empty()
        {
            config.default_namespace = ns.trim().to_string();
        }
        config.proxy_url = proxy::choose(&config.cluster_url, None, self.env.as_ref()).map_err(bad)?;
        let token = TokenFile::open(&dir.join("token")).map_err(bad)?;
        let namespace = config.default_namespace.clone();
        Ok(Cluster::new(build_client(config, Some(token), &server)?, namespace, server))
    }
}

fn build_client(config: kube::Config, token: Option<TokenFile>, server: &str) -> Result<kube::Client, ClientError> {
    let builder = kube::client::ClientBuilder::try_from(config)
        .map_err(|e| ClientError::Setup { server: server.to_string(), message: e.to_string() })?;
    Ok(match token {
        Some(t) => builder.with_layer(&TokenFileLayer::new(t)).build(),
        None => builder.build(),
    })
}

/// The current context's cluster `proxy-url`, if any.
fn cluster_proxy_url(k: &Kubeconfig) -> Option<String> {
    let context = k.current_context.as_deref()?;
    let cluster = k.contexts.iter().find(|c| c.name == context)?.context.as_ref()?.cluster.clone();
    k.clusters.iter().find(|c| c.name == cluster)?.cluster.as_ref()?.proxy_url.clone()
}

fn join_paths(paths: &[PathBuf]) -> String {
    paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(":")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn clients(pairs: &[(&str, &str)]) -> Clients {
        let env: BTreeMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Clients::new(Arc::new(env))
    }

    fn config(kubeconfig: Option<&Path>) -> Config {
        let mut c = Config::from_yaml("", None, &BTreeMap::new()).unwrap();
        c.kubeconfig = kubeconfig.map(Path::to_path_buf);
        c
    }

    #[tokio::test]
    async fn nothing_configured_is_a_clear_error() {
        let home = tempfile::tempdir().unwrap();
        let c = clients(&[("HOME", home.path().to_str().unwrap())]);
        let e = c.get(&config(None)).await.err().unwrap().to_string();
        assert!(e.starts_with("no cluster configured: set KUBECONFIG") && e.contains("%backend=local"), "{e}");
    }

    #[tokio::test]
    async fn a_missing_kubeconfig_is_named() {
        let c = clients(&[]);
        let e = c.get(&config(Some(Path::new("/nonexistent/kubeconfig")))).await.err().unwrap().to_string();
        assert!(e.contains("/nonexistent/kubeconfig") && e.contains("does not exist"), "{e}");
    }

    #[tokio::test]
    async fn in_cluster_without_a_mounted_service_account_names_the_directory() {
        let home = tempfile::tempdir().unwrap();
        let sa = tempfile::tempdir().unwrap();
        let c = clients(&[
            ("HOME", home.path().to_str().unwrap()),
            ("KUBERNETES_SERVICE_HOST", "10.0.0.1"),
            ("KUBERNETES_SERVICE_PORT", "443"),
            ("CIAO_SERVICEACCOUNT_DIR", sa.path().to_str().unwrap()),
        ]);
        let e = c.get(&config(None)).await.err().unwrap().to_string();
        assert!(e.contains("ca.crt") && e.contains(sa.path().to_str().unwrap()), "{e}");
    }

    #[tokio::test]
    async fn clients_are_kept_until_the_kubeconfig_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        let write = |ns: &str| {
            std::fs::write(
                &path,
                format!(
                    "apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n- name: k\n  cluster:\n    server: http://127.0.0.1:1\n\
                     contexts:\n- name: c\n  context:\n    cluster: k\n    user: u\n    namespace: {ns}\nusers:\n- name: u\n  user:\n    token: t\n"
                ),
            )
            .unwrap()
        };
        write("first");
        let c = clients(&[]);
        let cfg = config(Some(&path));
        let a = c.get(&cfg).await.unwrap();
        let b = c.get(&cfg).await.unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(a.default_namespace, "first");
        write("second");
        let d = c.get(&cfg).await.unwrap();
        assert!(!Arc::ptr_eq(&a, &d));
        assert_eq!(d.default_namespace, "second");
    }

    #[test]
    fn api_versions_split_into_group_and_version() {
        assert_eq!(split_api_version("kubeflow.org/v2beta1"), ("kubeflow.org", "v2beta1"));
        assert_eq!(split_api_version("batch/v1"), ("batch", "v1"));
        assert_eq!(split_api_version("v1"), ("", "v1"));
    }
}
