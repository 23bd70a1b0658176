//! Registry credentials: where they come from (a keychain, as
//! go-containerregistry calls it), the `WWW-Authenticate` challenge, and
//! bearer tokens.
//!
//! Sources, in order: the ciao config (`registries.<host>` username +
//! password/passwordFile/token; the original `s2i.username/password` for the
//! registry of the `registry` prefix), a mounted Kubernetes
//! `.dockerconfigjson` (`dockerConfig`, `CIAO_DOCKER_CONFIG`), then docker's
//! `config.json` (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`)
//! with its `auths`, `credHelpers` and `credsStore`. Secrets live in
//! [`Secret`]s and never reach a message: what a lookup reports is the list
//! of sources tried.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::{Config, Env, RegistrySettings, Secret};

use super::error::ImageError;
use super::reference::DOCKER_HUB;

/// How a credential authenticates.
#[derive(Clone, PartialEq, Eq)]
pub enum CredentialKind {
    /// A user name and password (basic auth, or the basic credentials a token
    /// endpoint asks for).
    Basic { username: String, password: Secret },
    /// Docker's identity token: an OAuth2 refresh token for the token endpoint.
    IdentityToken(Secret),
    /// A bearer token sent as is.
    Token(Secret),
}

/// A credential and where it came from.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    pub kind: CredentialKind,
    /// E.g. `ciao config registries."r:5000"`, `docker config /h/.docker/config.json`.
    pub source: String,
}

impl Credential {
    /// The user name, if the credential has one (shown in messages; never the secret).
    pub fn username(&self) -> Option<&str> {
        match &self.kind {
            CredentialKind::Basic { username, .. } => Some(username),
            _ => None,
        }
    }

    /// `source (user NAME)` for messages.
    pub fn describe(&self) -> String {
        match &self.kind {
            CredentialKind::Basic { username, .. } => format!("{} (user {username})", self.source),
            CredentialKind::IdentityToken(_) => format!("{} (identity token)", self.source),
            CredentialKind::Token(_) => format!("{} (bearer token)", self.source),
        }
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credential({})", self.describe())
    }
}

/// The outcome of a lookup: the credential found (if any) and every source
/// consulted, in order, with what it gave.
#[derive(Debug, Clone, Default)]
pub struct Lookup {
    pub credential: Option<Credential>,
    pub tried: Vec<String>,
}

/// Where credentials are looked up, made from the configuration.
#[derive(Debug, Clone, Default)]
pub struct Keychain {
    registries: BTreeMap<String, RegistrySettings>,
    s2i: Option<(String, Option<String>, Option<Secret>)>,
    docker_config: Option<PathBuf>,
    docker_home: Option<PathBuf>,
}

impl Keychain {
    /// The keychain for `config`; `env` gives `DOCKER_CONFIG` and `HOME`.
    pub fn new(config: &Config, env: &dyn Env) -> Keychain {
        let s2i = config
            .registry_host()
            .filter(|_| config.s2i_username.is_some() || config.s2i_password.is_some())
            .map(|h| (h.to_string(), config.s2i_username.clone(), config.s2i_password.clone()));
        let docker_home = env
            .var("DOCKER_CONFIG")
            .map(|d| PathBuf::from(d).join("config.json"))
            .or_else(|| env.var("HOME").map(|h| PathBuf::from(h).join(".docker/config.json")))
            .or_else(|| dirs::home_dir().map(|h| h.join(".docker/config.json")));
        Keychain { registries: config.registries.clone(), s2i, docker_config: config.docker_config.clone(), docker_home }
    }

