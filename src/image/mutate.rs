//! `append(base, layers, edit) → Image`: the base's manifest and config with
//! ciao's layers added, edited as JSON so fields ciao does not know survive.
//! Pure: no I/O, deterministic for the same input.

use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::layer::{Layer, sha256_digest};
use super::manifest::{self, Descriptor, Family, ManifestProblem};
use super::reference::{ImageRef, Platform};

/// Label: the reference of the base image.
pub const LABEL_BASE_NAME: &str = "org.opencontainers.image.base.name";
/// Label: the digest of the base image's manifest.
pub const LABEL_BASE_DIGEST: &str = "org.opencontainers.image.base.digest";
/// Label: the content digest of the cell (code layers and run settings).
pub const LABEL_CELL_DIGEST: &str = "io.kubeflow.ciao.cell.digest";
/// Label: the ciao version that built the image.
pub const LABEL_VERSION: &str = "io.kubeflow.ciao.version";
/// Label on images built on the empty base: the base that could not be fetched.
pub const LABEL_BASE_MISSING: &str = "io.kubeflow.ciao.base.unavailable";
/// Prefix of the `comment` of history entries of layers ciao adds.
pub const HISTORY_COMMENT_PREFIX: &str = "io.kubeflow.ciao.layer=";
/// `created` when neither `SOURCE_DATE_EPOCH` nor the base gives one.
pub const EPOCH: &str = "1970-01-01T00:00:00Z";

/// A base image as fetched: manifest and config, never its layers.
#[derive(Debug, Clone, PartialEq)]
pub struct BaseImage {
    /// The reference the plan names (normalised, before mirror rewriting).
    pub name: String,
    /// Where it was fetched from (after mirrors), pinned to `digest`; `None`
    /// for the empty base.
    pub source: Option<ImageRef>,
    /// The digest of the single-platform manifest; `None` for the empty base.
    pub digest: Option<String>,
    pub platform: Platform,
    pub family: Family,
    pub manifest: Value,
    pub config: Value,
    pub layers: Vec<Descriptor>,
}

impl BaseImage {
    /// A base from a fetched manifest and config blob.
    ///
    /// # Errors
    /// A manifest without config/layers, a config that is not a JSON object.
    pub fn new(
        name: String,
        source: ImageRef,
        digest: String,
        platform: Platform,
        family: Family,
        manifest: Value,
        config: &[u8],
    ) -> Result<BaseImage, ManifestProblem> {
        let (_, layers) = manifest::parts(&manifest)?;
        let config: Value = serde_json::from_slice(config).map_err(|e| ManifestProblem(format!("its config is not JSON: {e}")))?;
        if !config.is_object() {
            return Err(ManifestProblem("its config is not a JSON object".into()));
        }
        Ok(BaseImage { name, source: Some(source), digest: Some(digest), platform, family, manifest, config, layers })
    }

    /// No layers and a minimal config: what a cell is built on when its base
    /// cannot be fetched (the local backend then runs it with the host's Python).
    pub fn empty(wanted: String, platform: Platform) -> BaseImage {
        let mut config = json!({
            "architecture": platform.architecture,
            "os": platform.os,
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": []},
            "history": [],
        });
        if let Some(v) = &platform.variant {
            config["variant"] = json!(v);
        }
        BaseImage {
            name: wanted,
            source: None,
            digest: None,
            platform,
            family: Family::Oci,
            manifest: json!({"schemaVersion": 2, "mediaType": manifest::OCI_MANIFEST, "config": {}, "layers": []}),
            config,
            layers: Vec::new(),
        }
    }

    pub fn is_empty_base(&self) -> bool {
        self.source.is_none()
    }

