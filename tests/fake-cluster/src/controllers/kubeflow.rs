//! The training-operator v1.9 reconcile loop (TFJob, PyTorchJob, XGBoostJob, PaddleJob,
//! JAXJob, MPIJob v1) and mpi-operator v2beta1 MPIJob: pods and headless services per
//! replica, injected env, replica statuses, conditions, restarts, clean-pod policy, TTL.

use std::sync::Arc;

use serde_json::{Value, json};

use super::conditions;
use super::frameworks::{Framework, framework, operator_env, port_of, replicas};
use crate::cluster::{Cluster, Propagation};
use crate::faults::RequestInfo;
use crate::resources::ResourceType;
use crate::store::{name_of, namespace_of, now_rfc3339, uid_of};

const L_JOB: &str = "training.kubeflow.org/job-name";
const L_OP: &str = "training.kubeflow.org/operator-name";
const L_TYPE: &str = "training.kubeflow.org/replica-type";
const L_INDEX: &str = "training.kubeflow.org/replica-index";
const L_ROLE: &str = "training.kubeflow.org/job-role";

/// Owner reference to `job`.
pub fn owner_ref(job: &Value) -> Value {
    json!({
        "apiVersion": job["apiVersion"], "kind": job["kind"], "name": name_of(job), "uid": uid_of(job),
        "controller": true, "blockOwnerDeletion": true,
    })
}

/// Creates a pod (or other object) on behalf of a controller, honouring injected faults on
/// the corresponding API path; failures are recorded as a Warning event on `owner`.
pub fn controller_create(cluster: &Arc<Cluster>, owner: &Value, plural: &str, obj: Value) -> bool {
    let ns = namespace_of(owner).to_string();
    let name = name_of(&obj).to_string();
    let info = RequestInfo {
        method: "POST".into(),
        path: format!("/api/v1/namespaces/{ns}/{plural}"),
        verb: "create".into(),
        resource: plural.into(),
        namespace: ns.clone(),
        name: name.clone(),
        ..Default::default()
    };
    let reason = if plural == "pods" { "FailedCreatePod" } else if plural == "services" { "FailedCreateService" } else { "FailedCreate" };
    if let Some(f) = cluster.faults.take(&info)
        && (f.status.is_some() || f.preset.is_some()) {
            let e = f.error(&info);
            cluster.record_event(owner, "Warning", reason, &format!("Error creating: {}", e.message), super::component(owner));
            return false;
        }
    let Some(rt) = cluster.registry.find(if plural == "jobs" { "batch" } else { "" }, "v1", plural) else { return false };
    match cluster.create_object(&rt, &ns, obj) {
        Ok(created) => {
            let kind = created["kind"].as_str().unwrap_or_default().to_string();
            if plural == "pods" || plural == "services" {
                cluster.record_event(owner, "Normal", &format!("SuccessfulCreate{kind}"), &format!("Created {}: {name}", kind.to_lowercase()), super::component(owner));
            }
            true
        }
        Err(e) if e.reason == "AlreadyExists" => true,
        Err(e) => {
            cluster.record_event(owner, "Warning", reason, &format!("Error creating: {}", e.message), super::component(owner));
            false
        }
    }
}

fn pod_phase(p: &Value) -> &str {
    p.pointer("/status/phase").and_then(Value::as_str).unwrap_or("Pending")
}

fn exit_code(p: &Value, container: &str) -> Option<i64> {
    p.pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .and_then(|a| a.iter().find(|s| s["name"] == container))
        .and_then(|s| s.pointer("/state/terminated/exitCode"))
        .and_then(Value::as_i64)
}

fn label<'a>(p: &'a Value, k: &str) -> &'a str {
    p.pointer("/metadata/labels").and_then(|l| l.get(k)).and_then(Value::as_str).unwrap_or("")
}

