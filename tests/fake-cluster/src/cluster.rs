//! The shared state of one stand-in: store, served kinds, faults, node, kubelet, and the
//! write paths (defaulting, CRD installation, deletion with garbage collection) used by both
//! the HTTP API and the simulated controllers.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::crd;
use crate::error::{ApiError, ApiResult};
use crate::faults::Faults;
use crate::kubelet::Kubelet;
use crate::options::{NodeCapacity, Options};
use crate::resources::{Registry, ResourceType};
use crate::store::{Store, name_of, namespace_of, now_rfc3339, uid_of};

/// `plural.group` of the CRD kind.
pub const CRD_GR: &str = "customresourcedefinitions.apiextensions.k8s.io";

/// Deletion propagation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    /// Delete the owner now, dependents afterwards.
    Background,
    /// Delete dependents first, then the owner.
    Foreground,
    /// Keep dependents, removing their owner references.
    Orphan,
}

impl Propagation {
    /// Parses the API spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "Background" => Some(Propagation::Background),
            "Foreground" => Some(Propagation::Foreground),
            "Orphan" => Some(Propagation::Orphan),
            _ => None,
        }
    }
}

/// One running stand-in.
pub struct Cluster {
    /// Start-up options.
    pub opts: Options,
    /// All objects.
    pub store: Store,
    /// Served kinds.
    pub registry: Registry,
    /// Injected faults.
    pub faults: Faults,
    /// Simulated node capacity.
    pub node: Mutex<NodeCapacity>,
    /// Pod runtime (image pulls, processes, logs).
    pub kubelet: Kubelet,
    /// CA certificate (PEM) when serving TLS.
    pub ca_pem: Option<String>,
    /// Base URL, set once listening.
    pub url: Mutex<String>,
    /// Working directory.
    pub work_dir: PathBuf,
    /// Warnings produced while loading CRDs.
    pub warnings: Mutex<Vec<String>>,
}