    /// A digest of everything the keychain would read (secrets included, so
    /// a changed password makes a new session); never shown.
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest as _, Sha256};
        let mut h = Sha256::new();
        for (host, s) in &self.registries {
            h.update(format!("{host}\0{:?}\0{:?}\0{:?}\0", s.username, s.password_file, s.ca).as_bytes());
            for secret in [&s.password, &s.token].into_iter().flatten() {
                h.update(secret.expose().as_bytes());
                h.update(b"\0");
            }
        }
        if let Some((host, user, pass)) = &self.s2i {
            h.update(format!("{host}\0{user:?}\0").as_bytes());
            h.update(pass.as_ref().map(|p| p.expose()).unwrap_or_default().as_bytes());
        }
        h.update(format!("\0{:?}\0{:?}", self.docker_config, self.docker_home).as_bytes());
        hex::encode(h.finalize())
    }

    /// Looks up the credential for `registry` (`host[:port]`, `docker.io`).
    ///
    /// # Errors
    /// A ciao-config entry that is incomplete or whose password file cannot
    /// be read (a mistake to fix, not a missing credential).
    pub fn lookup(&self, registry: &str) -> Result<Lookup, ImageError> {
        let mut tried = Vec::new();
        let found = |c: Credential, mut tried: Vec<String>| {
            tried.push(c.describe());
            Ok(Lookup { credential: Some(c), tried })
        };

        let label = format!("ciao config registries.\"{registry}\"");
        match self.registries.get(registry) {
            Some(s) => {
                if let Some(c) = from_settings(registry, s, &label)? {
                    return found(c, tried);
                }
                tried.push(format!("{label}: no username/password/token"));
            }
            None => tried.push(format!("{label}: no entry")),
        }

        if let Some((host, user, pass)) = &self.s2i
            && host == registry
        {
            let label = "ciao config s2i.username/s2i.password".to_string();
            match (user, pass) {
                (Some(u), Some(p)) => {
                    return found(
                        Credential { kind: CredentialKind::Basic { username: u.clone(), password: p.clone() }, source: label },
                        tried,
                    );
                }
                _ => {
                    return Err(ImageError::Credentials {
                        registry: registry.to_string(),
                        source_name: label,
                        why: "both s2i.username and s2i.password are needed".into(),
                    });
                }
            }
        }

        if let Some(p) = &self.docker_config {
            let (file, label) = mounted_docker_config(p);
            match docker_file(&file, registry, &label) {
                Ok(c) => return found(c, tried),
                Err(why) => tried.push(why),
            }
        } else {
            tried.push("dockerConfig/CIAO_DOCKER_CONFIG: not set".into());
        }

        match &self.docker_home {
            Some(file) => {
                let label = format!("docker config {}", file.display());
                match docker_file(file, registry, &label) {
                    Ok(c) => return found(c, tried),
                    Err(why) => tried.push(why),
                }
            }
            None => tried.push("docker config: no HOME or DOCKER_CONFIG".into()),
        }
        Ok(Lookup { credential: None, tried })
    }
}

/// A credential from a `registries.<host>` entry, if it names one.
fn from_settings(registry: &str, s: &RegistrySettings, label: &str) -> Result<Option<Credential>, ImageError> {
    let bad = |why: String| ImageError::Credentials { registry: registry.to_string(), source_name: label.to_string(), why };
    if let Some(t) = &s.token {
        return Ok(Some(Credential { kind: CredentialKind::Token(t.clone()), source: label.to_string() }));
    }
    let password = match (&s.password, &s.password_file) {
        (Some(p), _) => Some(p.clone()),
        (None, Some(f)) => {
            let text = std::fs::read_to_string(f)
                .map_err(|e| bad(format!("cannot read passwordFile {}: {e}", f.display())))?;
            Some(Secret::new(text.trim_end_matches(['\n', '\r'])))
        }
        (None, None) => None,
    };
    match (&s.username, password) {
        (Some(u), Some(p)) => Ok(Some(Credential {
            kind: CredentialKind::Basic { username: u.clone(), password: p },
            source: label.to_string(),
        })),
        (Some(_), None) => Err(bad("a username needs a password or passwordFile".into())),
        (None, Some(_)) => Err(bad("a password needs a username".into())),
        (None, None) => Ok(None),
    }
}

