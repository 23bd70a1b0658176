//! The layers ciao added to an image (code, `%files`, `%module`), unpacked
//! into a directory, so a local process can run the code exactly as the
//! image holds it. ciao's layers are recognised by the history entries it
//! writes (`comment: io.kubeflow.ciao.layer=<kind>`).

use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures::StreamExt;
use serde_json::Value;

use crate::config::Config;

use super::auth::Scope;
use super::builder::{BuildOptions, Builder};
use super::error::ImageError;
use super::layer::{LayerKind, sha256_digest};
use super::layout;
use super::manifest::{self, Descriptor, Document};
use super::mutate::HISTORY_COMMENT_PREFIX;
use super::reference::ImageRef;

/// The largest layer of ciao's own that is read into memory from a registry.
const MAX_ADDED_LAYER: u64 = 256 << 20;

/// The layers of `manifest` that ciao added, with their kinds: history
/// entries that make layers (not `empty_layer`) are matched to the layers
/// from the end, so a base without history still works.
pub fn added_layers(manifest: &Value, config: &Value) -> Result<Vec<(Descriptor, LayerKind)>, manifest::ManifestProblem> {
    let (_, layers) = manifest::parts(manifest)?;
    let history: Vec<&Value> = config
        .get("history")
        .and_then(Value::as_array)
        .map(|h| h.iter().filter(|e| !e.get("empty_layer").and_then(Value::as_bool).unwrap_or(false)).collect())
        .unwrap_or_default();
    let mut out = Vec::new();
    for (d, h) in layers.iter().rev().zip(history.iter().rev()) {
        let kind = h
            .get("comment")
            .and_then(Value::as_str)
            .and_then(|c| c.strip_prefix(HISTORY_COMMENT_PREFIX))
            .and_then(LayerKind::parse);
        if let Some(k) = kind {
            out.push((d.clone(), k));
        }
    }
    out.reverse();
    Ok(out)
}

/// Unpacks the layers ciao added to the image at `reference` (as a build
/// printed it: `oci:DIR:NAME:TAG[@sha256:…]` or `HOST/REPO:TAG[@sha256:…]`)
/// into `dest`. Returns the files written.
///
/// # Errors
/// An unknown reference, an image without ciao layers, I/O and registry errors.
pub async fn extract_added_layers(
    builder: &Builder,
    config: &Config,
    options: &BuildOptions,
    reference: &str,
    dest: &Path,
) -> Result<Vec<PathBuf>, ImageError> {
    let bad = |why: &str| ImageError::Reference { reference: reference.to_string(), why: why.to_string() };
    let blobs: Vec<(Descriptor, LayerKind, Bytes)> = if let Some(rest) = reference.strip_prefix("oci:") {
        let (dir, name) = rest.split_once(':').ok_or_else(|| bad("a layout reference is oci:DIR:NAME:TAG[@sha256:…]"))?;
        let dir = PathBuf::from(dir);
        let (name, digest) = match name.split_once('@') {
            Some((n, d)) => (n, Some(d.to_string())),
            None => (name, None),
        };
        let digest = match digest {
            Some(d) => d,
            None => layout::find_ref(&dir, name)?.digest,
        };
        let manifest_bytes = read_blob(&dir, &digest)?;
        let manifest: Value = serde_json::from_slice(&manifest_bytes).map_err(|e| bad(&format!("its manifest is not JSON: {e}")))?;
        let (config_d, _) = manifest::parts(&manifest).map_err(|p| bad(&p.0))?;
        let config_value: Value = serde_json::from_slice(&read_blob(&dir, &config_d.digest)?).map_err(|e| bad(&format!("its config is not JSON: {e}")))?;
        let mut blobs = Vec::new();
        for (d, kind) in added_layers(&manifest, &config_value).map_err(|p| bad(&p.0))? {
            blobs.push((d.clone(), kind, read_blob(&dir, &d.digest)?));
        }
        blobs
    } else {
        let r = ImageRef::parse(reference)?;
        let session = builder.session(&r.registry, config, options)?;
        let scopes = [Scope::pull(&r.repository)];
        let m = session
            .get_manifest(&r.repository, r.reference(), &scopes)
            .await?
            .ok_or_else(|| bad("the registry does not have it"))?;
        if let Some(d) = &r.digest
            && *d != m.digest
        {
            return Err(ImageError::Digest { what: format!("the manifest of {reference}"), expected: d.clone(), actual: m.digest });
        }
        let manifest = match manifest::classify(&m.body, m.content_type.as_deref()).map_err(|p| bad(&p.0))? {
            Document::Image { manifest, .. } => manifest,
            Document::Index { .. } => return Err(bad("it is a multi-platform index; give the image's own digest")),
        };
        let (config_d, _) = manifest::parts(&manifest).map_err(|p| bad(&p.0))?;
        let config_value: Value = serde_json::from_slice(&session.get_blob(&r.repository, &config_d, &scopes).await?)
            .map_err(|e| bad(&format!("its config is not JSON: {e}")))?;
        let mut blobs = Vec::new();
        for (d, kind) in added_layers(&manifest, &config_value).map_err(|p| bad(&p.0))? {
            if d.size > MAX_ADDED_LAYER {
                return Err(bad(&format!("its {} layer is {} bytes, more than ciao unpacks in memory", kind.as_str(), d.size)));
            }
            let mut stream = session.blob_stream(&r.repository, &d, &scopes).await?;
            let mut data = Vec::with_capacity(d.size as usize);
            while let Some(chunk) = stream.next().await {
                data.extend_from_slice(&chunk.map_err(|e| ImageError::Transfer {
                    registry: r.registry.clone(),
                    what: format!("downloading the layer {}", d.digest),
                    why: e.to_string(),
                })?);
            }
            blobs.push((d, kind, Bytes::from(data)));
        }
        blobs
    };
    if blobs.is_empty() {
        return Err(bad("the image has no layers added by ciao"));
    }
    let dest = dest.to_path_buf();
    tokio::task::spawn_blocking(move || unpack_all(&blobs, &dest))
        .await
        .map_err(|e| ImageError::Unsupported(format!("unpacking stopped: {e}")))?
}