impl Cluster {
    /// The served kind for an object's apiVersion/kind.
    pub fn type_of(&self, obj: &Value) -> Option<ResourceType> {
        let av = obj.get("apiVersion").and_then(Value::as_str)?;
        let kind = obj.get("kind").and_then(Value::as_str)?;
        let (group, version) = match av.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", av),
        };
        self.registry.all().into_iter().find(|t| t.group == group && t.version == version && t.kind == kind)
    }

    /// Installs (or replaces) a CRD: its kinds become served and it is stored as an object.
    pub fn install_crd(&self, crd_obj: Value) -> Result<String, String> {
        let types = crd::resource_types(&crd_obj)?;
        let name = name_of(&crd_obj).to_string();
        let mut stored = crd_obj.clone();
        let established = json!([
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": now_rfc3339()},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": now_rfc3339()},
        ]);
        stored["status"] = json!({"conditions": established, "acceptedNames": crd_obj.pointer("/spec/names").cloned().unwrap_or(json!({})), "storedVersions": types.iter().filter(|t| t.storage).map(|t| t.version.clone()).collect::<Vec<_>>()});
        if let Some(m) = stored.get_mut("metadata").and_then(Value::as_object_mut) {
            for k in ["uid", "resourceVersion", "creationTimestamp", "generation", "managedFields"] {
                m.remove(k);
            }
        }
        if self.store.get(CRD_GR, "", &name).is_some() {
            let _ = self.store.delete(CRD_GR, "", &name);
        }
        self.store.create(CRD_GR, "", stored).map_err(|e| e.message)?;
        self.registry.set_crd(&name, types);
        Ok(name)
    }

    /// Uninstalls a CRD: its kinds stop being served and their objects are removed.
    pub fn uninstall_crd(&self, name: &str) -> bool {
        let Some(crd_obj) = self.store.get(CRD_GR, "", name) else { return false };
        let group = crd_obj.pointer("/spec/group").and_then(Value::as_str).unwrap_or_default();
        let plural = crd_obj.pointer("/spec/names/plural").and_then(Value::as_str).unwrap_or_default();
        let gr = crate::error::qualified(plural, group);
        let (items, _) = self.store.list(&gr, None, |_| true);
        for it in items {
            let _ = self.store.delete(&gr, namespace_of(&it), name_of(&it));
        }
        self.registry.remove_crd(name);
        let _ = self.store.delete(CRD_GR, "", name);
        true
    }

    /// Loads every CRD of a directory (later files win on name clashes, with a warning).
    pub fn load_crd_dir(&self, dir: &std::path::Path, seen: &mut std::collections::HashMap<String, PathBuf>) -> Result<(), crd::CrdError> {
        for (path, doc) in crd::load_dir(dir)? {
            let name = name_of(&doc).to_string();
            if let Some(prev) = seen.get(&name) {
                let w = format!("CRD {name} from {} replaces the one from {}", path.display(), prev.display());
                tracing::warn!("{w}");
                self.warnings.lock().expect("warnings lock").push(w);
            }
            self.install_crd(doc).map_err(|message| crd::CrdError::Invalid { path: path.clone(), message })?;
            seen.insert(name, path);
        }
        Ok(())
    }

    /// Creates an object with the server's defaulting for its kind (no admission checks).
    pub fn create_object(&self, rt: &ResourceType, namespace: &str, mut obj: Value) -> ApiResult<Value> {
        obj["apiVersion"] = json!(rt.api_version());
        obj["kind"] = json!(rt.kind);
        if obj.get("metadata").is_none() {
            obj["metadata"] = json!({});
        }
        if name_of(&obj).is_empty()
            && let Some(prefix) = obj.pointer("/metadata/generateName").and_then(Value::as_str) {
                let name = format!("{prefix}{}", random_suffix(5));
                obj["metadata"]["name"] = json!(name);
            }
        crate::defaults::apply(rt, &mut obj);
        let created = self.store.create(&rt.group_resource(), if rt.namespaced { namespace } else { "" }, obj)?;
        Ok(created)
    }

    /// Records a core/v1 Event about `involved`.
    pub fn record_event(&self, involved: &Value, type_: &str, reason: &str, message: &str, component: &str) {
        let ns = namespace_of(involved);
        let ns = if ns.is_empty() { "default" } else { ns };
        let name = format!("{}.{:x}", name_of(involved), rand::random::<u64>());
        let now = now_rfc3339();
        let ev = json!({
            "metadata": {"name": name, "namespace": ns},
            "involvedObject": {
                "kind": involved.get("kind").cloned().unwrap_or(Value::Null),
                "namespace": ns,
                "name": name_of(involved),
                "uid": uid_of(involved),
                "apiVersion": involved.get("apiVersion").cloned().unwrap_or(Value::Null),
                "resourceVersion": involved.pointer("/metadata/resourceVersion").cloned().unwrap_or(Value::Null),
            },
            "reason": reason,
            "message": message,
            "source": {"component": component},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "type": type_,
            "eventTime": null,
            "reportingComponent": component,
            "reportingInstance": "",
        });
        if let Some(rt) = self.registry.find("", "v1", "events") {
            let _ = self.create_object(&rt, ns, ev);
        }
    }

    /// Objects (of any kind) that list `uid` among their owner references.
    pub fn dependents(&self, uid: &str) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        for (gr, items) in self.store.dump() {
            for it in items {
                let owned = it
                    .pointer("/metadata/ownerReferences")
                    .and_then(Value::as_array)
                    .is_some_and(|refs| refs.iter().any(|r| r.get("uid").and_then(Value::as_str) == Some(uid)));
                if owned {
                    out.push((gr.clone(), namespace_of(&it).to_string(), name_of(&it).to_string()));
                }
            }
        }
        out
    }

    /// Deletes an object with garbage collection of its dependents.
    pub fn delete_object(self: &Arc<Self>, gr: &str, namespace: &str, name: &str, policy: Propagation, grace: Option<i64>) -> ApiResult<Value> {
        let obj = self.store.get(gr, namespace, name).ok_or_else(|| {
            let (g, p) = match gr.split_once('.') {
                Some((p, g)) => (g, p),
                None => ("", gr),
            };
            ApiError::not_found(g, p, name)
        })?;
        let uid = uid_of(&obj).to_string();
        if gr == "pods" {
            let grace = grace.or_else(|| obj.pointer("/spec/terminationGracePeriodSeconds").and_then(Value::as_i64)).unwrap_or(30);
            if self.kubelet.is_running(&uid) && grace > 0 {
                if obj.pointer("/metadata/deletionTimestamp").is_some() {
                    return Ok(obj);
                }
                let ts = (chrono::Utc::now() + chrono::Duration::seconds(grace)).format("%Y-%m-%dT%H:%M:%SZ").to_string();
                let updated = self.store.update(gr, namespace, name, |o| {
                    o["metadata"]["deletionTimestamp"] = json!(ts);
                    o["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
                    Ok(())
                })?;
                self.kubelet.terminate(&uid, grace);
                return Ok(updated);
            }
            self.kubelet.terminate(&uid, 0);
            let deleted = self.store.delete(gr, namespace, name)?;
            self.spawn_gc(uid, Propagation::Background);
            return Ok(deleted);
        }
        match policy {
            Propagation::Orphan => {
                for (dgr, dns, dname) in self.dependents(&uid) {
                    let _ = self.store.update(&dgr, &dns, &dname, |o| {
                        if let Some(refs) = o.pointer_mut("/metadata/ownerReferences").and_then(Value::as_array_mut) {
                            refs.retain(|r| r.get("uid").and_then(Value::as_str) != Some(uid.as_str()));
                        }
                        Ok(())
                    });
                }
                self.store.delete(gr, namespace, name)
            }
            Propagation::Background => {
                let deleted = self.store.delete(gr, namespace, name)?;
                self.spawn_gc(uid, Propagation::Background);
                Ok(deleted)
            }
            Propagation::Foreground => {
                let updated = self.store.update(gr, namespace, name, |o| {
                    if o.pointer("/metadata/deletionTimestamp").is_none() {
                        o["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
                        o["metadata"]["deletionGracePeriodSeconds"] = json!(0);
                    }
                    let fins = o["metadata"].as_object_mut().expect("metadata").entry("finalizers").or_insert_with(|| json!([]));
                    if let Some(a) = fins.as_array_mut()
                        && !a.iter().any(|f| f == "foregroundDeletion") {
                            a.push(json!("foregroundDeletion"));
                        }
                    Ok(())
                })?;
                let me = self.clone();
                let (gr, ns, name) = (gr.to_string(), namespace.to_string(), name.to_string());
                tokio::spawn(async move {
                    for (dgr, dns, dname) in me.dependents(&uid) {
                        let _ = me.delete_object(&dgr, &dns, &dname, Propagation::Foreground, None);
                    }
                    for _ in 0..600 {
                        if me.dependents(&uid).is_empty() {
                            break;
                        }
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    }
                    let _ = me.store.update(&gr, &ns, &name, |o| {
                        if let Some(a) = o.pointer_mut("/metadata/finalizers").and_then(Value::as_array_mut) {
                            a.retain(|f| f != "foregroundDeletion");
                        }
                        Ok(())
                    });
                    let _ = me.store.delete(&gr, &ns, &name);
                });
                Ok(updated)
            }
        }
    }

    fn spawn_gc(self: &Arc<Self>, uid: String, policy: Propagation) {
        let deps = self.dependents(&uid);
        if deps.is_empty() {
            return;
        }
        for (dgr, dns, dname) in deps {
            let _ = self.delete_object(&dgr, &dns, &dname, policy, None);
        }
    }

    /// The base URL (`http(s)://127.0.0.1:PORT`).
    pub fn url(&self) -> String {
        self.url.lock().expect("url lock").clone()
    }

    /// The token currently required, if any (re-reads the token file).
    pub fn required_token(&self) -> Option<String> {
        if let Some(f) = &self.opts.token_file {
            return Some(std::fs::read_to_string(f).map(|s| s.trim().to_string()).unwrap_or_default());
        }
        self.opts.token.clone()
    }
}

/// Random lowercase alphanumeric suffix as Kubernetes generates them (no vowels).
pub fn random_suffix(n: usize) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..n).map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char).collect()
}