/// The file of a mounted docker config: the path itself, or
/// `.dockerconfigjson` / `config.json` in a mounted Secret directory.
fn mounted_docker_config(p: &Path) -> (PathBuf, String) {
    let file = if p.is_dir() {
        [".dockerconfigjson", "config.json"].iter().map(|n| p.join(n)).find(|f| f.is_file()).unwrap_or_else(|| p.join(".dockerconfigjson"))
    } else {
        p.to_path_buf()
    };
    let label = format!("dockerConfig {}", file.display());
    (file, label)
}

/// A credential from a docker config file (auths, credHelpers, credsStore),
/// or why there is none.
fn docker_file(file: &Path, registry: &str, label: &str) -> Result<Credential, String> {
    let text = match std::fs::read(file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(format!("{label}: no such file")),
        Err(e) => return Err(format!("{label}: unreadable ({e})")),
    };
    credential_from_docker_config(&text, registry, label)
}

/// The credential a docker config document (`config.json` or a
/// `.dockerconfigjson`) gives for `registry`, or why there is none;
/// `label` names the file in messages. A credential helper the document
/// names is run (`docker-credential-<name> get`).
///
/// # Errors
/// Why the document gives no credential: no entry, invalid JSON, a helper
/// that failed or could not be run. Never a secret.
pub fn credential_from_docker_config(text: &[u8], registry: &str, label: &str) -> Result<Credential, String> {
    let mut servers = vec![registry.to_string()];
    if registry == DOCKER_HUB {
        servers.push("https://index.docker.io/v1/".into());
    }
    let mut last = String::new();
    for server in &servers {
        match docker_credential::get_credential_from_reader(text, server) {
            Ok(docker_credential::DockerCredential::UsernamePassword(u, p)) => {
                return Ok(Credential {
                    kind: CredentialKind::Basic { username: u, password: Secret::new(p) },
                    source: label.to_string(),
                });
            }
            Ok(docker_credential::DockerCredential::IdentityToken(t)) => {
                return Ok(Credential { kind: CredentialKind::IdentityToken(Secret::new(t)), source: label.to_string() });
            }
            Err(docker_credential::CredentialRetrievalError::NoCredentialConfigured) => {
                last = format!("{label}: no entry for {registry}");
            }
            Err(docker_credential::CredentialRetrievalError::ConfigReadError) => {
                return Err(format!("{label}: not a docker config (invalid JSON)"));
            }
            Err(docker_credential::CredentialRetrievalError::HelperFailure { helper, .. }) => {
                last = format!("{label}: credential helper {helper} failed");
            }
            Err(docker_credential::CredentialRetrievalError::HelperCommunicationError) => {
                last = format!("{label}: credential helper for {registry} could not be run (not on PATH?)");
            }
            Err(e) => last = format!("{label}: {e}"),
        }
    }
    Err(last)
}

/// What a registry's `WWW-Authenticate` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// No challenge: anonymous access.
    None,
    Basic,
    Bearer { realm: String, service: Option<String> },
}

/// Parses a `WWW-Authenticate` header (a Bearer challenge wins over Basic).
pub fn parse_challenge(header: &str) -> Challenge {
    let Ok(challenges) = http_auth::parse_challenges(header) else {
        return if header.trim_start().to_ascii_lowercase().starts_with("basic") { Challenge::Basic } else { Challenge::None };
    };
    let mut basic = false;
    for c in &challenges {
        if c.scheme.eq_ignore_ascii_case("bearer") {
            let get = |k: &str| c.params.iter().find(|(n, _)| n.eq_ignore_ascii_case(k)).map(|(_, v)| v.to_unescaped());
            if let Some(realm) = get("realm") {
                return Challenge::Bearer { realm, service: get("service") };
            }
        } else if c.scheme.eq_ignore_ascii_case("basic") {
            basic = true;
        }
    }
    if basic { Challenge::Basic } else { Challenge::None }
}

