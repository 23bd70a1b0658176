//! The image builder's one error type, converted once into a [`CellError`].

use crate::output::CellError;

/// Everything that can go wrong while building or publishing an image.
///
/// Every message names the problem and the fix; none contains a secret.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// An image reference that cannot be parsed.
    #[error("image reference {reference:?} is not valid: {why}")]
    Reference { reference: String, why: String },

    /// Plain HTTP to a registry that is not listed as insecure.
    #[error(
        "registry {registry} {why}; ciao speaks plain HTTP only to registries listed as insecure: add {registry} to \
         CIAO_INSECURE_REGISTRIES (comma-separated) or set `registries: {{\"{registry}\": {{insecure: true}}}}` in the ciao config"
    )]
    InsecureRefused { registry: String, why: String },

    /// The registry cannot be reached at all (refused, DNS, proxy).
    #[error(
        "cannot reach registry {registry}: {why}; check that the registry runs at that address, HTTPS_PROXY/NO_PROXY if a \
         proxy is in the way, or map it to a reachable mirror with `mirrors:` in the ciao config"
    )]
    Unreachable { registry: String, why: String },

    /// TLS failed, usually an unknown certificate authority.
    #[error(
        "TLS with registry {registry} failed: {why}; if the registry uses a private certificate authority, point \
         CIAO_CA_FILE (or registries.\"{registry}\".ca in the ciao config) at its PEM bundle"
    )]
    Tls { registry: String, why: String },

    /// A request took longer than the timeout.
    #[error(
        "registry {registry} did not answer within {secs} s while {what}; raise CIAO_REGISTRY_TIMEOUT (seconds) if the \
         registry is slow"
    )]
    Timeout { registry: String, what: String, secs: u64 },

    /// 401: no or wrong credentials.
    #[error(
        "registry {registry} refused access to {repository} ({action}): 401 Unauthorized. Credential sources tried: {}. \
         Fix: set registries.\"{registry}\".username and password/passwordFile/token in the ciao config, or run \
         `docker login {registry}`",
        tried.join("; ")
    )]
    Unauthorized { registry: String, repository: String, action: String, tried: Vec<String> },

    /// 403: the credentials are valid but lack a permission.
    #[error(
        "registry {registry} denied {action} on {repository} (403 Forbidden) with credentials from {source_name}; grant \
         that account {action} access to the repository or use another repository (%image=, CIAO_REGISTRY)"
    )]
    Denied { registry: String, repository: String, action: String, source_name: String },

    /// A base image (or tag) the registry does not have.
    #[error(
        "base image {reference} was not found ({why}); check the name and tag (%base=, the framework descriptor's \
         image) and the mirror map (`mirrors:` in the ciao config){}",
        mirror.as_ref().map(|m| format!(", which rewrote it to {m}")).unwrap_or_default()
    )]
    NotFound { reference: String, mirror: Option<String>, why: String },

    /// A multi-platform base without the wanted platform.
    #[error(
        "base image {reference} has no {platform} image (it has: {}); set CIAO_PLATFORM or `platform:` in the ciao \
         config, or choose another base with %base=",
        available.join(", ")
    )]
    NoPlatform { reference: String, platform: String, available: Vec<String> },

    /// A manifest or config ciao cannot use.
    #[error("base image {reference}: {why}")]
    BadBase { reference: String, why: String },

    /// Any other registry answer that is not a success.
    #[error("registry {registry} answered {status} while {what}: {message}; {}", status_fix(*status, registry))]
    Registry { registry: String, what: String, status: u16, message: String },

    /// A transfer that broke off or a registry that does not follow the protocol.
    #[error(
        "transfer with registry {registry} failed while {what}: {why}; run the cell again, and if it keeps failing check \
         the registry and whatever is between it and ciao (proxies, load balancers)"
    )]
    Transfer { registry: String, what: String, why: String },

    /// Content that does not match its digest.
    #[error("{what}: expected digest {expected}, got {actual}; the registry or a proxy altered the data, try again")]
    Digest { what: String, expected: String, actual: String },

    /// A credential source that exists but cannot be used.
    #[error("credentials for {registry} from {source_name}: {why}")]
    Credentials { registry: String, source_name: String, why: String },

    /// Reading or writing local files (layout, extraction).
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: String,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// An OCI image layout that cannot be used.
    #[error("OCI image layout {}: {why}", dir.display())]
    Layout { dir: std::path::PathBuf, why: String },

    /// A setting (environment variable, cell value) ciao cannot use.
    #[error("{name} {value:?} cannot be used: {why}")]
    InvalidSetting { name: String, value: String, why: String },

    /// A target this builder does not publish to.
    #[error("{0}")]
    Unsupported(String),

    /// The cell was interrupted; no tag was written.
    #[error("interrupted; nothing was tagged (blobs already uploaded are reused by the next build)")]
    Cancelled,
}

