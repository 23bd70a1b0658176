//! Resource handlers: get, list, create, update, patch, delete, deletecollection, status.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use serde_json::{Value, json};

use super::route::Target;
use super::{Body, Dropped, error_response, json_response};
use crate::cluster::{CRD_GR, Cluster, Propagation};
use crate::error::{ApiError, ApiResult, Cause};
use crate::faults::Fault;
use crate::patch::{PatchType, strategic_merge};
use crate::resources::ResourceType;
use crate::selectors::{FieldSelector, LabelSelector};
use crate::store::{name_of, namespace_of};

/// Parsed query parameters.
pub type Query = HashMap<String, String>;

fn parse_query(q: &str) -> Query {
    form_urlencoded::parse(q.as_bytes()).into_owned().collect()
}

fn truthy(q: &Query, k: &str) -> bool {
    q.get(k).is_some_and(|v| v == "true" || v == "1")
}

/// Dispatches a resource request.
pub async fn handle(cluster: &Arc<Cluster>, req: Request<Incoming>, t: Target, fault: Option<Fault>) -> Result<Response<Body>, Dropped> {
    let q = parse_query(req.uri().query().unwrap_or_default());
    let method = req.method().clone();
    let content_type = req.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    if t.sub.as_deref() == Some("log") {
        return super::logs::handle(cluster, &t, &q, fault).await;
    }
    if method == Method::GET && truthy(&q, "watch") {
        return Ok(super::watch::handle(cluster, &t, &q, fault));
    }
    let body = if matches!(method, Method::POST | Method::PUT | Method::PATCH | Method::DELETE) {
        match req.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return Err(Dropped),
        }
    } else {
        Bytes::new()
    };
    let result = match (&method, &t.name) {
        (&Method::GET, Some(name)) => get(cluster, &t, name).map(|v| (200, v, Vec::new())),
        (&Method::GET, None) => list(cluster, &t, &q).map(|v| (200, v, Vec::new())),
        (&Method::POST, None) => create(cluster, &t, &q, &body),
        (&Method::PUT, Some(name)) => parse_body(&body).and_then(|v| update(cluster, &t, name, &q, v, false)),
        (&Method::PATCH, Some(name)) => patch(cluster, &t, name, &q, &content_type, &body),
        (&Method::DELETE, Some(name)) => delete(cluster, &t, name, &q, &body).map(|v| (200, v, Vec::new())),
        (&Method::DELETE, None) => delete_collection(cluster, &t, &q, &body).map(|v| (200, v, Vec::new())),
        _ => Err(ApiError::method_not_allowed("the server does not allow this method on the requested resource")),
    };
    Ok(match result {
        Ok((code, v, warnings)) => {
            let mut r = json_response(code, &v);
            for w in warnings {
                let escaped = w.replace('\\', "\\\\").replace('"', "\\\"");
                if let Ok(h) = format!("299 - \"{escaped}\"").parse() {
                    r.headers_mut().append("Warning", h);
                }
            }
            r
        }
        Err(e) => error_response(&e),
    })
}

fn parse_body(body: &[u8]) -> ApiResult<Value> {
    let v: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) => serde_saphyr::from_slice(body).map_err(|e| ApiError::bad_request(format!("the object provided is unrecognized (must be of type Object): couldn't get version/kind; json parse error: {e}")))?,
    };
    if !v.is_object() {
        return Err(ApiError::bad_request("the object provided is unrecognized (must be of type Object)"));
    }
    Ok(v)
}

/// Sets the requested version's apiVersion on a stored object (CRD conversion strategy None).
pub fn present(rt: &ResourceType, mut v: Value) -> Value {
    v["apiVersion"] = json!(rt.api_version());
    v
}

fn ns_of(t: &Target) -> String {
    t.namespace.clone().unwrap_or_default()
}

fn get(cluster: &Cluster, t: &Target, name: &str) -> ApiResult<Value> {
    cluster.store.get(&t.rt.group_resource(), &ns_of(t), name).map(|v| present(&t.rt, v)).ok_or_else(|| ApiError::not_found(&t.rt.group, &t.rt.plural, name))
}

/// Filters for list and watch.
pub fn selectors(t: &Target, q: &Query) -> ApiResult<(LabelSelector, FieldSelector)> {
    let ls = LabelSelector::parse(q.get("labelSelector").map(String::as_str).unwrap_or_default())?;
    let fs = FieldSelector::parse(q.get("fieldSelector").map(String::as_str).unwrap_or_default())?;
    fs.check_supported(&t.rt.kind, &t.rt.api_version())?;
    Ok((ls, fs))
}

