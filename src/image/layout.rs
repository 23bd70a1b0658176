//! Publishing to an OCI image layout directory (the default target when no
//! registry is configured), readable by `skopeo copy oci:DIR:REF` and umoci.
//!
//! The layout is self-contained: base layers are streamed into it from the
//! base's registry (digest-verified, never held in memory). Every file is
//! written to a temporary name and renamed, and `index.json` goes last, under
//! a lock, so a reader never sees a reference to a missing blob.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use super::error::ImageError;
use super::manifest::{Descriptor, OCI_INDEX};
use super::mutate::Image;
use super::progress::{BlobAction, Progress};
use super::target::{PublishContext, Published, Publisher};

/// The annotation naming an image in `index.json`.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// Concurrent blob writes of one publish.
const PARALLEL_BLOBS: usize = 4;

/// An OCI image layout directory and the name images get in it.
pub struct LayoutPublisher {
    pub dir: PathBuf,
    /// The image name without tag, e.g. `ciao/python`; the index entry's
    /// `ref.name` is `NAME:TAG`.
    pub name: String,
}

fn io_err(what: &str, path: &Path, source: std::io::Error) -> ImageError {
    ImageError::Io { what: what.to_string(), path: path.to_path_buf(), source }
}

/// `blobs/sha256/<hex>` of a digest.
pub fn blob_path(dir: &Path, digest: &str) -> Result<PathBuf, ImageError> {
    let (alg, hex) = digest.split_once(':').ok_or_else(|| ImageError::Layout { dir: dir.to_path_buf(), why: format!("{digest:?} is not a digest") })?;
    if alg != "sha256" || hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(ImageError::Layout { dir: dir.to_path_buf(), why: format!("{digest:?} is not a sha256 digest") });
    }
    Ok(dir.join("blobs").join(alg).join(hex))
}

/// A unique temporary name next to `path`.
fn temp_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    path.with_file_name(format!(".tmp-{name}-{}-{}", std::process::id(), uuid::Uuid::new_v4().simple()))
}

/// Writes `data` to `path` through a temporary file and a rename.
pub async fn write_atomic(path: &Path, data: &[u8]) -> Result<(), ImageError> {
    let tmp = temp_path(path);
    let result = async {
        tokio::fs::write(&tmp, data).await?;
        tokio::fs::rename(&tmp, path).await
    }
    .await;
    if let Err(e) = result {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(io_err("cannot write", path, e));
    }
    Ok(())
}

/// Whether the blob is already in the layout (content-addressed: the right
/// size under the right name is the blob).
async fn have_blob(path: &Path, size: u64) -> bool {
    tokio::fs::metadata(path).await.is_ok_and(|m| m.len() == size)
}

impl LayoutPublisher {
    async fn write_blob(&self, d: &Descriptor, data: Option<&Bytes>, ctx: &PublishContext) -> Result<BlobAction, ImageError> {
        let path = blob_path(&self.dir, &d.digest)?;
        if have_blob(&path, d.size).await {
            return Ok(BlobAction::Present);
        }
        if let Some(data) = data {
            write_atomic(&path, data).await?;
            return Ok(BlobAction::Uploaded);
        }
        let Some(base) = &ctx.base else {
            return Err(ImageError::Layout {
                dir: self.dir.clone(),
                why: format!("the base layer {} is missing and there is no base registry to copy it from", d.digest),
            });
        };
        let scopes = [super::auth::Scope::pull(&base.repository)];
        let mut stream = base.session.blob_stream(&base.repository, d, &scopes).await?;
        let tmp = temp_path(&path);
        let copied = async {
            let mut f = tokio::fs::File::create(&tmp).await.map_err(|e| io_err("cannot create", &tmp, e))?;
            let mut done = 0u64;
            let mut reported = 0u64;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| ImageError::Transfer {
                    registry: base.session.registry.clone(),
                    what: format!("copying the base layer {} into {}", d.digest, self.dir.display()),
                    why: e.to_string(),
                })?;
                f.write_all(&chunk).await.map_err(|e| io_err("cannot write", &tmp, e))?;
                done += chunk.len() as u64;
                if done - reported >= 4 << 20 {
                    reported = done;
                    (ctx.progress)(&Progress::Bytes { digest: d.digest.clone(), done, total: d.size });
                }
            }
            f.flush().await.map_err(|e| io_err("cannot write", &tmp, e))?;
            drop(f);
            tokio::fs::rename(&tmp, &path).await.map_err(|e| io_err("cannot write", &path, e))
        }
        .await;
        if copied.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        copied.map(|_| BlobAction::Copied)
    }
}

#[async_trait]
impl Publisher for LayoutPublisher {
    fn describe(&self) -> String {
        format!("oci:{}:{}", self.dir.display(), self.name)
    }

