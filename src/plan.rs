//! A cell's plan: its parameters resolved against the environment, the
//! configuration and the framework descriptor (cell > environment > config >
//! built-in default). Everything after phase 1 works from a [`Plan`]; `%dryrun`
//! shows one.

use std::fmt::Write as _;

use crate::config::Config;
use crate::frameworks::{Descriptor, Frameworks};
use crate::interpreter::params::{
    BackendKind, CleanPolicy, JobParams, OnInterrupt, Provider, Resources, SecretEnv, Toleration, Volume,
};
use crate::output::{CellError, MimeBundle, bundle};

/// The framework used when neither the cell nor the configuration names one.
pub const DEFAULT_FRAMEWORK: &str = "python";

/// One replica type of the job with its final count and resources.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaPlan {
    /// The role's magic (`worker`), or the framework name for role-less frameworks.
    pub role: String,
    /// The operator's replica type (`Worker`); empty for role-less frameworks.
    pub replica_type: String,
    pub replicas: u32,
    pub resources: Resources,
    /// The container command (the role's own, or the descriptor's).
    pub command: Vec<String>,
}

/// Where the image goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageTarget {
    /// A registry repository, with an explicit tag or none (the tag is then
    /// derived from the content digest).
    Registry { repository: String, tag: Option<String> },
    /// The local OCI image layout directory.
    Layout { dir: std::path::PathBuf, name: String },
    /// No image: the code ships in a ConfigMap mounted over the base image.
    ConfigMap,
}

impl ImageTarget {
    pub fn describe(&self) -> String {
        match self {
            ImageTarget::Registry { repository, tag } => match tag {
                Some(t) => format!("{repository}:{t}"),
                None => format!("{repository}:<content digest>"),
            },
            ImageTarget::Layout { dir, name } => format!("oci:{}:{name}", dir.display()),
            ImageTarget::ConfigMap => "none (code in a ConfigMap)".into(),
        }
    }
}

/// Everything needed to build the image and run the job.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub framework: Descriptor,
    /// Replica types with at least one replica, in descriptor order.
    pub replicas: Vec<ReplicaPlan>,
    /// TrainJob node count.
    pub nodes: Option<u32>,
    /// TrainJob runtime.
    pub runtime: Option<String>,
    /// `None`: the operator's default.
    pub clean_policy: Option<CleanPolicy>,
    /// Base image as the cell or descriptor names it (before mirror rewriting).
    pub base_image: String,
    pub target: ImageTarget,
    /// `None`: the backend's own default (kubeconfig context, service account, `default`).
    pub namespace: Option<String>,
    pub backend: BackendKind,
    pub provider: Provider,
    pub on_interrupt: OnInterrupt,
    /// Job name prefix (`%name=`, else the framework).
    pub name_prefix: String,
    pub env: Vec<(String, String)>,
    pub packages: Vec<String>,
    pub pip_index_url: Option<String>,
    pub volumes: Vec<Volume>,
    pub secret_env: Vec<SecretEnv>,
    pub node_selector: Vec<(String, String)>,
    pub tolerations: Vec<Toleration>,
    pub service_account: Option<String>,
    pub queue: Option<String>,
    pub labels: Vec<(String, String)>,
    pub annotations: Vec<(String, String)>,
    pub files: Vec<String>,
}

/// Whether a Kubernetes cluster is configured: a kubeconfig (setting,
/// `KUBECONFIG`, `~/.kube/config`) or an in-cluster service account.
pub fn cluster_configured(config: &Config) -> bool {
    if config.kubeconfig.is_some() || std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() {
        return true;
    }
    dirs::home_dir().is_some_and(|h| h.join(".kube/config").is_file())
}

impl Plan {
    /// Resolves `params` (cell) over `config` (environment + file) and the descriptors.
    ///
    /// # Errors
    /// An unknown framework (from the config; the interpreter already checked
    /// the cell's), or an image target that cannot work with the backend.
    pub fn resolve(params: &JobParams, config: &Config, frameworks: &Frameworks) -> Result<Plan, CellError> {
        Self::resolve_with(params, config, frameworks, cluster_configured(config))
    }

