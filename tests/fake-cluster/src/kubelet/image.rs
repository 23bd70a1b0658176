//! Pulling images over the OCI Distribution API (reqwest + rustls): manifest (OCI or Docker
//! v2s2, index/list resolved to linux/amd64), config, layers cached on disk by digest.
//! Plain HTTP only for registries listed as insecure; anonymous, basic or bearer auth.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

/// Why a pull failed, with a containerd-like message.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct PullError(pub String);

/// Registry credentials for one host.
#[derive(Clone, Default)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Password or identity token.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("username", &self.username).field("password", &"<redacted>").finish()
    }
}

/// A parsed image reference.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageRef {
    /// Registry host[:port] (`docker.io` for Docker Hub).
    pub registry: String,
    /// Repository path.
    pub repository: String,
    /// Tag or digest.
    pub reference: String,
}

impl ImageRef {
    /// Parses `[registry/]repo[:tag][@digest]` with Docker Hub defaults.
    pub fn parse(s: &str) -> Option<ImageRef> {
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => (r, Some(d.to_string())),
            None => (s, None),
        };
        let (registry, path) = match rest.split_once('/') {
            Some((first, p)) if first.contains('.') || first.contains(':') || first == "localhost" => (first.to_string(), p.to_string()),
            _ => ("docker.io".to_string(), rest.to_string()),
        };
        let last_slash = path.rfind('/').map_or(0, |i| i + 1);
        let (repo, tag) = match path[last_slash..].rfind(':') {
            Some(i) => (path[..last_slash + i].to_string(), path[last_slash + i + 1..].to_string()),
            None => (path.clone(), "latest".to_string()),
        };
        if repo.is_empty() {
            return None;
        }
        let repository = if registry == "docker.io" && !repo.contains('/') { format!("library/{repo}") } else { repo };
        Some(ImageRef { registry, repository, reference: digest.unwrap_or(tag) })
    }
}

/// The parts of an image config the runtime uses.
#[derive(Debug, Clone, Default)]
pub struct ImageConfig {
    /// `KEY=VALUE` entries.
    pub env: Vec<String>,
    /// Entrypoint.
    pub entrypoint: Vec<String>,
    /// Cmd.
    pub cmd: Vec<String>,
    /// WorkingDir.
    pub working_dir: String,
}

/// A pulled image: manifest digest, config and local layer files (in order).
#[derive(Debug, Clone)]
pub struct PulledImage {
    /// Digest of the (platform) manifest.
    pub digest: String,
    /// Config.
    pub config: ImageConfig,
    /// Cached layer blobs with their media types.
    pub layers: Vec<(PathBuf, String)>,
}

/// The image puller with its on-disk blob cache.
pub struct Puller {
    client: reqwest::Client,
    insecure: Vec<String>,
    cache: PathBuf,
    blob_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    resolved: Mutex<HashMap<String, PulledImage>>,
}

impl Puller {
    /// A puller caching under `cache`, trusting the extra CA (PEM) if given.
    pub fn new(cache: PathBuf, insecure: Vec<String>, extra_ca_pem: Option<&[u8]>) -> Result<Self, String> {
        let mut b = reqwest::Client::builder().timeout(std::time::Duration::from_secs(600)).connect_timeout(std::time::Duration::from_secs(10));
        if let Some(pem) = extra_ca_pem {
            for cert in reqwest::Certificate::from_pem_bundle(pem).map_err(|e| format!("invalid registry CA: {e}"))? {
                b = b.add_root_certificate(cert);
            }
        }
        let client = b.build().map_err(|e| format!("cannot build HTTP client: {e}"))?;
        std::fs::create_dir_all(cache.join("blobs")).map_err(|e| format!("cannot create image cache: {e}"))?;
        Ok(Puller { client, insecure, cache, blob_locks: Mutex::new(HashMap::new()), resolved: Mutex::new(HashMap::new()) })
    }

    fn base(&self, registry: &str) -> String {
        let host = if registry == "docker.io" { "registry-1.docker.io" } else { registry };
        if self.insecure.iter().any(|h| h == registry) { format!("http://{host}") } else { format!("https://{host}") }
    }

