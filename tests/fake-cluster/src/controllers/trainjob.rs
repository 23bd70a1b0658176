//! A TrainJob (trainer.kubeflow.org/v1alpha1) equivalent: the runtime's `node` replicated
//! job becomes an Indexed batch Job `<trainjob>-node-0` (as JobSet names it) with torch
//! env, and the TrainJob gets Complete/Failed conditions from it.

use std::sync::Arc;

use serde_json::{Value, json};

use super::conditions;
use super::kubeflow::{controller_create, owner_ref};
use crate::cluster::Cluster;
use crate::error::{ApiError, ApiResult, Cause};
use crate::store::{name_of, namespace_of};

/// Group of the Trainer API.
pub const GROUP: &str = "trainer.kubeflow.org";

fn find_runtime(cluster: &Cluster, ns: &str, spec: &Value) -> Option<Value> {
    let name = spec.pointer("/runtimeRef/name").and_then(Value::as_str)?;
    let kind = spec.pointer("/runtimeRef/kind").and_then(Value::as_str).unwrap_or("ClusterTrainingRuntime");
    if kind == "TrainingRuntime" {
        cluster.store.get("trainingruntimes.trainer.kubeflow.org", ns, name)
    } else {
        cluster.store.get("clustertrainingruntimes.trainer.kubeflow.org", "", name)
    }
}

/// Webhook-style validation of a TrainJob: the runtime must exist.
pub fn admit(cluster: &Cluster, obj: &Value) -> ApiResult<()> {
    let spec = obj.get("spec").cloned().unwrap_or(json!({}));
    let ns = namespace_of(obj).to_string();
    let ns = if ns.is_empty() { cluster.opts.namespace.clone() } else { ns };
    if find_runtime(cluster, &ns, &spec).is_none() {
        let rname = spec.pointer("/runtimeRef/name").and_then(Value::as_str).unwrap_or_default();
        let kind = spec.pointer("/runtimeRef/kind").and_then(Value::as_str).unwrap_or("ClusterTrainingRuntime");
        let cause = Cause { reason: "FieldValueNotFound".into(), message: format!("Not found: \"{rname}\""), field: "spec.runtimeRef".into() };
        let mut e = ApiError::invalid(GROUP, "TrainJob", name_of(obj), vec![cause]);
        e.message = format!("admission webhook \"validator.trainjob.trainer.kubeflow.org\" denied the request: spec.runtimeRef: Not found: \"{rname}\" ({kind}.{GROUP} \"{rname}\" not found)");
        return Err(e);
    }
    Ok(())
}

/// The `torch-distributed` ClusterTrainingRuntime as the Trainer manifests ship it.
pub fn torch_distributed() -> Value {
    json!({
        "apiVersion": "trainer.kubeflow.org/v1alpha1",
        "kind": "ClusterTrainingRuntime",
        "metadata": {"name": "torch-distributed", "labels": {"trainer.kubeflow.org/framework": "torch"}},
        "spec": {
            "mlPolicy": {"numNodes": 1, "torch": {"numProcPerNode": "auto"}},
            "template": {"spec": {"replicatedJobs": [{
                "name": "node",
                "replicas": 1,
                "template": {
                    "metadata": {"labels": {"trainer.kubeflow.org/trainjob-ancestor-step": "trainer"}},
                    "spec": {"template": {"spec": {"containers": [{
                        "name": "node",
                        "image": "pytorch/pytorch:2.7.1-cuda12.8-cudnn9-runtime",
                        "command": ["/bin/bash", "-c", "echo \"Torch Distributed Runtime\"\n\necho \"--------------------------------------\"\necho \"Torch Default Runtime Env\"\nenv | grep PET_\n\npip list\n"],
                    }]}}},
                },
            }]}},
        },
    })
}

