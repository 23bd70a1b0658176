//! `%provider=configmap`: the code in a ConfigMap named after the job,
//! mounted file by file (`subPath`) over the base image, so the rest of the
//! image's working directory stays visible.

use base64::Engine as _;
use serde_json::{Map, Value, json};

use super::{CodeFile, LABEL_QUEUE, Meta, RenderError, RenderInput};

/// The most a ConfigMap's `data` and `binaryData` may hold together.
pub const MAX_CONFIG_MAP_BYTES: usize = 1024 * 1024;

/// The pod volume holding the code.
pub(super) const CODE_VOLUME: &str = "ciao-code";

/// The ConfigMap object.
pub(super) fn config_map(input: &RenderInput<'_>, meta: &Meta, files: &[CodeFile]) -> Result<Value, RenderError> {
    check_files(files)?;
    let mut data = Map::new();
    let mut binary = Map::new();
    for f in files {
        match std::str::from_utf8(&f.content) {
            Ok(text) => data.insert(f.key.clone(), json!(text)),
            Err(_) => binary.insert(f.key.clone(), json!(base64::engine::general_purpose::STANDARD.encode(&f.content))),
        };
    }
    let mut labels = meta.job_labels.clone();
    labels.remove(LABEL_QUEUE);
    let mut cm = Map::new();
    cm.insert("apiVersion".into(), json!("v1"));
    cm.insert("kind".into(), json!("ConfigMap"));
    cm.insert(
        "metadata".into(),
        json!({
            "name": input.name,
            "namespace": input.namespace,
            "labels": labels,
            "annotations": {super::ANNOTATION_CELL_DIGEST: input.cell_digest},
        }),
    );
    cm.insert("immutable".into(), json!(true));
    if !data.is_empty() {
        cm.insert("data".into(), Value::Object(data));
    }
    if !binary.is_empty() {
        cm.insert("binaryData".into(), Value::Object(binary));
    }
    Ok(Value::Object(cm))
}

fn check_files(files: &[CodeFile]) -> Result<(), RenderError> {
    let bad = |key: &str, why: &str| RenderError::InvalidConfigMapKey { key: key.to_string(), why: why.to_string() };
    for (i, f) in files.iter().enumerate() {
        if f.key.is_empty() || f.key.len() > 253 {
            return Err(bad(&f.key, "must be 1 to 253 characters"));
        }
        if !f.key.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
            return Err(bad(&f.key, "must be letters, digits, '-', '_' or '.'"));
        }
        if f.key == "." || f.key == ".." {
            return Err(bad(&f.key, "must not be '.' or '..'"));
        }
        if !f.path.starts_with('/') {
            return Err(bad(&f.key, &format!("its mount path {:?} must be absolute", f.path)));
        }
        if files[..i].iter().any(|g| g.key == f.key) {
            return Err(bad(&f.key, "is used twice"));
        }
        if files[..i].iter().any(|g| g.path == f.path) {
            return Err(bad(&f.key, &format!("its mount path {:?} is used twice", f.path)));
        }
    }
    let size: usize = files.iter().map(|f| f.content.len()).sum();
    if size > MAX_CONFIG_MAP_BYTES {
        return Err(RenderError::ConfigMapTooLarge { size, limit: MAX_CONFIG_MAP_BYTES });
    }
    Ok(())
}

/// The pod volume of the job's ConfigMap.
pub(super) fn code_volume(config_map: &str) -> Value {
    json!({"name": CODE_VOLUME, "configMap": {"name": config_map}})
}

/// One read-only `subPath` mount per file.
pub(super) fn code_mounts(files: &[CodeFile]) -> Vec<Value> {
    files
        .iter()
        .map(|f| json!({"name": CODE_VOLUME, "mountPath": f.path, "subPath": f.key, "readOnly": true}))
        .collect()
}

/// The ownerReference that makes a created job own its ConfigMap, so deleting
/// the job deletes the ConfigMap too.
///
/// # Errors
/// The object has no `apiVersion`, `kind`, `metadata.name` or `metadata.uid`
/// (only objects returned by the API server have a uid).
pub fn owner_reference(job: &Value) -> Result<Value, RenderError> {
    let field = |pointer: &str, field: &'static str| {
        job.pointer(pointer).and_then(Value::as_str).filter(|s| !s.is_empty()).ok_or(RenderError::NotCreated { field })
    };
    Ok(json!({
        "apiVersion": field("/apiVersion", "apiVersion")?,
        "kind": field("/kind", "kind")?,
        "name": field("/metadata/name", "metadata.name")?,
        "uid": field("/metadata/uid", "metadata.uid")?,
        "controller": true,
        "blockOwnerDeletion": true,
    }))
}
