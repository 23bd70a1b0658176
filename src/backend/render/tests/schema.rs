//! Checks a rendered object the way an API server would, only stricter.
//!
//! Custom resources are validated against the operators' real CRD schemas
//! (`../shared/spec/kubeflow/`), made strict: every object schema with
//! `properties` gets `additionalProperties: false`, so a misplaced field —
//! which the API server would silently prune — fails. `batch/v1` Jobs,
//! ConfigMaps and every pod template round-trip through `k8s_openapi` types
//! (an unknown field would be dropped and the comparison fail). Metadata and
//! pod-spec rules the schemas do not carry (name syntax, label syntax,
//! volume references) are checked here with the Kubernetes regular
//! expressions.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

use jsonschema::Validator;
use regex::Regex;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use crate::frameworks::Frameworks;

const SPEC_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/spec/kubeflow");
const CRD_DIRS: &[&str] = &["training-operator-v1.9.0", "mpi-operator-v0.8.0", "trainer-v2"];

/// Panics with every problem found in `obj`.
pub fn assert_valid(obj: &Value) {
    let problems = problems(obj);
    assert!(problems.is_empty(), "invalid {}:\n  {}\n{obj:#}", describe(obj), problems.join("\n  "));
}

/// Every problem found in `obj` (empty when valid).
pub fn problems(obj: &Value) -> Vec<String> {
    let api_version = obj["apiVersion"].as_str().unwrap_or_default();
    let kind = obj["kind"].as_str().unwrap_or_default();
    let mut problems = match (api_version, kind) {
        ("batch/v1", "Job") => roundtrip::<k8s_openapi::api::batch::v1::Job>(obj),
        ("v1", "ConfigMap") => roundtrip::<k8s_openapi::api::core::v1::ConfigMap>(obj),
        _ => crd_problems(api_version, kind, obj),
    };
    problems.extend(metadata_problems("metadata", &obj["metadata"], kind != "ConfigMap"));
    walk(obj, "", &mut problems);
    problems
}

fn describe(obj: &Value) -> String {
    format!("{} {} {}", obj["apiVersion"], obj["kind"], obj["metadata"]["name"])
}

fn roundtrip<T: DeserializeOwned + Serialize>(v: &Value) -> Vec<String> {
    match serde_json::from_value::<T>(v.clone()) {
        Err(e) => vec![format!("does not deserialize as {}: {e}", std::any::type_name::<T>())],
        Ok(t) => {
            let back = serde_json::to_value(&t).expect("k8s_openapi types serialize");
            if back == *v {
                vec![]
            } else {
                vec![format!(
                    "changes in a round trip through {} (unknown or mistyped fields):\n{back:#}",
                    std::any::type_name::<T>()
                )]
            }
        }
    }
}

/// Recurses through the object: pod templates round-trip through
/// `PodTemplateSpec` and get the pod-spec checks; nested metadata and
/// TrainJob's `spec.labels` get the label checks.
fn walk(v: &Value, path: &str, problems: &mut Vec<String>) {
    let Value::Object(m) = v else {
        if let Value::Array(items) = v {
            for (i, item) in items.iter().enumerate() {
                walk(item, &format!("{path}[{i}]"), problems);
            }
        }
        return;
    };
    for (k, child) in m {
        let here = format!("{path}.{k}");
        if k == "template" && child.get("spec").is_some_and(|s| s.get("containers").is_some()) {
            problems.extend(
                roundtrip::<k8s_openapi::api::core::v1::PodTemplateSpec>(child)
                    .into_iter()
                    .map(|p| format!("{here}: {p}")),
            );
            problems.extend(pod_spec_problems(&here, &child["spec"], &child["spec"]["volumes"]));
            problems.extend(metadata_problems(&format!("{here}.metadata"), &child["metadata"], false));
        }
        if k == "podSpecOverrides" {
            for (i, o) in child.as_array().into_iter().flatten().enumerate() {
                problems.extend(pod_spec_problems(&format!("{here}[{i}]"), o, &o["volumes"]));
            }
        }
        if (k == "labels" || k == "annotations") && path.ends_with("spec") {
            problems.extend(map_problems(&here, child, k == "labels"));
        }
        walk(child, &here, problems);
    }
}

