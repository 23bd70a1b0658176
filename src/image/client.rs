//! One registry session: the HTTP clients for a registry host, its
//! credentials and tokens, and the distribution API calls ciao needs, each
//! with bounded retries, one re-authentication on 401 and errors that name
//! the problem.
//!
//! Pushes — blob uploads (whole, streamed, chunked) and manifest writes — go
//! through oci-client. Reads, existence checks, cross-repository mounts and
//! the challenge/token flow use reqwest directly: oci-client would probe
//! `GET /v2/` before every anonymous request, treats a refused mount (202) as
//! an error, and keeps only the status of an error answer, while ciao needs
//! `Retry-After` and the auth challenge. oci-client is never given
//! credentials for an anonymous registry and, for an authenticated one, is
//! seeded with the tokens ciao fetched, so it never probes either. A 429 from
//! an oci-client request is retried after a longer pause, since its
//! `Retry-After` cannot be read.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_client::token_cache::{RegistryToken, RegistryTokenType};
use oci_client::{Reference, RegistryOperation};
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE};
use tokio::sync::Mutex;

use super::auth::{self, Challenge, Credential, CredentialKind, Keychain, Lookup, Scope, TokenFailure};
use super::error::ImageError;
use super::manifest::{Descriptor, MANIFEST_ACCEPT};
use super::failure::{Failure, chain, check, is_tls_text, transport_retryable};
use super::progress::Counters;
pub use super::stream::{BytesFn, VerifiedStream};
use super::stream::{counting, rechunk};

/// `User-Agent` of every request.
pub const USER_AGENT: &str = concat!("ciao/", env!("CARGO_PKG_VERSION"));
/// Attempts of a retryable step (the first try included).
const ATTEMPTS: u32 = 3;
/// The longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(10);
/// The shortest wait after a 429 that came without a readable `Retry-After`.
const MIN_RATE_LIMIT_WAIT: Duration = Duration::from_secs(1);
/// Upload chunk sizes tried, in order, when a proxy refuses a whole blob (413).
const CHUNK_SIZES: [usize; 3] = [4 << 20, 1 << 20, 256 << 10];
/// The largest config blob ciao reads into memory.
const MAX_CONFIG_SIZE: u64 = 16 << 20;

/// How to reach one registry host.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionOptions {
    /// Plain HTTP (only for registries listed insecure).
    pub insecure: bool,
    /// Extra trusted CA certificates, PEM, one per entry.
    pub ca_pems: Vec<Vec<u8>>,
    /// Connect and read timeout.
    pub timeout: Duration,
}

/// The state of authentication with one registry.
#[derive(Default)]
struct AuthState {
    /// `None` until the registry's challenge is known.
    challenge: Option<Challenge>,
    lookup: Option<Lookup>,
    /// Bearer tokens with the scopes they cover.
    tokens: Vec<(Vec<Scope>, String, Instant)>,
    /// The credentials given to the oci-client (once; it keeps the first).
    stored: Option<RegistryAuth>,
}

/// A registry host as one session sees it.
pub struct Session {
    /// The registry's name (`docker.io`, `127.0.0.1:5000`).
    pub registry: String,
    /// Where its API answers (`index.docker.io`, `127.0.0.1:5000`).
    host: String,
    base_url: String,
    timeout: Duration,
    http: reqwest::Client,
    /// oci-client for uploads, mounts and manifests; built on a blocking
    /// thread while the first requests (base manifest, config) are under way,
    /// as building it loads the system's trust store.
    oci: tokio::sync::OnceCell<oci_client::Client>,
    oci_init: std::sync::Mutex<Option<tokio::task::JoinHandle<Result<oci_client::Client, OciDistributionError>>>>,
    /// A second oci-client for chunked uploads, made on the first 413.
    oci_chunked: tokio::sync::OnceCell<oci_client::Client>,
    options: SessionOptions,
    keychain: Keychain,
    auth: Mutex<AuthState>,
    counters: Arc<Counters>,
}