    /// [`Plan::resolve`] with the cluster detection given (for tests).
    pub fn resolve_with(
        params: &JobParams,
        config: &Config,
        frameworks: &Frameworks,
        cluster: bool,
    ) -> Result<Plan, CellError> {
        let name = params.framework.clone().or_else(|| config.framework.clone()).unwrap_or_else(|| DEFAULT_FRAMEWORK.into());
        let framework = frameworks.get(&name).cloned().ok_or_else(|| {
            CellError::new(
                "ConfigError",
                format!(
                    "unknown framework {name:?} (from the configuration); valid frameworks: {}",
                    frameworks.names().collect::<Vec<_>>().join(", ")
                ),
            )
        })?;

        let replicas = if framework.is_roleless() {
            vec![ReplicaPlan {
                role: framework.name.clone(),
                replica_type: String::new(),
                replicas: params.nodes.unwrap_or(1),
                resources: params.resources.or(&config.resources_for(None)),
                command: framework.command.clone(),
            }]
        } else {
            let counts: Vec<(String, u32)> = framework
                .job
                .roles
                .iter()
                .map(|r| {
                    let given = params.roles.iter().rev().find(|p| p.role == r.magic);
                    (r.magic.clone(), given.map_or(r.replicas, |g| g.replicas))
                })
                .collect();
            let workers = counts.iter().find(|(m, _)| m == "worker").map_or(0, |(_, n)| *n);
            framework
                .job
                .roles
                .iter()
                .zip(&counts)
                .filter(|(_, (_, n))| *n > 0)
                .map(|(r, (_, n))| {
                    let given = params.roles.iter().rev().find(|p| p.role == r.magic);
                    let resources = given.map(|g| g.resources.clone()).unwrap_or_default().or(&config.resources_for(Some(&r.magic)));
                    let command = r
                        .command
                        .clone()
                        .unwrap_or_else(|| framework.command.clone())
                        .into_iter()
                        .map(|a| a.replace("{workers}", &workers.to_string()))
                        .collect();
                    ReplicaPlan { role: r.magic.clone(), replica_type: r.replica_type.clone(), replicas: *n, resources, command }
                })
                .collect()
        };
        if replicas.iter().all(|r| r.replicas == 0) {
            return Err(CellError::new(
                "MagicError",
                format!("the {} job has no replicas; give at least one role a count, e.g. %worker=1", framework.name),
            ));
        }

        let backend = params.backend.or(config.backend).unwrap_or(if cluster { BackendKind::Kubernetes } else { BackendKind::Local });
        let provider = params.provider.or(config.provider).unwrap_or(Provider::Image);
        let name_prefix = params.name.clone().unwrap_or_else(|| framework.name.clone());

        let target = match provider {
            Provider::ConfigMap => ImageTarget::ConfigMap,
            Provider::Image => match (&params.image, &config.registry) {
                (Some(image), _) => {
                    let (repository, tag) = split_tag(image);
                    ImageTarget::Registry { repository, tag }
                }
                (None, Some(prefix)) => ImageTarget::Registry { repository: format!("{prefix}/{name_prefix}"), tag: None },
                (None, None) if backend == BackendKind::Kubernetes => {
                    return Err(CellError::new(
                        "ConfigError",
                        "a Kubernetes job needs its image in a registry the cluster can pull from: set a registry prefix \
                         (CIAO_REGISTRY, or `registry:` in the ciao config), give %image=REPOSITORY, or use %provider=configmap",
                    ));
                }
                (None, None) => ImageTarget::Layout { dir: config.layout.clone(), name: format!("ciao/{name_prefix}") },
            },
        };

        Ok(Plan {
            replicas,
            nodes: params.nodes,
            runtime: params
                .runtime
                .clone()
                .or_else(|| config.runtime.clone())
                .or_else(|| framework.job.default_runtime.clone()),
            clean_policy: params.clean_policy,
            base_image: params.base.clone().unwrap_or_else(|| framework.image.clone()),
            target,
            namespace: params.namespace.clone().or_else(|| config.namespace.clone()),
            backend,
            provider,
            on_interrupt: params.on_interrupt.or(config.on_interrupt).unwrap_or(OnInterrupt::Delete),
            name_prefix,
            env: params.env.clone(),
            packages: params.packages.clone(),
            pip_index_url: params.pip_index_url.clone(),
            volumes: params.volumes.clone(),
            secret_env: params.secret_env.clone(),
            node_selector: params.node_selector.clone(),
            tolerations: params.tolerations.clone(),
            service_account: params.service_account.clone(),
            queue: params.queue.clone(),
            labels: params.labels.clone(),
            annotations: params.annotations.clone(),
            files: params.files.clone(),
            framework,
        })
    }

