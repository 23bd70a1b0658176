//! Server-side defaulting of built-in kinds, as the API server applies it on create.

use serde_json::{Map, Value, json};

use crate::resources::ResourceType;

/// Applies the defaults of `rt` to a new object.
pub fn apply(rt: &ResourceType, obj: &mut Value) {
    match (rt.group.as_str(), rt.plural.as_str()) {
        ("", "pods") => {
            if let Some(spec) = obj.get_mut("spec") {
                pod_spec(spec);
            }
            let qos = qos_class(obj.get("spec").unwrap_or(&Value::Null));
            let status = obj.as_object_mut().expect("object").entry("status").or_insert_with(|| json!({}));
            if status.get("phase").is_none() {
                status["phase"] = json!("Pending");
            }
            status["qosClass"] = json!(qos);
        }
        ("", "services") => {
            let spec = obj.as_object_mut().expect("object").entry("spec").or_insert_with(|| json!({}));
            set_default(spec, "type", json!("ClusterIP"));
            set_default(spec, "sessionAffinity", json!("None"));
            if spec.get("clusterIP").is_none() {
                let n: u8 = rand::random_range(1..250);
                let m: u8 = rand::random_range(1..250);
                spec["clusterIP"] = json!(format!("10.96.{n}.{m}"));
            }
            let cip = spec["clusterIP"].clone();
            set_default(spec, "clusterIPs", json!([cip]));
            set_default(spec, "ipFamilies", json!(["IPv4"]));
            set_default(spec, "ipFamilyPolicy", json!("SingleStack"));
            set_default(spec, "internalTrafficPolicy", json!("Cluster"));
            if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
                for p in ports {
                    set_default(p, "protocol", json!("TCP"));
                    if p.get("targetPort").is_none() {
                        p["targetPort"] = p.get("port").cloned().unwrap_or(json!(0));
                    }
                }
            }
            obj.as_object_mut().expect("object").entry("status").or_insert_with(|| json!({"loadBalancer": {}}));
        }
        ("batch", "jobs") => {
            if obj.pointer("/metadata/uid").is_none() {
                obj["metadata"]["uid"] = json!(uuid::Uuid::new_v4().to_string());
            }
            let uid = obj["metadata"]["uid"].clone();
            let name = obj["metadata"]["name"].clone();
            let spec = obj.as_object_mut().expect("object").entry("spec").or_insert_with(|| json!({}));
            set_default(spec, "parallelism", json!(1));
            if spec.get("completions").is_none() && spec.get("completionMode").and_then(Value::as_str) != Some("Indexed") {
                spec["completions"] = json!(1);
            }
            set_default(spec, "backoffLimit", json!(6));
            set_default(spec, "completionMode", json!("NonIndexed"));
            set_default(spec, "suspend", json!(false));
            set_default(spec, "podReplacementPolicy", json!("TerminatingOrFailed"));
            let manual = spec.get("manualSelector").and_then(Value::as_bool) == Some(true);
            if !manual {
                spec["selector"] = json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}});
                let tmeta = spec
                    .as_object_mut()
                    .expect("spec")
                    .entry("template")
                    .or_insert_with(|| json!({}))
                    .as_object_mut()
                    .expect("template")
                    .entry("metadata")
                    .or_insert_with(|| json!({}));
                let labels = tmeta.as_object_mut().expect("metadata").entry("labels").or_insert_with(|| json!({}));
                labels["batch.kubernetes.io/controller-uid"] = uid.clone();
                labels["batch.kubernetes.io/job-name"] = name.clone();
                labels["controller-uid"] = uid;
                labels["job-name"] = name;
            }
            if let Some(ps) = spec.pointer_mut("/template/spec") {
                pod_spec(ps);
            }
            obj.as_object_mut().expect("object").entry("status").or_insert_with(|| json!({}));
        }
        ("", "namespaces") => {
            obj["spec"] = json!({"finalizers": ["kubernetes"]});
            obj["status"] = json!({"phase": "Active"});
            let name = obj["metadata"]["name"].clone();
            let labels = obj["metadata"].as_object_mut().expect("metadata").entry("labels").or_insert_with(|| json!({}));
            labels["kubernetes.io/metadata.name"] = name;
        }
        ("", "secrets") => {
            if obj.get("type").is_none() {
                obj["type"] = json!("Opaque");
            }
            if let Some(sd) = obj.as_object_mut().and_then(|o| o.remove("stringData")) {
                let data = obj.as_object_mut().expect("object").entry("data").or_insert_with(|| json!({}));
                if let Some(m) = sd.as_object() {
                    for (k, v) in m {
                        data[k] = json!(base64::Engine::encode(&base64::engine::general_purpose::STANDARD, v.as_str().unwrap_or_default()));
                    }
                }
            }
        }
        _ => {}
    }
}