/// A repository scope of a token request.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Scope {
    pub repository: String,
    pub push: bool,
}

impl Scope {
    pub fn pull(repository: &str) -> Scope {
        Scope { repository: repository.to_string(), push: false }
    }

    pub fn push(repository: &str) -> Scope {
        Scope { repository: repository.to_string(), push: true }
    }

    /// `repository:NAME:pull[,push]`.
    pub fn to_param(&self) -> String {
        format!("repository:{}:{}", self.repository, if self.push { "pull,push" } else { "pull" })
    }
}

/// Merges scopes: one entry per repository, push if any asked for it.
pub fn merge_scopes(scopes: impl IntoIterator<Item = Scope>) -> Vec<Scope> {
    let mut by_repo: BTreeMap<String, bool> = BTreeMap::new();
    for s in scopes {
        *by_repo.entry(s.repository).or_insert(false) |= s.push;
    }
    by_repo.into_iter().map(|(repository, push)| Scope { repository, push }).collect()
}

/// A bearer token and how long it lasts.
#[derive(Clone)]
pub struct Token {
    pub token: Secret,
    pub expires_in: Option<Duration>,
}

/// Why a token request failed.
#[derive(Debug)]
pub enum TokenFailure {
    /// The token endpoint refused the credentials.
    Refused(u16),
    /// The endpoint could not be reached or answered nonsense.
    Transport(reqwest::Error),
    Invalid(String),
}

