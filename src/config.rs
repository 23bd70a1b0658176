//! ciao's configuration: a YAML file plus environment overrides.
//!
//! The file is `~/.ciao/config.yaml` unless `CIAO_CONFIG` names another. It
//! accepts the original ciao keys (`kubeconfig`, `namespace`, `s2i.*`,
//! `worker|ps|master.cpu|memory|gpu`) and the new ones documented in the
//! README. Precedence, applied when a plan is made: cell magic > environment >
//! config file > built-in default. A missing file means built-in defaults; a
//! bad one is an error naming the file and the key, reported when a cell
//! first needs the configuration (the kernel stays up).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::interpreter::params::{BackendKind, OnInterrupt, Provider, Quantity, Resources};
use crate::interpreter::quantity;

/// A secret value (password, token): never printed, not even by `Debug`.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The value, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The original ciao's `s2i` section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct S2iSection {
    /// `configmap`, or `s2i` / `img` (both mean the in-process image build).
    provider: Option<String>,
    /// Target repository prefix.
    registry: Option<String>,
    username: Option<String>,
    password: Option<Secret>,
}

/// `cpu`, `memory`, `gpu` as written in the file (numbers or strings).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResourcesSection {
    cpu: Option<ScalarText>,
    memory: Option<ScalarText>,
    gpu: Option<ScalarText>,
}

/// A YAML scalar kept as text (`cpu: 1` and `cpu: "1"` mean the same).
#[derive(Debug, Clone, PartialEq)]
struct ScalarText(String);

impl<'de> Deserialize<'de> for ScalarText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Any {
            S(String),
            I(i64),
            F(f64),
        }
        Ok(ScalarText(match Any::deserialize(d)? {
            Any::S(s) => s,
            Any::I(i) => i.to_string(),
            Any::F(f) => f.to_string(),
        }))
    }
}

/// Settings for one registry host (`host[:port]`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegistrySettings {
    /// Allow plain HTTP (and only then).
    #[serde(default)]
    pub insecure: bool,
    /// Extra CA bundle (PEM) trusted for this registry.
    #[serde(default, alias = "caFile")]
    pub ca: Option<PathBuf>,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// A file holding the password (e.g. a mounted Secret).
    pub password_file: Option<PathBuf>,
    /// A bearer token used as is.
    pub token: Option<Secret>,
    /// The Kubernetes Secret jobs use to pull from this registry (imagePullSecrets).
    pub pull_secret: Option<String>,
    /// The name cluster nodes use for this registry, written into jobs.
    pub pull_prefix: Option<String>,
}

/// The file as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct File {
    kubeconfig: Option<PathBuf>,
    namespace: Option<String>,
    s2i: Option<S2iSection>,
    worker: Option<ResourcesSection>,
    ps: Option<ResourcesSection>,
    master: Option<ResourcesSection>,
    chief: Option<ResourcesSection>,
    evaluator: Option<ResourcesSection>,
    launcher: Option<ResourcesSection>,
    /// Defaults for every role, and for role-less frameworks.
    resources: Option<ResourcesSection>,

    framework: Option<String>,
    backend: Option<String>,
    provider: Option<String>,
    registry: Option<String>,
    #[serde(default)]
    registries: BTreeMap<String, RegistrySettings>,
    #[serde(default)]
    mirrors: BTreeMap<String, String>,
    platform: Option<String>,
    layout: Option<PathBuf>,
    docker_config: Option<PathBuf>,
    frameworks_dir: Option<PathBuf>,
    on_interrupt: Option<String>,
    /// Add `sidecar.istio.io/inject: "false"` to job pods (default true).
    disable_istio_sidecar: Option<bool>,
    /// A JSON merge patch applied to every job pod template.
    pod_template: Option<serde_json::Value>,
    /// The training runtime a TrainJob uses without `%runtime=`.
    runtime: Option<String>,
    /// Colour each replica's `[name]` prefix with ANSI colours (default false).
    log_colors: Option<bool>,
}

