//! Manifests, indexes and their media types. Pure functions: JSON in, JSON
//! out, no I/O.
//!
//! Two media-type families exist: OCI and Docker v2 schema 2. An image ciao
//! writes keeps its base's family, so every descriptor in one manifest is of
//! one family.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::reference::Platform;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Docker's "foreign" layers, which registries do not hold (Windows bases).
pub const DOCKER_FOREIGN_LAYER: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";

/// The `Accept` header for manifest requests: every manifest and index type
/// ciao understands (without the Docker types a registry converts v2s2 to
/// schema 1, without the OCI ones it hides OCI manifests).
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// A media-type family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    Oci,
    Docker,
}

impl Family {
    pub fn manifest(self) -> &'static str {
        match self {
            Family::Oci => OCI_MANIFEST,
            Family::Docker => DOCKER_MANIFEST,
        }
    }

    pub fn config(self) -> &'static str {
        match self {
            Family::Oci => OCI_CONFIG,
            Family::Docker => DOCKER_CONFIG,
        }
    }

    /// The type of a gzip-compressed layer.
    pub fn layer_gzip(self) -> &'static str {
        match self {
            Family::Oci => OCI_LAYER_GZIP,
            Family::Docker => DOCKER_LAYER_GZIP,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Family::Oci => "OCI",
            Family::Docker => "Docker v2s2",
        }
    }
}

/// A content descriptor (`mediaType`, `digest`, `size`, …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<serde_json::Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Value>,
}

impl Descriptor {
    /// Docker foreign layers live outside the registry; they are never copied.
    pub fn is_foreign(&self) -> bool {
        self.media_type == DOCKER_FOREIGN_LAYER || self.media_type.contains(".nondistributable.")
    }
}

/// What a fetched manifest document is.
#[derive(Debug, Clone, PartialEq)]
pub enum Document {
    /// A single-platform image manifest.
    Image { family: Family, manifest: Value },
    /// A multi-platform index or manifest list.
    Index { family: Family, index: Value },
}

/// Why a manifest cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestProblem(pub String);

/// Classifies a manifest by its `mediaType` field, else by the
/// `Content-Type` the registry sent, else by its shape.
///
/// # Errors
/// Not JSON, schema 1, or an unknown media type.
pub fn classify(body: &[u8], content_type: Option<&str>) -> Result<Document, ManifestProblem> {
    let v: Value = serde_json::from_slice(body).map_err(|e| ManifestProblem(format!("the manifest is not JSON: {e}")))?;
    if v.get("schemaVersion").and_then(Value::as_u64) == Some(1) {
        return Err(ManifestProblem(
            "it has a Docker schema 1 manifest, which ciao cannot extend; push it again with a current tool (skopeo copy, docker push)".into(),
        ));
    }
    let content_type = content_type.map(|c| c.split(';').next().unwrap_or(c).trim());
    let media = v.get("mediaType").and_then(Value::as_str).or(content_type).map(str::to_string);
    let media = match media.as_deref() {
        Some(m) if [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST].contains(&m) => m.to_string(),
        _ if v.get("manifests").is_some() => OCI_INDEX.into(),
        _ if v.get("config").is_some() && v.get("layers").is_some() => OCI_MANIFEST.into(),
        Some(m) => return Err(ManifestProblem(format!("its manifest has media type {m}, which is not an image"))),
        None => return Err(ManifestProblem("its manifest has no media type and is not an image".into())),
    };
    Ok(match media.as_str() {
        OCI_MANIFEST => Document::Image { family: Family::Oci, manifest: v },
        DOCKER_MANIFEST => Document::Image { family: Family::Docker, manifest: v },
        OCI_INDEX => Document::Index { family: Family::Oci, index: v },
        _ => Document::Index { family: Family::Docker, index: v },
    })
}

/// The `platform` of an index entry as `os/arch[/variant]`.
fn entry_platform(entry: &Value) -> Option<Platform> {
    let p = entry.get("platform")?;
    Some(Platform {
        os: p.get("os")?.as_str()?.to_string(),
        architecture: p.get("architecture")?.as_str()?.to_string(),
        variant: p.get("variant").and_then(Value::as_str).map(String::from),
    })
}