/// What to do about an error status from `registry`.
fn status_fix(status: u16, registry: &str) -> String {
    match status {
        429 => format!(
            "the registry is limiting requests and still was after ciao waited and retried: run the cell again in a \
             minute, or log in (registries.\"{registry}\" in the ciao config) if the registry grants higher limits to accounts"
        ),
        500..=599 => "the registry failed on its side and still did after ciao retried with backoff: run the cell again \
             later, and if it keeps failing check the registry's logs and storage"
            .into(),
        413 => "a proxy in front of the registry refuses bodies this large even in chunks: raise its limit (nginx: \
             client_max_body_size)"
            .into(),
        _ => "check the image name (%image=, CIAO_REGISTRY) and that the registry implements the OCI distribution API".into(),
    }
}

impl ImageError {
    /// Whether the error says the registry cannot be reached at all (no
    /// network, no such host), as opposed to an answer from it.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, ImageError::Unreachable { .. } | ImageError::Timeout { .. })
    }

    /// The `ename` the cell error gets.
    pub fn ename(&self) -> &'static str {
        match self {
            ImageError::Reference { .. }
            | ImageError::BadBase { .. }
            | ImageError::NoPlatform { .. }
            | ImageError::Io { .. }
            | ImageError::Layout { .. }
            | ImageError::InvalidSetting { .. }
            | ImageError::Unsupported(_) => "ImageError",
            ImageError::Cancelled => "Interrupted",
            _ => "RegistryError",
        }
    }
}

impl From<ImageError> for CellError {
    fn from(e: ImageError) -> Self {
        CellError::new(e.ename(), e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unauthorized_names_the_sources_and_the_fix() {
        let e = ImageError::Unauthorized {
            registry: "r.example:5000".into(),
            repository: "team/app".into(),
            action: "push".into(),
            tried: vec!["ciao config registries.\"r.example:5000\" (user robot$ciao)".into(), "docker config /h/.docker/config.json: no entry".into()],
        };
        let c = CellError::from(e);
        assert_eq!(c.ename, "RegistryError");
        assert!(c.evalue.contains("robot$ciao") && c.evalue.contains("/h/.docker/config.json"), "{}", c.evalue);
        assert!(c.evalue.contains("docker login r.example:5000"), "{}", c.evalue);
    }

    #[test]
    fn error_statuses_name_what_to_do() {
        let e = |status| ImageError::Registry { registry: "r:5000".into(), what: "writing the manifest a:b".into(), status, message: "x".into() };
        let text = e(503).to_string();
        assert!(text.contains("r:5000") && text.contains("writing the manifest") && text.contains("run the cell again later"), "{text}");
        let text = e(429).to_string();
        assert!(text.contains("limiting requests") && text.contains("registries.\"r:5000\""), "{text}");
        assert!(e(413).to_string().contains("client_max_body_size"));
        assert!(e(400).to_string().contains("OCI distribution API"));
        let t = ImageError::Transfer { registry: "r:5000".into(), what: "uploading".into(), why: "reset".into() }.to_string();
        assert!(t.contains("run the cell again"), "{t}");
    }

    #[test]
    fn insecure_refusal_names_the_variable() {
        let e = ImageError::InsecureRefused { registry: "127.0.0.1:5000".into(), why: "answered in plain HTTP".into() };
        assert!(e.to_string().contains("CIAO_INSECURE_REGISTRIES"));
        assert_eq!(e.ename(), "RegistryError");
    }
}
