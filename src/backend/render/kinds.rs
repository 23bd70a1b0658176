//! The three object shapes: `replicaSpecs` jobs, `TrainJob`, `batch/v1` Job.

use serde_json::{Map, Value, json};

use super::pod::{self, Command};
use super::{Meta, RESTART_POLICY, RenderError, RenderInput};

/// What differs between operator APIs beyond the descriptor's fields.
struct ApiQuirks {
    kind: &'static str,
    /// `None`: every version of the kind.
    api_version: Option<&'static str>,
    /// Where `%cleanPolicy` goes in `spec`, when not only `runPolicy.cleanPodPolicy`.
    clean_pod_policy: &'static [&'static [&'static str]],
    /// Fixed `spec` fields.
    spec: fn() -> Value,
    /// Replica types the operator allows at most one of.
    single: &'static [&'static str],
}

const RUN_POLICY_CLEAN: &[&[&str]] = &[&["runPolicy", "cleanPodPolicy"]];

/// The table. A kind absent here gets the `kubeflow.org/v1` conventions:
/// `runPolicy.cleanPodPolicy`, nothing else.
const QUIRKS: &[ApiQuirks] = &[
    // The standalone mpi-operator: one slot per worker (one process per pod,
    // like the other kinds), and the launcher waits for the workers, so
    // mpirun never races their sshd.
    ApiQuirks {
        kind: "MPIJob",
        api_version: Some("kubeflow.org/v2beta1"),
        clean_pod_policy: RUN_POLICY_CLEAN,
        spec: || {
            json!({
                "slotsPerWorker": 1,
                "mpiImplementation": "OpenMPI",
                "launcherCreationPolicy": "WaitForWorkersReady",
            })
        },
        single: &["Launcher"],
    },
    // The training-operator's MPIJob keeps the deprecated top-level field and
    // syncs it with runPolicy's; older releases read only the former.
    ApiQuirks {
        kind: "MPIJob",
        api_version: Some("kubeflow.org/v1"),
        clean_pod_policy: &[&["runPolicy", "cleanPodPolicy"], &["cleanPodPolicy"]],
        spec: || json!({"slotsPerWorker": 1}),
        single: &["Launcher"],
    },
    ApiQuirks {
        kind: "TFJob",
        api_version: None,
        clean_pod_policy: RUN_POLICY_CLEAN,
        spec: || json!({}),
        single: &["Chief"],
    },
    ApiQuirks {
        kind: "PyTorchJob",
        api_version: None,
        clean_pod_policy: RUN_POLICY_CLEAN,
        spec: || json!({}),
        single: &["Master"],
    },
    ApiQuirks {
        kind: "XGBoostJob",
        api_version: None,
        clean_pod_policy: RUN_POLICY_CLEAN,
        spec: || json!({}),
        single: &["Master"],
    },
];

fn quirks(kind: &str, api_version: &str) -> Option<&'static ApiQuirks> {
    QUIRKS.iter().find(|q| q.kind == kind && q.api_version.is_none_or(|v| v == api_version))
}

/// `spec.<path>` = `value`, creating the objects on the way.
fn set_path(spec: &mut Map<String, Value>, path: &[&str], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut at = spec;
    for p in parents {
        let next = at.entry(p.to_string()).or_insert_with(|| json!({}));
        if !next.is_object() {
            *next = json!({});
        }
        at = next.as_object_mut().expect("just made an object");
    }
    at.insert(last.to_string(), value);
}

/// A `kubeflow.org` job: `spec.<replicaSpecsField>.<Type> = {replicas,
/// restartPolicy, template}` for every replica type, plus `runPolicy`.
pub(super) fn replica_specs(input: &RenderInput<'_>, meta: &Meta) -> Result<Value, RenderError> {
    let plan = input.plan;
    let job = &plan.framework.job;
    let q = quirks(&job.kind, input.api_version);
    let field = job.replica_specs_field.clone().unwrap_or_else(|| "replicaSpecs".into());

    let mut specs = Map::new();
    for r in plan.replicas.iter().filter(|r| r.replicas > 0) {
        if q.is_some_and(|q| q.single.contains(&r.replica_type.as_str())) && r.replicas > 1 {
            return Err(RenderError::TooManyReplicas {
                kind: job.kind.clone(),
                replica_type: r.replica_type.clone(),
                replicas: r.replicas,
            });
        }
        specs.insert(
            r.replica_type.clone(),
            json!({
                "replicas": r.replicas,
                "restartPolicy": RESTART_POLICY,
                "template": pod::template(input, meta, r, None)?,
            }),
        );
    }

    let mut spec = Map::new();
    spec.insert(field, Value::Object(specs));
    if let Some(Value::Object(fixed)) = q.map(|q| (q.spec)()) {
        spec.extend(fixed);
    }
    set_path(&mut spec, &["runPolicy", "backoffLimit"], json!(0));
    if let Some(policy) = plan.clean_policy {
        for path in q.map_or(RUN_POLICY_CLEAN, |q| q.clean_pod_policy) {
            set_path(&mut spec, path, json!(policy.operator_value()));
        }
    }
    Ok(json!({
        "apiVersion": input.api_version,
        "kind": job.kind,
        "metadata": meta.object_metadata(input),
        "spec": spec,
    }))
}

