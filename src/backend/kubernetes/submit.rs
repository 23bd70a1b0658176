//! Submitting a job: the renderer's objects created in order (ConfigMap,
//! job, then the ConfigMap's owner reference to the job), a new name after a
//! clash, and nothing left behind when a step fails.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::client::Cluster;
use super::errors::{api_error, is_missing_namespace, status_code};
use super::jobs::JobKind;
use crate::backend::render::{self, CodeSource, RenderInput};
use crate::backend::{Shipment, Submission};
use crate::image::reference::ImageRef;
use crate::output::{CellError, Output};

/// Names tried before giving up on clashes.
const MAX_ATTEMPTS: u32 = 5;

/// A job that now exists.
pub struct Created {
    pub kind: JobKind,
    /// The job as the API server returned it.
    pub job: Value,
    pub name: String,
}

/// The job kind as the cluster serves it, or the "not installed" error.
///
/// # Errors
/// The kind is not served, or discovery failed.
pub async fn job_kind(cluster: &Cluster, descriptor: &crate::frameworks::Descriptor) -> Result<JobKind, CellError> {
    let resource = cluster
        .job_resource(&descriptor.job)
        .await
        .map_err(|e| api_error(&e, &format!("looking up {} in the cluster", descriptor.job.kind), &cluster.server))?
        .ok_or_else(|| CellError::new("NotInstalled", render::kind_not_installed_message(descriptor)))?;
    Ok(JobKind { resource, shape: descriptor.job.shape, container: descriptor.job.container.clone() })
}

/// How the code ships, as the renderer wants it.
fn code_source(job: &Submission<'_>) -> Result<(CodeSource, Option<String>), CellError> {
    match job.shipment {
        Shipment::Image(built) => {
            if built.pull_reference.starts_with("oci:") {
                return Err(CellError::new(
                    "ConfigError",
                    format!(
                        "the image {} is in a local OCI layout, which a cluster cannot pull: set a registry prefix \
                         (CIAO_REGISTRY or `registry:` in the ciao config), or use %provider=configmap",
                        built.reference
                    ),
                ));
            }
            let host = ImageRef::parse(&built.reference).ok().map(|r| r.registry);
            Ok((CodeSource::Image { reference: built.pull_reference.clone(), digest: Some(built.digest.clone()) }, host))
        }
        Shipment::ConfigMap { base_image, files } => {
            // Nodes pull the base themselves: through the mirror map, as the image builder would.
            let (base, host) = match ImageRef::parse(base_image) {
                Ok(r) => {
                    let r = r.mirrored(&job.config.mirrors).unwrap_or(r);
                    (r.to_string(), Some(r.registry.clone()))
                }
                Err(_) => (base_image.clone(), None),
            };
            Ok((CodeSource::ConfigMap { base_image: base, files: files.clone() }, host))
        }
    }
}