/// A fetched manifest.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    pub body: Bytes,
    pub content_type: Option<String>,
    /// `sha256:` of the body.
    pub digest: String,
}

/// Whether a mount worked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mount {
    Mounted,
    /// The registry declined (unknown blob, no access to the source).
    Refused,
}

/// oci-client's configuration for a session: its protocol, CAs, timeouts;
/// whole-blob uploads (POST + PUT) or chunked ones.
fn oci_config(options: &SessionOptions, monolithic: bool) -> ClientConfig {
    ClientConfig {
        protocol: if options.insecure { ClientProtocol::Http } else { ClientProtocol::Https },
        use_monolithic_push: monolithic,
        extra_root_certificates: options.ca_pems.iter().map(|p| Certificate { encoding: CertificateEncoding::Pem, data: p.clone() }).collect(),
        platform_resolver: None,
        read_timeout: Some(options.timeout),
        connect_timeout: Some(options.timeout),
        user_agent: USER_AGENT,
        ..ClientConfig::default()
    }
}

impl Session {
    /// A session with `registry` (its API host is `host`).
    ///
    /// # Errors
    /// A CA certificate that cannot be used.
    pub fn new(
        registry: &str,
        host: &str,
        options: &SessionOptions,
        keychain: Keychain,
        counters: Arc<Counters>,
    ) -> Result<Session, ImageError> {
        let scheme = if options.insecure { "http" } else { "https" };
        let tls = |why: String| ImageError::Tls { registry: registry.to_string(), why };
        let mut certs = Vec::new();
        for pem in &options.ca_pems {
            certs.push(reqwest::Certificate::from_pem(pem).map_err(|e| tls(format!("a CA certificate cannot be used: {e}")))?);
        }
        let http = reqwest::Client::builder().user_agent(USER_AGENT).connect_timeout(options.timeout).read_timeout(options.timeout);
        // Plain HTTP needs no trust store (loading the system's costs milliseconds).
        let http = if options.insecure { http.tls_certs_only(certs) } else { http.tls_certs_merge(certs) };
        let http = http.build().map_err(|e| tls(chain(&e)))?;
        let oci_init = tokio::runtime::Handle::try_current().ok().map(|rt| {
            let o = options.clone();
            rt.spawn_blocking(move || oci_client::Client::try_from(oci_config(&o, true)))
        });

        Ok(Session {
            registry: registry.to_string(),
            host: host.to_string(),
            base_url: format!("{scheme}://{host}"),
            timeout: options.timeout,
            http,
            oci: tokio::sync::OnceCell::new(),
            oci_init: std::sync::Mutex::new(oci_init),
            oci_chunked: tokio::sync::OnceCell::new(),
            options: options.clone(),
            keychain,
            auth: Mutex::new(AuthState::default()),
            counters,
        })
    }

    fn oci_ref(&self, repository: &str, tag: &str) -> Reference {
        Reference::with_tag(self.host.clone(), repository.to_string(), tag.to_string())
    }

    /// Runs `op` with authentication for `scopes`, retrying what is safe to
    /// retry and re-authenticating once on 401.
    async fn run<T, F, Fut>(&self, scopes: &[Scope], what: &str, mut op: F) -> Result<T, ImageError>
    where
        F: FnMut(Option<String>) -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        let mut header = self.authorize(scopes).await?;
        let mut attempt = 1;
        let mut reauthenticated = false;
        loop {
            match op(header.clone()).await {
                Ok(v) => return Ok(v),
                Err(Failure::Status { code: 401, challenge, .. }) if !reauthenticated => {
                    reauthenticated = true;
                    header = self.reauthorize(scopes, challenge.as_deref(), what).await?;
                }
                Err(f) if f.retryable() && attempt < ATTEMPTS => {
                    let backoff = Duration::from_millis(200 * 4u64.pow(attempt - 1));
                    let wait = match (f.retry_after(), f.status()) {
                        (Some(r), _) => r.min(MAX_RETRY_AFTER),
                        // A 429 whose Retry-After could not be read (streamed
                        // and chunked uploads go through oci-client): a longer pause.
                        (None, Some(429)) => backoff.max(MIN_RATE_LIMIT_WAIT),
                        (None, _) => backoff,
                    };
                    tracing::debug!(registry = %self.registry, what, attempt, ?wait, "retrying after {f:?}");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                Err(f) => return Err(self.explain(f, scopes, what).await),
            }
        }
    }

