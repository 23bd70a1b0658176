//! What a job and its pods say, read from their objects: the job's state from
//! its conditions, which pods belong to it, each pod's replica name (`ps-0`,
//! `worker-1`, `launcher-0`, `main-0`), its state for the live table, and
//! whether its container failed. Pure functions, unit-tested.

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::discovery::ApiResource;
use serde_json::Value;

use crate::backend::status::ReplicaState;
use crate::frameworks::JobShape;

/// The training operator's pod labels.
pub const LABEL_JOB_NAME: &str = "training.kubeflow.org/job-name";
pub const LABEL_REPLICA_TYPE: &str = "training.kubeflow.org/replica-type";
pub const LABEL_REPLICA_INDEX: &str = "training.kubeflow.org/replica-index";
/// mpi-operator's role label (`launcher`, `worker`).
pub const LABEL_JOB_ROLE: &str = "training.kubeflow.org/job-role";
/// An Indexed Job pod's index (label and annotation).
pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";
/// JobSet's label on every pod of a TrainJob.
pub const LABEL_JOBSET_NAME: &str = "jobset.sigs.k8s.io/jobset-name";
/// The annotation naming a pod's default container.
const DEFAULT_CONTAINER: &str = "kubectl.kubernetes.io/default-container";

/// A job kind as the cluster serves it.
#[derive(Debug, Clone)]
pub struct JobKind {
    pub resource: ApiResource,
    pub shape: JobShape,
    /// The main container's name (the descriptor's `container`).
    pub container: String,
}

impl JobKind {
    /// The shape of a kind ciao creates.
    pub fn shape_of(kind: &str, group: &str) -> JobShape {
        match (kind, group) {
            ("Job", "batch") => JobShape::BatchJob,
            ("TrainJob", _) => JobShape::TrainJob,
            _ => JobShape::ReplicaSpecs,
        }
    }
}

/// A job's state as the cell shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobState {
    /// `Created`, `Running`, `Restarting`, `Suspended`, `Succeeded`, `Failed`.
    pub state: String,
    pub reason: Option<String>,
    pub message: Option<String>,
}

impl JobState {
    pub fn is_finished(&self) -> bool {
        matches!(self.state.as_str(), "Succeeded" | "Failed")
    }

    fn plain(state: &str) -> JobState {
        JobState { state: state.into(), reason: None, message: None }
    }
}

/// The job's state from its conditions: `Succeeded`/`Failed` for
/// `kubeflow.org` kinds, `Complete`/`Failed` for batch Jobs and TrainJobs.
pub fn job_state(shape: JobShape, job: &Value) -> JobState {
    let conditions: Vec<&Value> = job
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter(|c| c["status"] == "True").collect())
        .unwrap_or_default();
    let last = |types: &[&str]| conditions.iter().rev().find(|c| c["type"].as_str().is_some_and(|t| types.contains(&t))).copied();
    let from = |c: &Value, state: &str| JobState {
        state: state.to_string(),
        reason: c["reason"].as_str().filter(|s| !s.is_empty()).map(String::from),
        message: c["message"].as_str().filter(|s| !s.is_empty()).map(String::from),
    };
    let (done, failed): (&[&str], &str) = match shape {
        JobShape::ReplicaSpecs => (&["Succeeded", "Failed"], "Failed"),
        JobShape::BatchJob | JobShape::TrainJob => (&["Complete", "Failed"], "Failed"),
    };
    if let Some(c) = last(done) {
        return from(c, if c["type"] == failed { "Failed" } else { "Succeeded" });
    }
    if let Some(c) = last(&["Suspended"]) {
        return from(c, "Suspended");
    }
    if job.pointer("/spec/suspend") == Some(&Value::Bool(true)) {
        return JobState::plain("Suspended");
    }
    match shape {
        JobShape::ReplicaSpecs => match last(&["Running", "Restarting", "Created"]) {
            Some(c) => from(c, c["type"].as_str().unwrap_or("Created")),
            None => JobState::plain("Created"),
        },
        _ => {
            let active = job.pointer("/status/active").and_then(Value::as_u64).unwrap_or(0);
            JobState::plain(if active > 0 { "Running" } else { "Created" })
        }
    }
}