fn list(cluster: &Cluster, t: &Target, q: &Query) -> ApiResult<Value> {
    let (ls, fs) = selectors(t, q)?;
    let (mut items, rv) = cluster.store.list(&t.rt.group_resource(), t.namespace.as_deref(), |o| ls.matches(o.pointer("/metadata/labels")) && fs.matches(o));
    let mut meta = json!({"resourceVersion": rv.to_string()});
    let start: usize = q.get("continue").and_then(|c| base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, c).ok()).and_then(|b| String::from_utf8(b).ok()).and_then(|s| s.parse().ok()).unwrap_or(0);
    let limit: usize = q.get("limit").and_then(|l| l.parse().ok()).unwrap_or(0);
    if start > 0 {
        items = items.into_iter().skip(start).collect();
    }
    if limit > 0 && items.len() > limit {
        let remaining = items.len() - limit;
        items.truncate(limit);
        meta["continue"] = json!(base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, (start + limit).to_string()));
        meta["remainingItemCount"] = json!(remaining);
    }
    let items: Vec<Value> = items.into_iter().map(|v| present(&t.rt, v)).collect();
    Ok(json!({"kind": format!("{}List", t.rt.kind), "apiVersion": t.rt.api_version(), "metadata": meta, "items": items}))
}

fn check_namespace(cluster: &Cluster, t: &Target) -> ApiResult<()> {
    if let Some(ns) = &t.namespace
        && cluster.store.get("namespaces", "", ns).is_none() {
            return Err(ApiError::not_found("", "namespaces", ns));
        }
    Ok(())
}

fn check_identity(t: &Target, v: &Value) -> ApiResult<()> {
    if let Some(av) = v.get("apiVersion").and_then(Value::as_str) {
        let (g, _) = av.split_once('/').unwrap_or(("", av));
        if g != t.rt.group {
            return Err(ApiError::bad_request(format!("the API version in the data ({av}) does not match the expected API version ({})", t.rt.api_version())));
        }
    }
    if let Some(k) = v.get("kind").and_then(Value::as_str)
        && k != t.rt.kind {
            return Err(ApiError::bad_request(format!("the kind in the data ({k}) does not match the expected kind ({})", t.rt.kind)));
        }
    if let (Some(ns), Some(bns)) = (&t.namespace, v.pointer("/metadata/namespace").and_then(Value::as_str))
        && !bns.is_empty() && bns != ns {
            return Err(ApiError::bad_request("the namespace of the provided object does not match the namespace sent on the request"));
        }
    Ok(())
}

/// Admission: name, labels, built-in required fields, CRD schema, webhooks. Returns warnings.
fn admit(cluster: &Cluster, rt: &ResourceType, v: &mut Value, q: &Query) -> ApiResult<Vec<String>> {
    let name = name_of(v).to_string();
    let mut causes: Vec<Cause> = Vec::new();
    if let Some(c) = crate::validation::validate_name(&rt.group, &rt.plural, &name) {
        causes.push(c);
    }
    causes.extend(crate::validation::validate_labels(v.get("metadata").unwrap_or(&Value::Null)));
    if rt.builtin() {
        causes.extend(crate::validation::validate_builtin(&rt.group, &rt.plural, v));
    }
    if !causes.is_empty() {
        return Err(ApiError::invalid(&rt.group, &rt.kind, &name, causes));
    }
    let strict = q.get("fieldValidation").is_some_and(|f| f == "Strict");
    let warnings = crate::crd::admit(rt, v, strict)?;
    crate::controllers::admission(cluster, rt, v)?;
    Ok(warnings)
}