    /// Total replica count (pods the job will have).
    pub fn total_replicas(&self) -> u32 {
        self.replicas.iter().map(|r| r.replicas).sum()
    }

    /// The plan as `%dryrun` shows it: text/plain and text/html.
    pub fn to_bundle(&self) -> MimeBundle {
        let rows = self.summary_rows();
        let mut text = String::from("ciao dry run: nothing was built or submitted\n");
        for (k, v) in &rows {
            let _ = writeln!(text, "  {k:<11} {v}");
        }
        text.push_str("  replicas:\n");
        for r in &self.replicas {
            let _ = writeln!(text, "    {:<10} {:>3}  {}", role_label(r), r.replicas, resources_text(&r.resources));
        }
        let mut html = String::from("<div class=\"ciao-dryrun\"><p><b>ciao dry run</b>: nothing was built or submitted</p><table>");
        for (k, v) in &rows {
            let _ = write!(html, "<tr><th style=\"text-align:left\">{}</th><td>{}</td></tr>", escape(k), escape(v));
        }
        html.push_str("</table><table><thead><tr><th>replica type</th><th>replicas</th><th>resources</th></tr></thead><tbody>");
        for r in &self.replicas {
            let _ = write!(
                html,
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&role_label(r)),
                r.replicas,
                escape(&resources_text(&r.resources))
            );
        }
        html.push_str("</tbody></table></div>");
        bundle(text, Some(html))
    }

    fn summary_rows(&self) -> Vec<(&'static str, String)> {
        let kind = format!("{} ({})", self.framework.job.kind, self.framework.job.api_versions[0]);
        let mut rows = vec![
            ("framework", self.framework.name.clone()),
            ("job kind", kind),
            ("base image", self.base_image.clone()),
            ("target", self.target.describe()),
            ("namespace", self.namespace.clone().unwrap_or_else(|| "(from the cluster configuration)".into())),
            ("backend", self.backend.as_str().into()),
            ("provider", self.provider.as_str().into()),
            ("job name", format!("{}-…", self.name_prefix)),
            (
                "cleanPolicy",
                self.clean_policy.map_or_else(|| "(operator default)".into(), |c| c.operator_value().to_string()),
            ),
            ("onInterrupt", self.on_interrupt.as_str().into()),
        ];
        if let Some(r) = &self.runtime {
            rows.push(("runtime", r.clone()));
        }
        if !self.packages.is_empty() {
            rows.push(("packages", self.packages.join(", ")));
        }
        if !self.env.is_empty() {
            rows.push(("env", self.env.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")));
        }
        rows
    }
}

fn role_label(r: &ReplicaPlan) -> String {
    if r.replica_type.is_empty() { r.role.clone() } else { r.replica_type.clone() }
}

/// `cpu=1 memory=2Gi gpu=1`, or `(cluster defaults)`.
pub fn resources_text(r: &Resources) -> String {
    let mut parts = Vec::new();
    if let Some(c) = &r.cpu {
        parts.push(format!("cpu={c}"));
    }
    if let Some(m) = &r.memory {
        parts.push(format!("memory={m}"));
    }
    if let Some(g) = r.gpu {
        parts.push(format!("gpu={g}"));
    }
    if parts.is_empty() { "(cluster defaults)".into() } else { parts.join(" ") }
}

/// `repo:tag` → (`repo`, `Some(tag)`); a `:` in the host's port is not a tag.
pub fn split_tag(image: &str) -> (String, Option<String>) {
    let image = image.split('@').next().unwrap_or(image);
    match image.rfind(':') {
        Some(i) if !image[i + 1..].contains('/') => (image[..i].to_string(), Some(image[i + 1..].to_string())),
        _ => (image.to_string(), None),
    }
}

/// Minimal HTML escaping for text put into tables.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::interpreter::params::{Quantity, RoleParams};

    fn config(yaml: &str) -> Config {
        Config::from_yaml(yaml, None, &BTreeMap::new()).unwrap()
    }

    fn role(role: &str, replicas: u32, cpu: Option<&str>) -> RoleParams {
        RoleParams {
            role: role.into(),
            replicas,
            resources: Resources { cpu: cpu.map(|c| Quantity(c.into())), ..Default::default() },
            line: 1,
        }
    }

    #[test]
    fn tfjob_roles_take_cell_counts_and_config_resources() {
        let params = JobParams {
            framework: Some("tensorflow".into()),
            roles: vec![role("ps", 1, Some("1")), role("worker", 2, None)],
            ..Default::default()
        };
        let c = config("worker:\n  cpu: 3\n  memory: 1Gi\n");
        let p = Plan::resolve_with(&params, &c, Frameworks::embedded(), false).unwrap();
        let got: Vec<_> = p.replicas.iter().map(|r| (r.replica_type.as_str(), r.replicas, resources_text(&r.resources))).collect();
        assert_eq!(got, [("PS", 1, "cpu=1".to_string()), ("Worker", 2, "cpu=3 memory=1Gi".to_string())]);
        assert_eq!(p.backend, BackendKind::Local);
        assert!(matches!(p.target, ImageTarget::Layout { .. }));
        assert_eq!(p.total_replicas(), 3);
    }

    #[test]
    fn cell_beats_config_for_the_target_repository() {
        let c = config("registry: registry.local:5000/team\n");
        let params = JobParams { name: Some("mnist".into()), ..Default::default() };
        let p = Plan::resolve_with(&params, &c, Frameworks::embedded(), true).unwrap();
        assert_eq!(p.target, ImageTarget::Registry { repository: "registry.local:5000/team/mnist".into(), tag: None });
        assert_eq!(p.backend, BackendKind::Kubernetes);
        let params = JobParams { image: Some("registry.local:5000/x/y:v1".into()), ..Default::default() };
        let p = Plan::resolve_with(&params, &c, Frameworks::embedded(), true).unwrap();
        assert_eq!(p.target, ImageTarget::Registry { repository: "registry.local:5000/x/y".into(), tag: Some("v1".into()) });
    }

    #[test]
    fn kubernetes_without_a_registry_says_what_to_set() {
        let params = JobParams { backend: Some(BackendKind::Kubernetes), ..Default::default() };
        let e = Plan::resolve_with(&params, &config(""), Frameworks::embedded(), false).unwrap_err();
        assert!(e.evalue.contains("registry prefix") && e.evalue.contains("%provider=configmap"), "{e}");
        let params = JobParams { provider: Some(Provider::ConfigMap), ..params };
        let p = Plan::resolve_with(&params, &config(""), Frameworks::embedded(), false).unwrap();
        assert_eq!(p.target, ImageTarget::ConfigMap);
    }

    #[test]
    fn mpi_launcher_command_gets_the_worker_count() {
        let params = JobParams { framework: Some("mpi".into()), roles: vec![role("worker", 3, None)], ..Default::default() };
        let p = Plan::resolve_with(&params, &config(""), Frameworks::embedded(), false).unwrap();
        let launcher = p.replicas.iter().find(|r| r.role == "launcher").unwrap();
        assert!(launcher.command.windows(2).any(|w| w == ["-n", "3"]), "{:?}", launcher.command);
    }

    #[test]
    fn unknown_framework_from_config_lists_the_valid_ones() {
        let e = Plan::resolve_with(&JobParams::default(), &config("framework: tensorfow\n"), Frameworks::embedded(), false)
            .unwrap_err();
        assert!(e.evalue.contains("tensorfow") && e.evalue.contains("tensorflow, trainjob"), "{e}");
    }

    #[test]
    fn zero_replicas_everywhere_is_an_error() {
        let params =
            JobParams { framework: Some("tensorflow".into()), roles: vec![role("worker", 0, None)], ..Default::default() };
        let e = Plan::resolve_with(&params, &config(""), Frameworks::embedded(), false).unwrap_err();
        assert!(e.evalue.contains("no replicas"), "{e}");
    }

    #[test]
    fn dryrun_bundle_has_text_and_html() {
        let p = Plan::resolve_with(&JobParams::default(), &config(""), Frameworks::embedded(), false).unwrap();
        let b = p.to_bundle();
        let text = b["text/plain"].as_str().unwrap();
        assert!(text.contains("framework   python") && text.contains("job kind    Job (batch/v1)"), "{text}");
        assert!(b["text/html"].as_str().unwrap().contains("<table>"));
    }

    #[test]
    fn split_tag_ignores_ports() {
        assert_eq!(split_tag("h:5000/r"), ("h:5000/r".into(), None));
        assert_eq!(split_tag("h:5000/r:t"), ("h:5000/r".into(), Some("t".into())));
        assert_eq!(split_tag("r@sha256:abc"), ("r".into(), None));
    }
}
