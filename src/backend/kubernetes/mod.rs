//! The Kubernetes backend: submits the rendered job through the API server,
//! follows it with watches, streams every replica's log into the cell, and
//! answers the job commands (`%jobs`, `%logs`, `%attach`, `%delete`).
//!
//! - [`client`]: connecting as kubectl does (kubeconfig, else in-cluster),
//!   one cached client per configuration, discovery per client;
//! - [`submit`]: ConfigMap, job, owner reference; name clashes; clean-up;
//! - [`follow`] and [`podlogs`]: watches, pod states, log streams that survive
//!   dropped connections and restarts;
//! - [`commands`]: the job commands;
//! - [`jobs`], [`errors`], [`proxy`], [`token`]: pure helpers.

pub mod client;
pub mod commands;
pub mod errors;
pub mod follow;
pub mod jobs;
pub mod podlogs;
pub mod proxy;
pub mod submit;
pub mod token;

use std::sync::Arc;

use async_trait::async_trait;
use kube::api::{Api, DeleteParams, DynamicObject};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::status::Condition;
use super::{Backend, JobReport, Outcome, Submission};
use crate::config::{Config, Env, ProcessEnv};
use crate::interpreter::params::{JobCommand, OnInterrupt};
use crate::output::{CellError, MimeBundle, Output};
use client::{Clients, Cluster};
use follow::{Ending, Target};
use jobs::JobKind;

/// Runs jobs through the Kubernetes API.
pub struct KubernetesBackend {
    clients: Clients,
}

impl Default for KubernetesBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl KubernetesBackend {
    /// A backend configured from the process environment.
    pub fn new() -> Self {
        Self::with_env(Arc::new(ProcessEnv))
    }

    /// A backend reading `KUBERNETES_SERVICE_*`, `CIAO_SERVICEACCOUNT_DIR`,
    /// `HOME` and the proxy variables from `env`.
    pub fn with_env(env: Arc<dyn Env + Send + Sync>) -> Self {
        KubernetesBackend { clients: Clients::new(env) }
    }

    /// The cluster `config` points at.
    ///
    /// # Errors
    /// No cluster configured, or its configuration is unusable.
    pub async fn cluster(&self, config: &Config) -> Result<Arc<Cluster>, CellError> {
        self.clients.get(config).await.map_err(|e| CellError::new("ClusterConfigError", e.to_string()))
    }
}

/// Follows a created (or found) job to its end and turns what happened into
/// a report; an interrupt deletes or detaches as `on_interrupt` says.
pub(crate) async fn follow_to_end(
    target: &Target<'_>,
    on_interrupt: OnInterrupt,
    out: &Output,
    cancel: &CancellationToken,
) -> Result<JobReport, CellError> {
    let Target { cluster, kind, namespace, job, .. } = *target;
    let name = job.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string();
    let mut followed = follow::follow(target, out, cancel).await?;
    let report = |outcome: Outcome, tail: Vec<String>| JobReport {
        kind: kind.resource.kind.clone(),
        namespace: namespace.to_string(),
        name: name.clone(),
        outcome,
        tail,
    };
    match followed.ending.clone() {
        Ending::Finished(state) => {
            followed.finish(&state.state, state.reason.clone(), state.message.clone());
            if state.state == "Succeeded" {
                return Ok(report(Outcome::Succeeded, Vec::new()));
            }
            let tail = std::mem::take(&mut followed.tail);
            Ok(report(
                Outcome::Failed {
                    replica: followed.failed_replica.clone(),
                    reason: state.reason.unwrap_or_else(|| "Failed".into()),
                    message: state.message.unwrap_or_default(),
                },
                tail,
            ))
        }
        Ending::Gone => {
            let message = "the job was deleted while it ran".to_string();
            followed.finish("Deleted", None, Some(message.clone()));
            Ok(report(Outcome::Failed { replica: None, reason: "Deleted".into(), message }, Vec::new()))
        }
        Ending::Interrupted => match on_interrupt {
            OnInterrupt::Detach => {
                followed.finish("Detached", None, Some(format!("still running; %attach {name} follows it again")));
                Ok(report(Outcome::Detached, Vec::new()))
            }
            OnInterrupt::Delete => {
                delete_job(cluster, kind, namespace, &name).await?;
                followed.finish("Deleted", None, Some("interrupted".into()));
                Ok(report(Outcome::Deleted, Vec::new()))
            }
        },
    }
}

/// Deletes a job with its pods (background propagation: the API server
/// orphans batch Job pods without it) and its ConfigMap.
///
/// # Errors
/// The API server refused the deletion.
pub(crate) async fn delete_job(cluster: &Cluster, kind: &JobKind, namespace: &str, name: &str) -> Result<(), CellError> {
    let api: Api<DynamicObject> = Api::namespaced_with(cluster.client.clone(), namespace, &kind.resource);
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => {}
        Err(e) if errors::status_code(&e) == Some(404) => {}
        Err(e) => {
            return Err(errors::api_error(&e, &format!("deleting {} {namespace}/{name}", kind.resource.kind), &cluster.server));
        }
    }
    commands::delete_config_map(cluster, namespace, name).await;
    Ok(())
}

#[async_trait]
impl Backend for KubernetesBackend {
    async fn run(&self, job: Submission<'_>, out: &Output, cancel: &CancellationToken) -> Result<JobReport, CellError> {
        let cluster = self.cluster(job.config).await?;
        let namespace = job.plan.namespace.clone().unwrap_or_else(|| cluster.default_namespace.clone());
        let created = submit::submit(&cluster, &job, &namespace, out, cancel).await?;
        let expected = job.plan.total_replicas();
        let target = Target { cluster: &cluster, kind: &created.kind, namespace: &namespace, job: &created.job, expected, status: true, colors: job.config.log_colors };
        follow_to_end(&target, job.plan.on_interrupt, out, cancel).await
    }

    async fn submit(&self, job: Submission<'_>, out: &Output, cancel: &CancellationToken) -> Result<JobReport, CellError> {
        let cluster = self.cluster(job.config).await?;
        let namespace = job.plan.namespace.clone().unwrap_or_else(|| cluster.default_namespace.clone());
        let created = submit::submit(&cluster, &job, &namespace, out, cancel).await?;
        let kind = &created.kind.resource.kind;
        let mut board = follow::status_board(out, kind, &namespace, &created.name, job.plan.total_replicas());
        board.finish(Condition {
            state: "Detached".into(),
            reason: None,
            message: Some(format!("submitted; %attach {} follows it", created.name)),
        });
        Ok(JobReport { kind: kind.clone(), namespace, name: created.name, outcome: Outcome::Detached, tail: Vec::new() })
    }

    async fn command(
        &self,
        command: &JobCommand,
        config: &Config,
        namespace: Option<&str>,
        out: &Output,
        cancel: &CancellationToken,
    ) -> Result<Option<MimeBundle>, CellError> {
        let cluster = self.cluster(config).await?;
        let namespace = namespace.map(str::to_string).unwrap_or_else(|| cluster.default_namespace.clone());
        commands::run(&cluster, command, config, &namespace, out, cancel).await
    }
}