    /// The same base described with OCI media types (an OCI image layout
    /// holds OCI manifests; the layer bytes are the same in both families).
    pub fn to_oci(&self) -> BaseImage {
        if self.family == Family::Oci {
            return self.clone();
        }
        let oci_type = |t: &str| match t {
            manifest::DOCKER_LAYER_GZIP => manifest::OCI_LAYER_GZIP.to_string(),
            manifest::DOCKER_FOREIGN_LAYER => "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip".to_string(),
            other => other.to_string(),
        };
        let mut m = self.manifest.clone();
        if let Some(layers) = m.get_mut("layers").and_then(Value::as_array_mut) {
            for l in layers {
                if let Some(t) = l.get("mediaType").and_then(Value::as_str).map(oci_type) {
                    l["mediaType"] = json!(t);
                }
            }
        }
        let layers = self.layers.iter().map(|d| Descriptor { media_type: oci_type(&d.media_type), ..d.clone() }).collect();
        BaseImage { family: Family::Oci, manifest: m, layers, ..self.clone() }
    }
}

/// How ciao sets the runtime settings of the image.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConfigEdit {
    /// `Cmd`.
    pub cmd: Vec<String>,
    /// `WorkingDir`.
    pub workdir: String,
    /// Merged into `Env` (a key already there gets the new value).
    pub env: Vec<(String, String)>,
    /// Extra labels.
    pub labels: Vec<(String, String)>,
    /// `created` (RFC 3339); `None`: the base's, or the epoch.
    pub created: Option<String>,
}

/// A layer of the new image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageLayer {
    pub descriptor: Descriptor,
    /// The bytes of a layer ciao added; `None` for a base layer.
    pub data: Option<Bytes>,
}

/// An image in memory: what publishers consume.
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    pub family: Family,
    pub manifest: Bytes,
    pub manifest_digest: String,
    pub config: Bytes,
    pub config_descriptor: Descriptor,
    /// In manifest order: the base's, then ciao's.
    pub layers: Vec<ImageLayer>,
    /// The base it was built on.
    pub base_name: String,
    pub base_source: Option<ImageRef>,
    pub base_digest: Option<String>,
    /// The cell's content digest (also the `io.kubeflow.ciao.cell.digest` label).
    pub cell_digest: String,
}

impl Image {
    /// The manifest's media type.
    pub fn manifest_media_type(&self) -> &'static str {
        self.family.manifest()
    }

    /// The short tag derived from the cell digest: `ciao-<12 hex>`.
    pub fn default_tag(&self) -> String {
        default_tag(&self.cell_digest)
    }
}

/// `ciao-<first 12 hex digits>` of a `sha256:` digest.
pub fn default_tag(digest: &str) -> String {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    format!("ciao-{}", &hex[..hex.len().min(12)])
}

/// The content digest of a cell: its files and run settings on a named base
/// and platform, independent of the base's current digest and of time
/// (`SOURCE_DATE_EPOCH`), so a cell keeps its image name while its base moves.
pub fn cell_digest(base: &BaseImage, layers: &[Layer], edit: &ConfigEdit) -> String {
    let input = json!({
        "base": base.name,
        "platform": base.platform.to_string(),
        "layers": layers.iter().map(|l| json!([l.kind.as_str(), l.content_digest])).collect::<Vec<_>>(),
        "cmd": edit.cmd,
        "workdir": edit.workdir,
        "env": edit.env,
        "labels": edit.labels,
    });
    sha256_digest(&manifest::to_bytes(&input))
}

