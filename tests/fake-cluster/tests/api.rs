//! The API surface as kube-rs uses it: discovery, CRUD, patches, validation, watches,
//! faults, TLS and tokens.

mod common;

use std::time::Duration;

use common::{client, eventually, options};
use fake_cluster::{Fault, FakeCluster, Options};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::discovery::Discovery;
use serde_json::json;

fn tfjob_api(c: kube::Client) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("kubeflow.org", "v1", "TFJob"), "tfjobs");
    Api::namespaced_with(c, "default", &ar)
}

fn api_err(e: kube::Error) -> kube::core::Status {
    match e {
        kube::Error::Api(s) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn tfjob(name: &str, replicas: serde_json::Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "kubeflow.org/v1", "kind": "TFJob", "metadata": {"name": name},
        "spec": {"tfReplicaSpecs": {"Worker": {"replicas": replicas, "restartPolicy": "Never",
            "template": {"spec": {"containers": [{"name": "tensorflow", "image": "127.0.0.1:1/none:v1"}]}}}}},
    }))
    .unwrap()
}

#[tokio::test]
async fn discovery_finds_kubeflow_kinds_and_core_subresources() {
    let fc = FakeCluster::start(options()).await.unwrap();
    let c = client(&fc).await;
    let d = Discovery::new(c.clone()).run().await.unwrap();
    let g = d.get("kubeflow.org").expect("kubeflow.org group");
    let (ar, caps) = g.recommended_kind("TFJob").expect("TFJob");
    assert_eq!(ar.plural, "tfjobs");
    assert_eq!(caps.scope, kube::discovery::Scope::Namespaced);
    assert!(caps.subresources.iter().any(|(s, _)| s.plural == "tfjobs/status" || s.plural == "status"));
    assert!(d.get("trainer.kubeflow.org").is_some_and(|g| g.recommended_kind("TrainJob").is_some()));
    let core = c.list_core_api_resources("v1").await.unwrap();
    assert!(core.resources.iter().any(|r| r.name == "pods/log"));
    let agg = Discovery::new(c.clone()).run_aggregated().await.unwrap();
    assert!(agg.get("kubeflow.org").is_some_and(|g| g.recommended_kind("PyTorchJob").is_some()));
    let v = c.apiserver_version().await.unwrap();
    assert_eq!(v.major, "1");
}

#[tokio::test]
async fn configmap_crud_patch_and_conflicts_behave_like_the_api_server() {
    let fc = FakeCluster::start(options()).await.unwrap();
    let api: Api<ConfigMap> = Api::default_namespaced(client(&fc).await);
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "a", "labels": {"app": "x", "tier": "db"}}, "data": {"k": "v"}})).unwrap();
    let created = api.create(&PostParams::default(), &cm).await.unwrap();
    let rv1 = created.metadata.resource_version.clone().unwrap();
    assert_eq!(created.metadata.namespace.as_deref(), Some("default"));
    assert!(created.metadata.uid.is_some() && created.metadata.creation_timestamp.is_some());
    let dup = api_err(api.create(&PostParams::default(), &cm).await.unwrap_err());
    assert_eq!((dup.code, dup.reason.as_str(), dup.message.as_str()), (409, "AlreadyExists", "configmaps \"a\" already exists"));
    let bad: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "Bad_Name"}})).unwrap();
    let inv = api_err(api.create(&PostParams::default(), &bad).await.unwrap_err());
    assert_eq!((inv.code, inv.reason.as_str()), (422, "Invalid"));
    assert!(inv.message.starts_with("ConfigMap \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain"), "{}", inv.message);
    let other: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "b", "labels": {"app": "y"}}})).unwrap();
    api.create(&PostParams::default(), &other).await.unwrap();
    let sel = |s: &str| ListParams::default().labels(s);
    let names = |l: kube::core::ObjectList<ConfigMap>| l.items.iter().map(|c| c.metadata.name.clone().unwrap()).collect::<Vec<_>>();
    assert_eq!(names(api.list(&sel("app=x")).await.unwrap()), vec!["a"]);
    assert_eq!(names(api.list(&sel("app in (x,y),tier!=db")).await.unwrap()), vec!["b"]);
    assert_eq!(names(api.list(&sel("!tier")).await.unwrap()), vec!["b"]);
    assert_eq!(names(api.list(&ListParams::default().fields("metadata.name=b")).await.unwrap()), vec!["b"]);
    let list = api.list(&ListParams::default()).await.unwrap();
    assert!(!list.metadata.resource_version.unwrap().is_empty());
    // merge, strategic and JSON patches
    let p = api.patch("a", &PatchParams::default(), &Patch::Merge(json!({"data": {"m": "1"}}))).await.unwrap();
    assert_eq!(p.data.as_ref().unwrap().get("m").map(String::as_str), Some("1"));
    assert_ne!(p.metadata.resource_version.as_deref(), Some(rv1.as_str()));
    let p = api.patch("a", &PatchParams::default(), &Patch::Strategic(json!({"data": {"s": "2"}}))).await.unwrap();
    assert_eq!(p.data.as_ref().unwrap().len(), 3);
    let jp: json_patch::Patch = serde_json::from_value(json!([{"op": "remove", "path": "/data/k"}])).unwrap();
    let p = api.patch("a", &PatchParams::default(), &Patch::<()>::Json(jp)).await.unwrap();
    assert!(!p.data.as_ref().unwrap().contains_key("k"));
    // replace with a stale resourceVersion
    let mut stale = created.clone();
    stale.data = Some([("z".to_string(), "1".to_string())].into());
    let conflict = api_err(api.replace("a", &PostParams::default(), &stale).await.unwrap_err());
    assert_eq!((conflict.code, conflict.reason.as_str()), (409, "Conflict"));
    assert!(conflict.message.contains("the object has been modified"));
    api.delete("a", &DeleteParams::default()).await.unwrap();
    let nf = api_err(api.get("a").await.unwrap_err());
    assert_eq!((nf.code, nf.reason.as_str(), nf.message.as_str()), (404, "NotFound", "configmaps \"a\" not found"));
}

