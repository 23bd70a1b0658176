//! Rendering a cell's [`Plan`] into the Kubernetes objects a backend submits.
//!
//! One table-driven renderer makes every job kind from the framework
//! descriptor's `job` section: the `replicaSpecs` shape (TFJob, PyTorchJob,
//! MPIJob, XGBoostJob, PaddleJob, JAXJob), Kubeflow Trainer's `TrainJob`, and a
//! plain `batch/v1` Job. Nothing here looks at framework names; the few
//! differences between operator APIs that descriptors do not express live in
//! one table in `kinds.rs`. Rendering is pure — inputs in, JSON out, no I/O —
//! so the output is snapshot-tested and validated against the operators' CRD
//! schemas.
//!
//! Choices a user sees:
//! - Every replica runs with `restartPolicy: Never` and the job with
//!   `backoffLimit: 0`: a failing cell fails at once with its error instead of
//!   being restarted silently.
//! - Jobs carry the labels [`LABEL_MANAGED_BY`]`=ciao`, [`LABEL_SESSION`] and
//!   [`LABEL_CELL`] (pod templates too, plus [`LABEL_ROLE`]), and the
//!   annotations [`ANNOTATION_CELL_DIGEST`], [`ANNOTATION_IMAGE`] and
//!   [`ANNOTATION_IMAGE_DIGEST`], so jobs and pods can be found again.
//! - Pod templates get `sidecar.istio.io/inject: "false"` unless turned off:
//!   a pod with an Istio sidecar never completes.
//! - Job names are DNS-1035 labels of at most [`MAX_JOB_NAME`] characters so
//!   that the operators' `<job>-<type>-<index>` pods and services stay valid.

mod configmap;
mod kinds;
mod names;
mod pod;

#[cfg(test)]
mod tests;

use serde_json::{Map, Value, json};

use crate::frameworks::{Descriptor, JobShape};
use crate::plan::Plan;

pub use configmap::{MAX_CONFIG_MAP_BYTES, owner_reference};
pub use names::{MAX_JOB_NAME, job_name, short_digest};

/// Marks every object ciao creates (`app.kubernetes.io/managed-by=ciao`).
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// The value of [`LABEL_MANAGED_BY`].
pub const MANAGED_BY: &str = "ciao";
/// The kernel session that submitted the job.
pub const LABEL_SESSION: &str = "ciao.kubeflow.org/session";
/// The cell's short digest (see [`short_digest`]).
pub const LABEL_CELL: &str = "ciao.kubeflow.org/cell";
/// On pod templates: the role's magic (`worker`, `ps`, …) or the framework name.
pub const LABEL_ROLE: &str = "ciao.kubeflow.org/role";
/// Kueue's queue label, set by `%queue=`.
pub const LABEL_QUEUE: &str = "kueue.x-k8s.io/queue-name";
/// The cell's full digest.
pub const ANNOTATION_CELL_DIGEST: &str = "ciao.kubeflow.org/cell-digest";
/// The full reference of the image the job runs.
pub const ANNOTATION_IMAGE: &str = "ciao.kubeflow.org/image";
/// The manifest digest of that image, when known.
pub const ANNOTATION_IMAGE_DIGEST: &str = "ciao.kubeflow.org/image-digest";
/// Istio's injection switch, set to `"false"` on pod templates by default.
pub const ANNOTATION_ISTIO_INJECT: &str = "sidecar.istio.io/inject";
/// Label and annotation keys under this prefix belong to ciao.
pub const RESERVED_PREFIX: &str = "ciao.kubeflow.org/";

/// The restart policy of every replica (see the module documentation).
pub const RESTART_POLICY: &str = "Never";

/// How the cell's code reaches the job's containers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeSource {
    /// Built into an image.
    Image {
        /// The pull reference written into the job, e.g. `host/repo@sha256:…`.
        reference: String,
        /// The image's manifest digest, when known.
        digest: Option<String>,
    },
    /// Shipped in a ConfigMap named after the job and mounted over the base image.
    ConfigMap {
        /// The base image's pull reference.
        base_image: String,
        files: Vec<CodeFile>,
    },
}

impl CodeSource {
    /// The image every replica runs.
    pub fn image(&self) -> &str {
        match self {
            CodeSource::Image { reference, .. } => reference,
            CodeSource::ConfigMap { base_image, .. } => base_image,
        }
    }
}