    /// A previously pulled image (for `IfNotPresent`).
    pub fn cached(&self, image: &str) -> Option<PulledImage> {
        self.resolved.lock().expect("resolved lock").get(image).cloned()
    }

    /// Pulls `image` (manifest, config, layers).
    pub async fn pull(&self, image: &str, creds: Option<&Credentials>) -> Result<PulledImage, PullError> {
        let r = ImageRef::parse(image).ok_or_else(|| PullError(format!("failed to pull and unpack image \"{image}\": invalid reference format")))?;
        let full = format!("{}/{}:{}", r.registry, r.repository, r.reference);
        let fail_resolve = |detail: String| PullError(format!("failed to pull and unpack image \"{full}\": failed to resolve reference \"{full}\": {detail}"));
        let mut session = Session { puller: self, r: &r, creds, token: None };
        let (manifest, digest) = session.manifest(&r.reference).await.map_err(&fail_resolve)?;
        let (manifest, digest) = if is_index(&manifest) {
            let chosen = pick_platform(&manifest).ok_or_else(|| fail_resolve(format!("{full}: no match for platform in manifest: not found")))?;
            session.manifest(&chosen).await.map_err(&fail_resolve)?
        } else {
            (manifest, digest)
        };
        let fail = |detail: String| PullError(format!("failed to pull and unpack image \"{full}\": {detail}"));
        let cfg_digest = manifest.pointer("/config/digest").and_then(Value::as_str).ok_or_else(|| fail("manifest has no config".into()))?;
        let cfg_path = session.blob(cfg_digest).await.map_err(&fail)?;
        let cfg: Value = serde_json::from_slice(&std::fs::read(&cfg_path).map_err(|e| fail(e.to_string()))?).map_err(|e| fail(format!("invalid image config: {e}")))?;
        let strings = |p: &str| -> Vec<String> { cfg.pointer(p).and_then(Value::as_array).map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect()).unwrap_or_default() };
        let config = ImageConfig {
            env: strings("/config/Env"),
            entrypoint: strings("/config/Entrypoint"),
            cmd: strings("/config/Cmd"),
            working_dir: cfg.pointer("/config/WorkingDir").and_then(Value::as_str).unwrap_or_default().to_string(),
        };
        let mut layers = Vec::new();
        for l in manifest.get("layers").and_then(Value::as_array).cloned().unwrap_or_default() {
            let d = l.get("digest").and_then(Value::as_str).ok_or_else(|| fail("layer without digest".into()))?;
            let mt = l.get("mediaType").and_then(Value::as_str).unwrap_or_default().to_string();
            let p = session.blob(d).await.map_err(&fail)?;
            layers.push((p, mt));
        }
        let pulled = PulledImage { digest, config, layers };
        self.resolved.lock().expect("resolved lock").insert(image.to_string(), pulled.clone());
        Ok(pulled)
    }
}

fn is_index(m: &Value) -> bool {
    let mt = m.get("mediaType").and_then(Value::as_str).unwrap_or_default();
    mt.ends_with("image.index.v1+json") || mt.ends_with("manifest.list.v2+json") || (m.get("manifests").is_some() && m.get("layers").is_none())
}

fn pick_platform(index: &Value) -> Option<String> {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        a => a,
    };
    let ms = index.get("manifests")?.as_array()?;
    let matches = |m: &&Value, want: &str| {
        m.pointer("/platform/os").and_then(Value::as_str) == Some("linux") && m.pointer("/platform/architecture").and_then(Value::as_str) == Some(want)
    };
    ms.iter()
        .find(|m| matches(m, arch))
        .or_else(|| ms.iter().find(|m| matches(m, "amd64")))
        .and_then(|m| m.get("digest").and_then(Value::as_str).map(str::to_string))
}

struct Session<'a> {
    puller: &'a Puller,
    r: &'a ImageRef,
    creds: Option<&'a Credentials>,
    token: Option<String>,
}