fn set_default(v: &mut Value, key: &str, d: Value) {
    if let Some(o) = v.as_object_mut() {
        o.entry(key.to_string()).or_insert(d);
    }
}

/// Pod spec defaults (also used for job templates).
pub fn pod_spec(spec: &mut Value) {
    set_default(spec, "restartPolicy", json!("Always"));
    set_default(spec, "terminationGracePeriodSeconds", json!(30));
    set_default(spec, "dnsPolicy", json!("ClusterFirst"));
    set_default(spec, "schedulerName", json!("default-scheduler"));
    set_default(spec, "securityContext", json!({}));
    set_default(spec, "enableServiceLinks", json!(true));
    set_default(spec, "preemptionPolicy", json!("PreemptLowerPriority"));
    set_default(spec, "priority", json!(0));
    if spec.get("serviceAccountName").is_none() {
        spec["serviceAccountName"] = json!("default");
    }
    let sa = spec["serviceAccountName"].clone();
    set_default(spec, "serviceAccount", sa);
    for key in ["containers", "initContainers"] {
        if let Some(cs) = spec.get_mut(key).and_then(Value::as_array_mut) {
            for c in cs {
                let image = c.get("image").and_then(Value::as_str).unwrap_or_default().to_string();
                let last = image.rsplit('/').next().unwrap_or_default();
                let latest = !image.contains('@') && (!last.contains(':') || last.ends_with(":latest"));
                set_default(c, "imagePullPolicy", json!(if latest { "Always" } else { "IfNotPresent" }));
                set_default(c, "terminationMessagePath", json!("/dev/termination-log"));
                set_default(c, "terminationMessagePolicy", json!("File"));
                let res = c.as_object_mut().expect("container").entry("resources").or_insert_with(|| json!({}));
                // requests default to limits
                if let Some(limits) = res.get("limits").and_then(Value::as_object).cloned() {
                    let req = res.as_object_mut().expect("resources").entry("requests").or_insert_with(|| Value::Object(Map::new()));
                    for (k, v) in limits {
                        if req.get(&k).is_none() {
                            req[&k] = v;
                        }
                    }
                }
                if let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut) {
                    for p in ports {
                        set_default(p, "protocol", json!("TCP"));
                    }
                }
            }
        }
    }
}

/// Guaranteed / Burstable / BestEffort.
pub fn qos_class(spec: &Value) -> &'static str {
    let cs = spec.get("containers").and_then(Value::as_array).cloned().unwrap_or_default();
    let mut any = false;
    let mut guaranteed = !cs.is_empty();
    for c in &cs {
        let req = c.pointer("/resources/requests");
        let lim = c.pointer("/resources/limits");
        if req.is_some_and(|r| r.as_object().is_some_and(|m| !m.is_empty())) || lim.is_some_and(|l| l.as_object().is_some_and(|m| !m.is_empty())) {
            any = true;
        }
        for r in ["cpu", "memory"] {
            let rq = req.and_then(|x| x.get(r));
            let lm = lim.and_then(|x| x.get(r));
            if lm.is_none() || rq != lm {
                guaranteed = false;
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}