/// Builds a replica pod from its template.
#[allow(clippy::too_many_arguments)]
fn build_pod(fw: &Framework, job: &Value, specs: &Value, rtype: &str, index: i64, pod_name: &str, labels: Value, pod_restart: &str, extra_env: &[Value], extra_volume: Option<(Value, Value)>) -> Value {
    let template = specs.get(rtype).and_then(|s| s.get("template")).cloned().unwrap_or(json!({}));
    let mut meta = template.get("metadata").cloned().unwrap_or(json!({}));
    let mut all_labels = meta.get("labels").cloned().unwrap_or(json!({}));
    if let (Some(a), Some(l)) = (all_labels.as_object_mut(), labels.as_object()) {
        for (k, v) in l {
            a.insert(k.clone(), v.clone());
        }
    }
    meta["labels"] = all_labels;
    meta["name"] = json!(pod_name);
    meta["namespace"] = json!(namespace_of(job));
    meta["ownerReferences"] = json!([owner_ref(job)]);
    if let Some(m) = meta.as_object_mut() {
        for k in ["uid", "resourceVersion", "creationTimestamp", "generateName"] {
            m.remove(k);
        }
    }
    let mut spec = template.get("spec").cloned().unwrap_or(json!({}));
    spec["restartPolicy"] = json!(pod_restart);
    if let Some(cs) = spec.get_mut("containers").and_then(Value::as_array_mut) {
        for c in cs.iter_mut() {
            let cname = c["name"].as_str().unwrap_or_default().to_string();
            if cname == fw.container && !fw.port_name.is_empty() {
                let ports = c.as_object_mut().expect("container").entry("ports").or_insert_with(|| json!([]));
                if let Some(pa) = ports.as_array_mut()
                    && !pa.iter().any(|p| p["name"] == fw.port_name) {
                        pa.push(json!({"name": fw.port_name, "containerPort": fw.port, "protocol": "TCP"}));
                    }
            }
            let mut add = operator_env(fw, job, specs, rtype, index, &cname);
            add.extend(extra_env.iter().cloned());
            if !add.is_empty() {
                let e = c.as_object_mut().expect("container").entry("env").or_insert_with(|| json!([]));
                if let Some(ea) = e.as_array_mut() {
                    ea.extend(add);
                }
            }
            if let Some((_, mount)) = &extra_volume {
                let vm = c.as_object_mut().expect("container").entry("volumeMounts").or_insert_with(|| json!([]));
                if let Some(a) = vm.as_array_mut() {
                    a.push(mount.clone());
                }
            }
        }
    }
    if let Some((vol, _)) = extra_volume {
        let vs = spec.as_object_mut().expect("spec").entry("volumes").or_insert_with(|| json!([]));
        if let Some(a) = vs.as_array_mut() {
            a.push(vol);
        }
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec})
}

fn headless_service(job: &Value, name: &str, selector: Value, port: Option<(&str, i64)>) -> Value {
    let ports = match port {
        Some((pn, p)) => json!([{"name": pn, "port": p, "protocol": "TCP", "targetPort": p}]),
        None => json!([]),
    };
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": namespace_of(job), "labels": selector.clone(), "ownerReferences": [owner_ref(job)]},
        "spec": {"clusterIP": "None", "selector": selector, "ports": ports, "publishNotReadyAddresses": true},
    })
}

fn run_policy(job: &Value) -> Value {
    job.pointer("/spec/runPolicy").cloned().unwrap_or(json!({}))
}