impl Session<'_> {
    async fn send(&mut self, url: &str, accept: Option<&str>) -> Result<reqwest::Response, String> {
        for attempt in 0..2 {
            let mut req = self.puller.client.get(url);
            if let Some(a) = accept {
                req = req.header("Accept", a);
            }
            if let Some(t) = &self.token {
                req = req.header("Authorization", t.clone());
            }
            let resp = req.send().await.map_err(|e| format!("failed to do request: Get \"{url}\": {}", root_cause(&e)))?;
            if resp.status() == reqwest::StatusCode::UNAUTHORIZED && attempt == 0 {
                let challenge = resp.headers().get("www-authenticate").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
                self.authenticate(&challenge).await?;
                continue;
            }
            return Ok(resp);
        }
        Err("pull access denied, repository does not exist or may require authorization: authorization failed".into())
    }

    async fn authenticate(&mut self, challenge: &str) -> Result<(), String> {
        let lower = challenge.to_ascii_lowercase();
        if lower.starts_with("basic") {
            let c = self.creds.ok_or("pull access denied, repository does not exist or may require authorization: server message: authentication required")?;
            let enc = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, format!("{}:{}", c.username, c.password));
            self.token = Some(format!("Basic {enc}"));
            return Ok(());
        }
        if lower.starts_with("bearer") {
            let params = parse_challenge(&challenge[6..]);
            let realm = params.get("realm").ok_or("bearer challenge without realm")?;
            let mut url = reqwest::Url::parse(realm).map_err(|e| format!("invalid token realm {realm}: {e}"))?;
            {
                let mut q = url.query_pairs_mut();
                if let Some(s) = params.get("service") {
                    q.append_pair("service", s);
                }
                q.append_pair("scope", &format!("repository:{}:pull", self.r.repository));
            }
            let mut req = self.puller.client.get(url.clone());
            if let Some(c) = self.creds {
                req = req.basic_auth(&c.username, Some(&c.password));
            }
            let resp = req.send().await.map_err(|e| format!("failed to fetch anonymous token: {}", root_cause(&e)))?;
            if !resp.status().is_success() {
                return Err(format!("failed to fetch oauth token: unexpected status from GET request to {}: {}", url.as_str().split('?').next().unwrap_or_default(), resp.status()));
            }
            let v: Value = resp.json().await.map_err(|e| format!("invalid token response: {e}"))?;
            let tok = v.get("token").or_else(|| v.get("access_token")).and_then(Value::as_str).ok_or("token response without token")?;
            self.token = Some(format!("Bearer {tok}"));
            return Ok(());
        }
        Err("pull access denied, repository does not exist or may require authorization: server message: insufficient_scope: authorization failed".into())
    }

    async fn manifest(&mut self, reference: &str) -> Result<(Value, String), String> {
        let url = format!("{}/v2/{}/manifests/{}", self.puller.base(&self.r.registry), self.r.repository, reference);
        let resp = self.send(&url, Some(ACCEPT)).await?;
        let status = resp.status();
        let name = format!("{}/{}:{}", self.r.registry, self.r.repository, self.r.reference);
        if status == reqwest::StatusCode::NOT_FOUND {
            return Err(format!("{name}: not found"));
        }
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            return Err("pull access denied, repository does not exist or may require authorization: server message: insufficient_scope: authorization failed".into());
        }
        if !status.is_success() {
            return Err(format!("unexpected status from GET request to {url}: {status}"));
        }
        let body = resp.bytes().await.map_err(|e| format!("failed to read manifest: {e}"))?;
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&body)));
        if reference.starts_with("sha256:") && reference != digest {
            return Err(format!("manifest digest mismatch: expected {reference}, got {digest}"));
        }
        let v: Value = serde_json::from_slice(&body).map_err(|e| format!("invalid manifest: {e}"))?;
        Ok((v, digest))
    }

    async fn blob(&mut self, digest: &str) -> Result<PathBuf, String> {
        let hexpart = digest.strip_prefix("sha256:").ok_or_else(|| format!("unsupported digest {digest}"))?;
        if hexpart.len() != 64 || !hexpart.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(format!("invalid digest {digest}"));
        }
        let path = self.puller.cache.join("blobs").join(hexpart);
        let lock = self.puller.blob_locks.lock().expect("blob locks").entry(hexpart.to_string()).or_default().clone();
        let _guard = lock.lock().await;
        if path.exists() {
            return Ok(path);
        }
        let url = format!("{}/v2/{}/blobs/{}", self.puller.base(&self.r.registry), self.r.repository, digest);
        let resp = self.send(&url, None).await?;
        if !resp.status().is_success() {
            return Err(format!("failed to copy: httpReadSeeker: failed open: unexpected status code {url}: {}", resp.status()));
        }
        let tmp = path.with_extension(format!("part{}", rand::random::<u32>()));
        let mut f = tokio::fs::File::create(&tmp).await.map_err(|e| format!("cannot write blob cache: {e}"))?;
        let mut hasher = Sha256::new();
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| format!("failed to copy: {e}"))?;
            hasher.update(&chunk);
            f.write_all(&chunk).await.map_err(|e| format!("cannot write blob cache: {e}"))?;
        }
        f.flush().await.map_err(|e| e.to_string())?;
        drop(f);
        let got = hex::encode(hasher.finalize());
        if got != hexpart {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(format!("failed to copy: digest mismatch for {digest}: got sha256:{got}"));
        }
        tokio::fs::rename(&tmp, &path).await.map_err(|e| e.to_string())?;
        Ok(path)
    }
}

