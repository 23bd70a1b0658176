//! The pod-level content shared by every job kind: the main container
//! (image, command, env, resources, ports, mounts) and the pod-spec magics.

use serde_json::{Map, Value, json};

use super::{CodeSource, Meta, RenderError, RenderInput, configmap, names};
use crate::interpreter::params::Resources;
use crate::plan::{Plan, ReplicaPlan};

/// Whether the job sets the container command even when the image's `Cmd`
/// would do (TrainJob: the runtime's template brings a command of its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Command {
    /// Only when the role has its own command or the code is in a ConfigMap.
    WhenNeeded,
    Always,
}

/// The container command of a replica, or `None` to run the image's `Cmd`.
///
/// The role's own command (MPI's `mpirun` / `sshd`) always goes in; the
/// descriptor's command goes in when the code ships in a ConfigMap (the base
/// image's `Cmd` knows nothing of it) or when `mode` says so. A command set
/// here is wrapped to `pip install` the cell's `%packages` first.
pub(super) fn command(
    input: &RenderInput<'_>,
    replica: &ReplicaPlan,
    mode: Command,
) -> Result<Option<Vec<String>>, RenderError> {
    let plan = input.plan;
    let own = plan.framework.role(&replica.role).is_some_and(|r| r.command.is_some());
    let configmap = matches!(input.code, CodeSource::ConfigMap { .. });
    if !(own || configmap || mode == Command::Always) {
        return Ok(None);
    }
    with_packages(replica.command.clone(), plan).map(Some)
}

/// `sh -c 'pip install … && exec "$@"' ciao CMD…`: installs the packages and
/// then runs the command unchanged (no re-quoting of its arguments).
fn with_packages(command: Vec<String>, plan: &Plan) -> Result<Vec<String>, RenderError> {
    if plan.packages.is_empty() {
        return Ok(command);
    }
    let mut pip: Vec<&str> = vec!["pip", "install", "--quiet", "--no-cache-dir", "--disable-pip-version-check"];
    let trusted_host;
    if let Some(url) = &plan.pip_index_url {
        pip.extend(["--index-url", url.as_str()]);
        // pip refuses a plain-HTTP index unless its host is trusted.
        if let Ok(parsed) = url::Url::parse(url)
            && parsed.scheme() == "http"
            && let Some(host) = parsed.host_str()
        {
            trusted_host = host.to_string();
            pip.extend(["--trusted-host", trusted_host.as_str()]);
        }
    }
    pip.extend(plan.packages.iter().map(String::as_str));
    let quoted = shlex::try_join(pip.iter().copied()).map_err(|_| RenderError::Unquotable {
        what: "a %packages or %pipIndexUrl value",
        value: pip.iter().find(|a| a.contains('\0')).map(|a| a.replace('\0', "\\0")).unwrap_or_default(),
    })?;
    let mut wrapped = vec!["sh".to_string(), "-c".to_string(), format!("{quoted} && exec \"$@\""), "ciao".to_string()];
    wrapped.extend(command);
    Ok(wrapped)
}

/// The container environment: in ConfigMap mode the descriptor's env (the
/// base image lacks it), then `%env` in order, then `%secretEnv`; a later
/// variable replaces an earlier one of the same name.
pub(super) fn env(input: &RenderInput<'_>) -> Vec<Value> {
    let plan = input.plan;
    let mut env: Vec<Value> = Vec::new();
    let mut push = |name: &str, entry: Value| {
        env.retain(|e| e["name"] != name);
        env.push(entry);
    };
    if matches!(input.code, CodeSource::ConfigMap { .. }) {
        for (k, v) in &plan.framework.env {
            push(k, json!({"name": k, "value": v}));
        }
    }
    for (k, v) in &plan.env {
        push(k, json!({"name": k, "value": v}));
    }
    for s in &plan.secret_env {
        push(&s.var, json!({"name": s.var, "valueFrom": {"secretKeyRef": {"name": s.secret, "key": s.key}}}));
    }
    env
}

/// cpu and memory as requests and limits (so the pod is Guaranteed when both
/// are given), GPUs as an `nvidia.com/gpu` limit. `None` when nothing is set.
pub(super) fn resources(r: &Resources) -> Option<Value> {
    if r.is_empty() {
        return None;
    }
    let mut requests = Map::new();
    let mut limits = Map::new();
    if let Some(cpu) = &r.cpu {
        requests.insert("cpu".into(), json!(cpu.0));
        limits.insert("cpu".into(), json!(cpu.0));
    }
    if let Some(memory) = &r.memory {
        requests.insert("memory".into(), json!(memory.0));
        limits.insert("memory".into(), json!(memory.0));
    }
    if let Some(gpu) = r.gpu {
        limits.insert("nvidia.com/gpu".into(), json!(gpu.to_string()));
    }
    let mut out = Map::new();
    if !requests.is_empty() {
        out.insert("requests".into(), Value::Object(requests));
    }
    out.insert("limits".into(), Value::Object(limits));
    Some(Value::Object(out))
}