/// Asks the token endpoint `realm` for a token covering `scopes`.
///
/// Basic credentials go in an `Authorization` header (GET, as Docker does);
/// an identity token is exchanged as an OAuth2 refresh token (POST); without
/// a credential the request is anonymous (public pulls).
pub async fn fetch_token(
    http: &reqwest::Client,
    realm: &str,
    service: Option<&str>,
    scopes: &[Scope],
    credential: Option<&Credential>,
) -> Result<Token, TokenFailure> {
    let scope_params: Vec<String> = scopes.iter().map(Scope::to_param).collect();
    let request = match credential.map(|c| &c.kind) {
        Some(CredentialKind::IdentityToken(t)) => {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            form.append_pair("grant_type", "refresh_token");
            form.append_pair("refresh_token", t.expose());
            form.append_pair("client_id", "ciao");
            if let Some(s) = service {
                form.append_pair("service", s);
            }
            form.append_pair("scope", &scope_params.join(" "));
            http.post(realm).header("Content-Type", "application/x-www-form-urlencoded").body(form.finish())
        }
        other => {
            let mut url = url::Url::parse(realm).map_err(|e| TokenFailure::Invalid(format!("token realm {realm:?}: {e}")))?;
            {
                let mut q = url.query_pairs_mut();
                if let Some(s) = service {
                    q.append_pair("service", s);
                }
                for s in &scope_params {
                    q.append_pair("scope", s);
                }
            }
            let r = http.get(url);
            match other {
                Some(CredentialKind::Basic { username, password }) => r.basic_auth(username, Some(password.expose())),
                Some(CredentialKind::Token(t)) => r.bearer_auth(t.expose()),
                _ => r,
            }
        }
    };
    let response = request.send().await.map_err(TokenFailure::Transport)?;
    let status = response.status();
    if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
        return Err(TokenFailure::Refused(status.as_u16()));
    }
    if !status.is_success() {
        return Err(TokenFailure::Invalid(format!("the token endpoint answered {status}")));
    }
    #[derive(serde::Deserialize)]
    struct Answer {
        token: Option<String>,
        access_token: Option<String>,
        expires_in: Option<u64>,
    }
    let a: Answer = response.json().await.map_err(TokenFailure::Transport)?;
    let token = a.token.or(a.access_token).filter(|t| !t.is_empty()).ok_or_else(|| TokenFailure::Invalid("the token endpoint sent no token".into()))?;
    Ok(Token { token: Secret::new(token), expires_in: a.expires_in.map(Duration::from_secs) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(yaml: &str) -> Config {
        Config::from_yaml(yaml, None, &BTreeMap::new()).unwrap()
    }

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn the_ciao_config_comes_first_and_secrets_stay_hidden() {
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "s3cret-from-file\n").unwrap();
        let c = config(&format!(
            "registries:\n  r.example:5000:\n    username: robot$ciao\n    passwordFile: {}\n",
            pw.display()
        ));
        let k = Keychain::new(&c, &env(&[("HOME", dir.path().to_str().unwrap())]));
        let l = k.lookup("r.example:5000").unwrap();
        let cred = l.credential.unwrap();
        assert_eq!(cred.username(), Some("robot$ciao"));
        assert!(matches!(&cred.kind, CredentialKind::Basic { password, .. } if password.expose() == "s3cret-from-file"));
        assert!(!format!("{cred:?} {:?}", l.tried).contains("s3cret"));
    }

    #[test]
    fn s2i_credentials_apply_to_the_registry_prefix_only() {
        let c = config("registry: r.example:5000/team\ns2i:\n  username: bob\n  password: pw\n");
        let dir = tempfile::tempdir().unwrap();
        let k = Keychain::new(&c, &env(&[("HOME", dir.path().to_str().unwrap())]));
        assert_eq!(k.lookup("r.example:5000").unwrap().credential.unwrap().username(), Some("bob"));
        let other = k.lookup("other.example").unwrap();
        assert!(other.credential.is_none());
        assert_eq!(other.tried.len(), 3, "{:?}", other.tried);
    }

    #[test]
    fn docker_config_auths_and_mounted_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let docker = dir.path().join("docker");
        std::fs::create_dir(&docker).unwrap();
        // "alice:pa$$" in base64.
        std::fs::write(docker.join("config.json"), r#"{"auths":{"r.example:5000":{"auth":"YWxpY2U6cGEkJA=="}}}"#).unwrap();
        let secret = dir.path().join("secret");
        std::fs::create_dir(&secret).unwrap();
        std::fs::write(secret.join(".dockerconfigjson"), r#"{"auths":{"m.example":{"username":"carol","password":"x"}}}"#).unwrap();
        let c = config(&format!("dockerConfig: {}\n", secret.display()));
        let k = Keychain::new(&c, &env(&[("DOCKER_CONFIG", docker.to_str().unwrap())]));
        let a = k.lookup("r.example:5000").unwrap();
        assert_eq!(a.credential.as_ref().unwrap().username(), Some("alice"));
        assert!(a.tried.iter().any(|t| t.contains(".dockerconfigjson") && t.contains("no entry")), "{:?}", a.tried);
        let m = k.lookup("m.example").unwrap();
        assert_eq!(m.credential.unwrap().username(), Some("carol"));
    }

    #[test]
    fn incomplete_entries_are_errors_not_silence() {
        let c = config("registries:\n  r.example:\n    username: u\n");
        let e = Keychain::new(&c, &env(&[])).lookup("r.example").unwrap_err().to_string();
        assert!(e.contains("needs a password"), "{e}");
    }

    #[test]
    fn challenges_are_parsed() {
        assert_eq!(
            parse_challenge(r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a:pull""#),
            Challenge::Bearer { realm: "https://auth.example/token".into(), service: Some("registry.example".into()) }
        );
        assert_eq!(parse_challenge(r#"Basic realm="Registry Realm""#), Challenge::Basic);
        assert_eq!(parse_challenge(""), Challenge::None);
    }

    #[test]
    fn scopes_merge_per_repository() {
        let s = merge_scopes([Scope::pull("base"), Scope::push("app"), Scope::pull("app")]);
        let p: Vec<_> = s.iter().map(Scope::to_param).collect();
        assert_eq!(p, ["repository:app:pull,push", "repository:base:pull"]);
    }
}
