//! Shared test helpers: a started stand-in with the Kubeflow CRDs, a kube client, a real
//! docker-registry and a tiny OCI image pushed to it.
#![allow(dead_code)]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fake_cluster::{FakeCluster, Options};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The Kubeflow CRD directory shipped beside the repository.
pub fn spec_dir(sub: &str) -> PathBuf {
    if let Ok(d) = std::env::var("CIAO_SHARED_DIR") {
        return PathBuf::from(d).join("spec/kubeflow").join(sub);
    }
    let mut dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    loop {
        let cand = dir.join("shared/spec/kubeflow");
        if cand.is_dir() {
            return cand.join(sub);
        }
        if !dir.pop() {
            panic!("shared/spec/kubeflow not found above {}; set CIAO_SHARED_DIR", env!("CARGO_MANIFEST_DIR"));
        }
    }
}

/// Options with the training-operator and trainer CRDs, fast back-offs.
pub fn options() -> Options {
    Options {
        crd_dirs: vec![spec_dir("training-operator-v1.9.0"), spec_dir("trainer-v2")],
        backoff_base: Duration::from_millis(200),
        bookmark_interval: Duration::from_millis(500),
        ..Options::default()
    }
}

/// A kube client for the stand-in's kubeconfig.
pub async fn client(fc: &FakeCluster) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(fc.kubeconfig_path()).expect("kubeconfig");
    let cfg = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default()).await.expect("config");
    kube::Client::try_from(cfg).expect("client")
}

/// A real docker-registry on a free loopback port; killed on drop.
pub struct Registry {
    child: Child,
    _dir: tempfile::TempDir,
    /// `127.0.0.1:PORT`
    pub host: String,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Registry {
    /// Starts `/usr/bin/docker-registry serve` (installs nothing: CI's setup provides it).
    pub async fn start() -> Registry {
        for _ in 0..5 {
            if let Some(r) = Registry::try_start().await {
                return r;
            }
        }
        panic!("docker-registry did not start");
    }

    async fn try_start() -> Option<Registry> {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let cfg = dir.path().join("config.yml");
        std::fs::write(
            &cfg,
            format!(
                "version: 0.1\nlog: {{level: error}}\nstorage:\n  filesystem: {{rootdirectory: {}}}\n  delete: {{enabled: true}}\nhttp: {{addr: 127.0.0.1:{port}}}\nhealth: {{storagedriver: {{enabled: false}}}}\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry").arg("serve").arg(&cfg).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("docker-registry must be installed (apt-get install docker-registry)");
        let mut reg = Registry { child, _dir: dir, host: format!("127.0.0.1:{port}") };
        for _ in 0..100 {
            if let Ok(r) = reqwest::get(format!("http://{}/v2/", reg.host)).await
                && r.status().is_success() {
                    return Some(reg);
                }
            if let Ok(Some(_)) = reg.child.try_wait() {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    async fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(data)));
        let c = reqwest::Client::new();
        let r = c.post(format!("http://{}/v2/{repo}/blobs/uploads/", self.host)).send().await.unwrap();
        assert_eq!(r.status(), 202, "upload start");
        let loc = r.headers()["location"].to_str().unwrap().to_string();
        let loc = if loc.starts_with("http") { loc } else { format!("http://{}{loc}", self.host) };
        let sep = if loc.contains('?') { '&' } else { '?' };
        let r = c.put(format!("{loc}{sep}digest={digest}")).header("Content-Type", "application/octet-stream").body(data.to_vec()).send().await.unwrap();
        assert_eq!(r.status(), 201, "blob put");
        digest
    }

    /// Pushes an image with one gzip layer holding `files` and the given config; returns
    /// the reference `HOST/repo:tag`.
    pub async fn push_image(&self, repo: &str, tag: &str, files: &[(&str, &str)], cmd: &[&str], workdir: &str) -> String {
        let mut tar_bytes = Vec::new();
        {
            let mut b = tar::Builder::new(&mut tar_bytes);
            let mut dirs = std::collections::BTreeSet::new();
            for (path, _) in files {
                let mut p = std::path::Path::new(path.trim_start_matches('/')).parent();
                while let Some(d) = p {
                    if !d.as_os_str().is_empty() {
                        dirs.insert(d.to_path_buf());
                    }
                    p = d.parent();
                }
            }
            for d in dirs {
                let mut h = tar::Header::new_gnu();
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                b.append_data(&mut h, format!("{}/", d.display()), std::io::empty()).unwrap();
            }
            for (path, content) in files {
                let mut h = tar::Header::new_gnu();
                h.set_mode(0o755);
                h.set_size(content.len() as u64);
                b.append_data(&mut h, path.trim_start_matches('/'), content.as_bytes()).unwrap();
            }
            b.finish().unwrap();
        }
        let diff_id = format!("sha256:{}", hex::encode(Sha256::digest(&tar_bytes)));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar_bytes).unwrap();
        let layer = gz.finish().unwrap();
        let layer_digest = self.push_blob(repo, &layer).await;
        let config = json!({
            "architecture": "amd64", "os": "linux",
            "config": {"Env": ["PATH=/usr/local/bin:/usr/bin:/bin", "IMAGE_MARKER=from-image"], "Cmd": cmd, "WorkingDir": workdir},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        });
        let config_bytes = serde_json::to_vec(&config).unwrap();
        let config_digest = self.push_blob(repo, &config_bytes).await;
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_bytes.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer_digest, "size": layer.len()}],
        });
        let r = reqwest::Client::new()
            .put(format!("http://{}/v2/{repo}/manifests/{tag}", self.host))
            .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
            .body(serde_json::to_vec(&manifest).unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "manifest put");
        format!("{}/{repo}:{tag}", self.host)
    }
}

/// Polls `f` until it returns Some, or panics after `secs`.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A condition of an object, by type.
pub fn condition(obj: &Value, type_: &str) -> Option<Value> {
    obj.pointer("/status/conditions")?.as_array()?.iter().find(|c| c["type"] == type_).cloned()
}

/// Starts a stand-in pulling from `reg` over plain HTTP.
pub async fn start_with_registry(reg: &Registry) -> FakeCluster {
    let mut o = options();
    o.insecure_registries = vec![reg.host.clone()];
    FakeCluster::start(o).await.expect("start")
}