    /// Turns a failure into the error the user sees.
    async fn explain(&self, f: Failure, scopes: &[Scope], what: &str) -> ImageError {
        let registry = self.registry.clone();
        let repository = scopes.first().map(|s| s.repository.clone()).unwrap_or_default();
        let action = if scopes.iter().any(|s| s.push) { "push" } else { "pull" }.to_string();
        match f {
            Failure::Status { code: 401, .. } => {
                let tried = self.auth.lock().await.lookup.as_ref().map(|l| l.tried.clone()).unwrap_or_default();
                ImageError::Unauthorized { registry, repository, action, tried }
            }
            Failure::Status { code: 403, .. } => {
                let source_name = self
                    .auth
                    .lock()
                    .await
                    .lookup
                    .as_ref()
                    .and_then(|l| l.credential.as_ref().map(Credential::describe))
                    .unwrap_or_else(|| "no credentials (anonymous)".into());
                ImageError::Denied { registry, repository, action, source_name }
            }
            Failure::Status { code, message, .. } => ImageError::Registry { registry, what: what.to_string(), status: code, message },
            Failure::Transport(e) => self.transport_error(&e, what),
            Failure::Digest { expected, actual } => ImageError::Digest { what: what.to_string(), expected, actual },
            Failure::Explained(e) => e,
            Failure::Protocol(why) => ImageError::Transfer { registry, what: what.to_string(), why },
        }
    }

    /// Classifies a transport error: plain HTTP, TLS, timeout, unreachable.
    pub fn transport_error(&self, e: &reqwest::Error, what: &str) -> ImageError {
        let text = chain(e);
        let registry = self.registry.clone();
        if text.contains("InvalidContentType") || text.contains("corrupt message") {
            ImageError::InsecureRefused { registry, why: "answered an HTTPS request in plain HTTP".into() }
        } else if is_tls_text(&text) {
            ImageError::Tls { registry, why: text }
        } else if e.is_timeout() {
            ImageError::Timeout { registry, what: what.to_string(), secs: self.timeout.as_secs() }
        } else if e.is_connect() || text.contains("dns error") {
            ImageError::Unreachable { registry, why: text }
        } else {
            ImageError::Transfer { registry, what: what.to_string(), why: text }
        }
    }

    /// The `Authorization` header for `scopes` (and oci-client seeded with
    /// the same), or `None` for anonymous access.
    async fn authorize(&self, scopes: &[Scope]) -> Result<Option<String>, ImageError> {
        let mut st = self.auth.lock().await;
        if st.lookup.is_none() {
            st.lookup = Some(self.keychain.lookup(&self.registry)?);
        }
        let credential = st.lookup.as_ref().and_then(|l| l.credential.clone());
        if st.challenge.is_none() {
            match &credential {
                // Anonymous until the registry asks otherwise: no probe.
                None => return Ok(None),
                Some(Credential { kind: CredentialKind::Token(t), .. }) => {
                    let t = t.expose().to_string();
                    self.store(&mut st, RegistryAuth::Bearer(t.clone())).await;
                    return Ok(Some(format!("Bearer {t}")));
                }
                Some(_) => {
                    let challenge = self.discover(None).await?;
                    st.challenge = Some(challenge);
                }
            }
        }
        self.credentials_for(&mut st, credential, scopes).await
    }