fn create(cluster: &Arc<Cluster>, t: &Target, q: &Query, body: &[u8]) -> ApiResult<(u16, Value, Vec<String>)> {
    let mut v = parse_body(body)?;
    check_identity(t, &v)?;
    if !(t.rt.plural == "namespaces" && t.rt.group.is_empty()) {
        check_namespace(cluster, t)?;
    }
    let meta = v.as_object_mut().expect("object").entry("metadata").or_insert_with(|| json!({}));
    if meta.get("resourceVersion").and_then(Value::as_str).is_some_and(|s| !s.is_empty()) {
        return Err(ApiError::bad_request("resourceVersion should not be set on objects to be created"));
    }
    if let Some(m) = meta.as_object_mut() {
        for k in ["uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation", "managedFields", "selfLink"] {
            m.remove(k);
        }
    }
    if t.rt.status_subresource && (!t.rt.builtin() || t.rt.plural == "pods" || t.rt.plural == "jobs") {
        v.as_object_mut().expect("object").remove("status");
    }
    if name_of(&v).is_empty() {
        match v.pointer("/metadata/generateName").and_then(Value::as_str) {
            Some(prefix) if !prefix.is_empty() => {
                v["metadata"]["name"] = json!(format!("{prefix}{}", crate::cluster::random_suffix(5)));
            }
            _ => {
                return Err(ApiError::invalid(&t.rt.group, &t.rt.kind, "", vec![Cause { reason: "FieldValueRequired".into(), message: "Required value: name or generateName is required".into(), field: "metadata.name".into() }]));
            }
        }
    }
    let warnings = admit(cluster, &t.rt, &mut v, q)?;
    if q.contains_key("dryRun") {
        let mut out = v.clone();
        out["apiVersion"] = json!(t.rt.api_version());
        out["kind"] = json!(t.rt.kind);
        out["metadata"]["uid"] = json!(uuid::Uuid::new_v4().to_string());
        out["metadata"]["creationTimestamp"] = json!(crate::store::now_rfc3339());
        if let Some(ns) = &t.namespace {
            out["metadata"]["namespace"] = json!(ns);
        }
        crate::defaults::apply(&t.rt, &mut out);
        return Ok((201, out, warnings));
    }
    if t.rt.group_resource() == CRD_GR {
        let name = name_of(&v).to_string();
        if cluster.store.get(CRD_GR, "", &name).is_some() {
            return Err(ApiError::already_exists(&t.rt.group, &t.rt.plural, &name));
        }
        cluster.install_crd(v).map_err(|m| ApiError::invalid(&t.rt.group, &t.rt.kind, &name, vec![Cause { reason: "FieldValueInvalid".into(), message: m, field: "spec".into() }]))?;
        let stored = cluster.store.get(CRD_GR, "", &name).unwrap_or_default();
        return Ok((201, stored, warnings));
    }
    let created = cluster.create_object(&t.rt, &ns_of(t), v)?;
    Ok((201, present(&t.rt, created), warnings))
}

fn spec_part(v: &Value) -> Value {
    let mut o = v.clone();
    if let Some(m) = o.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
        m.remove("apiVersion");
        m.remove("kind");
    }
    o
}

/// Replaces an object (PUT, or the result of a patch when `from_patch`).
fn update(cluster: &Arc<Cluster>, t: &Target, name: &str, q: &Query, mut v: Value, from_patch: bool) -> ApiResult<(u16, Value, Vec<String>)> {
    check_identity(t, &v)?;
    let body_name = name_of(&v).to_string();
    if !body_name.is_empty() && body_name != name {
        return Err(ApiError::bad_request(format!("the name of the object ({body_name}) does not match the name on the URL ({name})")));
    }
    let gr = t.rt.group_resource();
    let ns = ns_of(t);
    let current = cluster.store.get(&gr, &ns, name).ok_or_else(|| ApiError::not_found(&t.rt.group, &t.rt.plural, name))?;
    let given_rv = v.pointer("/metadata/resourceVersion").and_then(Value::as_str).unwrap_or_default().to_string();
    if !given_rv.is_empty() && Some(given_rv.as_str()) != current.pointer("/metadata/resourceVersion").and_then(Value::as_str) {
        return Err(ApiError::conflict(&t.rt.group, &t.rt.plural, name));
    }
    if given_rv.is_empty() && !from_patch && !t.rt.builtin() {
        return Err(ApiError::invalid(&t.rt.group, &t.rt.kind, name, vec![Cause { reason: "FieldValueInvalid".into(), message: "Invalid value: 0: must be specified for an update".into(), field: "metadata.resourceVersion".into() }]));
    }
    v["metadata"]["name"] = json!(name);
    let status_only = t.sub.as_deref() == Some("status");
    if status_only {
        let mut next = current.clone();
        next["status"] = v.get("status").cloned().unwrap_or(Value::Null);
        if next["status"].is_null() {
            next.as_object_mut().expect("object").remove("status");
        }
        v = next;
    } else if t.rt.status_subresource {
        match current.get("status") {
            Some(s) => v["status"] = s.clone(),
            None => {
                v.as_object_mut().expect("object").remove("status");
            }
        }
    }
    for k in ["uid", "creationTimestamp", "deletionTimestamp", "generation", "namespace"] {
        match current.pointer(&format!("/metadata/{k}")) {
            Some(val) => v["metadata"][k] = val.clone(),
            None => {
                v["metadata"].as_object_mut().map(|m| m.remove(k));
            }
        }
    }
    let warnings = if status_only { Vec::new() } else { admit(cluster, &t.rt, &mut v, q)? };
    if spec_part(&v) != spec_part(&current) {
        let g = current.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(1);
        v["metadata"]["generation"] = json!(g + 1);
    }
    if q.contains_key("dryRun") {
        return Ok((200, present(&t.rt, v), warnings));
    }
    if gr == CRD_GR {
        cluster.install_crd(v.clone()).map_err(|m| ApiError::invalid(&t.rt.group, &t.rt.kind, name, vec![Cause { reason: "FieldValueInvalid".into(), message: m, field: "spec".into() }]))?;
        return Ok((200, cluster.store.get(CRD_GR, "", name).unwrap_or_default(), warnings));
    }
    let expected_rv = current.pointer("/metadata/resourceVersion").cloned();
    let updated = cluster.store.update(&gr, &ns, name, |o| {
        if o.pointer("/metadata/resourceVersion") != expected_rv.as_ref() {
            return Err(ApiError::conflict(&t.rt.group, &t.rt.plural, name));
        }
        *o = v;
        Ok(())
    })?;
    Ok((200, present(&t.rt, updated), warnings))
}

