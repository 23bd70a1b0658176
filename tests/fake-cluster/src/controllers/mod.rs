//! The simulated controllers: training operator, mpi-operator v2, batch Job controller,
//! TrainJob, scheduler wake-ups. They react to store events (and resync every second), and
//! write only through the store, so watchers see every change in order.

mod batch;
mod conditions;
mod frameworks;
mod kubeflow;
mod trainjob;

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::cluster::Cluster;
use crate::error::ApiResult;
use crate::kubelet::Kubelet;
use crate::kubelet::scheduler::schedule_pending;
use crate::resources::ResourceType;
use crate::store::{Event, EventType, name_of, namespace_of};

pub use kubeflow::owner_ref;

/// The event source component of the controller owning `obj`'s kind.
pub(crate) fn component(obj: &Value) -> &'static str {
    match (obj["kind"].as_str().unwrap_or_default(), obj["apiVersion"].as_str().unwrap_or_default()) {
        ("TFJob", _) => "tfjob-controller",
        ("PyTorchJob", _) => "pytorchjob-controller",
        ("XGBoostJob", _) => "xgboostjob-controller",
        ("PaddleJob", _) => "paddlejob-controller",
        ("JAXJob", _) => "jaxjob-controller",
        ("MPIJob", "kubeflow.org/v2beta1") => "mpi-job-controller",
        ("MPIJob", _) => "mpijob-controller",
        ("TrainJob", _) => "trainjob-controller",
        _ => "job-controller",
    }
}

fn is_kubeflow(rt: &ResourceType) -> bool {
    (rt.group == "kubeflow.org") && frameworks::framework(&rt.kind, &rt.version).is_some()
}

/// Admission hooks of the simulated webhooks.
pub fn admission(cluster: &Cluster, rt: &ResourceType, obj: &mut Value) -> ApiResult<()> {
    if rt.group == trainjob::GROUP && rt.kind == "TrainJob" {
        trainjob::admit(cluster, obj)?;
    }
    Ok(())
}

/// Installs the default training runtime when its CRD becomes available.
pub fn after_crd_change(cluster: &Arc<Cluster>) {
    if !cluster.opts.install_training_runtimes {
        return;
    }
    let gr = "clustertrainingruntimes.trainer.kubeflow.org";
    if cluster.store.get(gr, "", "torch-distributed").is_some() {
        return;
    }
    if let Some(rt) = cluster.registry.find_kind(trainjob::GROUP, "ClusterTrainingRuntime") {
        let _ = cluster.create_object(&rt, "", trainjob::torch_distributed());
    }
}

fn reconcile_owner(cluster: &Arc<Cluster>, obj: &Value) {
    let refs = obj.pointer("/metadata/ownerReferences").and_then(Value::as_array).cloned().unwrap_or_default();
    let ns = namespace_of(obj).to_string();
    for r in refs {
        let kind = r["kind"].as_str().unwrap_or_default();
        let name = r["name"].as_str().unwrap_or_default();
        let api_version = r["apiVersion"].as_str().unwrap_or_default();
        let group = api_version.split_once('/').map(|(g, _)| g).unwrap_or("");
        reconcile_kind(cluster, group, kind, &ns, name);
    }
}

fn reconcile_kind(cluster: &Arc<Cluster>, group: &str, kind: &str, ns: &str, name: &str) {
    match (group, kind) {
        ("batch", "Job") => batch::reconcile(cluster, ns, name),
        (trainjob::GROUP, "TrainJob") => trainjob::reconcile(cluster, ns, name),
        ("kubeflow.org", _) => {
            if let Some(rt) = cluster.registry.find_kind(group, kind)
                && let Some(job) = cluster.store.get(&rt.group_resource(), ns, name) {
                    let v = job["apiVersion"].as_str().and_then(|a| a.split('/').nth(1)).unwrap_or(&rt.version).to_string();
                    let rt = cluster.registry.find(group, &v, &rt.plural).unwrap_or(rt);
                    if is_kubeflow(&rt) {
                        kubeflow::reconcile(cluster, &rt, ns, name);
                    }
                }
        }
        _ => {}
    }
}

fn dispatch(cluster: &Arc<Cluster>, ev: &Event) {
    let obj = &ev.object;
    let (ns, name) = (namespace_of(obj).to_string(), name_of(obj).to_string());
    match ev.gr.as_str() {
        "pods" => {
            match ev.kind {
                EventType::Added => {
                    let bound = obj.pointer("/spec/nodeName").and_then(Value::as_str).is_some_and(|n| !n.is_empty());
                    if bound {
                        if !cluster.kubelet.knows(crate::store::uid_of(obj)) {
                            Kubelet::start(cluster, obj.clone());
                        }
                    } else {
                        schedule_pending(cluster);
                    }
                }
                EventType::Modified => {
                    let phase = obj.pointer("/status/phase").and_then(Value::as_str).unwrap_or("");
                    if phase == "Succeeded" || phase == "Failed" {
                        schedule_pending(cluster);
                    }
                }
                EventType::Deleted => schedule_pending(cluster),
            }
            reconcile_owner(cluster, obj);
        }
        "jobs.batch" => {
            if ev.kind != EventType::Deleted {
                batch::reconcile(cluster, &ns, &name);
            }
            reconcile_owner(cluster, obj);
        }
        "events" | "configmaps" | "secrets" | "services" | "namespaces" | "nodes" => {}
        crate::cluster::CRD_GR => after_crd_change(cluster),
        gr => {
            if ev.kind == EventType::Deleted {
                return;
            }
            let Some(rt) = cluster.type_of(obj) else { return };
            if rt.group_resource() != gr {
                return;
            }
            reconcile_kind(cluster, &rt.group, &rt.kind, &ns, &name);
        }
    }
}

fn resync(cluster: &Arc<Cluster>) {
    for (gr, items) in cluster.store.dump() {
        for it in items {
            let ty = cluster.type_of(&it);
            match (gr.as_str(), ty) {
                ("jobs.batch", _) => batch::reconcile(cluster, namespace_of(&it), name_of(&it)),
                (_, Some(rt)) if rt.group == trainjob::GROUP && rt.kind == "TrainJob" => trainjob::reconcile(cluster, namespace_of(&it), name_of(&it)),
                (_, Some(rt)) if is_kubeflow(&rt) => kubeflow::reconcile(cluster, &rt, namespace_of(&it), name_of(&it)),
                _ => {}
            }
        }
    }
    schedule_pending(cluster);
}

/// Runs the controllers until the store's subscribers are dropped.
pub fn start(cluster: Arc<Cluster>, mut shutdown: tokio::sync::watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
    let mut rx = cluster.store.subscribe_internal();
    tokio::spawn(async move {
        after_crd_change(&cluster);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                ev = rx.recv() => match ev {
                    Some(ev) => dispatch(&cluster, &ev),
                    None => return,
                },
                _ = tick.tick() => resync(&cluster),
                _ = shutdown.changed() => return,
            }
        }
    })
}