/// Reconciles one Kubeflow job.
pub fn reconcile(cluster: &Arc<Cluster>, rt: &ResourceType, ns: &str, name: &str) {
    let gr = rt.group_resource();
    let Some(job) = cluster.store.get(&gr, ns, name) else { return };
    let version = job["apiVersion"].as_str().and_then(|a| a.split('/').nth(1)).unwrap_or(&rt.version).to_string();
    let Some(fw) = framework(&rt.kind, &version) else { return };
    if job.pointer("/metadata/deletionTimestamp").is_some() {
        return;
    }
    let v2 = rt.kind == "MPIJob" && version == "v2beta1";
    let specs = job.pointer(&format!("/spec/{}", fw.replicas_field)).cloned().unwrap_or(json!({}));
    let status_before = job.get("status").cloned().unwrap_or(json!({}));
    let mut status = status_before.clone();
    let mut conds = status.get("conditions").cloned().unwrap_or(json!([]));
    let kind = fw.kind;
    let finished = conditions::is_true(&conds, "Succeeded") || conditions::is_true(&conds, "Failed");
    let (pods, _) = cluster.store.list("pods", Some(ns), |p| label(p, L_JOB) == name && owned_by(p, uid_of(&job)));

    if finished {
        cleanup(cluster, &fw, &job, &pods, v2);
        ttl(cluster, &gr, &job);
        return;
    }
    if conds.as_array().is_none_or(Vec::is_empty) {
        let msg = if v2 { format!("MPIJob {ns}/{name} is created.") } else { format!("{kind} {name} is created.") };
        conditions::update(&mut conds, "Created", &format!("{kind}Created"), &msg);
        cluster.record_event(&job, "Normal", &format!("{kind}Created"), &msg, super::component(&job));
    }
    let suspended = run_policy(&job).get("suspend").and_then(Value::as_bool) == Some(true);
    if v2 {
        reconcile_mpi_v2(cluster, &fw, &job, &specs, &pods, &mut status, &mut conds, suspended);
    } else {
        reconcile_v1(cluster, &fw, &job, &specs, &pods, &mut status, &mut conds, suspended);
    }
    status["conditions"] = conds;
    if status != status_before {
        let _ = cluster.store.update(&gr, ns, name, |o| {
            o["status"] = status;
            Ok(())
        });
    }
}

fn owned_by(p: &Value, uid: &str) -> bool {
    p.pointer("/metadata/ownerReferences").and_then(Value::as_array).is_some_and(|a| a.iter().any(|r| r["uid"] == uid))
}