fn patch(cluster: &Arc<Cluster>, t: &Target, name: &str, q: &Query, content_type: &str, body: &[u8]) -> ApiResult<(u16, Value, Vec<String>)> {
    let accepted_cr = ["application/json-patch+json", "application/merge-patch+json", "application/apply-patch+yaml"];
    let accepted_builtin = ["application/json-patch+json", "application/merge-patch+json", "application/strategic-merge-patch+json", "application/apply-patch+yaml"];
    let accepted: &[&str] = if t.rt.strategic_merge { &accepted_builtin } else { &accepted_cr };
    let pt = PatchType::from_content_type(content_type).ok_or_else(|| ApiError::unsupported_patch(accepted))?;
    if pt == PatchType::Strategic && !t.rt.strategic_merge {
        return Err(ApiError::unsupported_patch(accepted));
    }
    let gr = t.rt.group_resource();
    let ns = ns_of(t);
    let current = match cluster.store.get(&gr, &ns, name) {
        Some(c) => c,
        None if pt == PatchType::Apply => {
            if !q.contains_key("fieldManager") {
                return Err(apply_needs_manager());
            }
            let mut target = t.clone();
            target.name = None;
            return create(cluster, &target, q, body);
        }
        None => return Err(ApiError::not_found(&t.rt.group, &t.rt.plural, name)),
    };
    let mut next = present(&t.rt, current.clone());
    match pt {
        PatchType::Merge => {
            let p: Value = serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
            json_patch::merge(&mut next, &p);
        }
        PatchType::Strategic => {
            let p: Value = serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
            strategic_merge(&mut next, &p);
        }
        PatchType::Json => {
            let p: json_patch::Patch = serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
            json_patch::patch(&mut next, &p).map_err(|e| ApiError::invalid(&t.rt.group, &t.rt.kind, name, vec![Cause { reason: "FieldValueInvalid".into(), message: e.to_string(), field: String::new() }]))?;
        }
        PatchType::Apply => {
            if !q.contains_key("fieldManager") {
                return Err(apply_needs_manager());
            }
            let p = parse_body(body)?;
            let mut p2 = p.clone();
            if let Some(m) = p2.get_mut("metadata").and_then(Value::as_object_mut) {
                m.remove("resourceVersion");
            }
            json_patch::merge(&mut next, &p2);
        }
    }
    let patch_rv = next.pointer("/metadata/resourceVersion").cloned();
    if patch_rv != current.pointer("/metadata/resourceVersion").cloned() && patch_rv.is_some() {
        return Err(ApiError::conflict(&t.rt.group, &t.rt.plural, name));
    }
    update(cluster, t, name, q, next, true)
}

fn apply_needs_manager() -> ApiError {
    ApiError::invalid("meta.k8s.io", "PatchOptions", "", vec![Cause { reason: "FieldValueRequired".into(), message: "Required value: is required for apply patch".into(), field: "fieldManager".into() }])
}