/// The base with `layers` appended and the config edited. The base is not
/// changed.
pub fn append(base: &BaseImage, layers: &[Layer], edit: &ConfigEdit) -> Image {
    let family = base.family;
    let cell = cell_digest(base, layers, edit);
    let created = edit
        .created
        .clone()
        .or_else(|| base.config.get("created").and_then(Value::as_str).map(String::from))
        .unwrap_or_else(|| EPOCH.to_string());

    // Config.
    let mut config = base.config.clone();
    let root = config.as_object_mut().expect("base configs are objects");
    root.insert("created".into(), json!(created));
    let rootfs = object_at(root, "rootfs");
    rootfs.entry("type").or_insert_with(|| json!("layers"));
    let diff_ids = array_at(rootfs, "diff_ids");
    diff_ids.extend(layers.iter().map(|l| json!(l.diff_id)));
    let history = array_at(root, "history");
    history.extend(layers.iter().map(|l| {
        json!({
            "created": created,
            "created_by": l.created_by(),
            "comment": format!("{HISTORY_COMMENT_PREFIX}{}", l.kind.as_str()),
        })
    }));
    let c = object_at(root, "config");
    c.insert("Cmd".into(), json!(edit.cmd));
    c.insert("WorkingDir".into(), json!(edit.workdir));
    let env = array_at(c, "Env");
    for (k, v) in &edit.env {
        let item = json!(format!("{k}={v}"));
        let prefix = format!("{k}=");
        match env.iter_mut().find(|e| e.as_str().is_some_and(|s| s.starts_with(&prefix))) {
            Some(slot) => *slot = item,
            None => env.push(item),
        }
    }
    let labels = object_at(c, "Labels");
    match (&base.source, &base.digest) {
        (Some(_), Some(d)) => {
            labels.insert(LABEL_BASE_NAME.into(), json!(base.name));
            labels.insert(LABEL_BASE_DIGEST.into(), json!(d));
        }
        _ => {
            labels.insert(LABEL_BASE_MISSING.into(), json!(base.name));
        }
    }
    labels.insert(LABEL_CELL_DIGEST.into(), json!(cell));
    labels.insert(LABEL_VERSION.into(), json!(crate::VERSION));
    for (k, v) in &edit.labels {
        labels.insert(k.clone(), json!(v));
    }
    let config_bytes = Bytes::from(manifest::to_bytes(&config));
    let config_descriptor = Descriptor {
        media_type: family.config().to_string(),
        digest: sha256_digest(&config_bytes),
        size: config_bytes.len() as u64,
        urls: None,
        annotations: None,
        platform: None,
    };

    // Manifest.
    let mut m = base.manifest.clone();
    let mo = m.as_object_mut().expect("manifests are objects");
    mo.insert("schemaVersion".into(), json!(2));
    mo.insert("mediaType".into(), json!(family.manifest()));
    mo.insert("config".into(), serde_json::to_value(&config_descriptor).expect("descriptors serialise"));
    mo.remove("subject");
    let mut layer_values: Vec<Value> = mo.get("layers").and_then(Value::as_array).cloned().unwrap_or_default();
    let mut image_layers: Vec<ImageLayer> = base.layers.iter().map(|d| ImageLayer { descriptor: d.clone(), data: None }).collect();
    for l in layers {
        let d = Descriptor {
            media_type: family.layer_gzip().to_string(),
            digest: l.digest.clone(),
            size: l.size(),
            urls: None,
            annotations: None,
            platform: None,
        };
        layer_values.push(serde_json::to_value(&d).expect("descriptors serialise"));
        image_layers.push(ImageLayer { descriptor: d, data: Some(l.blob.clone()) });
    }
    mo.insert("layers".into(), Value::Array(layer_values));
    if family == Family::Oci
        && let (Some(_), Some(d)) = (&base.source, &base.digest)
    {
        let ann = object_at(mo, "annotations");
        ann.insert(LABEL_BASE_NAME.into(), json!(base.name));
        ann.insert(LABEL_BASE_DIGEST.into(), json!(d));
    }
    let manifest_bytes = Bytes::from(manifest::to_bytes(&m));

    Image {
        family,
        manifest_digest: sha256_digest(&manifest_bytes),
        manifest: manifest_bytes,
        config: config_bytes,
        config_descriptor,
        layers: image_layers,
        base_name: base.name.clone(),
        base_source: base.source.clone(),
        base_digest: base.digest.clone(),
        cell_digest: cell,
    }
}

/// `obj[key]` as an object, replacing null or a missing value.
fn object_at<'a>(obj: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let slot = obj.entry(key).or_insert_with(|| json!({}));
    if !slot.is_object() {
        *slot = json!({});
    }
    slot.as_object_mut().expect("just made an object")
}

/// `obj[key]` as an array, replacing null or a missing value.
fn array_at<'a>(obj: &'a mut Map<String, Value>, key: &str) -> &'a mut Vec<Value> {
    let slot = obj.entry(key).or_insert_with(|| json!([]));
    if !slot.is_array() {
        *slot = json!([]);
    }
    slot.as_array_mut().expect("just made an array")
}

