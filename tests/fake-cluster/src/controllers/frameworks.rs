//! Per-framework facts of the training operator v1.9 (and mpi-operator v2beta1): replica
//! field, default container/port, restart and clean-pod defaults, and the environment each
//! operator injects.

use serde_json::{Value, json};

/// One Kubeflow job kind.
#[derive(Debug, Clone, Copy)]
pub struct Framework {
    /// Kind (`TFJob`).
    pub kind: &'static str,
    /// Field holding the replica specs.
    pub replicas_field: &'static str,
    /// Default container name.
    pub container: &'static str,
    /// Default port name.
    pub port_name: &'static str,
    /// Default port.
    pub port: i64,
    /// Default replica restartPolicy.
    pub restart: &'static str,
    /// Default cleanPodPolicy.
    pub clean: &'static str,
    /// Value of `training.kubeflow.org/operator-name`.
    pub operator: &'static str,
    /// Whether a headless Service is created per replica.
    pub services: bool,
}

/// Frameworks by kind and version.
pub fn framework(kind: &str, version: &str) -> Option<Framework> {
    let f = |kind, _plural: &str, replicas_field, container, port_name, port, restart, clean, operator, services| Framework {
        kind,
        replicas_field,
        container,
        port_name,
        port,
        restart,
        clean,
        operator,
        services,
    };
    Some(match (kind, version) {
        ("TFJob", _) => f("TFJob", "tfjobs", "tfReplicaSpecs", "tensorflow", "tfjob-port", 2222, "Never", "Running", "tfjob-controller", true),
        ("PyTorchJob", _) => f("PyTorchJob", "pytorchjobs", "pytorchReplicaSpecs", "pytorch", "pytorchjob-port", 23456, "OnFailure", "Running", "pytorchjob-controller", true),
        ("XGBoostJob", _) => f("XGBoostJob", "xgboostjobs", "xgbReplicaSpecs", "xgboost", "xgboostjob-port", 9999, "Never", "Running", "xgboostjob-controller", true),
        ("PaddleJob", _) => f("PaddleJob", "paddlejobs", "paddleReplicaSpecs", "paddle", "master", 36543, "Never", "Running", "paddlejob-controller", true),
        ("JAXJob", _) => f("JAXJob", "jaxjobs", "jaxReplicaSpecs", "jax", "jaxjob-port", 6666, "Never", "Running", "jaxjob-controller", true),
        ("MPIJob", "v1") => f("MPIJob", "mpijobs", "mpiReplicaSpecs", "mpi", "", 0, "Never", "None", "mpijob-controller", false),
        ("MPIJob", "v2beta1") => f("MPIJob", "mpijobs", "mpiReplicaSpecs", "mpi", "", 0, "Never", "None", "mpi-operator", false),
        _ => return None,
    })
}

fn int(v: Option<&Value>) -> i64 {
    v.and_then(|x| x.as_i64().or_else(|| x.as_str().and_then(|s| s.parse().ok()))).unwrap_or(1)
}

/// Replica count of a type (default 1).
pub fn replicas(specs: &Value, rtype: &str) -> i64 {
    int(specs.get(rtype).and_then(|s| s.get("replicas")))
}

/// The port of the default container of a replica type (or the default port).
pub fn port_of(fw: &Framework, specs: &Value, rtype: &str) -> i64 {
    specs
        .get(rtype)
        .and_then(|s| s.pointer("/template/spec/containers"))
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c["name"] == fw.container))
        .and_then(|c| c.get("ports").and_then(Value::as_array))
        .and_then(|ps| ps.iter().find(|p| p["name"] == fw.port_name))
        .and_then(|p| p.get("containerPort").and_then(Value::as_i64))
        .unwrap_or(fw.port)
}

fn env(name: &str, value: impl Into<String>) -> Value {
    json!({"name": name, "value": value.into()})
}

fn total(specs: &Value) -> i64 {
    specs.as_object().map(|m| m.keys().map(|k| replicas(specs, k)).sum()).unwrap_or(0)
}