/// The effective configuration: file + environment, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Where it was read from (`None`: no file, built-in defaults).
    pub path: Option<PathBuf>,
    pub kubeconfig: Option<PathBuf>,
    pub namespace: Option<String>,
    pub framework: Option<String>,
    pub backend: Option<BackendKind>,
    pub provider: Option<Provider>,
    /// Target repository prefix, e.g. `registry.local:5000/team`.
    pub registry: Option<String>,
    /// Credentials for the registry prefix from the original `s2i` keys.
    pub s2i_username: Option<String>,
    pub s2i_password: Option<Secret>,
    pub registries: BTreeMap<String, RegistrySettings>,
    /// Base-image registry rewrites, e.g. `docker.io` → `registry.local/mirror`.
    pub mirrors: BTreeMap<String, String>,
    /// Platform picked from a multi-platform base (`linux/amd64`).
    pub platform: String,
    /// OCI image layout directory (the embedded default target).
    pub layout: PathBuf,
    /// Extra docker `config.json` / `.dockerconfigjson` to read credentials from.
    pub docker_config: Option<PathBuf>,
    pub frameworks_dir: Option<PathBuf>,
    pub on_interrupt: Option<OnInterrupt>,
    pub disable_istio_sidecar: bool,
    pub pod_template: Option<serde_json::Value>,
    pub runtime: Option<String>,
    /// Default resources by role magic (`worker`, `ps`, …); key `""` applies to all.
    pub role_resources: BTreeMap<String, Resources>,
    /// Extra CA bundle for every registry (`CIAO_CA_FILE`).
    pub ca_file: Option<PathBuf>,
    /// `host:port`s allowed over plain HTTP (`CIAO_INSECURE_REGISTRIES` and `insecure: true`).
    pub insecure: Vec<String>,
    /// Colour replica prefixes in job logs (`logColors`, `CIAO_LOG_COLORS`).
    pub log_colors: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the ciao config {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the ciao config {path} is not valid: {message} (fix the file, or point CIAO_CONFIG at another)")]
    Parse { path: String, message: String },
    #[error("the ciao config {origin}: {message}")]
    Invalid { origin: String, message: String },
}

/// A source of environment variables (the process environment, or a map in tests).
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
}

impl Env for BTreeMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned().filter(|v| !v.is_empty())
    }
}

/// `~/.ciao`, where the config and the local image layout live by default.
pub fn ciao_home(env: &dyn Env) -> PathBuf {
    if let Some(h) = env.var("CIAO_HOME") {
        return PathBuf::from(h);
    }
    env.var("HOME").map(PathBuf::from).or_else(dirs::home_dir).unwrap_or_else(|| PathBuf::from("/tmp")).join(".ciao")
}

/// The config file path: `CIAO_CONFIG`, else `~/.ciao/config.yaml`.
pub fn config_path(env: &dyn Env) -> PathBuf {
    env.var("CIAO_CONFIG").map(PathBuf::from).unwrap_or_else(|| ciao_home(env).join("config.yaml"))
}

impl Config {
    /// Reads the config from the process environment's file and variables.
    pub fn load() -> Result<Config, ConfigError> {
        Self::load_with(&ProcessEnv, None)
    }

    /// Reads `file` (or the default path) and applies `env`'s overrides.
    /// A missing default file is fine; a missing explicit file is an error.
    pub fn load_with(env: &dyn Env, file: Option<&Path>) -> Result<Config, ConfigError> {
        let explicit = file.map(Path::to_path_buf).or_else(|| env.var("CIAO_CONFIG").map(PathBuf::from));
        let path = explicit.clone().unwrap_or_else(|| config_path(env));
        match std::fs::read_to_string(&path) {
            Ok(text) => Self::from_yaml(&text, Some(&path), env),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && explicit.is_none() => Self::from_yaml("", None, env),
            Err(source) => Err(ConfigError::Read { path: path.display().to_string(), source }),
        }
    }