fn quantity_count(v: Option<&Value>, scale: f64) -> i64 {
    v.and_then(|q| q.as_str().map(str::to_string).or_else(|| q.as_i64().map(|i| i.to_string())))
        .and_then(|s| crate::options::parse_quantity(&s, scale))
        .map(|n| n as i64)
        .unwrap_or(0)
}

/// Reconciles one TrainJob.
pub fn reconcile(cluster: &Arc<Cluster>, ns: &str, name: &str) {
    let gr = "trainjobs.trainer.kubeflow.org";
    let Some(tj) = cluster.store.get(gr, ns, name) else { return };
    if tj.pointer("/metadata/deletionTimestamp").is_some() {
        return;
    }
    let status_before = tj.get("status").cloned().unwrap_or(json!({}));
    let mut status = status_before.clone();
    let mut conds = status.get("conditions").cloned().unwrap_or(json!([]));
    if conditions::is_true(&conds, "Complete") || conditions::is_true(&conds, "Failed") {
        return;
    }
    let spec = tj.get("spec").cloned().unwrap_or(json!({}));
    let Some(runtime) = find_runtime(cluster, ns, &spec) else { return };
    let job_name = format!("{name}-node-0");
    let existing = cluster.store.get("jobs.batch", ns, &job_name);
    if existing.is_none() && spec.get("suspend").and_then(Value::as_bool) != Some(true) {
        let rjobs = runtime.pointer("/spec/template/spec/replicatedJobs").and_then(Value::as_array).cloned().unwrap_or_default();
        let rj = rjobs.iter().find(|r| r["name"] == "node").or(rjobs.first()).cloned().unwrap_or(json!({}));
        let trainer = spec.get("trainer").cloned().unwrap_or(json!({}));
        let nodes = trainer.get("numNodes").and_then(Value::as_i64).or_else(|| runtime.pointer("/spec/mlPolicy/numNodes").and_then(Value::as_i64)).unwrap_or(1);
        let res = trainer.get("resourcesPerNode").cloned();
        let gpus = res.as_ref().map(|r| quantity_count(r.pointer("/limits/nvidia.com~1gpu").or(r.pointer("/requests/nvidia.com~1gpu")), 1.0)).unwrap_or(0);
        let cpus = res.as_ref().map(|r| quantity_count(r.pointer("/limits/cpu").or(r.pointer("/requests/cpu")), 1.0)).unwrap_or(0);
        let nproc_spec = trainer
            .get("numProcPerNode")
            .map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()))
            .or_else(|| runtime.pointer("/spec/mlPolicy/torch/numProcPerNode").map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())))
            .unwrap_or_else(|| "auto".into());
        let nproc = if nproc_spec == "auto" {
            if gpus > 0 { gpus.to_string() } else if cpus > 0 { cpus.to_string() } else { "1".into() }
        } else {
            nproc_spec
        };
        let mut template = rj.pointer("/template/spec/template").cloned().unwrap_or(json!({"spec": {"containers": []}}));
        let rj_labels = rj.pointer("/template/metadata/labels").cloned().unwrap_or(json!({}));
        let mut labels = rj_labels.clone();
        labels["jobset.sigs.k8s.io/jobset-name"] = json!(name);
        labels["jobset.sigs.k8s.io/replicatedjob-name"] = json!("node");
        labels["jobset.sigs.k8s.io/replicatedjob-replicas"] = json!("1");
        labels["jobset.sigs.k8s.io/job-index"] = json!("0");
        labels["jobset.sigs.k8s.io/job-key"] = json!(hex::encode(&sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(format!("{ns}/{job_name}")))[..20]));
        let tmeta = template.as_object_mut().expect("template").entry("metadata").or_insert_with(|| json!({}));
        let tl = tmeta.as_object_mut().expect("metadata").entry("labels").or_insert_with(|| json!({}));
        for (k, v) in labels.as_object().cloned().unwrap_or_default() {
            tl[k] = v;
        }
        let tspec = template.as_object_mut().expect("template").entry("spec").or_insert_with(|| json!({}));
        tspec["subdomain"] = json!(name);
        tspec["restartPolicy"] = json!(tspec.get("restartPolicy").and_then(Value::as_str).unwrap_or("OnFailure"));
        if let Some(cs) = tspec.get_mut("containers").and_then(Value::as_array_mut) {
            for c in cs.iter_mut().filter(|c| c["name"] == "node") {
                for k in ["image", "command", "args"] {
                    if let Some(v) = trainer.get(k) {
                        c[k] = v.clone();
                        if k == "command" && trainer.get("args").is_none() {
                            c.as_object_mut().map(|o| o.remove("args"));
                        }
                    }
                }
                if let Some(r) = &res {
                    c["resources"] = r.clone();
                }
                let env = c.as_object_mut().expect("container").entry("env").or_insert_with(|| json!([]));
                let ea = env.as_array_mut().expect("env");
                ea.push(json!({"name": "PET_NNODES", "value": nodes.to_string()}));
                ea.push(json!({"name": "PET_NPROC_PER_NODE", "value": nproc}));
                ea.push(json!({"name": "PET_NODE_RANK", "valueFrom": {"fieldRef": {"fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}}));
                ea.push(json!({"name": "PET_MASTER_ADDR", "value": format!("{name}-node-0-0.{name}")}));
                ea.push(json!({"name": "PET_MASTER_PORT", "value": "29400"}));
                for e in trainer.get("env").and_then(Value::as_array).cloned().unwrap_or_default() {
                    ea.retain(|x| x["name"] != e["name"]);
                    ea.push(e);
                }
                let ports = c.as_object_mut().expect("container").entry("ports").or_insert_with(|| json!([]));
                if ports.as_array().is_some_and(Vec::is_empty) {
                    *ports = json!([{"containerPort": 29400, "protocol": "TCP"}]);
                }
            }
        }
        if cluster.store.get("services", ns, name).is_none() {
            let svc = json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": name, "namespace": ns, "ownerReferences": [owner_ref(&tj)]},
                "spec": {"clusterIP": "None", "selector": {"jobset.sigs.k8s.io/jobset-name": name}, "publishNotReadyAddresses": true},
            });
            controller_create(cluster, &tj, "services", svc);
        }
        let bjob = json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": job_name, "namespace": ns, "labels": labels, "annotations": {"jobset.sigs.k8s.io/replicatedjob-replicas": "1", "jobset.sigs.k8s.io/job-index": "0"}, "ownerReferences": [owner_ref(&tj)]},
            "spec": {
                "completionMode": "Indexed", "completions": nodes, "parallelism": nodes,
                "backoffLimit": rj.pointer("/template/spec/backoffLimit").cloned().unwrap_or(json!(0)),
                "template": template,
            },
        });
        controller_create(cluster, &tj, "jobs", bjob);
    }
    if let Some(j) = existing {
        let js = j.get("status").cloned().unwrap_or(json!({}));
        let n = |k: &str| js[k].as_i64().unwrap_or(0);
        status["jobsStatus"] = json!([{"name": "node", "ready": n("ready"), "succeeded": n("succeeded"), "failed": n("failed"), "active": n("active"), "suspended": 0}]);
        let jc = js.get("conditions").cloned().unwrap_or(json!([]));
        if conditions::is_true(&jc, "Complete") {
            conditions::set_meta(&mut conds, "Complete", "True", "AllJobsCompleted", "jobset completed successfully", false);
        } else if conditions::is_true(&jc, "Failed") {
            conditions::set_meta(&mut conds, "Failed", "True", "FailedJobs", "jobset failed due to one or more job failures", false);
        }
    }
    if conds.as_array().is_some_and(|a| !a.is_empty()) {
        status["conditions"] = conds;
    }
    if status != status_before {
        let _ = cluster.store.update(gr, ns, name, |o| {
            o["status"] = status;
            Ok(())
        });
    }
}
