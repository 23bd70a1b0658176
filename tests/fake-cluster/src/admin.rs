//! Admin operations shared by the `/_fake/` endpoints and the library handle.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::cluster::Cluster;
use crate::options::{NodeCapacity, parse_quantity};

/// Parses `{"cpu": "8"|8, "memory": "32Gi", "gpus": 1}` (or the field names of
/// [`NodeCapacity`]).
pub fn parse_node(body: &[u8]) -> Result<NodeCapacity, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))?;
    if let Ok(n) = serde_json::from_value::<NodeCapacity>(v.clone()) {
        return Ok(n);
    }
    let q = |k: &str, scale: f64| -> Result<Option<u64>, String> {
        match v.get(k) {
            None => Ok(None),
            Some(Value::Number(n)) => Ok(Some((n.as_f64().unwrap_or(0.0) * scale) as u64)),
            Some(Value::String(s)) => parse_quantity(s, scale).map(Some).ok_or_else(|| format!("invalid quantity for {k}: {s}")),
            Some(other) => Err(format!("invalid quantity for {k}: {other}")),
        }
    };
    let mut n = NodeCapacity::default();
    if let Some(c) = q("cpu", 1000.0)? {
        n.cpu_millis = c;
    }
    if let Some(m) = q("memory", 1.0)? {
        n.memory_bytes = m;
    }
    if let Some(g) = q("gpus", 1.0)? {
        n.gpus = g;
    }
    Ok(n)
}

/// Sets the node capacity, updates the Node object and reschedules pending pods.
pub fn set_node(cluster: &Arc<Cluster>, n: NodeCapacity) {
    *cluster.node.lock().expect("node lock") = n;
    let cap = node_resources(&n);
    let _ = cluster.store.update("nodes", "", crate::kubelet::NODE_NAME, |o| {
        o["status"]["capacity"] = cap.clone();
        o["status"]["allocatable"] = cap.clone();
        Ok(())
    });
    crate::kubelet::scheduler::schedule_pending(cluster);
}

/// The resource list of the node.
pub fn node_resources(n: &NodeCapacity) -> Value {
    let cpu = if n.cpu_millis.is_multiple_of(1000) { (n.cpu_millis / 1000).to_string() } else { format!("{}m", n.cpu_millis) };
    let mem = if n.memory_bytes.is_multiple_of(1024) { format!("{}Ki", n.memory_bytes / 1024) } else { n.memory_bytes.to_string() };
    let mut v = json!({"cpu": cpu, "memory": mem, "pods": "110", "ephemeral-storage": "100Gi"});
    if n.gpus > 0 {
        v["nvidia.com/gpu"] = json!(n.gpus.to_string());
    }
    v
}