    /// Parses `text` as a config file (`path` is for messages) and applies `env`.
    pub fn from_yaml(text: &str, path: Option<&Path>, env: &dyn Env) -> Result<Config, ConfigError> {
        let shown = path.map(|p| p.display().to_string()).unwrap_or_else(|| "(built-in defaults)".into());
        let file: File = if text.trim().is_empty() {
            File::default()
        } else {
            serde_saphyr::from_str(text).map_err(|e| ConfigError::Parse { path: shown.clone(), message: e.to_string() })?
        };
        let invalid = |message: String| ConfigError::Invalid { origin: shown.clone(), message };
        let env_invalid = |var: &str, message: String| ConfigError::Invalid { origin: format!("environment variable {var}"), message };

        let s2i = file.s2i.clone().unwrap_or_default();
        let mut provider = match s2i.provider.as_deref() {
            None => None,
            Some("configmap") => Some(Provider::ConfigMap),
            Some("s2i" | "img" | "image") => Some(Provider::Image),
            Some(other) => {
                return Err(invalid(format!("s2i.provider {other:?} is not one of configmap, s2i, img")));
            }
        };
        if let Some(p) = &file.provider {
            provider = Some(parse_provider(p).map_err(invalid)?);
        }
        if let Some(p) = env.var("CIAO_PROVIDER") {
            provider = Some(parse_provider(&p).map_err(|m| env_invalid("CIAO_PROVIDER", m))?);
        }

        let mut backend = file.backend.as_deref().map(parse_backend).transpose().map_err(invalid)?;
        if let Some(b) = env.var("CIAO_BACKEND") {
            backend = Some(parse_backend(&b).map_err(|m| env_invalid("CIAO_BACKEND", m))?);
        }

        let mut on_interrupt = file.on_interrupt.as_deref().map(parse_on_interrupt).transpose().map_err(invalid)?;
        if let Some(v) = env.var("CIAO_ON_INTERRUPT") {
            on_interrupt = Some(parse_on_interrupt(&v).map_err(|m| env_invalid("CIAO_ON_INTERRUPT", m))?);
        }

        let mut role_resources = BTreeMap::new();
        let sections = [
            ("", &file.resources),
            ("worker", &file.worker),
            ("ps", &file.ps),
            ("master", &file.master),
            ("chief", &file.chief),
            ("evaluator", &file.evaluator),
            ("launcher", &file.launcher),
        ];
        for (role, section) in sections {
            if let Some(s) = section {
                let key = if role.is_empty() { "resources".to_string() } else { role.to_string() };
                role_resources.insert(role.to_string(), resources_from(s, &key).map_err(invalid)?);
            }
        }

        let registry = env.var("CIAO_REGISTRY").or(file.registry.clone()).or(s2i.registry.clone());
        if let Some(r) = &registry {
            validate_registry_prefix(r).map_err(|m| {
                if env.var("CIAO_REGISTRY").is_some() { env_invalid("CIAO_REGISTRY", m) } else { invalid(m) }
            })?;
        }

        let mut insecure: Vec<String> =
            file.registries.iter().filter(|(_, s)| s.insecure).map(|(h, _)| h.clone()).collect();
        if let Some(list) = env.var("CIAO_INSECURE_REGISTRIES") {
            insecure.extend(list.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from));
        }
        insecure.sort();
        insecure.dedup();

        let log_colors = match env.var("CIAO_LOG_COLORS") {
            Some(v) => parse_bool(&v).map_err(|m| env_invalid("CIAO_LOG_COLORS", m))?,
            None => file.log_colors.unwrap_or(false),
        };

        let platform = env.var("CIAO_PLATFORM").or(file.platform.clone()).unwrap_or_else(|| "linux/amd64".into());
        if platform.split('/').count() < 2 {
            return Err(invalid(format!("platform {platform:?} must look like os/arch, e.g. linux/amd64")));
        }

