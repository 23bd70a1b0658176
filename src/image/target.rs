//! Where a built image goes, behind one interface (ko's build/publish
//! split): the builder makes an in-memory [`Image`]; a [`Publisher`] writes
//! it somewhere and says where. One file per publisher: `registry.rs`,
//! `layout.rs`.

use std::sync::Arc;

use async_trait::async_trait;

use super::client::Session;
use super::error::ImageError;
use super::mutate::Image;
use super::progress::ProgressFn;

/// Where the base image's layers can be read, for publishers that must copy
/// them (another registry, a layout).
#[derive(Clone)]
pub struct BlobSource {
    pub session: Arc<Session>,
    pub repository: String,
}

/// What a publisher needs besides the image.
#[derive(Clone)]
pub struct PublishContext {
    /// The base's registry and repository; `None` for the empty base.
    pub base: Option<BlobSource>,
    pub progress: ProgressFn,
}

/// Where an image was published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// `HOST/REPO:TAG@sha256:…`, or `oci:DIR:NAME:TAG@sha256:…` for a layout.
    pub reference: String,
    /// The reference jobs use (`pullPrefix` applied); the same as
    /// `reference` when no prefix is configured.
    pub pull_reference: String,
    /// The manifest digest.
    pub digest: String,
    pub tag: String,
}

/// Writes an image: every blob first, the manifest (or index entry) last,
/// so a failure or an interrupt never leaves a name pointing at missing
/// blobs.
#[async_trait]
pub trait Publisher: Send + Sync {
    /// The destination, for messages.
    fn describe(&self) -> String;

    /// Publishes `image` under `tag`.
    async fn publish(&self, image: &Image, tag: &str, ctx: &PublishContext) -> Result<Published, ImageError>;
}