    /// After a 401: learn the challenge (from the answer, else `GET /v2/`),
    /// drop cached tokens and authenticate again.
    async fn reauthorize(&self, scopes: &[Scope], challenge: Option<&str>, what: &str) -> Result<Option<String>, ImageError> {
        let learned = self.discover(challenge).await?;
        let mut st = self.auth.lock().await;
        st.tokens.clear();
        if learned == Challenge::None {
            let tried = st.lookup.as_ref().map(|l| l.tried.clone()).unwrap_or_default();
            let _ = what;
            return Err(ImageError::Unauthorized {
                registry: self.registry.clone(),
                repository: scopes.first().map(|s| s.repository.clone()).unwrap_or_default(),
                action: if scopes.iter().any(|s| s.push) { "push".into() } else { "pull".into() },
                tried,
            });
        }
        st.challenge = Some(learned);
        if st.lookup.is_none() {
            st.lookup = Some(self.keychain.lookup(&self.registry)?);
        }
        let credential = st.lookup.as_ref().and_then(|l| l.credential.clone());
        self.credentials_for(&mut st, credential, scopes).await
    }

    /// The challenge in `header`, else the one `GET /v2/` answers with.
    async fn discover(&self, header: Option<&str>) -> Result<Challenge, ImageError> {
        if let Some(h) = header {
            return Ok(auth::parse_challenge(h));
        }
        let url = format!("{}/v2/", self.base_url);
        let mut attempt = 1;
        loop {
            self.counters.request(1);
            match self.http.get(&url).send().await {
                Ok(r) => {
                    return Ok(r
                        .headers()
                        .get(WWW_AUTHENTICATE)
                        .and_then(|v| v.to_str().ok())
                        .map_or(Challenge::None, auth::parse_challenge));
                }
                Err(e) if attempt < ATTEMPTS && transport_retryable(&e) => {
                    tokio::time::sleep(Duration::from_millis(200 * 4u64.pow(attempt - 1))).await;
                    attempt += 1;
                }
                Err(e) => return Err(self.transport_error(&e, "asking how to authenticate (GET /v2/)")),
            }
        }
    }