        for (from, to) in &file.mirrors {
            if from.is_empty() || to.is_empty() {
                return Err(invalid(format!("mirrors: {from:?} → {to:?} needs both a registry and a mirror")));
            }
        }

        if let Some(p) = &file.pod_template
            && !p.is_object()
        {
            return Err(invalid("podTemplate must be a mapping (a patch applied to every job pod template)".into()));
        }

        Ok(Config {
            path: path.map(Path::to_path_buf),
            kubeconfig: env.var("KUBECONFIG").map(PathBuf::from).or(file.kubeconfig),
            namespace: env.var("CIAO_NAMESPACE").or(file.namespace),
            framework: env.var("CIAO_FRAMEWORK").or(file.framework),
            backend,
            provider,
            registry,
            s2i_username: s2i.username,
            s2i_password: s2i.password,
            registries: file.registries,
            mirrors: file.mirrors,
            platform,
            layout: env.var("CIAO_LAYOUT").map(PathBuf::from).or(file.layout).unwrap_or_else(|| ciao_home(env).join("oci")),
            docker_config: env.var("CIAO_DOCKER_CONFIG").map(PathBuf::from).or(file.docker_config),
            frameworks_dir: env.var("CIAO_FRAMEWORKS_DIR").map(PathBuf::from).or(file.frameworks_dir),
            on_interrupt,
            disable_istio_sidecar: file.disable_istio_sidecar.unwrap_or(true),
            pod_template: file.pod_template,
            runtime: file.runtime,
            role_resources,
            ca_file: env.var("CIAO_CA_FILE").map(PathBuf::from),
            insecure,
            log_colors,
        })
    }

    /// The registry host (`host[:port]`) of the target prefix.
    pub fn registry_host(&self) -> Option<&str> {
        self.registry.as_deref().map(|r| r.split('/').next().unwrap_or(r))
    }

    /// Settings for `host`, or defaults.
    pub fn registry_settings(&self, host: &str) -> RegistrySettings {
        self.registries.get(host).cloned().unwrap_or_default()
    }

    /// Whether plain HTTP is allowed for `host`.
    pub fn is_insecure(&self, host: &str) -> bool {
        self.insecure.iter().any(|h| h == host)
    }

    /// Default resources for `role` (`None` for role-less frameworks): the
    /// role's own section, then `resources`.
    pub fn resources_for(&self, role: Option<&str>) -> Resources {
        let general = self.role_resources.get("").cloned().unwrap_or_default();
        match role.and_then(|r| self.role_resources.get(r)) {
            Some(r) => r.or(&general),
            None => general,
        }
    }
}

fn parse_provider(s: &str) -> Result<Provider, String> {
    match s {
        "image" | "s2i" | "img" => Ok(Provider::Image),
        "configmap" => Ok(Provider::ConfigMap),
        other => Err(format!("provider {other:?} is not one of image, configmap")),
    }
}

fn parse_backend(s: &str) -> Result<BackendKind, String> {
    match s {
        "local" => Ok(BackendKind::Local),
        "kubernetes" | "k8s" => Ok(BackendKind::Kubernetes),
        other => Err(format!("backend {other:?} is not one of local, kubernetes")),
    }
}

fn parse_bool(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        other => Err(format!("{other:?} is not a yes/no value; use true or false")),
    }
}

fn parse_on_interrupt(s: &str) -> Result<OnInterrupt, String> {
    match s {
        "delete" => Ok(OnInterrupt::Delete),
        "detach" => Ok(OnInterrupt::Detach),
        other => Err(format!("onInterrupt {other:?} is not one of delete, detach")),
    }
}

