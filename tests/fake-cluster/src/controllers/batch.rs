//! The `batch/v1` Job controller: pods `<job>-<5 chars>` (or `<job>-<index>-<5 chars>` for
//! Indexed jobs), backoffLimit, SuccessCriteriaMet/Complete and FailureTarget/Failed
//! conditions, counts, ttlSecondsAfterFinished.

use std::sync::Arc;

use serde_json::{Value, json};

use super::conditions;
use super::kubeflow::{controller_create, owner_ref};
use crate::cluster::{Cluster, Propagation, random_suffix};
use crate::store::{name_of, namespace_of, now_rfc3339, uid_of};

const INDEX_KEY: &str = "batch.kubernetes.io/job-completion-index";

fn phase(p: &Value) -> &str {
    p.pointer("/status/phase").and_then(Value::as_str).unwrap_or("Pending")
}

fn completion_index(p: &Value) -> Option<i64> {
    p.pointer("/metadata/annotations").and_then(|a| a.get(INDEX_KEY)).and_then(Value::as_str).and_then(|s| s.parse().ok())
}

/// Reconciles one Job.
pub fn reconcile(cluster: &Arc<Cluster>, ns: &str, name: &str) {
    let Some(job) = cluster.store.get("jobs.batch", ns, name) else { return };
    if job.pointer("/metadata/deletionTimestamp").is_some() {
        return;
    }
    let uid = uid_of(&job).to_string();
    let status_before = job.get("status").cloned().unwrap_or(json!({}));
    let mut status = status_before.clone();
    let mut conds = status.get("conditions").cloned().unwrap_or(json!([]));
    let (pods, _) = cluster.store.list("pods", Some(ns), |p| {
        p.pointer("/metadata/ownerReferences").and_then(Value::as_array).is_some_and(|a| a.iter().any(|r| r["uid"] == uid.as_str()))
    });
    let finished = conditions::is_true(&conds, "Complete") || conditions::is_true(&conds, "Failed");
    if finished {
        if let Some(ttl) = job.pointer("/spec/ttlSecondsAfterFinished").and_then(Value::as_i64) {
            let done = status.get("completionTime").or_else(|| conds.as_array().and_then(|a| a.iter().find(|c| c["type"] == "Failed")).and_then(|c| c.get("lastTransitionTime")));
            if let Some(t) = done.and_then(Value::as_str).and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                && chrono::Utc::now().signed_duration_since(t).num_seconds() >= ttl {
                    let _ = cluster.delete_object("jobs.batch", ns, name, Propagation::Background, None);
                }
        }
        return;
    }
    let spec = job.get("spec").cloned().unwrap_or(json!({}));
    if spec.get("suspend").and_then(Value::as_bool) == Some(true) {
        return;
    }
    let indexed = spec.get("completionMode").and_then(Value::as_str) == Some("Indexed");
    let completions = spec.get("completions").and_then(Value::as_i64).unwrap_or(1);
    let parallelism = spec.get("parallelism").and_then(Value::as_i64).unwrap_or(1);
    let backoff = spec.get("backoffLimit").and_then(Value::as_i64).unwrap_or(6);
    let live: Vec<&Value> = pods.iter().filter(|p| p.pointer("/metadata/deletionTimestamp").is_none()).collect();
    let active: Vec<&&Value> = live.iter().filter(|p| !matches!(phase(p), "Succeeded" | "Failed")).collect();
    let succeeded_pods: Vec<&Value> = pods.iter().filter(|p| phase(p) == "Succeeded").collect();
    let failed = pods.iter().filter(|p| phase(p) == "Failed").count() as i64;
    let restarts: i64 = pods
        .iter()
        .flat_map(|p| p.pointer("/status/containerStatuses").and_then(Value::as_array).cloned().unwrap_or_default())
        .map(|s| s["restartCount"].as_i64().unwrap_or(0))
        .sum();
    let ready = active.iter().filter(|p| p.pointer("/status/conditions").and_then(Value::as_array).is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))).count();
    let succeeded = if indexed {
        let mut idx: Vec<i64> = succeeded_pods.iter().filter_map(|p| completion_index(p)).collect();
        idx.sort();
        idx.dedup();
        if !idx.is_empty() {
            status["completedIndexes"] = json!(compress(&idx));
        }
        idx.len() as i64
    } else {
        succeeded_pods.len() as i64
    };
    if status.get("startTime").is_none() {
        status["startTime"] = json!(now_rfc3339());
    }
    let now = now_rfc3339();
    if failed + restarts > backoff {
        conditions::set_meta(&mut conds, "FailureTarget", "True", "BackoffLimitExceeded", "Job has reached the specified backoff limit", true);
        conditions::set_meta(&mut conds, "Failed", "True", "BackoffLimitExceeded", "Job has reached the specified backoff limit", true);
        cluster.record_event(&job, "Warning", "BackoffLimitExceeded", "Job has reached the specified backoff limit", super::component(&job));
        for p in &active {
            let _ = cluster.delete_object("pods", ns, name_of(p), Propagation::Background, None);
        }
        status["active"] = json!(0);
    } else if succeeded >= completions {
        conditions::set_meta(&mut conds, "SuccessCriteriaMet", "True", "CompletionsReached", "Reached expected number of succeeded pods", true);
        conditions::set_meta(&mut conds, "Complete", "True", "CompletionsReached", "Reached expected number of succeeded pods", true);
        status["completionTime"] = json!(now);
        cluster.record_event(&job, "Normal", "Completed", "Job completed", super::component(&job));
        status["active"] = json!(active.len());
    } else {
        // create missing pods
        let template = spec.get("template").cloned().unwrap_or(json!({}));
        let mut created = 0;
        if indexed {
            for i in 0..completions {
                let has = live.iter().any(|p| completion_index(p) == Some(i) && phase(p) != "Failed");
                if has || (active.len() as i64 + created) >= parallelism {
                    continue;
                }
                if controller_create(cluster, &job, "pods", pod_from_template(&job, &template, Some(i))) {
                    created += 1;
                }
            }
        } else {
            let want = parallelism.min(completions - succeeded) - active.len() as i64;
            for _ in 0..want.max(0) {
                if controller_create(cluster, &job, "pods", pod_from_template(&job, &template, None)) {
                    created += 1;
                }
            }
        }
        status["active"] = json!(active.len() as i64 + created);
    }
    status["ready"] = json!(ready);
    status["succeeded"] = json!(succeeded);
    status["failed"] = json!(failed);
    status["terminating"] = json!(0);
    status["uncountedTerminatedPods"] = json!({});
    if conds.as_array().is_some_and(|a| !a.is_empty()) {
        status["conditions"] = conds;
    }
    for k in ["succeeded", "failed"] {
        if status[k] == 0 {
            status.as_object_mut().map(|o| o.remove(k));
        }
    }
    if status != status_before {
        let _ = cluster.store.update("jobs.batch", ns, name, |o| {
            o["status"] = status;
            Ok(())
        });
    }
}