/// Picks the manifest for `want` from an index: same os and architecture,
/// and the same variant when `want` names one (else the first, preferring
/// `v8` for arm64 as Docker does). Attestation entries (`unknown/unknown`)
/// never match.
///
/// # Errors
/// The platforms the index does have, when none matches.
pub fn resolve_index(index: &Value, want: &Platform) -> Result<Descriptor, Vec<String>> {
    let entries = index.get("manifests").and_then(Value::as_array).cloned().unwrap_or_default();
    let mut candidates: Vec<(Descriptor, Platform)> = Vec::new();
    let mut available = Vec::new();
    for e in &entries {
        let Some(p) = entry_platform(e) else { continue };
        if p.os == "unknown" {
            continue;
        }
        available.push(p.to_string());
        if p.os == want.os && p.architecture == want.architecture {
            let Ok(d) = serde_json::from_value::<Descriptor>(e.clone()) else { continue };
            candidates.push((d, p));
        }
    }
    let pick = match &want.variant {
        Some(v) => candidates.into_iter().find(|(_, p)| p.variant.as_deref() == Some(v.as_str())),
        None => {
            let preferred = if want.architecture == "arm64" { Some("v8") } else { None };
            let first = candidates.first().cloned();
            candidates.into_iter().find(|(_, p)| p.variant.is_none() || p.variant.as_deref() == preferred).or(first)
        }
    };
    pick.map(|(d, _)| d).ok_or(available)
}

/// The config descriptor and layer descriptors of an image manifest.
///
/// # Errors
/// A manifest without a valid `config` or `layers`.
pub fn parts(manifest: &Value) -> Result<(Descriptor, Vec<Descriptor>), ManifestProblem> {
    let config: Descriptor = manifest
        .get("config")
        .cloned()
        .ok_or_else(|| ManifestProblem("its manifest has no config descriptor".into()))
        .and_then(|c| serde_json::from_value(c).map_err(|e| ManifestProblem(format!("its config descriptor is invalid: {e}"))))?;
    let layers: Vec<Descriptor> = match manifest.get("layers") {
        None | Some(Value::Null) => Vec::new(),
        Some(l) => serde_json::from_value(l.clone()).map_err(|e| ManifestProblem(format!("its layer descriptors are invalid: {e}")))?,
    };
    Ok((config, layers))
}

/// Serialises a manifest or config for upload: compact JSON, keys in the
/// order they have (deterministic for the same input).
pub fn to_bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).expect("JSON values always serialise")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn index(entries: &[(&str, &str, Option<&str>)]) -> Value {
        let manifests: Vec<Value> = entries
            .iter()
            .enumerate()
            .map(|(i, (os, arch, variant))| {
                let mut p = json!({"os": os, "architecture": arch});
                if let Some(v) = variant {
                    p["variant"] = json!(v);
                }
                json!({"mediaType": OCI_MANIFEST, "digest": format!("sha256:{:064x}", i), "size": 100, "platform": p})
            })
            .collect();
        json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests})
    }

    #[test]
    fn an_index_resolves_to_the_wanted_platform() {
        let idx = index(&[("unknown", "unknown", None), ("linux", "arm64", Some("v8")), ("linux", "amd64", None)]);
        let d = resolve_index(&idx, &Platform::parse("linux/amd64").unwrap()).unwrap();
        assert_eq!(d.digest, format!("sha256:{:064x}", 2));
        let d = resolve_index(&idx, &Platform::parse("linux/arm64").unwrap()).unwrap();
        assert_eq!(d.digest, format!("sha256:{:064x}", 1));
        let d = resolve_index(&idx, &Platform::parse("linux/arm64/v8").unwrap()).unwrap();
        assert_eq!(d.digest, format!("sha256:{:064x}", 1));
        let missing = resolve_index(&idx, &Platform::parse("linux/s390x").unwrap()).unwrap_err();
        assert_eq!(missing, ["linux/arm64/v8", "linux/amd64"]);
    }

    #[test]
    fn documents_are_classified_by_media_type_header_or_shape() {
        let m = json!({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST, "config": {}, "layers": []});
        assert!(matches!(classify(&to_bytes(&m), None).unwrap(), Document::Image { family: Family::Docker, .. }));
        let m = json!({"schemaVersion": 2, "config": {}, "layers": []});
        assert!(matches!(classify(&to_bytes(&m), Some(OCI_MANIFEST)).unwrap(), Document::Image { family: Family::Oci, .. }));
        assert!(matches!(classify(&to_bytes(&m), None).unwrap(), Document::Image { family: Family::Oci, .. }));
        let l = json!({"schemaVersion": 2, "mediaType": DOCKER_LIST, "manifests": []});
        assert!(matches!(classify(&to_bytes(&l), None).unwrap(), Document::Index { family: Family::Docker, .. }));
        let s1 = json!({"schemaVersion": 1, "name": "x"});
        assert!(classify(&to_bytes(&s1), None).unwrap_err().0.contains("schema 1"));
        assert!(classify(b"nope", None).unwrap_err().0.contains("not JSON"));
    }

    #[test]
    fn foreign_layers_are_recognised() {
        let d = Descriptor { media_type: DOCKER_FOREIGN_LAYER.into(), digest: "sha256:0".into(), size: 1, urls: None, annotations: None, platform: None };
        assert!(d.is_foreign());
    }
}