    /// Credentials for a registry whose challenge is known.
    async fn credentials_for(
        &self,
        st: &mut AuthState,
        credential: Option<Credential>,
        scopes: &[Scope],
    ) -> Result<Option<String>, ImageError> {
        let unauthorized = |st: &AuthState| ImageError::Unauthorized {
            registry: self.registry.clone(),
            repository: scopes.first().map(|s| s.repository.clone()).unwrap_or_default(),
            action: if scopes.iter().any(|s| s.push) { "push".into() } else { "pull".into() },
            tried: st.lookup.as_ref().map(|l| l.tried.clone()).unwrap_or_default(),
        };
        match st.challenge.clone().unwrap_or(Challenge::None) {
            Challenge::None => Ok(None),
            Challenge::Basic => {
                let Some(Credential { kind: CredentialKind::Basic { username, password }, .. }) = credential else {
                    return Err(unauthorized(st));
                };
                let (u, p) = (username.clone(), password.expose().to_string());
                self.store(st, RegistryAuth::Basic(u.clone(), p.clone())).await;
                for s in scopes {
                    let r = self.oci_ref(&s.repository, "latest");
                    for op in [RegistryOperation::Pull, RegistryOperation::Push] {
                        self.oci().await?.tokens.insert(&r, op, RegistryTokenType::Basic(u.clone(), p.clone())).await;
                    }
                }
                use base64::Engine as _;
                let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
                Ok(Some(format!("Basic {encoded}")))
            }
            Challenge::Bearer { realm, service } => {
                let scopes = auth::merge_scopes(scopes.iter().cloned());
                let now = Instant::now();
                st.tokens.retain(|(_, _, until)| *until > now);
                let covering = st.tokens.iter().find(|(have, _, _)| {
                    scopes.iter().all(|s| have.iter().any(|h| h.repository == s.repository && (h.push || !s.push)))
                });
                let token = match covering {
                    Some((_, t, _)) => t.clone(),
                    None => {
                        self.counters.request(1);
                        let t = auth::fetch_token(&self.http, &realm, service.as_deref(), &scopes, credential.as_ref())
                            .await
                            .map_err(|f| match f {
                                TokenFailure::Refused(_) => unauthorized(st),
                                TokenFailure::Transport(e) => self.transport_error(&e, "fetching a token"),
                                TokenFailure::Invalid(why) => ImageError::Transfer {
                                    registry: self.registry.clone(),
                                    what: format!("fetching a token from {realm}"),
                                    why,
                                },
                            })?;
                        // Keep a token a little less long than it lasts (60 s when unsaid).
                        let life = t.expires_in.unwrap_or(Duration::from_secs(60)).saturating_sub(Duration::from_secs(5));
                        let value = t.token.expose().to_string();
                        st.tokens.push((scopes.clone(), value.clone(), Instant::now() + life));
                        value
                    }
                };
                let auth = match &credential {
                    Some(Credential { kind: CredentialKind::Basic { username, password }, .. }) => {
                        RegistryAuth::Basic(username.clone(), password.expose().to_string())
                    }
                    _ => RegistryAuth::Anonymous,
                };
                self.store(st, auth).await;
                for s in &scopes {
                    let r = self.oci_ref(&s.repository, "latest");
                    let bearer = RegistryTokenType::Bearer(RegistryToken::Token { token: token.clone() });
                    let oci = self.oci().await?;
                    oci.tokens.insert(&r, RegistryOperation::Pull, bearer.clone()).await;
                    if s.push {
                        oci.tokens.insert(&r, RegistryOperation::Push, bearer).await;
                    }
                }
                Ok(Some(format!("Bearer {token}")))
            }
        }
    }

    /// The oci-client (waits for its construction the first time).
    async fn oci(&self) -> Result<&oci_client::Client, ImageError> {
        self.oci
            .get_or_try_init(|| async {
                let pending = self.oci_init.lock().expect("oci init lock").take();
                let built = match pending {
                    Some(h) => h.await.map_err(|e| ImageError::Unsupported(format!("the registry client could not be made: {e}")))?,
                    None => oci_client::Client::try_from(oci_config(&self.options, true)),
                };
                built.map_err(|e| ImageError::Tls { registry: self.registry.clone(), why: chain(&e) })
            })
            .await
    }

    /// Gives the oci-client its credentials, once (it keeps the first it gets).
    async fn store(&self, st: &mut AuthState, auth: RegistryAuth) {
        if st.stored.is_none() {
            if let Ok(oci) = self.oci().await {
                oci.store_auth_if_needed(&self.host, &auth).await;
            }
            st.stored = Some(auth);
        }
    }

    /// The client for chunked uploads: same TLS, same tokens, same credentials.
    async fn chunked_client(&self) -> Result<&oci_client::Client, Failure> {
        let stored = self.auth.lock().await.stored.clone();
        self.oci_chunked
            .get_or_try_init(|| async {
                let config = oci_config(&self.options, false);
                let mut c = oci_client::Client::try_from(config).map_err(|e| Failure::Protocol(chain(&e)))?;
                c.tokens = self.oci().await.map_err(Failure::Explained)?.tokens.clone();
                if let Some(auth) = stored {
                    c.store_auth_if_needed(&self.host, &auth).await;
                }
                Ok(c)
            })
            .await
    }

    /// Adds `scopes` to the token the next request uses, so one token covers
    /// a whole build (a cross-repository mount needs both repositories).
    pub async fn prepare(&self, scopes: &[Scope]) -> Result<(), ImageError> {
        self.authorize(scopes).await.map(|_| ())
    }