/// One file of a ConfigMap: its key and where it appears in the containers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeFile {
    /// The ConfigMap key (`[-._a-zA-Z0-9]+`), e.g. `main.py`.
    pub key: String,
    /// Absolute path in the container, e.g. the descriptor's code path.
    pub path: String,
    /// UTF-8 content goes to `data`, anything else to `binaryData`.
    pub content: Vec<u8>,
}

/// Everything one rendering needs.
#[derive(Debug, Clone, Copy)]
pub struct RenderInput<'a> {
    pub plan: &'a Plan,
    /// The group/version the cluster serves, one of the descriptor's `apiVersions`.
    pub api_version: &'a str,
    /// The job name (see [`job_name`]); also the ConfigMap's.
    pub name: &'a str,
    pub namespace: &'a str,
    pub code: &'a CodeSource,
    /// The kernel session id (a label value).
    pub session: &'a str,
    /// The cell's digest, e.g. `sha256:…`.
    pub cell_digest: &'a str,
    /// The Secret the cluster pulls the image with (the registry's `pullSecret`).
    pub pull_secret: Option<&'a str>,
    /// A JSON merge patch (RFC 7386) applied to every pod template after rendering.
    pub pod_template_patch: Option<&'a Value>,
    /// Add `sidecar.istio.io/inject: "false"` to pod templates.
    pub disable_istio_sidecar: bool,
}