/// Seconds since the epoch as RFC 3339 (`2023-11-14T22:13:20Z`).
pub fn rfc3339(secs: u64) -> String {
    chrono::DateTime::from_timestamp(secs as i64, 0)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::layer::{LayerFile, LayerKind};

    fn base(family: Family) -> BaseImage {
        let (m, l) = match family {
            Family::Oci => (manifest::OCI_MANIFEST, manifest::OCI_LAYER_GZIP),
            Family::Docker => (manifest::DOCKER_MANIFEST, manifest::DOCKER_LAYER_GZIP),
        };
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": m,
            "config": {"mediaType": family.config(), "digest": format!("sha256:{}", "c".repeat(64)), "size": 10},
            "layers": [{"mediaType": l, "digest": format!("sha256:{}", "1".repeat(64)), "size": 5, "annotations": {"keep": "me"}}],
        });
        let config = json!({
            "created": "2024-01-02T03:04:05Z",
            "architecture": "amd64",
            "os": "linux",
            "x-unknown-top": {"nested": [1, 2]},
            "config": {"Env": ["PATH=/usr/bin", "PYTHONUNBUFFERED=0"], "Labels": {"base.label": "yes"}, "X-Unknown": true, "Entrypoint": ["tini"]},
            "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{}", "d".repeat(64))]},
            "history": [{"created_by": "base"}],
        });
        BaseImage::new(
            "docker.io/library/python:3.11-slim".into(),
            ImageRef::parse("127.0.0.1:5000/mirror/library/python:3.11-slim").unwrap(),
            format!("sha256:{}", "b".repeat(64)),
            Platform::parse("linux/amd64").unwrap(),
            family,
            manifest,
            &manifest::to_bytes(&config),
        )
        .unwrap()
    }

    fn code() -> Layer {
        Layer::from_files(LayerKind::Code, &[LayerFile::file("/app/main.py", "print('hi')\n")], 0).unwrap()
    }

    fn edit() -> ConfigEdit {
        ConfigEdit {
            cmd: vec!["python".into(), "-u".into(), "/app/main.py".into()],
            workdir: "/app".into(),
            env: vec![("PYTHONUNBUFFERED".into(), "1".into()), ("NEW".into(), "x".into())],
            labels: vec![],
            created: None,
        }
    }

    #[test]
    fn the_config_keeps_unknown_fields_and_gets_the_edits() {
        let img = append(&base(Family::Oci), &[code()], &edit());
        let c: Value = serde_json::from_slice(&img.config).unwrap();
        assert_eq!(c["x-unknown-top"], json!({"nested": [1, 2]}));
        assert_eq!(c["config"]["X-Unknown"], json!(true));
        assert_eq!(c["config"]["Entrypoint"], json!(["tini"]));
        assert_eq!(c["config"]["Cmd"], json!(["python", "-u", "/app/main.py"]));
        assert_eq!(c["config"]["WorkingDir"], json!("/app"));
        assert_eq!(c["config"]["Env"], json!(["PATH=/usr/bin", "PYTHONUNBUFFERED=1", "NEW=x"]));
        let labels = &c["config"]["Labels"];
        assert_eq!(labels["base.label"], json!("yes"));
        assert_eq!(labels[LABEL_BASE_NAME], json!("docker.io/library/python:3.11-slim"));
        assert_eq!(labels[LABEL_BASE_DIGEST], json!(format!("sha256:{}", "b".repeat(64))));
        assert_eq!(labels[LABEL_CELL_DIGEST], json!(img.cell_digest));
        assert_eq!(labels[LABEL_VERSION], json!(crate::VERSION));
        let diff_ids = c["rootfs"]["diff_ids"].as_array().unwrap();
        assert_eq!(diff_ids.len(), 2);
        assert_eq!(diff_ids[1], json!(code().diff_id));
        let h = c["history"].as_array().unwrap();
        assert_eq!(h.len(), 2);
        assert!(h[1]["created_by"].as_str().unwrap().starts_with("ciao "));
        assert_eq!(h[1]["comment"], json!("io.kubeflow.ciao.layer=code"));
        assert_eq!(c["created"], json!("2024-01-02T03:04:05Z"));
    }

    #[test]
    fn the_manifest_keeps_one_media_type_family() {
        for family in [Family::Oci, Family::Docker] {
            let img = append(&base(family), &[code()], &edit());
            let m: Value = serde_json::from_slice(&img.manifest).unwrap();
            assert_eq!(m["mediaType"], json!(family.manifest()));
            assert_eq!(m["config"]["mediaType"], json!(family.config()));
            for l in m["layers"].as_array().unwrap() {
                assert_eq!(l["mediaType"], json!(family.layer_gzip()), "{family:?}");
            }
            assert_eq!(m["layers"][0]["annotations"]["keep"], json!("me"));
            assert_eq!(m["layers"][1]["digest"], json!(code().digest));
            assert_eq!(m["config"]["digest"], json!(sha256_digest(&img.config)));
            assert_eq!(img.manifest_digest, sha256_digest(&img.manifest));
            assert_eq!(m.get("annotations").is_some(), family == Family::Oci);
            assert_eq!(img.layers.iter().filter(|l| l.data.is_some()).count(), 1);
        }
    }

    #[test]
    fn append_is_deterministic_and_created_follows_the_setting() {
        let a = append(&base(Family::Oci), &[code()], &edit());
        let b = append(&base(Family::Oci), &[code()], &edit());
        assert_eq!(a.manifest_digest, b.manifest_digest);
        let e = ConfigEdit { created: Some(rfc3339(1_700_000_000)), ..edit() };
        let c = append(&base(Family::Oci), &[code()], &e);
        let cfg: Value = serde_json::from_slice(&c.config).unwrap();
        assert_eq!(cfg["created"], json!("2023-11-14T22:13:20Z"));
        assert_eq!(cfg["history"][1]["created"], json!("2023-11-14T22:13:20Z"));
        // The cell digest ignores time and the base digest.
        assert_eq!(a.cell_digest, c.cell_digest);
        let mut moved = base(Family::Oci);
        moved.digest = Some(format!("sha256:{}", "e".repeat(64)));
        let d = append(&moved, &[code()], &edit());
        assert_eq!(d.cell_digest, a.cell_digest);
        assert_ne!(d.manifest_digest, a.manifest_digest);
        assert_eq!(a.default_tag(), format!("ciao-{}", &a.cell_digest[7..19]));
    }

    #[test]
    fn the_empty_base_gives_a_minimal_image() {
        let b = BaseImage::empty("docker.io/library/python:3.11-slim".into(), Platform::parse("linux/arm64/v8").unwrap());
        let img = append(&b, &[code()], &edit());
        let c: Value = serde_json::from_slice(&img.config).unwrap();
        assert_eq!((c["os"].as_str(), c["architecture"].as_str(), c["variant"].as_str()), (Some("linux"), Some("arm64"), Some("v8")));
        assert_eq!(c["rootfs"]["diff_ids"].as_array().unwrap().len(), 1);
        assert_eq!(c["config"]["Labels"][LABEL_BASE_MISSING], json!("docker.io/library/python:3.11-slim"));
        assert!(c["config"]["Labels"].get(LABEL_BASE_NAME).is_none());
        assert_eq!(c["created"], json!(EPOCH));
        assert_eq!(img.layers.len(), 1);
    }

    #[test]
    fn a_docker_base_converts_to_oci_for_a_layout() {
        let img = append(&base(Family::Docker).to_oci(), &[code()], &edit());
        let m: Value = serde_json::from_slice(&img.manifest).unwrap();
        assert_eq!(m["mediaType"], json!(manifest::OCI_MANIFEST));
        assert!(m["layers"].as_array().unwrap().iter().all(|l| l["mediaType"] == json!(manifest::OCI_LAYER_GZIP)));
        assert_eq!(img.layers[0].descriptor.media_type, manifest::OCI_LAYER_GZIP);
    }

    #[test]
    fn null_sections_of_a_config_are_replaced() {
        let mut b = base(Family::Oci);
        b.config["config"] = Value::Null;
        b.config["history"] = Value::Null;
        let img = append(&b, &[code()], &edit());
        let c: Value = serde_json::from_slice(&img.config).unwrap();
        assert_eq!(c["config"]["Env"], json!(["PYTHONUNBUFFERED=1", "NEW=x"]));
        assert_eq!(c["history"].as_array().unwrap().len(), 1);
    }
}