    async fn publish(&self, image: &Image, tag: &str, ctx: &PublishContext) -> Result<Published, ImageError> {
        let blobs = self.dir.join("blobs").join("sha256");
        tokio::fs::create_dir_all(&blobs).await.map_err(|e| io_err("cannot create the image layout", &blobs, e))?;
        let marker = self.dir.join("oci-layout");
        if tokio::fs::metadata(&marker).await.is_err() {
            write_atomic(&marker, br#"{"imageLayoutVersion":"1.0.0"}"#).await?;
        }

        let jobs: Vec<(Descriptor, Option<Bytes>)> = image
            .layers
            .iter()
            .filter(|l| l.data.is_some() || !l.descriptor.is_foreign())
            .map(|l| (l.descriptor.clone(), l.data.clone()))
            .chain(std::iter::once((image.config_descriptor.clone(), Some(image.config.clone()))))
            .collect();
        let futures: Vec<_> = jobs
            .into_iter()
            .map(|(d, data)| {
                Box::pin(async move {
                    let action = self.write_blob(&d, data.as_ref(), ctx).await?;
                    (ctx.progress)(&Progress::Blob { digest: d.digest.clone(), size: d.size, action });
                    Ok::<_, ImageError>(())
                }) as std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), ImageError>> + Send + '_>>
            })
            .collect();
        futures::stream::iter(futures)
        .buffer_unordered(PARALLEL_BLOBS)
        .try_collect::<Vec<()>>()
        .await?;
        write_atomic(&blob_path(&self.dir, &image.manifest_digest)?, &image.manifest).await?;

        let ref_name = format!("{}:{tag}", self.name);
        self.update_index(&ref_name, image).await?;
        let reference = format!("oci:{}:{ref_name}@{}", self.dir.display(), image.manifest_digest);
        Ok(Published { pull_reference: reference.clone(), reference, digest: image.manifest_digest.clone(), tag: tag.to_string() })
    }
}

impl LayoutPublisher {
    /// Points `ref_name` at the image in `index.json`, under an exclusive
    /// lock so concurrent kernels do not lose each other's entries.
    async fn update_index(&self, ref_name: &str, image: &Image) -> Result<(), ImageError> {
        let dir = self.dir.clone();
        let entry = json!({
            "mediaType": image.manifest_media_type(),
            "digest": image.manifest_digest,
            "size": image.manifest.len(),
            "annotations": {REF_NAME: ref_name},
        });
        let ref_name = ref_name.to_string();
        tokio::task::spawn_blocking(move || -> Result<(), ImageError> {
            let lock_path = dir.join(".ciao-index.lock");
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&lock_path)
                .map_err(|e| io_err("cannot open the lock", &lock_path, e))?;
            let _lock = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
                .map_err(|(_, e)| io_err("cannot lock", &lock_path, std::io::Error::from(e)))?;
            let index_path = dir.join("index.json");
            let mut index: Value = match std::fs::read(&index_path) {
                Ok(b) => serde_json::from_slice(&b).map_err(|e| ImageError::Layout { dir: dir.clone(), why: format!("index.json is not JSON: {e}") })?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}),
                Err(e) => return Err(io_err("cannot read", &index_path, e)),
            };
            let manifests = index
                .get_mut("manifests")
                .and_then(Value::as_array_mut)
                .ok_or_else(|| ImageError::Layout { dir: dir.clone(), why: "index.json has no manifests list".into() })?;
            manifests.retain(|m| m.pointer(&format!("/annotations/{}", REF_NAME.replace('/', "~1"))).and_then(Value::as_str) != Some(ref_name.as_str()));
            manifests.push(entry);
            let bytes = serde_json::to_vec(&index).expect("JSON values serialise");
            let tmp = temp_path(&index_path);
            std::fs::write(&tmp, &bytes)
                .and_then(|_| std::fs::File::open(&tmp)?.sync_all())
                .and_then(|_| std::fs::rename(&tmp, &index_path))
                .map_err(|e| {
                    let _ = std::fs::remove_file(&tmp);
                    io_err("cannot write", &index_path, e)
                })
        })
        .await
        .map_err(|e| ImageError::Layout { dir: self.dir.clone(), why: format!("the index update stopped: {e}") })?
    }
}

/// Reads `index.json` and finds the manifest descriptor named `ref_name`.
pub fn find_ref(dir: &Path, ref_name: &str) -> Result<Descriptor, ImageError> {
    let path = dir.join("index.json");
    let bytes = std::fs::read(&path).map_err(|e| io_err("cannot read", &path, e))?;
    let index: Value = serde_json::from_slice(&bytes).map_err(|e| ImageError::Layout { dir: dir.to_path_buf(), why: format!("index.json is not JSON: {e}") })?;
    index
        .get("manifests")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|m| m.get("annotations").and_then(|a| a.get(REF_NAME)).and_then(Value::as_str) == Some(ref_name))
        .and_then(|m| serde_json::from_value(m.clone()).ok())
        .ok_or_else(|| ImageError::Layout { dir: dir.to_path_buf(), why: format!("no image named {ref_name:?} in index.json") })
}