    /// `GET` a manifest by tag or digest; `None` when the registry does not have it.
    pub async fn get_manifest(&self, repository: &str, reference: &str, scopes: &[Scope]) -> Result<Option<FetchedManifest>, ImageError> {
        let url = format!("{}/v2/{repository}/manifests/{reference}", self.base_url);
        let what = format!("fetching the manifest {repository}:{reference}");
        self.run(scopes, &what, |auth| {
            let url = url.clone();
            async move {
                self.counters.request(1);
                let mut r = self.http.get(&url).header(ACCEPT, MANIFEST_ACCEPT);
                if let Some(a) = auth {
                    r = r.header(AUTHORIZATION, a);
                }
                let resp = r.send().await.map_err(Failure::Transport)?;
                if resp.status() == reqwest::StatusCode::NOT_FOUND {
                    return Ok(None);
                }
                let resp = check(resp).await?;
                let content_type = resp.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(String::from);
                let body = resp.bytes().await.map_err(Failure::Transport)?;
                let digest = super::layer::sha256_digest(&body);
                Ok(Some(FetchedManifest { body, content_type, digest }))
            }
        })
        .await
    }

    /// `HEAD` a manifest: `None` when the registry does not have it, else
    /// its `Docker-Content-Digest` (`Some(None)` when the registry sends none).
    pub async fn head_manifest(&self, repository: &str, reference: &str, scopes: &[Scope]) -> Result<Option<Option<String>>, ImageError> {
        let url = format!("{}/v2/{repository}/manifests/{reference}", self.base_url);
        let what = format!("checking the manifest {repository}:{reference}");
        self.run(scopes, &what, |auth| {
            let url = url.clone();
            async move {
                self.counters.request(1);
                let mut r = self.http.head(&url).header(ACCEPT, MANIFEST_ACCEPT);
                if let Some(a) = auth {
                    r = r.header(AUTHORIZATION, a);
                }
                let resp = r.send().await.map_err(Failure::Transport)?;
                if resp.status() == reqwest::StatusCode::NOT_FOUND {
                    return Ok(None);
                }
                let resp = check(resp).await?;
                Ok(Some(resp.headers().get("Docker-Content-Digest").and_then(|v| v.to_str().ok()).map(String::from)))
            }
        })
        .await
    }

    /// A small blob (a config) read into memory and checked against its digest.
    pub async fn get_blob(&self, repository: &str, d: &Descriptor, scopes: &[Scope]) -> Result<Bytes, ImageError> {
        if d.size > MAX_CONFIG_SIZE {
            return Err(ImageError::Transfer {
                registry: self.registry.clone(),
                what: format!("reading the config {}", d.digest),
                why: format!("it is {} bytes, more than a config can reasonably be", d.size),
            });
        }
        let what = format!("fetching the blob {} of {repository}", d.digest);
        let url = format!("{}/v2/{repository}/blobs/{}", self.base_url, d.digest);
        self.run(scopes, &what, |auth| {
            let url = url.clone();
            async move {
                self.counters.request(1);
                let mut r = self.http.get(&url);
                if let Some(a) = auth {
                    r = r.header(AUTHORIZATION, a);
                }
                let resp = check(r.send().await.map_err(Failure::Transport)?).await?;
                let body = resp.bytes().await.map_err(Failure::Transport)?;
                let actual = super::layer::sha256_digest(&body);
                if actual != d.digest {
                    return Err(Failure::Digest { expected: d.digest.clone(), actual });
                }
                Ok(body)
            }
        })
        .await
    }