#[tokio::test]
async fn crd_schema_rejects_a_string_replica_count_with_causes() {
    let fc = FakeCluster::start(options()).await.unwrap();
    let api = tfjob_api(client(&fc).await);
    let e = api_err(api.create(&PostParams::default(), &tfjob("bad", json!("two"))).await.unwrap_err());
    assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"));
    assert!(e.message.starts_with("TFJob.kubeflow.org \"bad\" is invalid: spec.tfReplicaSpecs.Worker.replicas: Invalid value: \"string\""), "{}", e.message);
    let d = e.details.unwrap();
    assert_eq!((d.name.as_str(), d.group.as_str(), d.kind.as_str()), ("bad", "kubeflow.org", "TFJob"));
    assert_eq!(d.causes[0].field, "spec.tfReplicaSpecs.Worker.replicas");
    assert_eq!(d.causes[0].reason, "FieldValueTypeInvalid");
}

#[tokio::test]
async fn unknown_fields_are_pruned_with_a_warning_or_rejected_when_strict() {
    let fc = FakeCluster::start(options()).await.unwrap();
    let mut job = tfjob("pruned", json!(1));
    job.data["spec"]["bogusField"] = json!(1);
    let body = serde_json::to_vec(&job).unwrap();
    let http = reqwest::Client::new();
    let url = format!("{}/apis/kubeflow.org/v1/namespaces/default/tfjobs", fc.url());
    let r = http.post(&url).header("Content-Type", "application/json").body(body.clone()).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let warning = r.headers().get("warning").unwrap().to_str().unwrap().to_string();
    assert_eq!(warning, "299 - \"unknown field \\\"spec.bogusField\\\"\"");
    let stored: serde_json::Value = r.json().await.unwrap();
    assert!(stored["spec"].get("bogusField").is_none());
    let mut strict = job.clone();
    strict.metadata.name = Some("strict".into());
    let r = http.post(format!("{url}?fieldValidation=Strict")).header("Content-Type", "application/json").body(serde_json::to_vec(&strict).unwrap()).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let s: serde_json::Value = r.json().await.unwrap();
    assert_eq!(s["message"], "strict decoding error: unknown field \"spec.bogusField\"");
}

#[tokio::test]
async fn uninstalled_kind_answers_404_and_strategic_patch_on_custom_resources_415() {
    let fc = FakeCluster::start(options()).await.unwrap();
    let api = tfjob_api(client(&fc).await);
    api.create(&PostParams::default(), &tfjob("t", json!(1))).await.unwrap();
    let e = api_err(api.patch("t", &PatchParams::default(), &Patch::Strategic(json!({"metadata": {"labels": {"a": "b"}}}))).await.unwrap_err());
    assert_eq!((e.code, e.reason.as_str()), (415, "UnsupportedMediaType"));
    assert!(fc.uninstall_crd("tfjobs.kubeflow.org"));
    let e = api_err(api.get("t").await.unwrap_err());
    assert_eq!((e.code, e.reason.as_str(), e.message.as_str()), (404, "NotFound", "the server could not find the requested resource"));
    let d = Discovery::new(client(&fc).await).run().await.unwrap();
    assert!(d.get("kubeflow.org").is_none_or(|g| g.recommended_kind("TFJob").is_none()));
}