/// Pod volumes and the main container's mounts: `%volume` claims, then the
/// code ConfigMap.
pub(super) fn volumes(input: &RenderInput<'_>) -> (Vec<Value>, Vec<Value>) {
    let mut volumes = Vec::new();
    let mut mounts = Vec::new();
    for (i, v) in input.plan.volumes.iter().enumerate() {
        let name = names::volume_name(&v.claim, i);
        volumes.push(json!({"name": name, "persistentVolumeClaim": {"claimName": v.claim}}));
        mounts.push(json!({"name": name, "mountPath": v.path}));
    }
    if let CodeSource::ConfigMap { files, .. } = input.code {
        volumes.push(configmap::code_volume(input.name));
        mounts.extend(configmap::code_mounts(files));
    }
    (volumes, mounts)
}

/// The main container of a replica.
pub(super) fn container(input: &RenderInput<'_>, replica: &ReplicaPlan, mode: Command) -> Result<Value, RenderError> {
    let descriptor = &input.plan.framework;
    let mut c = Map::new();
    c.insert("name".into(), json!(descriptor.job.container));
    c.insert("image".into(), json!(input.code.image()));
    if let Some(command) = command(input, replica, mode)? {
        c.insert("command".into(), json!(command));
    }
    c.insert("workingDir".into(), json!(descriptor.workdir));
    let env = env(input);
    if !env.is_empty() {
        c.insert("env".into(), json!(env));
    }
    if !descriptor.job.ports.is_empty() {
        let ports: Vec<Value> =
            descriptor.job.ports.iter().map(|p| json!({"name": p.name, "containerPort": p.container_port})).collect();
        c.insert("ports".into(), json!(ports));
    }
    if let Some(r) = resources(&replica.resources) {
        c.insert("resources".into(), r);
    }
    let (_, mounts) = volumes(input);
    if !mounts.is_empty() {
        c.insert("volumeMounts".into(), json!(mounts));
    }
    Ok(Value::Object(c))
}

/// `%nodeSelector`, `%toleration`, `%serviceAccount` as pod-spec fields.
pub(super) fn scheduling(input: &RenderInput<'_>) -> Map<String, Value> {
    let plan = input.plan;
    let mut spec = Map::new();
    if !plan.node_selector.is_empty() {
        let selector: Map<String, Value> = plan.node_selector.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
        spec.insert("nodeSelector".into(), Value::Object(selector));
    }
    if !plan.tolerations.is_empty() {
        let tolerations: Vec<Value> = plan
            .tolerations
            .iter()
            .map(|t| match &t.value {
                Some(v) => {
                    json!({"key": t.key, "operator": "Equal", "value": v, "effect": t.effect})
                }
                None => json!({"key": t.key, "operator": "Exists", "effect": t.effect}),
            })
            .collect();
        spec.insert("tolerations".into(), json!(tolerations));
    }
    if let Some(sa) = &plan.service_account {
        spec.insert("serviceAccountName".into(), json!(sa));
    }
    spec
}

/// A pod template (`{metadata, spec}`) for a replica, with the config's
/// merge patch applied last. `restart_policy` goes into the pod spec when the
/// owning object does not set it per replica (batch/v1 Job).
pub(super) fn template(
    input: &RenderInput<'_>,
    meta: &Meta,
    replica: &ReplicaPlan,
    restart_policy: Option<&str>,
) -> Result<Value, RenderError> {
    let mut spec = Map::new();
    spec.insert("containers".into(), json!([container(input, replica, Command::WhenNeeded)?]));
    let (volumes, _) = volumes(input);
    if !volumes.is_empty() {
        spec.insert("volumes".into(), json!(volumes));
    }
    if let Some(secret) = input.pull_secret {
        spec.insert("imagePullSecrets".into(), json!([{"name": secret}]));
    }
    spec.extend(scheduling(input));
    if let Some(p) = restart_policy {
        spec.insert("restartPolicy".into(), json!(p));
    }

    let mut labels = meta.pod_labels.clone();
    labels.insert(super::LABEL_ROLE.into(), json!(replica.role));
    let mut metadata = Map::new();
    metadata.insert("labels".into(), Value::Object(labels));
    if !meta.pod_annotations.is_empty() {
        metadata.insert("annotations".into(), Value::Object(meta.pod_annotations.clone()));
    }

    let mut template = json!({"metadata": metadata, "spec": spec});
    if let Some(patch) = input.pod_template_patch {
        json_patch::merge(&mut template, patch);
    }
    Ok(template)
}