    /// A blob as a stream that fails at its end if the content does not
    /// match `d.digest` (or `d.size`). Memory stays bounded by the HTTP
    /// buffers whatever the blob's size.
    pub async fn blob_stream(&self, repository: &str, d: &Descriptor, scopes: &[Scope]) -> Result<VerifiedStream, ImageError> {
        let what = format!("downloading the blob {} of {repository}", d.digest);
        let url = format!("{}/v2/{repository}/blobs/{}", self.base_url, d.digest);
        let resp = self
            .run(scopes, &what, |auth| {
                let url = url.clone();
                async move {
                    self.counters.request(1);
                    let mut r = self.http.get(&url);
                    if let Some(a) = auth {
                        r = r.header(AUTHORIZATION, a);
                    }
                    check(r.send().await.map_err(Failure::Transport)?).await
                }
            })
            .await?;
        Ok(VerifiedStream::new(resp.bytes_stream().map_err(io::Error::other).boxed(), d))
    }

    /// Whether the repository has the blob (`HEAD`).
    pub async fn blob_exists(&self, repository: &str, digest: &str) -> Result<bool, ImageError> {
        let url = format!("{}/v2/{repository}/blobs/{digest}", self.base_url);
        let what = format!("checking for the blob {digest} in {repository}");
        self.run(&[Scope::push(repository)], &what, |auth| {
            let url = url.clone();
            async move {
                self.counters.request(1);
                let resp = with_auth(self.http.head(&url), auth).send().await.map_err(Failure::Transport)?;
                if resp.status() == reqwest::StatusCode::NOT_FOUND {
                    return Ok(false);
                }
                check(resp).await.map(|_| true)
            }
        })
        .await
    }

    /// Mounts a blob from another repository of this registry.
    pub async fn mount(&self, repository: &str, from: &str, digest: &str) -> Result<Mount, ImageError> {
        let what = format!("mounting {digest} from {from} into {repository}");
        let url = url::Url::parse_with_params(&format!("{}/v2/{repository}/blobs/uploads/", self.base_url), &[("mount", digest), ("from", from)])
            .map_err(|e| ImageError::Transfer { registry: self.registry.clone(), what: what.clone(), why: e.to_string() })?;
        self.run(&[Scope::push(repository), Scope::pull(from)], &what, |auth| {
            let url = url.clone();
            async move {
                self.counters.request(1);
                let resp = with_auth(self.http.post(url), auth).header(CONTENT_LENGTH, "0").send().await.map_err(Failure::Transport)?;
                // Distribution answers 202 with an upload session when it
                // will not mount (unknown blob, no access to the source); the
                // session is left to expire.
                match check(resp).await?.status() {
                    reqwest::StatusCode::CREATED => Ok(Mount::Mounted),
                    _ => Ok(Mount::Refused),
                }
            }
        })
        .await
    }

    /// Uploads a blob held in memory: `POST` + `PUT`, or in chunks when a
    /// proxy refuses the whole body (413).
    pub async fn upload(&self, repository: &str, digest: &str, data: &Bytes) -> Result<(), ImageError> {
        let r = self.oci_ref(repository, "latest");
        let what = format!("uploading the blob {digest} to {repository}");
        let size = data.len() as u64;
        self.run(&[Scope::push(repository)], &what, |_| {
            let (r, data) = (r.clone(), data.clone());
            async move {
                self.counters.request(2);
                match self.oci().await.map_err(Failure::Explained)?.push_blob(&r, data.clone(), digest).await.map_err(Failure::from) {
                    Ok(_) => {
                        self.counters.sent(size);
                        Ok(())
                    }
                    Err(f) if f.status() == Some(413) => {
                        self.upload_chunked(&r, digest, size, || futures::stream::once(futures::future::ready(Ok(data.clone()))).boxed())
                            .await
                    }
                    Err(f) => Err(f),
                }
            }
        })
        .await
    }