fn compress(idx: &[i64]) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < idx.len() {
        let start = idx[i];
        let mut end = start;
        while i + 1 < idx.len() && idx[i + 1] == end + 1 {
            i += 1;
            end = idx[i];
        }
        parts.push(if start == end { start.to_string() } else { format!("{start}-{end}") });
        i += 1;
    }
    parts.join(",")
}

fn pod_from_template(job: &Value, template: &Value, index: Option<i64>) -> Value {
    let name = name_of(job);
    let mut meta = template.get("metadata").cloned().unwrap_or(json!({}));
    let mut spec = template.get("spec").cloned().unwrap_or(json!({}));
    let pod_name = match index {
        Some(i) => format!("{name}-{i}-{}", random_suffix(5)),
        None => format!("{name}-{}", random_suffix(5)),
    };
    meta["name"] = json!(pod_name);
    meta["generateName"] = json!(match index {
        Some(i) => format!("{name}-{i}-"),
        None => format!("{name}-"),
    });
    meta["namespace"] = json!(namespace_of(job));
    meta["ownerReferences"] = json!([owner_ref(job)]);
    if let Some(i) = index {
        let ann = meta.as_object_mut().expect("metadata").entry("annotations").or_insert_with(|| json!({}));
        ann[INDEX_KEY] = json!(i.to_string());
        let labels = meta.as_object_mut().expect("metadata").entry("labels").or_insert_with(|| json!({}));
        labels[INDEX_KEY] = json!(i.to_string());
        spec["hostname"] = json!(format!("{name}-{i}"));
        if let Some(cs) = spec.get_mut("containers").and_then(Value::as_array_mut) {
            for c in cs {
                let env = c.as_object_mut().expect("container").entry("env").or_insert_with(|| json!([]));
                if let Some(a) = env.as_array_mut() {
                    a.push(json!({"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {"fieldPath": format!("metadata.annotations['{INDEX_KEY}']")}}}));
                }
            }
        }
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec})
}
