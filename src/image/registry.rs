//! Publishing to a registry repository.
//!
//! Base layers are never uploaded from memory and never downloaded when the
//! registry can avoid it: in the base's own repository they are already
//! there; in another repository of the same registry they are mounted
//! (falling back to a streamed copy when the registry refuses the mount);
//! from another registry they are streamed across, digest-verified, with
//! bounded memory. A session remembers which blobs each repository has, so a
//! warm cell sends only its code layer, its config and the manifest.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};

use super::client::{BytesFn, Mount, Session};
use super::error::ImageError;
use super::mutate::Image;
use super::layer::Layer;
use super::progress::{BlobAction, Progress, ProgressFn};
use super::target::{PublishContext, Published, Publisher};

/// Concurrent blob transfers of one publish.
const PARALLEL_BLOBS: usize = 6;

/// The blobs known to be in each repository (`registry/repository` →
/// digests). A repository with an entry is "warm": a blob it lacks is
/// uploaded without asking first.
#[derive(Default)]
pub struct KnownBlobs {
    repos: Mutex<HashMap<String, HashSet<String>>>,
}

impl KnownBlobs {
    fn get(&self, key: &str) -> Option<HashSet<String>> {
        self.repos.lock().expect("known blobs lock").get(key).cloned()
    }

    fn add(&self, key: &str, digests: impl IntoIterator<Item = String>) {
        self.repos.lock().expect("known blobs lock").entry(key.to_string()).or_default().extend(digests);
    }
}

/// A registry repository as a publishing target.
pub struct RegistryPublisher {
    pub session: Arc<Session>,
    pub repository: String,
    /// `registries.<host>.pullPrefix`: the registry's name on cluster nodes.
    pub pull_prefix: Option<String>,
    pub known: Arc<KnownBlobs>,
}

/// What to do with one blob.
enum Step {
    Present,
    Check,
    Upload(Bytes),
    CheckThenUpload(Bytes),
    Mount,
    CheckThenCopy,
}

impl RegistryPublisher {
    /// A publisher for `session`'s `repository`.
    pub fn new(session: Arc<Session>, repository: String, pull_prefix: Option<String>, known: Arc<KnownBlobs>) -> Self {
        RegistryPublisher { session, repository, pull_prefix, known }
    }

    fn key(&self) -> String {
        format!("{}/{}", self.session.registry, self.repository)
    }

    /// Whether this session has pushed to the repository before (it then
    /// knows which blobs the repository has and asks no more).
    pub fn is_warm(&self) -> bool {
        self.known.get(&self.key()).is_some()
    }

    /// Checks (`HEAD`) which of ciao's own layers the repository already has;
    /// runs while the base is resolved. Returns the digests present.
    pub async fn check_layers(&self, layers: &[Layer], progress: &ProgressFn) -> Result<HashSet<String>, ImageError> {
        let repo = self.repository.as_str();
        let checks = layers.iter().map(|l| async move {
            let present = self.session.blob_exists(repo, &l.digest).await?;
            if present {
                progress(&Progress::Blob { digest: l.digest.clone(), size: l.size(), action: BlobAction::Present });
            }
            Ok::<_, ImageError>((l.digest.clone(), present))
        });
        Ok(futures::future::try_join_all(checks).await?.into_iter().filter(|(_, p)| *p).map(|(d, _)| d).collect())
    }

    /// Uploads ciao's own layers the (warm) repository lacks; they do not
    /// depend on the base, so this runs while the base tag is checked (see
    /// [`RegistryPublisher::publish_after`]).
    pub async fn push_layers(&self, layers: &[Layer], progress: &ProgressFn) -> Result<(), ImageError> {
        let known = self.known.get(&self.key()).unwrap_or_default();
        let repo = self.repository.as_str();
        let uploads = layers.iter().map(|l| {
            let present = known.contains(&l.digest);
            async move {
                let action = if present {
                    BlobAction::Present
                } else {
                    self.session.upload(repo, &l.digest, &l.blob).await?;
                    BlobAction::Uploaded
                };
                progress(&Progress::Blob { digest: l.digest.clone(), size: l.size(), action });
                Ok::<_, ImageError>(())
            }
        });
        futures::future::try_join_all(uploads).await?;
        Ok(())
    }
}

/// What a publish already knows about some blobs.
#[derive(Debug, Clone, Default)]
pub struct Hints {
    /// Taken care of elsewhere (present, or uploaded by a pending future).
    pub handled: HashSet<String>,
    /// Known to be missing: uploaded without asking first.
    pub absent: HashSet<String>,
    /// The config is new (it names a layer the repository did not have):
    /// uploaded without asking first.
    pub config_is_new: bool,
}

#[async_trait]
impl Publisher for RegistryPublisher {
    fn describe(&self) -> String {
        format!("{}/{}", self.session.registry, self.repository)
    }

    async fn publish(&self, image: &Image, tag: &str, ctx: &PublishContext) -> Result<Published, ImageError> {
        self.publish_after(image, tag, ctx, &Hints::default(), async { Ok(()) }).await
    }
}

