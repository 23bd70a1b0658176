//! The builder: plan + code → image published to the plan's target.
//!
//! One [`Builder`] lives as long as a kernel session; it keeps registry
//! sessions (connections, tokens), fetched bases and the blobs each
//! repository is known to have, so a warm cell costs a handful of requests.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Env};
use crate::plan::{ImageTarget, Plan};

use super::auth::{Keychain, Scope};
use super::base::{self, BaseCache, BaseRequest};
use super::client::{Session, SessionOptions};
use super::error::ImageError;
use super::layer::{Layer, LayerKind, code_bundle, source_date_epoch};
use super::layout::LayoutPublisher;
use super::mutate::{BaseImage, ConfigEdit, append, rfc3339};
use super::progress::{BlobAction, Counters, Progress, ProgressFn, Summary};
use super::reference::{ImageRef, Platform};
use super::registry::{Hints, KnownBlobs, RegistryPublisher};
use super::target::{BlobSource, PublishContext, Publisher};

/// Default connect/read timeout of registry requests.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Settings a build takes from the environment.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// `SOURCE_DATE_EPOCH`: file times and `created`; unset: 0 and the base's.
    pub source_date_epoch: Option<u64>,
    /// `CIAO_REGISTRY_TIMEOUT` (seconds).
    pub timeout: Duration,
    /// `DOCKER_CONFIG` and `HOME`, for the docker credential files.
    pub env: BTreeMap<String, String>,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions { source_date_epoch: None, timeout: DEFAULT_TIMEOUT, env: BTreeMap::new() }
    }
}

impl BuildOptions {
    /// Reads `SOURCE_DATE_EPOCH`, `CIAO_REGISTRY_TIMEOUT`, `DOCKER_CONFIG`, `HOME`.
    ///
    /// # Errors
    /// A value that is not a number.
    pub fn from_env(env: &dyn Env) -> Result<BuildOptions, ImageError> {
        let timeout = match env.var("CIAO_REGISTRY_TIMEOUT") {
            None => DEFAULT_TIMEOUT,
            Some(v) => match v.trim().parse::<f64>() {
                Ok(s) if s > 0.0 && s.is_finite() => Duration::from_secs_f64(s),
                _ => {
                    return Err(ImageError::InvalidSetting {
                        name: "CIAO_REGISTRY_TIMEOUT".into(),
                        value: v,
                        why: "it must be a positive number of seconds".into(),
                    });
                }
            },
        };
        let env_map = ["DOCKER_CONFIG", "HOME"].iter().filter_map(|k| env.var(k).map(|v| (k.to_string(), v))).collect();
        Ok(BuildOptions { source_date_epoch: source_date_epoch(env.var("SOURCE_DATE_EPOCH").as_deref())?, timeout, env: env_map })
    }
}

/// What a build produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildResult {
    /// `HOST/REPO:TAG@sha256:…`, or `oci:DIR:NAME:TAG@sha256:…`.
    pub reference: String,
    /// The reference jobs use (`pullPrefix` applied).
    pub pull_reference: String,
    /// The manifest digest.
    pub digest: String,
    pub tag: String,
    /// The base as the plan names it, and the digest it resolved to
    /// (`None`: built on the empty base).
    pub base: String,
    pub base_digest: Option<String>,
    /// The image's `Cmd` (the launcher first when the cell has `%packages`).
    pub command: Vec<String>,
    pub launcher: Option<String>,
    /// The cell's content digest.
    pub cell_digest: String,
    pub summary: Summary,
}

/// Blob outcomes of one build.
#[derive(Default)]
struct Tally {
    uploaded: AtomicU64,
    copied: AtomicU64,
    mounted: AtomicU64,
    present: AtomicU64,
}

/// Builds and publishes cells; keep one per session.
#[derive(Default)]
pub struct Builder {
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    bases: BaseCache,
    known: Arc<KnownBlobs>,
    counters: Arc<Counters>,
}

impl Builder {
    pub fn new() -> Builder {
        Builder::default()
    }

    /// Requests sent so far by this builder (all sessions).
    pub fn requests(&self) -> u64 {
        self.counters.snapshot().0
    }

