//! Fetching a base image: its manifest (through an index to the wanted
//! platform) and its config, never its layers; cached by digest so a warm
//! kernel only checks whether the base tag moved (one `HEAD`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::auth::Scope;
use super::client::{FetchedManifest, Session};
use super::error::ImageError;
use super::manifest::{self, Descriptor, Document};
use super::mutate::BaseImage;
use super::progress::{Progress, ProgressFn};
use super::reference::{ImageRef, Platform};

/// Bases fetched so far: tag → top-level digest, and (digest, platform) →
/// the base. Lives as long as the builder (a kernel session).
#[derive(Default)]
pub struct BaseCache {
    tags: Mutex<HashMap<String, String>>,
    images: Mutex<HashMap<(String, String), Arc<BaseImage>>>,
}

impl BaseCache {
    fn tag_digest(&self, key: &str) -> Option<String> {
        self.tags.lock().expect("base cache lock").get(key).cloned()
    }

    fn image(&self, digest: &str, platform: &Platform) -> Option<Arc<BaseImage>> {
        self.images.lock().expect("base cache lock").get(&(digest.to_string(), platform.to_string())).cloned()
    }

    fn remember(&self, tag_key: Option<String>, digest: &str, platform: &Platform, base: Arc<BaseImage>) {
        if let Some(k) = tag_key {
            self.tags.lock().expect("base cache lock").insert(k, digest.to_string());
        }
        self.images.lock().expect("base cache lock").insert((digest.to_string(), platform.to_string()), base);
    }
}

/// What to fetch: `name` as the plan names it (for the provenance label),
/// `source` where it really is (after the mirror map).
pub struct BaseRequest<'a> {
    pub name: &'a ImageRef,
    pub source: &'a ImageRef,
    pub platform: &'a Platform,
}

/// Resolves the base: from the cache when its tag still points at the same
/// digest, else from the registry.
///
/// # Errors
/// Unknown base or tag, no such platform, a manifest ciao cannot extend,
/// and any registry error.
pub async fn resolve(session: &Session, cache: &BaseCache, req: &BaseRequest<'_>, progress: &ProgressFn) -> Result<Arc<BaseImage>, ImageError> {
    let src = req.source;
    let repo = src.repository.as_str();
    let scopes = [Scope::pull(repo)];
    let not_found = |why: String| ImageError::NotFound {
        reference: req.name.to_string(),
        mirror: (src != req.name).then(|| src.to_string()),
        why,
    };
    let bad = |why: String| ImageError::BadBase { reference: src.to_string(), why };
    progress(&Progress::Resolving { reference: req.name.to_string() });

    // The top-level digest (index or manifest), and its body when fetched.
    let tag_key = src.digest.is_none().then(|| src.to_string());
    let (top, mut fetched): (String, Option<FetchedManifest>) = match (&src.digest, &tag_key) {
        (Some(d), _) => (d.clone(), None),
        (None, Some(key)) => match cache.tag_digest(key) {
            Some(_) => match session.head_manifest(repo, src.reference(), &scopes).await? {
                Some(Some(d)) => (d, None),
                Some(None) => {
                    // No digest header: read the manifest to learn it.
                    let m = session
                        .get_manifest(repo, src.reference(), &scopes)
                        .await?
                        .ok_or_else(|| not_found(format!("{} has no tag {}", src.name(), src.reference())))?;
                    (m.digest.clone(), Some(m))
                }
                None => return Err(not_found(format!("{} has no tag {}", src.name(), src.reference()))),
            },
            None => {
                let m = session
                    .get_manifest(repo, src.reference(), &scopes)
                    .await?
                    .ok_or_else(|| not_found(format!("{} has no tag {}", src.name(), src.reference())))?;
                (m.digest.clone(), Some(m))
            }
        },
        (None, None) => unreachable!("a reference without a digest has a tag key"),
    };

    if let Some(b) = cache.image(&top, req.platform) {
        cache.remember(tag_key, &top, req.platform, b.clone());
        progress(&Progress::BaseResolved {
            reference: req.name.to_string(),
            digest: b.digest.clone().unwrap_or_default(),
            platform: req.platform.to_string(),
            cached: true,
        });
        return Ok(b);
    }

    if fetched.is_none() {
        let m = session
            .get_manifest(repo, &top, &scopes)
            .await?
            .ok_or_else(|| not_found(format!("{} has no manifest {top}", src.name())))?;
        fetched = Some(m);
    }
    let first = fetched.expect("fetched above");
    if src.digest.is_some() && first.digest != top {
        return Err(ImageError::Digest { what: format!("the manifest of {src}"), expected: top, actual: first.digest });
    }
    let (family, manifest_value, digest) = match manifest::classify(&first.body, first.content_type.as_deref()).map_err(|p| bad(p.0))? {
        Document::Image { family, manifest } => (family, manifest, first.digest.clone()),
        Document::Index { index, .. } => {
            let d: Descriptor = manifest::resolve_index(&index, req.platform).map_err(|available| ImageError::NoPlatform {
                reference: req.name.to_string(),
                platform: req.platform.to_string(),
                available,
            })?;
            let m = session
                .get_manifest(repo, &d.digest, &scopes)
                .await?
                .ok_or_else(|| not_found(format!("its index names {} for {}, which the registry does not have", d.digest, req.platform)))?;
            if m.digest != d.digest {
                return Err(ImageError::Digest { what: format!("the {} manifest of {src}", req.platform), expected: d.digest, actual: m.digest });
            }
            match manifest::classify(&m.body, m.content_type.as_deref()).map_err(|p| bad(p.0))? {
                Document::Image { family, manifest } => (family, manifest, m.digest),
                Document::Index { .. } => return Err(bad("its index points at another index, which ciao does not follow".into())),
            }
        }
    };
    let (config_descriptor, _) = manifest::parts(&manifest_value).map_err(|p| bad(p.0))?;
    let config = session.get_blob(repo, &config_descriptor, &scopes).await?;
    let pinned = src.with_digest(&digest);
    let base = BaseImage::new(req.name.to_string(), pinned, digest.clone(), req.platform.clone(), family, manifest_value, &config)
        .map_err(|p| bad(p.0))?;
    let base = Arc::new(base);
    cache.remember(tag_key, &top, req.platform, base.clone());
    progress(&Progress::BaseResolved {
        reference: req.name.to_string(),
        digest,
        platform: req.platform.to_string(),
        cached: false,
    });
    Ok(base)
}