#[allow(clippy::too_many_arguments)]
fn reconcile_v1(cluster: &Arc<Cluster>, fw: &Framework, job: &Value, specs: &Value, pods: &[Value], status: &mut Value, conds: &mut Value, suspended: bool) {
    let ns = namespace_of(job).to_string();
    let name = name_of(job).to_string();
    let kind = fw.kind;
    let mpi = kind == "MPIJob";
    let mut types: Vec<String> = specs.as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default();
    let order = ["Chief", "Master", "Launcher", "Evaluator", "PS", "Worker"];
    types.sort_by_key(|t| order.iter().position(|o| o == t).unwrap_or(9));
    let has_chief = specs.get("Chief").is_some() || specs.get("Master").is_some();
    let mut replica_statuses = json!({});
    let mut restarting = false;
    let mut any_created = false;
    if mpi {
        ensure_mpi_config(cluster, job, specs, false);
    }
    let workers_running = if mpi {
        let n = replicas(specs, "Worker");
        (0..n).all(|i| pods.iter().any(|p| label(p, L_TYPE) == "worker" && label(p, L_INDEX) == i.to_string() && pod_phase(p) == "Running"))
    } else {
        true
    };
    for rtype in &types {
        let rt_l = rtype.to_lowercase();
        let n = replicas(specs, rtype);
        let spec = &specs[rtype.as_str()];
        let policy = spec.get("restartPolicy").and_then(Value::as_str).unwrap_or(if mpi && rtype == "Launcher" { "OnFailure" } else { fw.restart }).to_string();
        let pod_restart = if policy == "ExitCode" { "Never".to_string() } else { policy.clone() };
        let (mut active, mut succeeded, mut failed) = (0, 0, 0);
        for i in 0..n {
            let pod_name = if mpi && rtype == "Launcher" { format!("{name}-launcher") } else { format!("{name}-{rt_l}-{i}") };
            let existing: Vec<&Value> = pods.iter().filter(|p| label(p, L_TYPE) == rt_l && label(p, L_INDEX) == i.to_string()).collect();
            match existing.first() {
                None => {
                    if suspended || (mpi && rtype == "Launcher" && !workers_running) {
                        continue;
                    }
                    let master = if has_chief { rtype == "Chief" || rtype == "Master" } else { (rtype == "Worker" && i == 0 && kind != "MPIJob") || rtype == "Launcher" };
                    let mut labels = json!({L_JOB: name, L_OP: fw.operator, L_TYPE: rt_l, L_INDEX: i.to_string()});
                    if master {
                        labels[L_ROLE] = json!("master");
                    }
                    let (extra_env, vol) = if mpi && rtype == "Launcher" { mpi_launcher_extras(job, false) } else { (Vec::new(), None) };
                    let pod = build_pod(fw, job, specs, rtype, i, &pod_name, labels.clone(), &pod_restart, &extra_env, vol);
                    if controller_create(cluster, job, "pods", pod) {
                        any_created = true;
                    }
                    if fw.services {
                        let sel = json!({L_JOB: name, L_OP: fw.operator, L_TYPE: rt_l, L_INDEX: i.to_string()});
                        let port = port_of(fw, specs, rtype);
                        let svc = headless_service(job, &pod_name, sel, Some((fw.port_name, port)));
                        controller_create(cluster, job, "services", svc);
                    }
                }
                Some(p) => {
                    let phase = pod_phase(p);
                    let code = exit_code(p, fw.container).unwrap_or(0xbeef);
                    if phase == "Failed" && ((policy == "ExitCode" && code >= 128) || policy == "OnFailure" || policy == "Always") {
                        let _ = cluster.delete_object("pods", &ns, name_of(p), Propagation::Background, Some(0));
                        let msg = format!("job {name} is restarting because {rtype} replica(s) failed.");
                        conditions::update(conds, "Restarting", &format!("{kind}Restarting"), &msg);
                        cluster.record_event(job, "Warning", &format!("{kind}Restarting"), &msg, super::component(job));
                        restarting = true;
                        continue;
                    }
                    match phase {
                        "Running" if p.pointer("/metadata/deletionTimestamp").is_some() => failed += 1,
                        "Running" => active += 1,
                        "Succeeded" => succeeded += 1,
                        "Failed" => failed += 1,
                        _ => {}
                    }
                }
            }
        }
        let mut sel = serde_json::Map::new();
        sel.insert(L_JOB.into(), json!(name));
        sel.insert(L_OP.into(), json!(fw.operator));
        sel.insert(L_TYPE.into(), json!(rt_l));
        let selector = sel.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())).collect::<Vec<_>>().join(",");
        replica_statuses[rtype.as_str()] = json!({"active": active, "succeeded": succeeded, "failed": failed, "selector": selector});
        let _ = any_created;
    }
    let _ = restarting;
    if status.get("startTime").is_none() {
        status["startTime"] = json!(now_rfc3339());
    }
    status["replicaStatuses"] = replica_statuses.clone();
    // job-level conditions
    let worker0_done = pods.iter().any(|p| label(p, L_TYPE) == "worker" && label(p, L_INDEX) == "0" && pod_phase(p) == "Succeeded" && exit_code(p, fw.container).unwrap_or(0) == 0);
    let success_policy = job.pointer("/spec/successPolicy").and_then(Value::as_str).unwrap_or("");
    let primary: Vec<&str> = match kind {
        "TFJob" if has_chief => vec!["Chief", "Master"],
        "TFJob" => vec!["Worker"],
        "PyTorchJob" | "PaddleJob" if specs.get("Master").is_some() => vec!["Master"],
        "PyTorchJob" | "PaddleJob" | "JAXJob" => vec!["Worker"],
        "XGBoostJob" => vec!["Master"],
        "MPIJob" => vec!["Launcher"],
        _ => vec!["Worker"],
    };
    for rtype in &types {
        let rs = &replica_statuses[rtype.as_str()];
        let running = rs["active"].as_i64().unwrap_or(0);
        let succeeded = rs["succeeded"].as_i64().unwrap_or(0);
        let failed = rs["failed"].as_i64().unwrap_or(0);
        let expected = replicas(specs, rtype) - succeeded;
        if primary.contains(&rtype.as_str()) {
            let worker_based = rtype == "Worker" && !has_chief;
            let done = if worker_based && kind != "JAXJob" && kind != "PaddleJob" && kind != "PyTorchJob" {
                expected == 0 || (worker0_done && success_policy != "AllWorkers")
            } else if worker_based {
                expected == 0 || (kind == "PyTorchJob" && worker0_done)
            } else {
                expected == 0
            };
            if running > 0 && !done {
                let msg = format!("{kind} {}/{name} is running.", namespace_of(job));
                conditions::update(conds, "Running", &format!("{kind}Running"), &msg);
            }
            if done {
                let msg = format!("{kind} {}/{name} successfully completed.", namespace_of(job));
                if !conditions::is_true(conds, "Succeeded") {
                    cluster.record_event(job, "Normal", &format!("{kind}Succeeded"), &msg, super::component(job));
                }
                if status.get("completionTime").is_none() {
                    status["completionTime"] = json!(now_rfc3339());
                }
                conditions::update(conds, "Succeeded", &format!("{kind}Succeeded"), &msg);
            }
        }
        if failed > 0 && !conditions::is_true(conds, "Succeeded") {
            let policy = specs[rtype.as_str()].get("restartPolicy").and_then(Value::as_str).unwrap_or(fw.restart);
            let exit_code_retry = policy == "ExitCode" && conditions::is_true(conds, "Restarting");
            if !exit_code_retry {
                let msg = format!("{kind} {}/{name} has failed because {failed} {rtype} replica(s) failed.", namespace_of(job));
                cluster.record_event(job, "Normal", &format!("{kind}Failed"), &msg, super::component(job));
                if status.get("completionTime").is_none() {
                    status["completionTime"] = json!(now_rfc3339());
                }
                conditions::update(conds, "Failed", &format!("{kind}Failed"), &msg);
            }
        }
    }
    // backoffLimit counts container restarts
    if let Some(limit) = run_policy(job).get("backoffLimit").and_then(Value::as_i64) {
        let restarts: i64 = pods
            .iter()
            .flat_map(|p| p.pointer("/status/containerStatuses").and_then(Value::as_array).cloned().unwrap_or_default())
            .map(|s| s["restartCount"].as_i64().unwrap_or(0))
            .sum();
        if restarts > limit && !conditions::is_true(conds, "Succeeded") && !conditions::is_true(conds, "Failed") {
            let msg = format!("Job {name} has failed because it has reached the specified backoff limit");
            conditions::update(conds, "Failed", &format!("{kind}Failed"), &msg);
            if status.get("completionTime").is_none() {
                status["completionTime"] = json!(now_rfc3339());
            }
        }
    }
}