/// The label selector of the job's pods.
pub fn pod_selector(shape: JobShape, job: &Value) -> String {
    let name = job.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
    match shape {
        JobShape::ReplicaSpecs => format!("{LABEL_JOB_NAME}={name}"),
        JobShape::TrainJob => format!("{LABEL_JOBSET_NAME}={name}"),
        JobShape::BatchJob => match job.pointer("/spec/selector/matchLabels").and_then(Value::as_object) {
            Some(labels) if !labels.is_empty() => labels
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(","),
            _ => format!("job-name={name}"),
        },
    }
}

/// How many pods the job asks for.
pub fn expected_replicas(shape: JobShape, job: &Value) -> u32 {
    let n = |v: Option<&Value>| v.and_then(Value::as_u64).map(|n| n as u32);
    match shape {
        JobShape::ReplicaSpecs => job
            .pointer("/spec")
            .and_then(Value::as_object)
            .and_then(|spec| spec.iter().find(|(k, v)| k.ends_with("ReplicaSpecs") && v.is_object()))
            .and_then(|(_, specs)| specs.as_object())
            .map(|specs| specs.values().map(|s| n(s.get("replicas")).unwrap_or(1)).sum())
            .unwrap_or(0),
        JobShape::BatchJob => n(job.pointer("/spec/parallelism")).or(n(job.pointer("/spec/completions"))).unwrap_or(1),
        JobShape::TrainJob => n(job.pointer("/spec/trainer/numNodes")).unwrap_or(1),
    }
}

fn label<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata.labels.as_ref()?.get(key).map(String::as_str)
}

fn annotation<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata.annotations.as_ref()?.get(key).map(String::as_str)
}

/// The replica a pod runs: `<replica type>-<index>` from the training
/// operator's labels, `<role>-<index>` from mpi-operator's, else
/// `<container>-<completion index>` (batch Jobs: `main-0`; TrainJobs: `node-1`).
pub fn replica_name(pod: &Pod, container: &str) -> String {
    if let (Some(t), Some(i)) = (label(pod, LABEL_REPLICA_TYPE), label(pod, LABEL_REPLICA_INDEX)) {
        return format!("{}-{i}", t.to_lowercase());
    }
    if let Some(role) = label(pod, LABEL_JOB_ROLE) {
        return format!("{}-{}", role.to_lowercase(), label(pod, LABEL_REPLICA_INDEX).unwrap_or("0"));
    }
    let index = label(pod, COMPLETION_INDEX).or_else(|| annotation(pod, COMPLETION_INDEX)).unwrap_or("0");
    format!("{container}-{index}")
}

/// The container whose log is the replica's: the descriptor's container,
/// else the pod's default container, else its first.
pub fn main_container(pod: &Pod, hint: &str) -> Option<String> {
    let names: Vec<&str> =
        pod.spec.as_ref().map(|s| s.containers.iter().map(|c| c.name.as_str()).collect()).unwrap_or_default();
    if names.contains(&hint) {
        return Some(hint.to_string());
    }
    if let Some(d) = annotation(pod, DEFAULT_CONTAINER)
        && names.contains(&d)
    {
        return Some(d.to_string());
    }
    names.first().map(|s| s.to_string())
}

/// The status of `container` in `pod`.
pub fn container_status<'a>(pod: &'a Pod, container: &str) -> Option<&'a ContainerStatus> {
    pod.status.as_ref()?.container_statuses.as_ref()?.iter().find(|c| c.name == container)
}

/// A pod's state for the live table.
pub fn replica_state(pod: &Pod, name: &str, container: &str) -> ReplicaState {
    let status = pod.status.as_ref();
    let phase = status.and_then(|s| s.phase.clone()).unwrap_or_else(|| "Pending".into());
    let cs = container_status(pod, container);
    let restarts = cs.map_or(0, |c| c.restart_count.max(0) as u32);
    let waiting = cs.and_then(|c| c.state.as_ref()).and_then(|s| s.waiting.as_ref());
    let terminated = cs.and_then(|c| c.state.as_ref()).and_then(|s| s.terminated.as_ref());
    let (mut reason, mut message) = (None, None);
    match phase.as_str() {
        "Pending" => {
            if let Some(w) = waiting {
                reason = w.reason.clone();
                message = w.message.clone();
            } else if let Some(c) = status
                .and_then(|s| s.conditions.as_ref())
                .and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled" && c.status == "False"))
            {
                reason = c.reason.clone();
                message = c.message.clone();
            }
        }
        "Running" => {
            if let Some(w) = waiting {
                reason = w.reason.clone();
                message = w.message.clone();
            }
        }
        _ => {
            if let Some(t) = terminated {
                reason = t.reason.clone();
                let mut m = format!("exit code {}", t.exit_code);
                if let Some(text) = t.message.as_deref().filter(|s| !s.is_empty()) {
                    m.push_str(&format!(": {text}"));
                }
                message = Some(m);
            } else if let Some(r) = status.and_then(|s| s.reason.clone()) {
                reason = Some(r);
                message = status.and_then(|s| s.message.clone());
            }
        }
    }
    if pod.metadata.deletion_timestamp.is_some() && !matches!(phase.as_str(), "Succeeded" | "Failed") {
        reason = Some("Terminating".into());
    }
    ReplicaState { name: name.to_string(), phase, reason, message, restarts }
}