/// Environment the operator adds to container `container_name` of replica `rtype`/`index`.
pub fn operator_env(fw: &Framework, job: &Value, specs: &Value, rtype: &str, index: i64, container_name: &str) -> Vec<Value> {
    let name = crate::store::name_of(job);
    let ns = crate::store::namespace_of(job);
    let rt = rtype.to_lowercase();
    let mut out = Vec::new();
    match fw.kind {
        "TFJob" => {
            if container_name != fw.container || total(specs) <= 1 {
                return out;
            }
            let mut cluster = serde_json::Map::new();
            let mut types: Vec<&String> = specs.as_object().map(|m| m.keys().collect()).unwrap_or_default();
            types.sort();
            for t in types {
                if t == "Evaluator" {
                    continue;
                }
                let port = port_of(fw, specs, t);
                let tl = t.to_lowercase();
                let hosts: Vec<Value> = (0..replicas(specs, t)).map(|i| json!(format!("{name}-{tl}-{i}.{ns}.svc:{port}"))).collect();
                cluster.insert(tl, Value::Array(hosts));
            }
            let cfg = json!({"cluster": cluster, "task": {"type": rt, "index": index}, "environment": "cloud"});
            out.push(env("TF_CONFIG", serde_json::to_string(&cfg).unwrap_or_default()));
        }
        "PyTorchJob" => {
            out.push(env("PYTHONUNBUFFERED", "0"));
            let nproc = job.pointer("/spec/nprocPerNode").and_then(Value::as_str).unwrap_or("1").to_string();
            let nproc_i: i64 = nproc.parse().unwrap_or(1);
            let tot = total(specs);
            if specs.get("Master").is_some() {
                let port = port_of(fw, specs, "Master");
                let addr = format!("{name}-master-0");
                out.push(env("MASTER_PORT", port.to_string()));
                out.push(env("PET_MASTER_PORT", port.to_string()));
                out.push(env("MASTER_ADDR", addr.clone()));
                out.push(env("PET_MASTER_ADDR", addr));
                let rank = if rt == "worker" { index + 1 } else { index };
                out.push(env("WORLD_SIZE", (tot * nproc_i).to_string()));
                out.push(env("RANK", rank.to_string()));
                out.push(env("PET_NPROC_PER_NODE", nproc));
                out.push(env("PET_NODE_RANK", rank.to_string()));
            }
            match job.pointer("/spec/elasticPolicy") {
                Some(ep) => {
                    let min = ep.get("minReplicas").and_then(Value::as_i64).unwrap_or(tot);
                    let max = ep.get("maxReplicas").and_then(Value::as_i64).unwrap_or(tot);
                    out.push(env("PET_NNODES", format!("{min}:{max}")));
                }
                None => out.push(env("PET_NNODES", tot.to_string())),
            }
        }
        "XGBoostJob" => {
            let masters = replicas(specs, "Master");
            let rank = if rt == "worker" { index + masters } else { index };
            let tot = total(specs);
            out.push(env("MASTER_PORT", port_of(fw, specs, "Master").to_string()));
            out.push(env("MASTER_ADDR", format!("{name}-master-0")));
            out.push(env("WORLD_SIZE", tot.to_string()));
            out.push(env("RANK", rank.to_string()));
            out.push(env("PYTHONUNBUFFERED", "0"));
            if tot > 1 {
                out.push(env("WORKER_PORT", port_of(fw, specs, "Worker").to_string()));
                let addrs: Vec<String> = (0..tot - 1).map(|i| format!("{name}-worker-{i}")).collect();
                out.push(env("WORKER_ADDRS", addrs.join(",")));
            }
        }
        "PaddleJob" => {
            out.push(env("PYTHONUNBUFFERED", "0"));
            out.push(env("PADDLE_JOB_ID", name));
            out.push(env("PADDLE_NNODES", total(specs).to_string()));
            let (master_type, master_rt) = if specs.get("Master").is_some() { ("Master", "master") } else { ("Worker", "worker") };
            let port = port_of(fw, specs, master_type);
            if index == 0 && rt == master_rt {
                out.push(json!({"name": "POD_IP_DUMMY", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}));
                out.push(env("PADDLE_MASTER", format!("$(POD_IP_DUMMY):{port}")));
            } else {
                out.push(env("PADDLE_MASTER", format!("{name}-{master_rt}-0:{port}")));
            }
            if specs.get("Master").is_some() {
                if rt == "master" {
                    out.push(env("PADDLE_SERVER_NUM", "1"));
                } else {
                    out.push(env("PADDLE_TRAINER_NUM", "1"));
                }
            }
        }
        "JAXJob" => {
            out.push(env("PYTHONUNBUFFERED", "1"));
            out.push(env("COORDINATOR_PORT", port_of(fw, specs, "Worker").to_string()));
            out.push(env("COORDINATOR_ADDRESS", format!("{name}-worker-0")));
            out.push(env("NUM_PROCESSES", total(specs).to_string()));
            out.push(env("PROCESS_ID", index.to_string()));
        }
        _ => {}
    }
    out
}