/// A `batch/v1` Job: one pod (or `N` indexed pods), never retried, kept
/// after it finishes so its log can still be read.
pub(super) fn batch_job(
    input: &RenderInput<'_>,
    meta: &Meta,
    warnings: &mut Vec<String>,
) -> Result<Value, RenderError> {
    let plan = input.plan;
    let replica = plan.replicas.first().ok_or(RenderError::NoReplicas)?;
    if let Some(p) = plan.clean_policy {
        warnings.push(format!(
            "%cleanPolicy={} does not apply to a {} (its pod stays until the job is deleted)",
            p.operator_value().to_lowercase(),
            plan.framework.job.kind
        ));
    }
    let mut spec = Map::new();
    spec.insert("backoffLimit".into(), json!(0));
    if replica.replicas > 1 {
        spec.insert("completions".into(), json!(replica.replicas));
        spec.insert("parallelism".into(), json!(replica.replicas));
        spec.insert("completionMode".into(), json!("Indexed"));
    }
    spec.insert("template".into(), pod::template(input, meta, replica, Some(RESTART_POLICY))?);
    Ok(json!({
        "apiVersion": input.api_version,
        "kind": plan.framework.job.kind,
        "metadata": meta.object_metadata(input),
        "spec": spec,
    }))
}

/// A Kubeflow Trainer `TrainJob`: the runtime's template with the trainer's
/// image, command, node count, resources and env set, and the pod-spec
/// magics as `podSpecOverrides` for the runtime's trainer job (the
/// descriptor's `container` names both that replicated job and its container).
///
/// The runtime owns the pod template: ciao's labels and annotations go to
/// `spec.labels`/`spec.annotations` (the JobSet and its Jobs); pods are found
/// by JobSet's `jobset.sigs.k8s.io/jobset-name=<job>` label. Image pull
/// secrets and the config's pod-template patch cannot be expressed in
/// `v1alpha1` and yield warnings.
pub(super) fn train_job(
    input: &RenderInput<'_>,
    meta: &Meta,
    warnings: &mut Vec<String>,
) -> Result<Value, RenderError> {
    let plan = input.plan;
    let job = &plan.framework.job;
    let runtime = plan.runtime.as_deref().ok_or_else(|| RenderError::NoRuntime { kind: job.kind.clone() })?;
    let replica = plan.replicas.first().ok_or(RenderError::NoReplicas)?;
    let group = input.api_version.split('/').next().unwrap_or(input.api_version);

    let mut trainer = Map::new();
    trainer.insert("image".into(), json!(input.code.image()));
    if let Some(command) = pod::command(input, replica, Command::Always)? {
        trainer.insert("command".into(), json!(command));
    }
    if let Some(n) = plan.nodes {
        trainer.insert("numNodes".into(), json!(n));
    }
    if let Some(r) = pod::resources(&replica.resources) {
        trainer.insert("resourcesPerNode".into(), r);
    }
    let env = pod::env(input);
    if !env.is_empty() {
        trainer.insert("env".into(), json!(env));
    }

    let mut spec = Map::new();
    spec.insert("runtimeRef".into(), json!({"name": runtime, "apiGroup": group, "kind": "ClusterTrainingRuntime"}));
    spec.insert("trainer".into(), Value::Object(trainer));
    spec.insert("labels".into(), Value::Object(meta.pod_labels.clone()));
    let mut annotations = meta.pod_annotations.clone();
    annotations.remove(super::ANNOTATION_ISTIO_INJECT);
    if !annotations.is_empty() {
        spec.insert("annotations".into(), Value::Object(annotations));
    }

    let mut overrides = pod::scheduling(input);
    let (volumes, mounts) = pod::volumes(input);
    if !volumes.is_empty() {
        overrides.insert("volumes".into(), json!(volumes));
        overrides.insert("containers".into(), json!([{"name": job.container, "volumeMounts": mounts}]));
    }
    if !overrides.is_empty() {
        let mut o = Map::new();
        o.insert("targetJobs".into(), json!([{"name": job.container}]));
        o.extend(overrides);
        spec.insert("podSpecOverrides".into(), json!([o]));
    }

    if let Some(secret) = input.pull_secret {
        warnings.push(format!(
            "a {} cannot set imagePullSecrets: add the Secret {secret:?} to the service account its pods run as \
             (`kubectl patch serviceaccount NAME -p '{{\"imagePullSecrets\":[{{\"name\":\"{secret}\"}}]}}'`, and %serviceAccount=NAME)",
            job.kind
        ));
    }
    if input.pod_template_patch.is_some() {
        warnings.push(format!(
            "the podTemplate patch of the ciao config is not applied to a {}: its pods come from the runtime {runtime:?}",
            job.kind
        ));
    }
    if let Some(p) = plan.clean_policy {
        warnings.push(format!(
            "%cleanPolicy={} does not apply to a {} (the runtime decides what happens to finished pods)",
            p.operator_value().to_lowercase(),
            job.kind
        ));
    }
    Ok(json!({
        "apiVersion": input.api_version,
        "kind": job.kind,
        "metadata": meta.object_metadata(input),
        "spec": spec,
    }))
}