impl RegistryPublisher {
    /// [`Publisher::publish`] with `hints`; the blobs in `hints.handled` are
    /// put in place by `pending` (e.g. [`RegistryPublisher::push_layers`]
    /// started earlier): the other blobs go meanwhile, the manifest after both.
    pub async fn publish_after(
        &self,
        image: &Image,
        tag: &str,
        ctx: &PublishContext,
        hints: &Hints,
        pending: impl std::future::Future<Output = Result<(), ImageError>> + Send,
    ) -> Result<Published, ImageError> {
        let repo = self.repository.as_str();
        let known = self.known.get(&self.key());
        let warm = known.is_some();
        let known = known.unwrap_or_default();
        let base = ctx.base.as_ref();
        let same_registry = base.is_some_and(|b| Arc::ptr_eq(&b.session, &self.session));
        let same_repo = same_registry && base.is_some_and(|b| b.repository == repo);

        // Decide each blob's fate; the config goes with the layers.
        let mut jobs: Vec<(String, u64, Step, bool)> = Vec::new();
        for l in &image.layers {
            let d = &l.descriptor;
            if (l.data.is_none() && d.is_foreign()) || hints.handled.contains(&d.digest) {
                continue;
            }
            let step = if known.contains(&d.digest) || (l.data.is_none() && same_repo) {
                Step::Present
            } else {
                match (&l.data, same_registry) {
                    (Some(b), _) if warm || hints.absent.contains(&d.digest) => Step::Upload(b.clone()),
                    (Some(b), _) => Step::CheckThenUpload(b.clone()),
                    (None, true) => Step::Mount,
                    (None, false) if base.is_some() => Step::CheckThenCopy,
                    (None, false) => Step::Check,
                }
            };
            jobs.push((d.digest.clone(), d.size, step, l.data.is_none()));
        }
        let cd = &image.config_descriptor;
        let config_step = if known.contains(&cd.digest) {
            Step::Present
        } else if warm || hints.config_is_new {
            Step::Upload(image.config.clone())
        } else {
            Step::CheckThenUpload(image.config.clone())
        };
        jobs.push((cd.digest.clone(), cd.size, config_step, false));
        if same_registry && let Some(b) = base {
            // One token for the whole publish: the target and the base's repository.
            self.session.prepare(&[super::auth::Scope::push(repo), super::auth::Scope::pull(&b.repository)]).await?;
        }

        let progress = &ctx.progress;
        let blobs = futures::stream::iter(jobs.into_iter().map(|(digest, size, step, is_base)| {
            let progress = progress.clone();
            async move {
                let action = self.transfer(repo, &digest, size, step, is_base, image, ctx).await?;
                progress(&Progress::Blob { digest: digest.clone(), size, action });
                Ok::<_, ImageError>(action)
            }
        }))
        .buffer_unordered(PARALLEL_BLOBS)
        .try_collect::<Vec<BlobAction>>();
        futures::try_join!(blobs, pending)?;

        self.session.put_manifest(repo, tag, &image.manifest, image.manifest_media_type()).await?;
        let mut digests: Vec<String> = image.layers.iter().map(|l| l.descriptor.digest.clone()).collect();
        digests.push(cd.digest.clone());
        self.known.add(&self.key(), digests);

        let reference = format!("{}/{repo}:{tag}@{}", self.session.registry, image.manifest_digest);
        let pull_reference = match &self.pull_prefix {
            Some(p) => format!("{}/{repo}:{tag}@{}", p.trim_end_matches('/'), image.manifest_digest),
            None => reference.clone(),
        };
        Ok(Published { reference, pull_reference, digest: image.manifest_digest.clone(), tag: tag.to_string() })
    }
}

impl RegistryPublisher {
    #[allow(clippy::too_many_arguments)]
    async fn transfer(
        &self,
        repo: &str,
        digest: &str,
        size: u64,
        step: Step,
        is_base: bool,
        image: &Image,
        ctx: &PublishContext,
    ) -> Result<BlobAction, ImageError> {
        let s = &self.session;
        match step {
            Step::Present => Ok(BlobAction::Present),
            Step::Check => {
                if s.blob_exists(repo, digest).await? {
                    Ok(BlobAction::Present)
                } else {
                    Err(ImageError::Transfer {
                        registry: s.registry.clone(),
                        what: format!("publishing to {repo}"),
                        why: format!("the base layer {digest} is not in the repository and there is no base registry to copy it from"),
                    })
                }
            }
            Step::Upload(b) => s.upload(repo, digest, &b).await.map(|_| BlobAction::Uploaded),
            Step::CheckThenUpload(b) => {
                if s.blob_exists(repo, digest).await? {
                    Ok(BlobAction::Present)
                } else {
                    s.upload(repo, digest, &b).await.map(|_| BlobAction::Uploaded)
                }
            }
            Step::Mount => {
                let base = ctx.base.as_ref().expect("mounts only with a base");
                match s.mount(repo, &base.repository, digest).await? {
                    Mount::Mounted => Ok(BlobAction::Mounted),
                    Mount::Refused => self.copy(repo, digest, size, image, ctx).await,
                }
            }
            Step::CheckThenCopy => {
                debug_assert!(is_base);
                if s.blob_exists(repo, digest).await? {
                    Ok(BlobAction::Present)
                } else {
                    self.copy(repo, digest, size, image, ctx).await
                }
            }
        }
    }

    async fn copy(&self, repo: &str, digest: &str, size: u64, image: &Image, ctx: &PublishContext) -> Result<BlobAction, ImageError> {
        let base = ctx.base.as_ref().expect("copies only with a base");
        let d = image
            .layers
            .iter()
            .map(|l| &l.descriptor)
            .find(|d| d.digest == digest)
            .expect("copied blobs are layers of the image");
        let progress = ctx.progress.clone();
        let owned = digest.to_string();
        let bytes: BytesFn = Arc::new(move |done| progress(&Progress::Bytes { digest: owned.clone(), done, total: size }));
        self.session.copy_from(repo, d, &base.session, &base.repository, bytes).await?;
        Ok(BlobAction::Copied)
    }
}