/// When `container` of `pod` failed (a non-zero exit), if it did.
pub fn failed_at(pod: &Pod, container: &str) -> Option<Timestamp> {
    let cs = container_status(pod, container)?;
    [cs.state.as_ref(), cs.last_state.as_ref()]
        .into_iter()
        .flatten()
        .filter_map(|s| s.terminated.as_ref())
        .filter(|t| t.exit_code != 0)
        .map(|t| t.finished_at.as_ref().map_or(Timestamp::MAX, |f| f.0))
        .min()
        .or_else(|| (pod.status.as_ref()?.phase.as_deref() == Some("Failed")).then_some(Timestamp::MAX))
}

/// Whether the container has started at least once (its log exists).
pub fn has_started(cs: Option<&ContainerStatus>) -> bool {
    cs.is_some_and(|c| {
        c.restart_count > 0
            || c.state.as_ref().is_some_and(|s| s.running.is_some() || s.terminated.is_some())
            || c.last_state.as_ref().is_some_and(|s| s.terminated.is_some())
    })
}

/// Whether the container is terminated now.
pub fn is_terminated(cs: Option<&ContainerStatus>) -> bool {
    cs.and_then(|c| c.state.as_ref()).is_some_and(|s| s.terminated.is_some())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(v: Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn kubeflow_conditions_give_the_state() {
        let job = json!({"status": {"conditions": [
            {"type": "Created", "status": "True", "reason": "TFJobCreated"},
            {"type": "Running", "status": "False", "reason": "TFJobRunning"},
            {"type": "Failed", "status": "True", "reason": "TFJobFailed", "message": "TFJob ns/x has failed because 1 Worker replica(s) failed."}
        ]}});
        let s = job_state(JobShape::ReplicaSpecs, &job);
        assert_eq!(s.state, "Failed");
        assert_eq!(s.reason.as_deref(), Some("TFJobFailed"));
        assert!(s.is_finished());
        let running = json!({"status": {"conditions": [
            {"type": "Created", "status": "True"}, {"type": "Running", "status": "True", "reason": "TFJobRunning"}
        ]}});
        assert_eq!(job_state(JobShape::ReplicaSpecs, &running).state, "Running");
        assert_eq!(job_state(JobShape::ReplicaSpecs, &json!({})).state, "Created");
    }

    #[test]
    fn batch_jobs_and_trainjobs_complete() {
        let job = json!({"status": {"active": 0, "conditions": [
            {"type": "SuccessCriteriaMet", "status": "True"}, {"type": "Complete", "status": "True", "reason": "CompletionsReached"}
        ]}});
        assert_eq!(job_state(JobShape::BatchJob, &job).state, "Succeeded");
        let failed = json!({"status": {"conditions": [{"type": "Failed", "status": "True", "reason": "FailedJobs"}]}});
        assert_eq!(job_state(JobShape::TrainJob, &failed).state, "Failed");
        assert_eq!(job_state(JobShape::BatchJob, &json!({"status": {"active": 1}})).state, "Running");
        assert_eq!(job_state(JobShape::BatchJob, &json!({"spec": {"suspend": true}})).state, "Suspended");
    }

    #[test]
    fn pods_are_selected_per_shape() {
        let job = json!({"metadata": {"name": "j"}, "spec": {"selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u1"}}}});
        assert_eq!(pod_selector(JobShape::ReplicaSpecs, &job), "training.kubeflow.org/job-name=j");
        assert_eq!(pod_selector(JobShape::TrainJob, &job), "jobset.sigs.k8s.io/jobset-name=j");
        assert_eq!(pod_selector(JobShape::BatchJob, &job), "batch.kubernetes.io/controller-uid=u1");
    }

    #[test]
    fn expected_replicas_come_from_the_spec() {
        let tf = json!({"spec": {"runPolicy": {}, "tfReplicaSpecs": {"PS": {"replicas": 1}, "Worker": {"replicas": 2}}}});
        assert_eq!(expected_replicas(JobShape::ReplicaSpecs, &tf), 3);
        assert_eq!(expected_replicas(JobShape::BatchJob, &json!({"spec": {"parallelism": 4}})), 4);
        assert_eq!(expected_replicas(JobShape::TrainJob, &json!({"spec": {"trainer": {"numNodes": 2}}})), 2);
        assert_eq!(expected_replicas(JobShape::BatchJob, &json!({})), 1);
    }

    #[test]
    fn replica_names_follow_the_operators_labels() {
        let tf = pod(json!({"metadata": {"labels": {LABEL_REPLICA_TYPE: "worker", LABEL_REPLICA_INDEX: "1"}}}));
        assert_eq!(replica_name(&tf, "tensorflow"), "worker-1");
        let ps = pod(json!({"metadata": {"labels": {LABEL_REPLICA_TYPE: "PS", LABEL_REPLICA_INDEX: "0"}}}));
        assert_eq!(replica_name(&ps, "tensorflow"), "ps-0");
        let launcher = pod(json!({"metadata": {"labels": {LABEL_JOB_ROLE: "launcher"}}}));
        assert_eq!(replica_name(&launcher, "mpi"), "launcher-0");
        let worker = pod(json!({"metadata": {"labels": {LABEL_JOB_ROLE: "worker", LABEL_REPLICA_INDEX: "2"}}}));
        assert_eq!(replica_name(&worker, "mpi"), "worker-2");
        let indexed = pod(json!({"metadata": {"labels": {COMPLETION_INDEX: "3"}}}));
        assert_eq!(replica_name(&indexed, "node"), "node-3");
        assert_eq!(replica_name(&pod(json!({"metadata": {}})), "main"), "main-0");
    }

    #[test]
    fn the_main_container_is_the_descriptors_else_the_default_else_the_first() {
        let p = pod(json!({"metadata": {"annotations": {DEFAULT_CONTAINER: "b"}}, "spec": {"containers": [{"name": "a"}, {"name": "b"}]}}));
        assert_eq!(main_container(&p, "b").as_deref(), Some("b"));
        assert_eq!(main_container(&p, "x").as_deref(), Some("b"));
        let q = pod(json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}}));
        assert_eq!(main_container(&q, "x").as_deref(), Some("a"));
    }

    #[test]
    fn pending_reasons_come_from_the_container_or_the_scheduler() {
        let unschedulable = pod(json!({"status": {"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/1 nodes are available: 1 Insufficient nvidia.com/gpu."}
        ]}}));
        let s = replica_state(&unschedulable, "worker-0", "tensorflow");
        assert_eq!((s.phase.as_str(), s.reason.as_deref()), ("Pending", Some("Unschedulable")));
        assert!(s.message.unwrap().contains("nvidia.com/gpu"));
        let pulling = pod(json!({"status": {"phase": "Pending", "containerStatuses": [
            {"name": "tensorflow", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
             "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image \"x\""}}}
        ]}}));
        assert_eq!(replica_state(&pulling, "worker-0", "tensorflow").reason.as_deref(), Some("ImagePullBackOff"));
    }

    #[test]
    fn failures_carry_the_exit_code_and_time() {
        let failed = pod(json!({"status": {"phase": "Failed", "containerStatuses": [
            {"name": "main", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
             "state": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": "2025-01-01T00:00:02Z"}}}
        ]}}));
        let s = replica_state(&failed, "main-0", "main");
        assert_eq!((s.phase.as_str(), s.reason.as_deref(), s.message.as_deref()), ("Failed", Some("Error"), Some("exit code 1")));
        assert_eq!(failed_at(&failed, "main").unwrap().to_string(), "2025-01-01T00:00:02Z");
        let ok = pod(json!({"status": {"phase": "Succeeded", "containerStatuses": [
            {"name": "main", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
             "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}
        ]}}));
        assert_eq!(failed_at(&ok, "main"), None);
        assert!(has_started(container_status(&ok, "main")) && is_terminated(container_status(&ok, "main")));
    }
}