fn mpi_launcher_extras(job: &Value, v2: bool) -> (Vec<Value>, Option<(Value, Value)>) {
    let name = name_of(job);
    let mut env = vec![json!({"name": "OMPI_MCA_orte_default_hostfile", "value": "/etc/mpi/hostfile"})];
    if v2 {
        env.push(json!({"name": "OMPI_MCA_orte_keep_fqdn_hostnames", "value": "true"}));
        env.push(json!({"name": "OMPI_MCA_plm_rsh_args", "value": "-o ConnectionAttempts=10"}));
        env.push(json!({"name": "OMPI_MCA_rmaps_base_tolerate_oversubscription", "value": "true"}));
        env.push(json!({"name": "K_MPI_JOB_ROLE", "value": "launcher"}));
    } else {
        env.push(json!({"name": "OMPI_MCA_plm_rsh_agent", "value": "/etc/mpi/kubexec.sh"}));
        env.push(json!({"name": "I_MPI_HYDRA_HOST_FILE", "value": "/etc/mpi/hostfile"}));
        env.push(json!({"name": "I_MPI_HYDRA_BOOTSTRAP_EXEC_EXTRA_ARGS", "value": "--"}));
    }
    let vol = json!({"name": "mpi-job-config", "configMap": {"name": format!("{name}-config"), "items": [{"key": "hostfile", "path": "hostfile", "mode": 292}, {"key": if v2 { "discover_hosts.sh" } else { "kubexec.sh" }, "path": if v2 { "discover_hosts.sh" } else { "kubexec.sh" }, "mode": 365}]}});
    let mount = json!({"name": "mpi-job-config", "mountPath": "/etc/mpi"});
    (env, Some((vol, mount)))
}