    /// Builds the image of a job cell (`code` with its magic lines blanked)
    /// and publishes it to the plan's target. Interrupting (`cancel`) stops
    /// promptly; the manifest is written last, so no tag points at missing
    /// blobs.
    ///
    /// # Errors
    /// Anything in [`ImageError`]; every message names the fix.
    pub async fn build(
        &self,
        plan: &Plan,
        code: &str,
        config: &Config,
        options: &BuildOptions,
        progress: ProgressFn,
        cancel: &CancellationToken,
    ) -> Result<BuildResult, ImageError> {
        self.build_with_layers(plan, code, &[], config, options, progress, cancel).await
    }

    /// [`Builder::build`] with more layers of ciao's own (`%module`,
    /// `%files`; see [`Layer::from_files`]) placed before the code layer.
    ///
    /// # Errors
    /// As [`Builder::build`].
    #[allow(clippy::too_many_arguments)]
    pub async fn build_with_layers(
        &self,
        plan: &Plan,
        code: &str,
        extra: &[Layer],
        config: &Config,
        options: &BuildOptions,
        progress: ProgressFn,
        cancel: &CancellationToken,
    ) -> Result<BuildResult, ImageError> {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => Err(ImageError::Cancelled),
            r = self.build_now(plan, code, extra, config, options, progress) => r,
        }
    }

    async fn build_now(
        &self,
        plan: &Plan,
        code: &str,
        extra: &[Layer],
        config: &Config,
        options: &BuildOptions,
        progress: ProgressFn,
    ) -> Result<BuildResult, ImageError> {
        let started = Instant::now();
        let (requests0, bytes0) = self.counters.snapshot();
        let tally = Arc::new(Tally::default());
        let report: ProgressFn = {
            let tally = tally.clone();
            let inner = progress.clone();
            Arc::new(move |p: &Progress| {
                if let Progress::Blob { action, .. } = p {
                    let c = match action {
                        BlobAction::Uploaded => &tally.uploaded,
                        BlobAction::Copied => &tally.copied,
                        BlobAction::Mounted => &tally.mounted,
                        BlobAction::Present => &tally.present,
                    };
                    c.fetch_add(1, Ordering::Relaxed);
                }
                inner(p)
            })
        };

        enum Dest {
            Registry { target: ImageRef, tag: Option<String> },
            Layout { dir: PathBuf, name: String },
        }
        let dest = match &plan.target {
            ImageTarget::Registry { repository, tag } => {
                let target = ImageRef::parse(repository)?;
                if target.plain_http && !config.is_insecure(&target.registry) {
                    return Err(ImageError::InsecureRefused { registry: target.registry, why: "was named with http://".into() });
                }
                Dest::Registry { target, tag: tag.clone() }
            }
            ImageTarget::Layout { dir, name } => Dest::Layout { dir: dir.clone(), name: name.clone() },
            ImageTarget::ConfigMap => {
                return Err(ImageError::Unsupported(
                    "the configmap provider ships the code without an image; the backend mounts it (use %provider=image to build one)"
                        .into(),
                ));
            }
        };

        let bundle = code_bundle(plan, code);
        let code_layer = Layer::from_files(LayerKind::Code, &bundle.files, options.source_date_epoch.unwrap_or(0))?;
        // Layers that change least go first: modules and files, then the code.
        let layers: Vec<Layer> = extra.iter().cloned().chain(std::iter::once(code_layer)).collect();
        let d = &plan.framework;
        let edit = ConfigEdit {
            cmd: bundle.command.clone(),
            workdir: d.workdir.clone(),
            env: d.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            labels: Vec::new(),
            created: options.source_date_epoch.map(rfc3339),
        };
        let platform = Platform::parse(&config.platform)?;

        let name = ImageRef::parse(&plan.base_image)?;
        let source = name.mirrored(&config.mirrors).unwrap_or_else(|| name.clone());
        if source.plain_http && !config.is_insecure(&source.registry) {
            return Err(ImageError::InsecureRefused { registry: source.registry, why: "was named with http://".into() });
        }
        let base_session = self.session(&source.registry, config, options)?;
        if let Dest::Registry { target, .. } = &dest
            && target.registry == source.registry
        {
            // One token covers fetching the base, mounting from it and pushing.
            base_session.prepare(&[Scope::push(&target.repository), Scope::pull(&source.repository)]).await?;
        }
        let request = BaseRequest { name: &name, source: &source, platform: &platform };
        let resolve = base::resolve(&base_session, &self.bases, &request, &report);

        let (image, published) = match dest {
            Dest::Registry { target, tag } => {
                let image;
                let session = self.session(&target.registry, config, options)?;
                let pull_prefix = config.registry_settings(&target.registry).pull_prefix;
                let publisher = RegistryPublisher::new(session, target.repository.clone(), pull_prefix, self.known.clone());
                let ctx_for = |base: &BaseImage| context(base, &base_session, &report);
                let p = if publisher.is_warm() {
                    // The code layer does not depend on the base: it goes up
                    // while the base tag is checked, and the config as soon as
                    // the base is known.
                    let code = publisher.push_layers(&layers, &report);
                    let mut code = std::pin::pin!(code);
                    let mut resolve = std::pin::pin!(resolve);
                    let mut code_done = false;
                    let base = loop {
                        tokio::select! {
                            r = &mut resolve => break r?,
                            r = &mut code, if !code_done => {
                                r?;
                                code_done = true;
                            }
                        }
                    };
                    image = append(&base, &layers, &edit);
                    let tag = tag.unwrap_or_else(|| image.default_tag());
                    let hints = Hints { handled: layers.iter().map(|l| l.digest.clone()).collect(), ..Hints::default() };
                    let pending = async { if code_done { Ok(()) } else { code.await } };
                    publisher.publish_after(&image, &tag, &ctx_for(&base), &hints, pending).await?
                } else {
                    // A repository new to this session: which of ciao's layers
                    // does it have? Asked while the base is fetched; a config
                    // naming a layer it lacks is new too.
                    let (base, present) = tokio::try_join!(resolve, publisher.check_layers(&layers, &report))?;
                    image = append(&base, &layers, &edit);
                    let tag = tag.unwrap_or_else(|| image.default_tag());
                    let absent: std::collections::HashSet<String> =
                        layers.iter().map(|l| l.digest.clone()).filter(|d| !present.contains(d)).collect();
                    let hints = Hints { config_is_new: !absent.is_empty(), handled: present, absent };
                    publisher.publish_after(&image, &tag, &ctx_for(&base), &hints, async { Ok(()) }).await?
                };
                (image, p)
            }
            Dest::Layout { dir, name } => {
                let base = match resolve.await {
                    Ok(b) => b,
                    Err(e) if e.is_unreachable() => {
                        report(&Progress::EmptyBase { reference: name.to_string(), why: e.to_string() });
                        Arc::new(BaseImage::empty(request.name.to_string(), platform.clone()))
                    }
                    Err(e) => return Err(e),
                };
                let image = append(&base.to_oci(), &layers, &edit);
                let tag = image.default_tag();
                let p = LayoutPublisher { dir, name }.publish(&image, &tag, &context(&base, &base_session, &report)).await?;
                (image, p)
            }
        };

        let (requests1, bytes1) = self.counters.snapshot();
        let summary = Summary {
            requests: requests1 - requests0,
            bytes: bytes1 - bytes0,
            uploaded: tally.uploaded.load(Ordering::Relaxed),
            copied: tally.copied.load(Ordering::Relaxed),
            mounted: tally.mounted.load(Ordering::Relaxed),
            present: tally.present.load(Ordering::Relaxed),
            elapsed: started.elapsed(),
        };
        progress(&Progress::Published { reference: published.reference.clone(), summary });
        Ok(BuildResult {
            reference: published.reference,
            pull_reference: published.pull_reference,
            digest: published.digest,
            tag: published.tag,
            base: image.base_name.clone(),
            base_digest: image.base_digest.clone(),
            command: bundle.command,
            launcher: bundle.launcher,
            cell_digest: image.cell_digest,
            summary,
        })
    }

    /// The session for `registry` with the configuration's TLS, insecure and
    /// credential settings; reused while those stay the same.
    pub fn session(&self, registry: &str, config: &Config, options: &BuildOptions) -> Result<Arc<Session>, ImageError> {
        let mut ca_pems = Vec::new();
        if let Some(f) = &config.ca_file {
            ca_pems.extend(read_pems(f, "CIAO_CA_FILE")?);
        }
        if let Some(f) = config.registry_settings(registry).ca {
            ca_pems.extend(read_pems(&f, &format!("registries.\"{registry}\".ca"))?);
        }
        let session_options = SessionOptions { insecure: config.is_insecure(registry), ca_pems, timeout: options.timeout };
        let keychain = Keychain::new(config, &options.env);
        let mut h = Sha256::new();
        h.update(format!("{registry}\n{:?}\n", session_options).as_bytes());
        h.update(keychain.fingerprint().as_bytes());
        let key = hex::encode(h.finalize());
        let mut sessions = self.sessions.lock().expect("sessions lock");
        if let Some(s) = sessions.get(&key) {
            return Ok(s.clone());
        }
        let host = super::reference::api_host(registry);
        let s = Arc::new(Session::new(registry, host, &session_options, keychain, self.counters.clone())?);
        sessions.insert(key, s.clone());
        Ok(s)
    }
}