/// A layout blob, checked against its digest.
fn read_blob(dir: &Path, digest: &str) -> Result<Bytes, ImageError> {
    let path = layout::blob_path(dir, digest)?;
    let data = std::fs::read(&path).map_err(|source| ImageError::Io { what: "cannot read".into(), path: path.clone(), source })?;
    let actual = sha256_digest(&data);
    if actual != digest {
        return Err(ImageError::Digest { what: format!("the blob {}", path.display()), expected: digest.to_string(), actual });
    }
    Ok(Bytes::from(data))
}

fn unpack_all(blobs: &[(Descriptor, LayerKind, Bytes)], dest: &Path) -> Result<Vec<PathBuf>, ImageError> {
    let io = |path: &Path, source: std::io::Error| ImageError::Io { what: "cannot unpack into".into(), path: path.to_path_buf(), source };
    std::fs::create_dir_all(dest).map_err(|e| io(dest, e))?;
    let mut files = Vec::new();
    for (d, _, data) in blobs {
        let actual = sha256_digest(data);
        if actual != d.digest {
            return Err(ImageError::Digest { what: "a ciao layer".into(), expected: d.digest.clone(), actual });
        }
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(data.as_ref()));
        archive.set_preserve_mtime(false);
        archive.set_overwrite(true);
        for entry in archive.entries().map_err(|e| io(dest, e))? {
            let mut entry = entry.map_err(|e| io(dest, e))?;
            let is_file = entry.header().entry_type().is_file();
            let path = entry.path().map_err(|e| io(dest, e))?.to_path_buf();
            // unpack_in refuses paths that would leave `dest`.
            if entry.unpack_in(dest).map_err(|e| io(dest, e))? && is_file {
                files.push(dest.join(path));
            }
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn ciao_layers_are_found_from_the_end_of_the_history() {
        let layer = |i: u32| json!({"mediaType": manifest::OCI_LAYER_GZIP, "digest": format!("sha256:{i:064}"), "size": i});
        let manifest = json!({"config": {"mediaType": manifest::OCI_CONFIG, "digest": format!("sha256:{:064}", 9), "size": 1},
            "layers": [layer(1), layer(2), layer(3)]});
        // The base's history lacks an entry for its first layer; an empty layer is skipped.
        let config = json!({"history": [
            {"created_by": "base"},
            {"created_by": "ENV x", "empty_layer": true},
            {"created_by": "ciao", "comment": "io.kubeflow.ciao.layer=files"},
            {"created_by": "ciao", "comment": "io.kubeflow.ciao.layer=code"},
        ]});
        let got = added_layers(&manifest, &config).unwrap();
        let got: Vec<_> = got.iter().map(|(d, k)| (d.size, *k)).collect();
        assert_eq!(got, [(2, LayerKind::Files), (3, LayerKind::Code)]);
    }
}