fn ensure_mpi_config(cluster: &Arc<Cluster>, job: &Value, specs: &Value, v2: bool) {
    let ns = namespace_of(job);
    let name = name_of(job);
    let cm_name = format!("{name}-config");
    if cluster.store.get("configmaps", ns, &cm_name).is_some() {
        return;
    }
    let slots = job.pointer("/spec/slotsPerWorker").and_then(Value::as_i64).unwrap_or(1);
    let n = replicas(specs, "Worker");
    let mut hostfile = String::new();
    let mut discover = String::from("#!/bin/sh\n");
    for i in 0..n {
        let host = if v2 { format!("{name}-worker-{i}.{name}.{ns}.svc") } else { format!("{name}-worker-{i}") };
        hostfile.push_str(&format!("{host} slots={slots}\n"));
        discover.push_str(&format!("echo {host}:{slots}\n"));
    }
    let mut data = json!({"hostfile": hostfile, "discover_hosts.sh": discover});
    if !v2 {
        data["kubexec.sh"] = json!("#!/bin/sh\nset -x\nPOD_NAME=$1\nshift\n/opt/kube/kubectl exec ${POD_NAME} -- /bin/sh -c \"$*\"\n");
    }
    let cm = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": cm_name, "namespace": ns, "labels": {"app": name}, "ownerReferences": [owner_ref(job)]},
        "data": data,
    });
    controller_create(cluster, job, "configmaps", cm);
}

#[allow(clippy::too_many_arguments)]
fn reconcile_mpi_v2(cluster: &Arc<Cluster>, fw: &Framework, job: &Value, specs: &Value, pods: &[Value], status: &mut Value, conds: &mut Value, suspended: bool) {
    let ns = namespace_of(job).to_string();
    let name = name_of(job).to_string();
    ensure_mpi_config(cluster, job, specs, true);
    if cluster.store.get("services", &ns, &name).is_none() {
        let sel = json!({L_JOB: name, L_OP: fw.operator});
        controller_create(cluster, job, "services", headless_service(job, &name, sel, None));
    }
    let n = replicas(specs, "Worker");
    let worker_restart = specs.pointer("/Worker/restartPolicy").and_then(Value::as_str).unwrap_or("Never").to_string();
    let mut active_workers = 0;
    for i in 0..n {
        let existing = pods.iter().find(|p| label(p, L_ROLE) == "worker" && label(p, L_INDEX) == i.to_string());
        match existing {
            None if !suspended => {
                let labels = json!({L_JOB: name, L_OP: fw.operator, L_ROLE: "worker", L_INDEX: i.to_string()});
                let mut pod = build_pod(fw, job, specs, "Worker", i, &format!("{name}-worker-{i}"), labels, &worker_restart, &[], None);
                pod["spec"]["hostname"] = json!(format!("{name}-worker-{i}"));
                pod["spec"]["subdomain"] = json!(name);
                controller_create(cluster, job, "pods", pod);
            }
            Some(p) if pod_phase(p) == "Running" => active_workers += 1,
            _ => {}
        }
    }
    let launcher_name = format!("{name}-launcher");
    let launcher = cluster.store.get("jobs.batch", &ns, &launcher_name);
    if launcher.is_none() && !suspended {
        let labels = json!({L_JOB: name, L_OP: fw.operator, L_ROLE: "launcher"});
        let restart = specs.pointer("/Launcher/restartPolicy").and_then(Value::as_str).unwrap_or("OnFailure");
        let (env, vol) = mpi_launcher_extras(job, true);
        let pod = build_pod(fw, job, specs, "Launcher", 0, &launcher_name, labels.clone(), if restart == "Always" { "OnFailure" } else { restart }, &env, vol);
        let mut template = json!({"metadata": pod["metadata"].clone(), "spec": pod["spec"].clone()});
        if let Some(m) = template["metadata"].as_object_mut() {
            m.remove("name");
            m.remove("namespace");
            m.remove("ownerReferences");
        }
        let backoff = run_policy(job).get("backoffLimit").cloned().unwrap_or(json!(6));
        let bjob = json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": launcher_name, "namespace": ns, "labels": labels, "ownerReferences": [owner_ref(job)]},
            "spec": {"backoffLimit": backoff, "template": template},
        });
        controller_create(cluster, job, "jobs", bjob);
    }
    let lstat = launcher.as_ref().and_then(|l| l.get("status").cloned()).unwrap_or(json!({}));
    let l_active = lstat["active"].as_i64().unwrap_or(0);
    let l_succeeded = lstat["succeeded"].as_i64().unwrap_or(0);
    let l_failed = lstat["failed"].as_i64().unwrap_or(0);
    status["replicaStatuses"] = json!({
        "Launcher": {"active": l_active, "succeeded": l_succeeded, "failed": l_failed},
        "Worker": {"active": active_workers, "succeeded": 0, "failed": 0},
    });
    if status.get("startTime").is_none() {
        status["startTime"] = json!(now_rfc3339());
    }
    let lconds = lstat.get("conditions").cloned().unwrap_or(json!([]));
    if conditions::is_true(&lconds, "Complete") {
        let msg = format!("MPIJob {ns}/{name} successfully completed.");
        cluster.record_event(job, "Normal", "MPIJobSucceeded", &msg, super::component(job));
        conditions::update(conds, "Succeeded", "MPIJobSucceeded", &msg);
        status["completionTime"] = lstat.get("completionTime").cloned().unwrap_or(json!(now_rfc3339()));
    } else if conditions::is_true(&lconds, "Failed") {
        let m = lconds.as_array().and_then(|a| a.iter().find(|c| c["type"] == "Failed")).and_then(|c| c["message"].as_str()).unwrap_or("").to_string();
        let msg = if m.is_empty() { format!("MPIJob {ns}/{name} has failed") } else { m };
        cluster.record_event(job, "Warning", "MPIJobFailed", &msg, super::component(job));
        conditions::update(conds, "Failed", "MPIJobFailed", &msg);
        status["completionTime"] = json!(now_rfc3339());
    } else if l_active > 0 && active_workers == n {
        let launcher_running = cluster.store.list("pods", Some(&ns), |p| label(p, L_ROLE) == "launcher" && label(p, L_JOB) == name).0.iter().any(|p| pod_phase(p) == "Running");
        if launcher_running {
            conditions::update(conds, "Running", "MPIJobRunning", &format!("MPIJob {ns}/{name} is running."));
        }
    }
}