    /// Streams a blob from `source` (another repository, maybe of another
    /// registry) into `repository`, verifying its digest on the way.
    pub async fn copy_from(
        &self,
        repository: &str,
        d: &Descriptor,
        source: &Session,
        source_repository: &str,
        progress: BytesFn,
    ) -> Result<(), ImageError> {
        let r = self.oci_ref(repository, "latest");
        let what = format!("copying the blob {} from {}/{source_repository}", d.digest, source.registry);
        let source_scopes = [Scope::pull(source_repository)];
        self.run(&[Scope::push(repository)], &what, |_| {
            let r = r.clone();
            let source_scopes = &source_scopes;
            let progress = progress.clone();
            async move {
                let stream = source.blob_stream(source_repository, d, source_scopes).await.map_err(Failure::Explained)?;
                self.counters.request(2);
                let counted = counting(stream, self.counters.clone(), progress.clone()).map_err(OciDistributionError::IoError);
                match self.oci().await.map_err(Failure::Explained)?.push_blob_stream(&r, counted, &d.digest, Some(d.size)).await.map_err(Failure::from) {
                    Ok(_) => Ok(()),
                    Err(f) if f.status() == Some(413) => {
                        let mut last = f;
                        for size in CHUNK_SIZES {
                            let stream = source.blob_stream(source_repository, d, source_scopes).await.map_err(Failure::Explained)?;
                            let stream = rechunk(counting(stream, self.counters.clone(), progress.clone()), size);
                            match self.push_chunks(&r, &d.digest, d.size, size, stream).await {
                                Err(f) if f.status() == Some(413) => last = f,
                                other => return other,
                            }
                        }
                        Err(last)
                    }
                    Err(f) => Err(f),
                }
            }
        })
        .await
    }

    /// Uploads in chunks of decreasing size until the proxy takes them.
    async fn upload_chunked<S, F>(&self, r: &Reference, digest: &str, size: u64, make: F) -> Result<(), Failure>
    where
        F: Fn() -> S,
        S: Stream<Item = Result<Bytes, io::Error>> + Send + 'static,
    {
        let mut last = Failure::Protocol("no chunk size worked".into());
        for chunk in CHUNK_SIZES {
            let stream = rechunk(make(), chunk);
            match self.push_chunks(r, digest, size, chunk, stream).await {
                Ok(()) => {
                    self.counters.sent(size);
                    return Ok(());
                }
                Err(f) if f.status() == Some(413) => last = f,
                Err(f) => return Err(f),
            }
        }
        Err(last)
    }

    async fn push_chunks<S>(&self, r: &Reference, digest: &str, size: u64, chunk: usize, stream: S) -> Result<(), Failure>
    where
        S: Stream<Item = Result<Bytes, io::Error>> + Send + 'static,
    {
        tracing::debug!(registry = %self.registry, digest, chunk, "uploading in chunks");
        self.counters.request(2 + size.div_ceil(chunk as u64));
        let stream = stream.map_err(OciDistributionError::IoError);
        let client = self.chunked_client().await?;
        client.push_blob_stream(r, stream, digest, Some(size)).await.map(|_| ()).map_err(Failure::from)
    }

    /// Writes the manifest under `reference` (a tag or its digest).
    pub async fn put_manifest(&self, repository: &str, reference: &str, body: &Bytes, media_type: &str) -> Result<(), ImageError> {
        let r = self.oci_ref(repository, reference);
        let what = format!("writing the manifest {repository}:{reference}");
        let content_type = HeaderValue::from_str(media_type).map_err(|e| ImageError::Transfer {
            registry: self.registry.clone(),
            what: what.clone(),
            why: e.to_string(),
        })?;
        self.run(&[Scope::push(repository)], &what, |_| {
            let (r, body, ct) = (r.clone(), body.clone(), content_type.clone());
            async move {
                self.counters.request(1);
                self.oci().await.map_err(Failure::Explained)?.push_manifest_raw(&r, body, ct).await.map(|_| ()).map_err(Failure::from)
            }
        })
        .await
    }
}

/// `request` with the `Authorization` header, if there is one.
fn with_auth(request: reqwest::RequestBuilder, auth: Option<String>) -> reqwest::RequestBuilder {
    match auth {
        Some(a) => request.header(AUTHORIZATION, a),
        None => request,
    }
}