fn delete_options(q: &Query, body: &[u8]) -> ApiResult<(Option<Propagation>, Option<i64>, Value)> {
    let opts: Value = if body.iter().all(u8::is_ascii_whitespace) { json!({}) } else { serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid DeleteOptions: {e}")))? };
    let policy_s = q.get("propagationPolicy").cloned().or_else(|| opts.get("propagationPolicy").and_then(Value::as_str).map(str::to_string));
    let mut policy = match policy_s {
        Some(p) => Some(Propagation::parse(&p).ok_or_else(|| ApiError::invalid("meta.k8s.io", "DeleteOptions", "", vec![Cause { reason: "FieldValueNotSupported".into(), message: format!("Unsupported value: \"{p}\": supported values: \"Foreground\", \"Background\", \"Orphan\""), field: "propagationPolicy".into() }]))?),
        None => None,
    };
    let orphan = q.get("orphanDependents").map(|v| v == "true").or_else(|| opts.get("orphanDependents").and_then(Value::as_bool));
    if policy.is_none() {
        policy = orphan.map(|o| if o { Propagation::Orphan } else { Propagation::Background });
    }
    let grace = q.get("gracePeriodSeconds").and_then(|g| g.parse().ok()).or_else(|| opts.get("gracePeriodSeconds").and_then(Value::as_i64));
    Ok((policy, grace, opts.get("preconditions").cloned().unwrap_or(Value::Null)))
}

fn default_policy(rt: &ResourceType) -> Propagation {
    if rt.group == "batch" && rt.plural == "jobs" { Propagation::Orphan } else { Propagation::Background }
}

fn delete(cluster: &Arc<Cluster>, t: &Target, name: &str, q: &Query, body: &[u8]) -> ApiResult<Value> {
    let (policy, grace, pre) = delete_options(q, body)?;
    let gr = t.rt.group_resource();
    let ns = ns_of(t);
    let current = cluster.store.get(&gr, &ns, name).ok_or_else(|| ApiError::not_found(&t.rt.group, &t.rt.plural, name))?;
    if let Some(uid) = pre.get("uid").and_then(Value::as_str) {
        let actual = crate::store::uid_of(&current);
        if uid != actual {
            return Err(ApiError::new(409, "Conflict", format!("Operation cannot be fulfilled on {} \"{name}\": Precondition failed: UID in precondition: {uid}, UID in object meta: {actual}", crate::error::qualified(&t.rt.plural, &t.rt.group))).details(name, &t.rt.group, &t.rt.plural));
        }
    }
    if let Some(rv) = pre.get("resourceVersion").and_then(Value::as_str) {
        let actual = current.pointer("/metadata/resourceVersion").and_then(Value::as_str).unwrap_or_default();
        if rv != actual {
            return Err(ApiError::new(409, "Conflict", format!("Operation cannot be fulfilled on {} \"{name}\": Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {actual}", crate::error::qualified(&t.rt.plural, &t.rt.group))).details(name, &t.rt.group, &t.rt.plural));
        }
    }
    if q.contains_key("dryRun") {
        return Ok(present(&t.rt, current));
    }
    if gr == CRD_GR {
        cluster.uninstall_crd(name);
        return Ok(current);
    }
    if gr == "namespaces" {
        for (kgr, items) in cluster.store.dump() {
            for it in items.iter().filter(|i| namespace_of(i) == name) {
                let _ = cluster.delete_object(&kgr, name, name_of(it), Propagation::Background, Some(0));
            }
        }
    }
    let policy = policy.unwrap_or_else(|| default_policy(&t.rt));
    let out = cluster.delete_object(&gr, &ns, name, policy, grace)?;
    Ok(present(&t.rt, out))
}

fn delete_collection(cluster: &Arc<Cluster>, t: &Target, q: &Query, body: &[u8]) -> ApiResult<Value> {
    let (policy, grace, _) = delete_options(q, body)?;
    let (ls, fs) = selectors(t, q)?;
    let gr = t.rt.group_resource();
    let (items, rv) = cluster.store.list(&gr, t.namespace.as_deref(), |o| ls.matches(o.pointer("/metadata/labels")) && fs.matches(o));
    let mut deleted = Vec::new();
    for it in items {
        if let Ok(d) = cluster.delete_object(&gr, namespace_of(&it), name_of(&it), policy.unwrap_or_else(|| default_policy(&t.rt)), grace) {
            deleted.push(present(&t.rt, d));
        }
    }
    Ok(json!({"kind": format!("{}List", t.rt.kind), "apiVersion": t.rt.api_version(), "metadata": {"resourceVersion": rv.to_string()}, "items": deleted}))
}