/// The objects to create, in order: the job, then the ConfigMap (whose
/// ownerReference the backend sets to the created job, see [`owner_reference`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub job: Value,
    pub config_map: Option<Value>,
    /// Options the job kind cannot honour, to be shown with the cell's output.
    pub warnings: Vec<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RenderError {
    #[error("{kind} has no API version {api_version:?}; this framework knows {known}")]
    UnsupportedApiVersion { kind: String, api_version: String, known: String },
    #[error("the job has no replicas; give at least one role a count, e.g. %worker=1")]
    NoReplicas,
    #[error("a {kind} needs a training runtime: give %runtime=NAME (a ClusterTrainingRuntime)")]
    NoRuntime { kind: String },
    #[error("{kind} allows at most one {replica_type} replica, the cell asks for {replicas}")]
    TooManyReplicas { kind: String, replica_type: String, replicas: u32 },
    #[error("{what} {key:?}: {why}")]
    InvalidMetadata { what: &'static str, key: String, why: String },
    #[error("ConfigMap key {key:?} is not valid: {why}")]
    InvalidConfigMapKey { key: String, why: String },
    #[error(
        "the code is {size} bytes, more than a ConfigMap holds ({limit} bytes); use %provider=image to ship it in an image"
    )]
    ConfigMapTooLarge { size: usize, limit: usize },
    #[error("{what} {value:?} cannot be passed to a shell (it contains a NUL byte)")]
    Unquotable { what: &'static str, value: String },
    #[error("the podTemplate patch in the ciao config must be a mapping, not {found}")]
    PatchNotAnObject { found: String },
    #[error("cannot build an ownerReference: the job has no {field} (was it created?)")]
    NotCreated { field: &'static str },
}

/// Renders the job (and the ConfigMap in ConfigMap mode).
///
/// # Errors
/// An API version the descriptor does not list, invalid labels or
/// annotations (or ones ciao reserves), bad ConfigMap keys or size, replica
/// counts the operator rejects, a TrainJob without runtime.
pub fn render(input: &RenderInput<'_>) -> Result<Rendered, RenderError> {
    let job = &input.plan.framework.job;
    if !job.api_versions.iter().any(|v| v == input.api_version) {
        return Err(RenderError::UnsupportedApiVersion {
            kind: job.kind.clone(),
            api_version: input.api_version.to_string(),
            known: job.api_versions.join(", "),
        });
    }
    if let Some(patch) = input.pod_template_patch
        && !patch.is_object()
    {
        return Err(RenderError::PatchNotAnObject { found: patch.to_string() });
    }
    let meta = Meta::new(input)?;
    let mut warnings = Vec::new();
    let job = match job.shape {
        JobShape::ReplicaSpecs => kinds::replica_specs(input, &meta)?,
        JobShape::TrainJob => kinds::train_job(input, &meta, &mut warnings)?,
        JobShape::BatchJob => kinds::batch_job(input, &meta, &mut warnings)?,
    };
    let config_map = match input.code {
        CodeSource::ConfigMap { files, .. } => Some(configmap::config_map(input, &meta, files)?),
        CodeSource::Image { .. } => None,
    };
    Ok(Rendered { job, config_map, warnings })
}

/// The error text for a job kind the cluster does not serve.
pub fn kind_not_installed_message(descriptor: &Descriptor) -> String {
    let job = &descriptor.job;
    format!(
        "{} is not installed in this cluster ({}): the API server does not serve {} in {}; \
         ask the cluster administrator to install it, or choose another %framework=",
        job.kind,
        job.installed_by,
        job.plural,
        job.api_versions.join(" or "),
    )
}

/// A label selector matching every job a session submitted.
pub fn session_selector(session: &str) -> String {
    format!("{LABEL_MANAGED_BY}={MANAGED_BY},{LABEL_SESSION}={session}")
}

/// Labels and annotations, computed once per rendering.
pub(crate) struct Meta {
    /// On the job (and the ConfigMap, without the queue label).
    pub job_labels: Map<String, Value>,
    pub job_annotations: Map<String, Value>,
    /// On every pod template, before the role label.
    pub pod_labels: Map<String, Value>,
    pub pod_annotations: Map<String, Value>,
}

impl Meta {
    fn new(input: &RenderInput<'_>) -> Result<Meta, RenderError> {
        let plan = input.plan;
        let mut user_labels = Map::new();
        for (k, v) in &plan.labels {
            names::check_label(k, v)?;
            if k.starts_with(RESERVED_PREFIX) || k == LABEL_MANAGED_BY || k == LABEL_QUEUE {
                return Err(reserved("label", k));
            }
            user_labels.insert(k.clone(), json!(v));
        }
        let mut user_annotations = Map::new();
        for (k, v) in &plan.annotations {
            names::check_qualified_name("annotation", k)?;
            if k.starts_with(RESERVED_PREFIX) {
                return Err(reserved("annotation", k));
            }
            user_annotations.insert(k.clone(), json!(v));
        }

        let cell = short_digest(input.cell_digest);
        names::check_label(LABEL_SESSION, input.session)?;
        names::check_label(LABEL_CELL, &cell)?;
        let mut tracking = Map::new();
        tracking.insert(LABEL_MANAGED_BY.into(), json!(MANAGED_BY));
        tracking.insert(LABEL_SESSION.into(), json!(input.session));
        tracking.insert(LABEL_CELL.into(), json!(cell));

        let mut job_labels = user_labels.clone();
        job_labels.extend(tracking.clone());
        if let Some(queue) = &plan.queue {
            names::check_label(LABEL_QUEUE, queue)?;
            job_labels.insert(LABEL_QUEUE.into(), json!(queue));
        }
        let mut pod_labels = user_labels;
        pod_labels.extend(tracking);

        let mut job_annotations = user_annotations.clone();
        job_annotations.insert(ANNOTATION_CELL_DIGEST.into(), json!(input.cell_digest));
        job_annotations.insert(ANNOTATION_IMAGE.into(), json!(input.code.image()));
        if let CodeSource::Image { digest: Some(d), .. } = input.code {
            job_annotations.insert(ANNOTATION_IMAGE_DIGEST.into(), json!(d));
        }

        // The cell's own annotations win over the configured Istio default.
        let mut pod_annotations = Map::new();
        if input.disable_istio_sidecar {
            pod_annotations.insert(ANNOTATION_ISTIO_INJECT.into(), json!("false"));
        }
        pod_annotations.extend(user_annotations);

        Ok(Meta { job_labels, job_annotations, pod_labels, pod_annotations })
    }

    /// `metadata` of a top-level object.
    pub fn object_metadata(&self, input: &RenderInput<'_>) -> Value {
        json!({
            "name": input.name,
            "namespace": input.namespace,
            "labels": self.job_labels,
            "annotations": self.job_annotations,
        })
    }
}

fn reserved(what: &'static str, key: &str) -> RenderError {
    let why = if key == LABEL_QUEUE {
        "ciao sets it from %queue=NAME; use that instead".to_string()
    } else {
        "ciao sets this key itself to find its jobs again; choose another key".to_string()
    };
    RenderError::InvalidMetadata { what, key: key.to_string(), why }
}