#[tokio::test]
async fn watch_sends_events_in_order_and_410_for_compacted_versions() {
    let fc = FakeCluster::start(options()).await.unwrap();
    let api: Api<ConfigMap> = Api::default_namespaced(client(&fc).await);
    let list = api.list(&ListParams::default()).await.unwrap();
    let rv = list.metadata.resource_version.unwrap();
    let mut stream = api.watch(&kube::api::WatchParams::default().timeout(10), &rv).await.unwrap().boxed();
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "w"}})).unwrap();
    api.create(&PostParams::default(), &cm).await.unwrap();
    api.patch("w", &PatchParams::default(), &Patch::Merge(json!({"data": {"a": "b"}}))).await.unwrap();
    api.delete("w", &DeleteParams::default()).await.unwrap();
    let mut kinds = Vec::new();
    while kinds.len() < 3 {
        match stream.try_next().await.unwrap().unwrap() {
            kube::api::WatchEvent::Added(_) => kinds.push("ADDED"),
            kube::api::WatchEvent::Modified(_) => kinds.push("MODIFIED"),
            kube::api::WatchEvent::Deleted(_) => kinds.push("DELETED"),
            _ => {}
        }
    }
    assert_eq!(kinds, vec!["ADDED", "MODIFIED", "DELETED"]);
    fc.compact();
    let mut stale = api.watch(&kube::api::WatchParams::default().timeout(5), &rv).await.unwrap().boxed();
    match stale.try_next().await.unwrap().unwrap() {
        kube::api::WatchEvent::Error(e) => assert_eq!((e.code, e.reason.as_str()), (410, "Expired")),
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }
}

async fn wait_for<S>(w: &mut S, seen: &mut std::collections::BTreeSet<String>, name: &str)
where
    S: futures::Stream<Item = Result<kube::runtime::watcher::Event<ConfigMap>, kube::runtime::watcher::Error>> + Unpin,
{
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let Some(Ok(kube::runtime::watcher::Event::Apply(o) | kube::runtime::watcher::Event::InitApply(o))) = w.next().await {
                seen.insert(o.metadata.name.clone().unwrap());
            }
            if seen.contains(name) {
                return;
            }
        }
    })
    .await
    .expect("watcher event");
}

#[tokio::test]
async fn watcher_recovers_from_410_and_dropped_connections() {
    let fc = FakeCluster::start(options()).await.unwrap();
    let api: Api<ConfigMap> = Api::default_namespaced(client(&fc).await);
    let mut w = kube::runtime::watcher(api.clone(), kube::runtime::watcher::Config::default()).boxed();
    let mk = |n: &str| serde_json::from_value::<ConfigMap>(json!({"metadata": {"name": n}})).unwrap();
    api.create(&PostParams::default(), &mk("one")).await.unwrap();
    let mut seen = std::collections::BTreeSet::new();
    wait_for(&mut w, &mut seen, "one").await;
    // a 410 on the next watch request, then a watch cut after one event
    fc.inject_fault(Fault { method: Some("GET".into()), path: "/api/v1/namespaces/default/configmaps".into(), query: Some("watch=true".into()), status: Some(410), times: Some(1), ..Default::default() }).unwrap();
    fc.compact();
    api.create(&PostParams::default(), &mk("two")).await.unwrap();
    wait_for(&mut w, &mut seen, "two").await;
    fc.inject_fault(Fault { path: "/api/v1/namespaces/default/configmaps".into(), query: Some("watch=true".into()), after_events: Some(0), drop: true, times: Some(1), ..Default::default() }).unwrap();
    api.create(&PostParams::default(), &mk("three")).await.unwrap();
    wait_for(&mut w, &mut seen, "three").await;
}