fn re(pattern: &'static str) -> Regex {
    Regex::new(pattern).expect("valid regex")
}

fn dns1123_label(s: &str) -> bool {
    static R: OnceLock<Regex> = OnceLock::new();
    s.len() <= 63 && R.get_or_init(|| re(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")).is_match(s)
}

/// A name that Services can carry too (operators name them after the job).
fn dns1035_label(s: &str) -> bool {
    static R: OnceLock<Regex> = OnceLock::new();
    s.len() <= 63 && R.get_or_init(|| re(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")).is_match(s)
}

fn qualified_name(s: &str) -> bool {
    static R: OnceLock<Regex> = OnceLock::new();
    static SUB: OnceLock<Regex> = OnceLock::new();
    let (prefix, name) = s.split_once('/').map_or((None, s), |(p, n)| (Some(p), n));
    let prefix_ok = prefix.is_none_or(|p| {
        p.len() <= 253
            && SUB.get_or_init(|| re(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")).is_match(p)
    });
    prefix_ok && name.len() <= 63 && R.get_or_init(|| re(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")).is_match(name)
}

fn label_value(s: &str) -> bool {
    s.is_empty() || (s.len() <= 63 && qualified_name(s) && !s.contains('/'))
}

/// Label (or annotation) maps: keys are qualified names, values strings (label syntax for labels).
fn map_problems(path: &str, m: &Value, labels: bool) -> Vec<String> {
    let Some(m) = m.as_object() else {
        return vec![format!("{path} is not a mapping")];
    };
    let mut out = Vec::new();
    for (k, v) in m {
        if !qualified_name(k) {
            out.push(format!("{path}: key {k:?} is not a qualified name"));
        }
        match v.as_str() {
            None => out.push(format!("{path}.{k}: value {v} is not a string")),
            Some(s) if labels && !label_value(s) => out.push(format!("{path}.{k}: {s:?} is not a label value")),
            Some(_) => {}
        }
    }
    out
}

fn metadata_problems(path: &str, meta: &Value, object_is_job: bool) -> Vec<String> {
    let Some(m) = meta.as_object() else {
        return vec![format!("{path} is missing")];
    };
    let mut out = Vec::new();
    for (k, v) in m {
        match k.as_str() {
            "name" => {
                let name = v.as_str().unwrap_or_default();
                let ok = if object_is_job { dns1035_label(name) } else { dns1123_label(name) };
                if !ok {
                    out.push(format!("{path}.name {name:?} is not a valid job name"));
                }
            }
            "namespace" => {
                if !dns1123_label(v.as_str().unwrap_or_default()) {
                    out.push(format!("{path}.namespace {v} is not a DNS label"));
                }
            }
            "labels" => out.extend(map_problems(&format!("{path}.labels"), v, true)),
            "annotations" => out.extend(map_problems(&format!("{path}.annotations"), v, false)),
            other => out.push(format!("{path}.{other} is not something a new object sets")),
        }
    }
    out
}

/// Volume names unique DNS labels; every mount names a volume; mount paths unique per container.
fn pod_spec_problems(path: &str, spec: &Value, volumes: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let mut names = BTreeSet::new();
    for v in volumes.as_array().into_iter().flatten() {
        let name = v["name"].as_str().unwrap_or_default();
        if !dns1123_label(name) {
            out.push(format!("{path}: volume name {name:?} is not a DNS label"));
        }
        if !names.insert(name) {
            out.push(format!("{path}: volume name {name:?} is used twice"));
        }
    }
    for c in spec["containers"].as_array().into_iter().flatten() {
        let mut paths = BTreeSet::new();
        for m in c["volumeMounts"].as_array().into_iter().flatten() {
            let name = m["name"].as_str().unwrap_or_default();
            if !names.contains(name) {
                out.push(format!("{path}: mount of unknown volume {name:?}"));
            }
            let mount_path = m["mountPath"].as_str().unwrap_or_default();
            if !paths.insert(mount_path) {
                out.push(format!("{path}: mount path {mount_path:?} is used twice"));
            }
        }
        if let Some(n) = c["name"].as_str()
            && !dns1123_label(n)
        {
            out.push(format!("{path}: container name {n:?} is not a DNS label"));
        }
    }
    out
}

fn crd_problems(api_version: &str, kind: &str, obj: &Value) -> Vec<String> {
    let validator = crd_validator(api_version, kind);
    validator.iter_errors(obj).map(|e| format!("{}: {e}", e.instance_path())).collect()
}

/// The strict validator of `kind` at `api_version`, compiled once.
pub fn crd_validator(api_version: &str, kind: &str) -> Arc<Validator> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<Validator>>>> = OnceLock::new();
    let key = format!("{api_version}/{kind}");
    let mut cache = CACHE.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    if let Some(v) = cache.get(&key) {
        return v.clone();
    }
    let schema = strict(&crd_schema(api_version, kind));
    let validator =
        Arc::new(jsonschema::draft4::new(&schema).unwrap_or_else(|e| panic!("{key}: schema does not compile: {e}")));
    cache.insert(key, validator.clone());
    validator
}

/// `spec.versions[name == version].schema.openAPIV3Schema` of the CRD for `kind`.
fn crd_schema(api_version: &str, kind: &str) -> Value {
    let (group, version) = api_version.split_once('/').unwrap_or_else(|| panic!("{api_version} has no group"));
    let plural = Frameworks::embedded()
        .iter()
        .find(|d| d.job.kind == kind)
        .map(|d| d.job.plural.clone())
        .unwrap_or_else(|| panic!("no descriptor has kind {kind}"));
    for dir in CRD_DIRS {
        let path = format!("{SPEC_DIR}/{dir}/{group}_{plural}.yaml");
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let crd: Value = serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(crd["spec"]["names"]["kind"], kind, "{path}");
        let found = crd["spec"]["versions"].as_array().into_iter().flatten().find(|v| v["name"] == version);
        if let Some(v) = found {
            return v["schema"]["openAPIV3Schema"].clone();
        }
    }
    panic!("no CRD in {SPEC_DIR} serves {kind} {api_version}")
}

/// An OpenAPI v3 CRD schema as a strict draft-4 JSON Schema.
pub fn strict(s: &Value) -> Value {
    match s {
        Value::Object(m) => Value::Object(strict_object(m)),
        Value::Array(items) => Value::Array(items.iter().map(strict).collect()),
        other => other.clone(),
    }
}

fn strict_object(m: &Map<String, Value>) -> Map<String, Value> {
    let flag = |k: &str| m.get(k).and_then(Value::as_bool).unwrap_or(false);
    let mut out = Map::new();
    for (k, v) in m {
        match k.as_str() {
            "properties" | "patternProperties" | "definitions" => {
                let children = v.as_object().map(|c| c.iter().map(|(n, s)| (n.clone(), strict(s))).collect());
                out.insert(k.clone(), children.map_or_else(|| v.clone(), Value::Object));
            }
            "items" | "additionalProperties" | "not" | "allOf" | "anyOf" | "oneOf" => {
                out.insert(k.clone(), strict(v));
            }
            // Formats (int32, int64, byte, date-time, …) are informational here.
            "format" | "nullable" | "default" | "description" => {}
            k if k.starts_with("x-kubernetes-") => {}
            _ => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    if flag("x-kubernetes-int-or-string") && !out.contains_key("anyOf") {
        out.remove("type");
        out.insert("anyOf".into(), json!([{"type": "integer"}, {"type": "string"}]));
    }
    if flag("nullable")
        && let Some(t) = out.get("type").cloned()
    {
        out.insert("type".into(), json!([t, "null"]));
    }
    let is_object = out.get("type").is_some_and(|t| t == "object");
    if is_object
        && out.contains_key("properties")
        && !out.contains_key("additionalProperties")
        && !flag("x-kubernetes-preserve-unknown-fields")
    {
        out.insert("additionalProperties".into(), json!(false));
    }
    out
}