fn cleanup(cluster: &Arc<Cluster>, fw: &Framework, job: &Value, pods: &[Value], v2: bool) {
    let policy = run_policy(job)
        .get("cleanPodPolicy")
        .and_then(Value::as_str)
        .or_else(|| job.pointer("/spec/cleanPodPolicy").and_then(Value::as_str))
        .unwrap_or(fw.clean)
        .to_string();
    if policy == "None" {
        return;
    }
    let ns = namespace_of(job).to_string();
    for p in pods {
        let phase = pod_phase(p);
        if policy == "Running" && phase != "Running" && phase != "Pending" {
            continue;
        }
        if p.pointer("/metadata/deletionTimestamp").is_some() {
            continue;
        }
        let pname = name_of(p).to_string();
        let _ = cluster.delete_object("pods", &ns, &pname, Propagation::Background, None);
        if !v2 && cluster.store.get("services", &ns, &pname).is_some() {
            let _ = cluster.delete_object("services", &ns, &pname, Propagation::Background, None);
        }
    }
}

fn ttl(cluster: &Arc<Cluster>, gr: &str, job: &Value) {
    let Some(ttl) = run_policy(job).get("ttlSecondsAfterFinished").and_then(Value::as_i64) else { return };
    let Some(done) = job.pointer("/status/completionTime").and_then(Value::as_str).and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok()) else { return };
    if chrono::Utc::now().signed_duration_since(done).num_seconds() >= ttl {
        let _ = cluster.delete_object(gr, namespace_of(job), name_of(job), Propagation::Background, None);
    }
}