fn resources_from(s: &ResourcesSection, key: &str) -> Result<Resources, String> {
    let q = |field: &str, v: &Option<ScalarText>| -> Result<Option<Quantity>, String> {
        match v {
            None => Ok(None),
            Some(ScalarText(t)) => quantity::parse(t)
                .map(Some)
                .map_err(|why| format!("{key}.{field} {t:?} is not a Kubernetes quantity: {why}")),
        }
    };
    let gpu = match &s.gpu {
        None => None,
        Some(ScalarText(t)) => Some(
            t.parse::<u32>().map_err(|_| format!("{key}.gpu {t:?} must be a whole number of GPUs"))?,
        ),
    };
    Ok(Resources { cpu: q("cpu", &s.cpu)?, memory: q("memory", &s.memory)?, gpu })
}

/// `host[:port]/path` with a host that looks like a registry.
fn validate_registry_prefix(r: &str) -> Result<(), String> {
    if r.contains("://") {
        return Err(format!(
            "registry {r:?} must be HOST[:PORT]/PREFIX without a scheme (list plain-HTTP registries in CIAO_INSECURE_REGISTRIES)"
        ));
    }
    let host = r.split('/').next().unwrap_or("");
    if host.is_empty() || r.ends_with('/') || r.contains("//") || r.chars().any(|c| c.is_whitespace()) {
        return Err(format!("registry {r:?} must look like HOST[:PORT]/PREFIX, e.g. registry.local:5000/team"));
    }
    if r.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(format!("registry {r:?} must be lowercase (repository names are lowercase)"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn the_original_ciao_keys_are_accepted() {
        let text = "kubeconfig: /var/run/kubernetes/admin.kubeconfig\nnamespace: kubeflow\ns2i:\n  provider: img\n  registry: registry.local:5000/ciao\n  username: bob\n  password: hunter2\nworker:\n  cpu: 2\n  memory: 4Gi\nps:\n  cpu: \"1\"\n  memory: 1Gi\nmaster:\n  gpu: 1\n";
        let c = Config::from_yaml(text, Some(Path::new("/x/config.yaml")), &env(&[])).unwrap();
        assert_eq!(c.kubeconfig.as_deref(), Some(Path::new("/var/run/kubernetes/admin.kubeconfig")));
        assert_eq!(c.namespace.as_deref(), Some("kubeflow"));
        assert_eq!(c.provider, Some(Provider::Image));
        assert_eq!(c.registry.as_deref(), Some("registry.local:5000/ciao"));
        assert_eq!(c.registry_host(), Some("registry.local:5000"));
        assert_eq!(c.s2i_username.as_deref(), Some("bob"));
        assert_eq!(c.s2i_password.as_ref().unwrap().expose(), "hunter2");
        assert_eq!(c.resources_for(Some("worker")).cpu, Some(Quantity("2".into())));
        assert_eq!(c.resources_for(Some("ps")).memory, Some(Quantity("1Gi".into())));
        assert_eq!(c.resources_for(Some("master")).gpu, Some(1));
        assert_eq!(c.resources_for(Some("chief")), Resources::default());
    }

    #[test]
    fn log_colours_are_off_unless_the_file_or_the_environment_turns_them_on() {
        assert!(!Config::from_yaml("", None, &env(&[])).unwrap().log_colors);
        assert!(Config::from_yaml("logColors: true\n", None, &env(&[])).unwrap().log_colors);
        assert!(!Config::from_yaml("logColors: true\n", None, &env(&[("CIAO_LOG_COLORS", "0")])).unwrap().log_colors);
        assert!(Config::from_yaml("", None, &env(&[("CIAO_LOG_COLORS", "yes")])).unwrap().log_colors);
        let e = Config::from_yaml("", None, &env(&[("CIAO_LOG_COLORS", "blue")])).unwrap_err().to_string();
        assert!(e.contains("CIAO_LOG_COLORS") && e.contains("true or false"), "{e}");
    }

    #[test]
    fn configmap_provider_from_the_original_key() {
        let c = Config::from_yaml("s2i:\n  provider: configmap\n", None, &env(&[])).unwrap();
        assert_eq!(c.provider, Some(Provider::ConfigMap));
    }

    #[test]
    fn environment_overrides_the_file() {
        let text = "registry: a.example/x\nbackend: local\nnamespace: fromfile\n";
        let e = env(&[
            ("CIAO_REGISTRY", "b.example:5000/y"),
            ("CIAO_BACKEND", "kubernetes"),
            ("CIAO_NAMESPACE", "fromenv"),
            ("CIAO_INSECURE_REGISTRIES", "127.0.0.1:5000, b.example:5000"),
            ("CIAO_CA_FILE", "/etc/ca.pem"),
        ]);
        let c = Config::from_yaml(text, None, &e).unwrap();
        assert_eq!(c.registry.as_deref(), Some("b.example:5000/y"));
        assert_eq!(c.backend, Some(BackendKind::Kubernetes));
        assert_eq!(c.namespace.as_deref(), Some("fromenv"));
        assert!(c.is_insecure("127.0.0.1:5000") && c.is_insecure("b.example:5000"));
        assert!(!c.is_insecure("a.example"));
        assert_eq!(c.ca_file.as_deref(), Some(Path::new("/etc/ca.pem")));
    }

    #[test]
    fn per_registry_settings_and_mirrors() {
        let text = "registries:\n  registry.local:5000:\n    insecure: true\n    username: robot$ciao\n    pullSecret: regcred\n    pullPrefix: registry.svc:5000\nmirrors:\n  docker.io: registry.local:5000/mirror\n";
        let c = Config::from_yaml(text, None, &env(&[])).unwrap();
        let s = c.registry_settings("registry.local:5000");
        assert_eq!(s.username.as_deref(), Some("robot$ciao"));
        assert_eq!(s.pull_secret.as_deref(), Some("regcred"));
        assert!(c.is_insecure("registry.local:5000"));
        assert_eq!(c.mirrors.get("docker.io").map(String::as_str), Some("registry.local:5000/mirror"));
    }

    #[test]
    fn bad_configs_name_the_file_and_the_key() {
        let p = Some(Path::new("/home/u/.ciao/config.yaml"));
        let e = Config::from_yaml("backend: cloud\n", p, &env(&[])).unwrap_err().to_string();
        assert!(e.contains("/home/u/.ciao/config.yaml") && e.contains("\"cloud\"") && e.contains("local, kubernetes"), "{e}");
        let e = Config::from_yaml("worker:\n  memory: lots\n", p, &env(&[])).unwrap_err().to_string();
        assert!(e.contains("worker.memory") && e.contains("lots"), "{e}");
        let e = Config::from_yaml("registy: x/y\n", p, &env(&[])).unwrap_err().to_string();
        assert!(e.contains("registy"), "{e}");
        let e = Config::from_yaml("registry: http://x/y\n", p, &env(&[])).unwrap_err().to_string();
        assert!(e.contains("without a scheme"), "{e}");
        let e = Config::from_yaml("", None, &env(&[("CIAO_BACKEND", "nope")])).unwrap_err().to_string();
        assert!(e.contains("CIAO_BACKEND"), "{e}");
    }

    #[test]
    fn secrets_are_redacted_in_debug_output() {
        let c = Config::from_yaml("s2i:\n  password: s3cr3t-canary\n", None, &env(&[])).unwrap();
        assert!(!format!("{c:?}").contains("s3cr3t-canary"));
    }

    #[test]
    fn a_missing_default_file_is_fine_but_a_missing_named_file_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let e = env(&[("HOME", dir.path().to_str().unwrap())]);
        let c = Config::load_with(&e, None).unwrap();
        assert_eq!(c.path, None);
        assert_eq!(c.layout, dir.path().join(".ciao/oci"));
        let missing = dir.path().join("nope.yaml");
        let err = Config::load_with(&e, Some(&missing)).unwrap_err().to_string();
        assert!(err.contains("nope.yaml"), "{err}");
    }
}
