//! The admin API under `/_fake/` (not a Kubernetes path): faults, CRDs, node capacity,
//! processes, state inspection, history compaction.

use std::sync::Arc;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use serde_json::{Value, json};

use super::{Body, json_response};
use crate::cluster::Cluster;
use crate::faults::Fault;

fn err(code: u16, msg: impl Into<String>) -> Response<Body> {
    json_response(code, &json!({"error": msg.into()}))
}

/// Handles `/_fake/<rest>`.
pub async fn handle(cluster: &Arc<Cluster>, req: Request<Incoming>, rest: &str) -> Response<Body> {
    let method = req.method().clone();
    let query = req.uri().query().unwrap_or_default().to_string();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return err(400, e.to_string()),
    };
    let parts: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    match (method, parts.as_slice()) {
        (Method::GET, ["health"]) => json_response(200, &json!({"ok": true})),
        (Method::GET, ["state"]) => json_response(200, &state(cluster)),
        (Method::GET, ["objects"]) => {
            let kind = form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "resource").map(|(_, v)| v.to_string());
            let dump = cluster.store.dump();
            let filtered: serde_json::Map<String, Value> = dump.into_iter().filter(|(gr, _)| kind.as_ref().is_none_or(|k| k == gr)).map(|(gr, v)| (gr, Value::Array(v))).collect();
            json_response(200, &Value::Object(filtered))
        }
        (Method::GET, ["faults"]) => json_response(200, &json!(cluster.faults.list())),
        (Method::POST, ["faults"]) => match serde_json::from_slice::<Fault>(&body) {
            Ok(f) => match cluster.faults.add(f) {
                Ok(id) => json_response(201, &json!({"id": id})),
                Err(e) => err(400, e),
            },
            Err(e) => err(400, format!("invalid fault: {e}")),
        },
        (Method::DELETE, ["faults"]) => {
            cluster.faults.clear(None);
            json_response(200, &json!({"cleared": true}))
        }
        (Method::DELETE, ["faults", id]) => match id.parse() {
            Ok(id) => {
                cluster.faults.clear(Some(id));
                json_response(200, &json!({"cleared": id}))
            }
            Err(_) => err(400, "fault id must be a number"),
        },
        (Method::GET, ["crds"]) => {
            let (items, _) = cluster.store.list(crate::cluster::CRD_GR, None, |_| true);
            json_response(200, &json!(items.iter().map(|c| crate::store::name_of(c).to_string()).collect::<Vec<_>>()))
        }
        (Method::POST, ["crds"]) => install(cluster, &body),
        (Method::DELETE, ["crds", name]) => {
            if cluster.uninstall_crd(name) {
                json_response(200, &json!({"uninstalled": name}))
            } else {
                err(404, format!("CRD {name} is not installed"))
            }
        }
        (Method::GET, ["node"]) => json_response(200, &json!(*cluster.node.lock().expect("node lock"))),
        (Method::PUT | Method::POST, ["node"]) => match crate::admin::parse_node(&body) {
            Ok(n) => {
                crate::admin::set_node(cluster, n);
                json_response(200, &json!(n))
            }
            Err(e) => err(400, e),
        },
        (Method::GET, ["processes"]) => json_response(200, &json!(cluster.kubelet.processes())),
        (Method::POST, ["compact"]) => {
            cluster.store.compact();
            json_response(200, &json!({"compactedAt": cluster.store.current_rv()}))
        }
        (Method::PUT | Method::POST, ["history"]) => match serde_json::from_slice::<Value>(&body).ok().and_then(|v| v.get("window").and_then(Value::as_u64)) {
            Some(w) => {
                cluster.store.set_window(w as usize);
                json_response(200, &json!({"window": w}))
            }
            None => err(400, "expected {\"window\": N}"),
        },
        _ => err(404, format!("no admin endpoint {rest}")),
    }
}

fn install(cluster: &Arc<Cluster>, body: &[u8]) -> Response<Body> {
    let text = String::from_utf8_lossy(body).to_string();
    let docs = if let Some(path) = serde_json::from_str::<Value>(&text).ok().and_then(|v| v.get("path").and_then(Value::as_str).map(str::to_string)) {
        let p = std::path::PathBuf::from(&path);
        let r = if p.is_dir() { crate::crd::load_dir(&p).map(|d| d.into_iter().map(|(_, v)| v).collect()) } else { crate::crd::load_file(&p) };
        match r {
            Ok(d) => d,
            Err(e) => return err(400, e.to_string()),
        }
    } else {
        match crate::crd::parse_crds(&text) {
            Ok(d) => d,
            Err(e) => return err(400, e),
        }
    };
    if docs.is_empty() {
        return err(400, "no CustomResourceDefinition found");
    }
    let mut names = Vec::new();
    for d in docs {
        match cluster.install_crd(d) {
            Ok(n) => names.push(n),
            Err(e) => return err(400, e),
        }
    }
    crate::controllers::after_crd_change(cluster);
    json_response(201, &json!({"installed": names}))
}

fn state(cluster: &Arc<Cluster>) -> Value {
    let dump = cluster.store.dump();
    let objects: serde_json::Map<String, Value> = dump
        .iter()
        .map(|(gr, items)| {
            let names: Vec<String> = items
                .iter()
                .map(|i| {
                    let ns = crate::store::namespace_of(i);
                    if ns.is_empty() { crate::store::name_of(i).to_string() } else { format!("{ns}/{}", crate::store::name_of(i)) }
                })
                .collect();
            (gr.clone(), json!(names))
        })
        .collect();
    json!({
        "url": cluster.url(),
        "resourceVersion": cluster.store.current_rv().to_string(),
        "objects": objects,
        "faults": cluster.faults.list(),
        "node": *cluster.node.lock().expect("node lock"),
        "warnings": *cluster.warnings.lock().expect("warnings lock"),
        "processes": cluster.kubelet.processes(),
    })
}