/// Where publishers read the base's blobs from.
fn context(base: &BaseImage, session: &Arc<Session>, report: &ProgressFn) -> PublishContext {
    PublishContext {
        base: base.source.as_ref().map(|s| BlobSource { session: session.clone(), repository: s.repository.clone() }),
        progress: report.clone(),
    }
}

/// The PEM certificates in a bundle file, one entry per certificate.
fn read_pems(path: &Path, setting: &str) -> Result<Vec<Vec<u8>>, ImageError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| ImageError::Io { what: format!("cannot read the CA bundle ({setting})"), path: path.to_path_buf(), source })?;
    let mut out = Vec::new();
    let mut cur: Option<String> = None;
    for line in text.lines() {
        let t = line.trim();
        if t == "-----BEGIN CERTIFICATE-----" {
            cur = Some(format!("{t}\n"));
        } else if let Some(c) = cur.as_mut() {
            c.push_str(t);
            c.push('\n');
            if t == "-----END CERTIFICATE-----" {
                out.push(cur.take().expect("inside a block").into_bytes());
            }
        }
    }
    if out.is_empty() {
        return Err(ImageError::InvalidSetting {
            name: setting.to_string(),
            value: path.display().to_string(),
            why: "the file holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_come_from_the_environment() {
        let env: BTreeMap<String, String> =
            [("SOURCE_DATE_EPOCH", "1700000000"), ("CIAO_REGISTRY_TIMEOUT", "2.5"), ("HOME", "/h")].iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let o = BuildOptions::from_env(&env).unwrap();
        assert_eq!(o.source_date_epoch, Some(1_700_000_000));
        assert_eq!(o.timeout, Duration::from_millis(2500));
        assert_eq!(o.env.get("HOME").map(String::as_str), Some("/h"));
        let bad: BTreeMap<String, String> = [("CIAO_REGISTRY_TIMEOUT".to_string(), "soon".to_string())].into();
        assert!(BuildOptions::from_env(&bad).unwrap_err().to_string().contains("CIAO_REGISTRY_TIMEOUT"));
    }

    #[test]
    fn ca_bundles_split_into_certificates_and_empty_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("ca.pem");
        std::fs::write(&f, "junk\n-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n-----BEGIN CERTIFICATE-----\nBBBB\n-----END CERTIFICATE-----\n").unwrap();
        let pems = read_pems(&f, "CIAO_CA_FILE").unwrap();
        assert_eq!(pems.len(), 2);
        assert!(String::from_utf8_lossy(&pems[1]).contains("BBBB"));
        std::fs::write(&f, "nothing").unwrap();
        assert!(read_pems(&f, "CIAO_CA_FILE").unwrap_err().to_string().contains("no PEM certificate"));
        let e = read_pems(&dir.path().join("missing.pem"), "CIAO_CA_FILE").unwrap_err().to_string();
        assert!(e.contains("CIAO_CA_FILE") && e.contains("missing.pem"), "{e}");
    }
}