#[tokio::test]
async fn injected_faults_answer_with_real_status_shapes() {
    let fc = FakeCluster::start(options()).await.unwrap();
    let c = client(&fc).await;
    let api = tfjob_api(c.clone());
    fc.inject_fault(Fault { method: Some("POST".into()), path: "tfjobs$".into(), preset: Some("rbac".into()), user: Some("system:serviceaccount:default:ciao".into()), times: Some(1), ..Default::default() }).unwrap();
    let e = api_err(api.create(&PostParams::default(), &tfjob("x", json!(1))).await.unwrap_err());
    assert_eq!((e.code, e.reason.as_str()), (403, "Forbidden"));
    assert_eq!(e.message, "tfjobs.kubeflow.org \"x\" is forbidden: User \"system:serviceaccount:default:ciao\" cannot create resource \"tfjobs\" in API group \"kubeflow.org\" in the namespace \"default\"");
    fc.inject_fault(Fault { method: Some("POST".into()), path: "tfjobs$".into(), preset: Some("quota".into()), times: Some(1), ..Default::default() }).unwrap();
    let e = api_err(api.create(&PostParams::default(), &tfjob("x", json!(1))).await.unwrap_err());
    assert!(e.message.starts_with("tfjobs.kubeflow.org \"x\" is forbidden: exceeded quota: "), "{}", e.message);
    fc.inject_fault(Fault { method: Some("GET".into()), path: "tfjobs/x$".into(), status: Some(500), times: Some(1), ..Default::default() }).unwrap();
    api.create(&PostParams::default(), &tfjob("x", json!(1))).await.unwrap();
    let e = api_err(api.get("x").await.unwrap_err());
    assert_eq!((e.code, e.reason.as_str()), (500, "InternalError"));
    assert!(api.get("x").await.is_ok(), "the fault fired once");
    fc.inject_fault(Fault { method: Some("PUT".into()), path: "tfjobs/x$".into(), status: Some(409), times: Some(1), ..Default::default() }).unwrap();
    let cur = api.get("x").await.unwrap();
    let e = api_err(api.replace("x", &PostParams::default(), &cur).await.unwrap_err());
    assert_eq!((e.code, e.reason.as_str()), (409, "Conflict"));
    // the admin API over HTTP
    let http = reqwest::Client::new();
    let r = http.post(format!("{}/_fake/faults", fc.url())).json(&json!({"path": "pods$", "status": 403, "preset": "podsecurity", "times": 1})).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let pods: Api<Pod> = Api::default_namespaced(c);
    let p: Pod = serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "x"}]}})).unwrap();
    let e = api_err(pods.create(&PostParams::default(), &p).await.unwrap_err());
    assert!(e.message.starts_with("pods \"p\" is forbidden: violates PodSecurity \"restricted:latest\": "), "{}", e.message);
}

#[tokio::test]
async fn tls_and_bearer_tokens_are_enforced_and_token_files_rotate() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "first-token").unwrap();
    let sa = dir.path().join("sa");
    let fc = FakeCluster::start(Options { tls: true, token_file: Some(token_file.clone()), serviceaccount_dir: Some(sa.clone()), ..options() }).await.unwrap();
    assert!(fc.url().starts_with("https://127.0.0.1:"));
    assert_eq!(std::fs::read_to_string(sa.join("token")).unwrap(), "first-token");
    assert!(std::fs::read_to_string(sa.join("ca.crt")).unwrap().contains("BEGIN CERTIFICATE"));
    let ca = reqwest::Certificate::from_pem(fc.ca_pem().unwrap().as_bytes()).unwrap();
    let http = reqwest::Client::builder().add_root_certificate(ca).build().unwrap();
    let r = http.get(format!("{}/api/v1/namespaces", fc.url())).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let s: serde_json::Value = r.json().await.unwrap();
    assert_eq!((s["reason"].as_str(), s["code"].as_i64()), (Some("Unauthorized"), Some(401)));
    let c = client(&fc).await;
    let pods: Api<Pod> = Api::default_namespaced(c);
    pods.list(&ListParams::default()).await.unwrap();
    std::fs::write(&token_file, "second-token").unwrap();
    let r = http.get(format!("{}/api/v1/namespaces", fc.url())).bearer_auth("first-token").send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = http.get(format!("{}/api/v1/namespaces", fc.url())).bearer_auth("second-token").send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn deleting_an_owner_collects_its_dependents_unless_orphaned() {
    let fc = FakeCluster::start(options()).await.unwrap();
    let c = client(&fc).await;
    let cms: Api<ConfigMap> = Api::default_namespaced(c.clone());
    let owner = cms.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "owner"}})).unwrap()).await.unwrap();
    let uid = owner.metadata.uid.clone().unwrap();
    for n in ["dep1", "dep2"] {
        let dep: ConfigMap = serde_json::from_value(json!({"metadata": {"name": n, "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid}]}})).unwrap();
        cms.create(&PostParams::default(), &dep).await.unwrap();
    }
    cms.delete("owner", &DeleteParams::background()).await.unwrap();
    eventually(5, "dependents collected", || async { cms.get_opt("dep1").await.unwrap().is_none().then_some(()) }).await;
    assert!(cms.get_opt("dep2").await.unwrap().is_none());
    let owner = cms.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "owner2"}})).unwrap()).await.unwrap();
    let dep: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "dep3", "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner2", "uid": owner.metadata.uid.unwrap()}]}})).unwrap();
    cms.create(&PostParams::default(), &dep).await.unwrap();
    cms.delete("owner2", &DeleteParams::orphan()).await.unwrap();
    let kept = cms.get("dep3").await.unwrap();
    assert!(kept.metadata.owner_references.unwrap_or_default().is_empty());
}
