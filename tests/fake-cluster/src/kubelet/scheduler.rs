//! Binding pending pods to the single node when their requests fit, or marking them
//! Unschedulable with the scheduler's message.

use std::sync::Arc;

use serde_json::{Value, json};

use super::{Kubelet, NODE_NAME};
use crate::cluster::Cluster;
use crate::options::parse_quantity;
use crate::store::{name_of, namespace_of, now_rfc3339};

/// Requested resources of a pod.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Requests {
    /// Millicores.
    pub cpu: u64,
    /// Bytes.
    pub memory: u64,
    /// GPUs.
    pub gpus: u64,
}

/// Sum of container requests (limits count when requests are absent).
pub fn pod_requests(pod: &Value) -> Requests {
    let mut r = Requests::default();
    for c in pod.pointer("/spec/containers").and_then(Value::as_array).cloned().unwrap_or_default() {
        let get = |res: &str, scale: f64| -> u64 {
            let q = c.pointer(&format!("/resources/requests/{}", res.replace('/', "~1"))).or_else(|| c.pointer(&format!("/resources/limits/{}", res.replace('/', "~1"))));
            q.and_then(|v| v.as_str().map(str::to_string).or_else(|| v.as_f64().map(|f| f.to_string()))).and_then(|s| parse_quantity(&s, scale)).unwrap_or(0)
        };
        r.cpu += get("cpu", 1000.0);
        r.memory += get("memory", 1.0);
        r.gpus += get("nvidia.com/gpu", 1.0);
    }
    r
}

fn is_active(p: &Value) -> bool {
    let phase = p.pointer("/status/phase").and_then(Value::as_str).unwrap_or("Pending");
    phase != "Succeeded" && phase != "Failed"
}

/// Binds every pending pod that fits; marks the rest Unschedulable.
pub fn schedule_pending(cluster: &Arc<Cluster>) {
    let (pods, _) = cluster.store.list("pods", None, |_| true);
    let cap = *cluster.node.lock().expect("node lock");
    let mut used = Requests::default();
    for p in pods.iter().filter(|p| p.pointer("/spec/nodeName").and_then(Value::as_str).is_some_and(|n| !n.is_empty()) && is_active(p)) {
        let r = pod_requests(p);
        used.cpu += r.cpu;
        used.memory += r.memory;
        used.gpus += r.gpus;
    }
    let mut pending: Vec<&Value> = pods
        .iter()
        .filter(|p| p.pointer("/spec/nodeName").and_then(Value::as_str).is_none_or(str::is_empty) && p.pointer("/metadata/deletionTimestamp").is_none() && is_active(p))
        .collect();
    pending.sort_by_key(|p| (p.pointer("/metadata/creationTimestamp").and_then(Value::as_str).unwrap_or_default().to_string(), name_of(p).to_string()));
    for p in pending {
        let r = pod_requests(p);
        let mut insufficient = Vec::new();
        if used.cpu + r.cpu > cap.cpu_millis && r.cpu > 0 {
            insufficient.push("cpu");
        }
        if used.memory + r.memory > cap.memory_bytes && r.memory > 0 {
            insufficient.push("memory");
        }
        if used.gpus + r.gpus > cap.gpus && r.gpus > 0 {
            insufficient.push("nvidia.com/gpu");
        }
        let (ns, name) = (namespace_of(p).to_string(), name_of(p).to_string());
        if insufficient.is_empty() {
            used.cpu += r.cpu;
            used.memory += r.memory;
            used.gpus += r.gpus;
            let bound = cluster.store.update("pods", &ns, &name, |o| {
                o["spec"]["nodeName"] = json!(NODE_NAME);
                set_condition(o, "PodScheduled", "True", None, None);
                Ok(())
            });
            if let Ok(bound) = bound {
                cluster.record_event(&bound, "Normal", "Scheduled", &format!("Successfully assigned {ns}/{name} to {NODE_NAME}"), "default-scheduler");
                Kubelet::start(cluster, bound);
            }
        } else {
            let reasons: Vec<String> = insufficient.iter().map(|r| format!("1 Insufficient {r}")).collect();
            let msg = format!(
                "0/1 nodes are available: {}. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.",
                reasons.join(", ")
            );
            let current = p.pointer("/status/conditions").and_then(Value::as_array).and_then(|cs| cs.iter().find(|c| c["type"] == "PodScheduled")).and_then(|c| c.get("message")).and_then(Value::as_str).map(str::to_string);
            if current.as_deref() != Some(msg.as_str())
                && let Ok(updated) = cluster.store.update("pods", &ns, &name, |o| {
                    set_condition(o, "PodScheduled", "False", Some("Unschedulable"), Some(&msg));
                    Ok(())
                }) {
                    cluster.record_event(&updated, "Warning", "FailedScheduling", &msg, "default-scheduler");
                }
        }
    }
}

/// Sets (or replaces) a pod condition, keeping lastTransitionTime when the status is unchanged.
pub fn set_condition(pod: &mut Value, type_: &str, status: &str, reason: Option<&str>, message: Option<&str>) {
    let st = pod.as_object_mut().expect("object").entry("status").or_insert_with(|| json!({}));
    let conds = st.as_object_mut().expect("status").entry("conditions").or_insert_with(|| json!([]));
    let arr = conds.as_array_mut().expect("conditions");
    let prev = arr.iter().position(|c| c["type"] == type_);
    let mut c = json!({"type": type_, "status": status, "lastProbeTime": null, "lastTransitionTime": now_rfc3339()});
    if let Some(r) = reason {
        c["reason"] = json!(r);
    }
    if let Some(m) = message {
        c["message"] = json!(m);
    }
    match prev {
        Some(i) => {
            if arr[i]["status"] == status {
                c["lastTransitionTime"] = arr[i]["lastTransitionTime"].clone();
            }
            arr[i] = c;
        }
        None => arr.push(c),
    }
}