fn parse_challenge(s: &str) -> HashMap<String, String> {
    let re = regex::Regex::new(r#"(\w+)="([^"]*)""#).expect("static regex");
    re.captures_iter(s).map(|c| (c[1].to_string(), c[2].to_string())).collect()
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur: &(dyn std::error::Error + 'static) = e;
    while let Some(s) = cur.source() {
        cur = s;
    }
    cur.to_string()
}

/// Credentials for `registry` from `kubernetes.io/dockerconfigjson` secret payloads.
pub fn credentials_from_dockerconfigs(registry: &str, configs: &[Value]) -> Option<Credentials> {
    for cfg in configs {
        let auths = cfg.get("auths").and_then(Value::as_object)?;
        for (host, entry) in auths {
            let h = host.trim_start_matches("https://").trim_start_matches("http://").trim_end_matches('/');
            let h = h.split('/').next().unwrap_or(h);
            let matches = h == registry || (registry == "docker.io" && (h == "index.docker.io" || h == "registry-1.docker.io"));
            if !matches {
                continue;
            }
            let mut c = Credentials {
                username: entry.get("username").and_then(Value::as_str).unwrap_or_default().to_string(),
                password: entry.get("password").and_then(Value::as_str).unwrap_or_default().to_string(),
            };
            if let Some(auth) = entry.get("auth").and_then(Value::as_str)
                && let Ok(dec) = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, auth)
                    && let Some((u, p)) = String::from_utf8_lossy(&dec).split_once(':') {
                        c.username = u.to_string();
                        c.password = p.to_string();
                    }
            return Some(c);
        }
    }
    None
}

/// Whether a layer file is gzip-compressed (by magic bytes).
pub fn is_gzip(path: &Path) -> bool {
    use std::io::Read;
    let mut b = [0u8; 2];
    std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut b)).is_ok() && b == [0x1f, 0x8b]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_get_docker_hub_defaults() {
        assert_eq!(ImageRef::parse("busybox").unwrap(), ImageRef { registry: "docker.io".into(), repository: "library/busybox".into(), reference: "latest".into() });
        let r = ImageRef::parse("127.0.0.1:5000/team/img:v1").unwrap();
        assert_eq!((r.registry.as_str(), r.repository.as_str(), r.reference.as_str()), ("127.0.0.1:5000", "team/img", "v1"));
        let r = ImageRef::parse("localhost:5000/img@sha256:abc").unwrap();
        assert_eq!(r.reference, "sha256:abc");
    }
}