/// Creates the job (and its ConfigMap) in `namespace`.
///
/// # Errors
/// Not installed, forbidden, invalid, no free name, or interrupted before
/// the job existed; nothing is left behind in those cases.
pub async fn submit(
    cluster: &Cluster,
    job: &Submission<'_>,
    namespace: &str,
    out: &Output,
    cancel: &CancellationToken,
) -> Result<Created, CellError> {
    let plan = job.plan;
    let descriptor = &plan.framework;
    let kind = job_kind(cluster, descriptor).await?;
    let (code, host) = code_source(job)?;
    let pull_secret = host.and_then(|h| job.config.registry_settings(&h).pull_secret);
    let jobs: Api<DynamicObject> = Api::namespaced_with(cluster.client.clone(), namespace, &kind.resource);
    let config_maps: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), namespace);
    let server = &cluster.server;

    for attempt in 0..MAX_ATTEMPTS {
        let name = render::job_name(&plan.name_prefix, job.cell_digest, attempt);
        let rendered = render::render(&RenderInput {
            plan,
            api_version: &kind.resource.api_version,
            name: &name,
            namespace,
            code: &code,
            session: job.session,
            cell_digest: job.cell_digest,
            pull_secret: pull_secret.as_deref(),
            pod_template_patch: job.config.pod_template.as_ref(),
            disable_istio_sidecar: job.config.disable_istio_sidecar,
        })
        .map_err(|e| CellError::new("RenderError", e.to_string()))?;
        if attempt == 0 {
            for w in &rendered.warnings {
                out.stderr(format!("[ciao] warning: {w}\n"));
            }
        }
        if cancel.is_cancelled() {
            return Err(interrupted_before(&kind.resource.kind));
        }

        let what = format!("{} {namespace}/{name}", kind.resource.kind);
        let mut config_map = false;
        if let Some(cm) = &rendered.config_map {
            let cm: ConfigMap = serde_json::from_value(cm.clone()).map_err(|e| internal(&e))?;
            match config_maps.create(&PostParams::default(), &cm).await {
                Ok(_) => config_map = true,
                Err(e) if status_code(&e) == Some(409) => continue,
                Err(e) => return Err(create_error(cluster, &kind, descriptor, &e, &format!("creating ConfigMap {namespace}/{name}")).await),
            }
        }
        if cancel.is_cancelled() {
            remove_config_map(&config_maps, &name, config_map, out).await;
            return Err(interrupted_before(&kind.resource.kind));
        }
        let obj: DynamicObject = serde_json::from_value(rendered.job.clone()).map_err(|e| internal(&e))?;
        let created = match jobs.create(&PostParams::default(), &obj).await {
            Ok(c) => c,
            Err(e) => {
                remove_config_map(&config_maps, &name, config_map, out).await;
                if status_code(&e) == Some(409) {
                    continue;
                }
                return Err(create_error(cluster, &kind, descriptor, &e, &format!("creating {what}")).await);
            }
        };
        let created = serde_json::to_value(&created).map_err(|e| internal(&e))?;
        if config_map {
            let owner = render::owner_reference(&created).map_err(|e| CellError::new("KubernetesError", e.to_string()))?;
            let patch = json!({"metadata": {"ownerReferences": [owner]}});
            if let Err(e) = config_maps.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                let err = api_error(&e, &format!("making {what} the owner of its ConfigMap"), server);
                let _ = jobs.delete(&name, &DeleteParams::background()).await;
                remove_config_map(&config_maps, &name, true, out).await;
                return Err(err);
            }
        }
        return Ok(Created { kind, job: created, name });
    }
    let first = render::job_name(&plan.name_prefix, job.cell_digest, 0);
    let last = render::job_name(&plan.name_prefix, job.cell_digest, MAX_ATTEMPTS - 1);
    Err(CellError::new(
        "NameTaken",
        format!(
            "the job names {first} … {last} are all taken in namespace {namespace}: delete old jobs (%jobs, %delete NAME) \
             or give another prefix with %name="
        ),
    ))
}

/// The error for a failed create; a 404 is a missing namespace or kind.
async fn create_error(
    cluster: &Cluster,
    kind: &JobKind,
    descriptor: &crate::frameworks::Descriptor,
    e: &kube::Error,
    doing: &str,
) -> CellError {
    if status_code(e) == Some(404) {
        if is_missing_namespace(e) {
            let message = match e {
                kube::Error::Api(s) => s.message.clone(),
                _ => String::new(),
            };
            return CellError::new(
                "NamespaceNotFound",
                format!("{doing}: {message}; create the namespace or choose another (%namespace=, CIAO_NAMESPACE, `namespace:` in the ciao config)"),
            );
        }
        if doing.starts_with("creating ConfigMap") {
            return api_error(e, doing, &cluster.server);
        }
        cluster.forget(&kind.resource.group).await;
        return CellError::new("NotInstalled", render::kind_not_installed_message(descriptor));
    }
    api_error(e, doing, &cluster.server)
}

async fn remove_config_map(api: &Api<ConfigMap>, name: &str, created: bool, out: &Output) {
    if !created {
        return;
    }
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => {}
        Err(e) if status_code(&e) == Some(404) => {}
        Err(e) => out.stderr(format!("[ciao] could not delete the ConfigMap {name}: {e}; delete it with kubectl\n")),
    }
}

fn interrupted_before(kind: &str) -> CellError {
    CellError::new("KeyboardInterrupt", format!("interrupted before the {kind} was submitted; nothing was created"))
}

fn internal(e: &serde_json::Error) -> CellError {
    CellError::new("KubernetesError", format!("the rendered object does not fit the API types: {e}"))
}
