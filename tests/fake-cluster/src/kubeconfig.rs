//! Kubeconfig and mounted-service-account files for clients of the stand-in.

use std::path::Path;

use serde_json::json;

use crate::options::Options;

/// Writes a kubeconfig with server, context namespace, token (or tokenFile) and CA data.
pub fn write(path: &Path, url: &str, opts: &Options, ca_pem: Option<&str>) -> std::io::Result<()> {
    let mut cluster = json!({"server": url});
    if let Some(ca) = ca_pem {
        cluster["certificate-authority-data"] = json!(base64::Engine::encode(&base64::engine::general_purpose::STANDARD, ca));
    }
    let mut user = json!({});
    if let Some(f) = &opts.token_file {
        user["tokenFile"] = json!(f.to_string_lossy());
    } else if let Some(t) = &opts.token {
        user["token"] = json!(t);
    }
    let doc = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "fake-cluster", "cluster": cluster}],
        "users": [{"name": "fake-user", "user": user}],
        "contexts": [{"name": "fake-cluster", "context": {"cluster": "fake-cluster", "user": "fake-user", "namespace": opts.namespace}}],
        "current-context": "fake-cluster",
        "preferences": {},
    });
    let text = serde_saphyr::to_string(&doc).map_err(|e| std::io::Error::other(e.to_string()))?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, text)
}

/// Writes `token`, `ca.crt` and `namespace` as a pod's mounted service account has them.
pub fn write_serviceaccount(dir: &Path, opts: &Options, ca_pem: Option<&str>) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let token = match &opts.token_file {
        Some(f) => std::fs::read_to_string(f).unwrap_or_default(),
        None => opts.token.clone().unwrap_or_default(),
    };
    std::fs::write(dir.join("token"), token.trim())?;
    std::fs::write(dir.join("namespace"), &opts.namespace)?;
    if let Some(ca) = ca_pem {
        std::fs::write(dir.join("ca.crt"), ca)?;
    }
    Ok(())
}
