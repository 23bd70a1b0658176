//! The kinds the stand-in serves: built-in core/batch kinds plus the custom resources of
//! installed CRDs, and the discovery documents built from them.

use std::sync::{Arc, RwLock};

use serde_json::{Value, json};

use crate::crd::CrdVersionSchema;

/// Verbs of a normal read-write resource.
pub const ALL_VERBS: &[&str] = &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];

/// One served `group/version/plural`.
#[derive(Debug, Clone)]
pub struct ResourceType {
    /// API group, empty for core.
    pub group: String,
    /// Version, e.g. `v1`.
    pub version: String,
    /// Kind, e.g. `TFJob`.
    pub kind: String,
    /// Plural resource name, e.g. `tfjobs`.
    pub plural: String,
    /// Singular name, e.g. `tfjob`.
    pub singular: String,
    /// Whether objects live in namespaces.
    pub namespaced: bool,
    /// kubectl short names.
    pub short_names: Vec<String>,
    /// Categories (e.g. `all`).
    pub categories: Vec<String>,
    /// Verbs of the main resource.
    pub verbs: Vec<String>,
    /// Whether a `/status` subresource is served.
    pub status_subresource: bool,
    /// Whether strategic merge patch is accepted (built-in kinds only).
    pub strategic_merge: bool,
    /// The CRD this kind comes from, if any.
    pub crd_name: Option<String>,
    /// Structural schema of this version, for custom resources.
    pub schema: Option<Arc<CrdVersionSchema>>,
    /// Whether this version is the storage version.
    pub storage: bool,
}

impl ResourceType {
    /// `apiVersion` string (`v1` or `group/version`).
    pub fn api_version(&self) -> String {
        if self.group.is_empty() { self.version.clone() } else { format!("{}/{}", self.group, self.version) }
    }

    /// Storage key: `plural.group` (all versions of a kind share storage).
    pub fn group_resource(&self) -> String {
        crate::error::qualified(&self.plural, &self.group)
    }

    /// Whether this is a built-in kind (not from a CRD).
    pub fn builtin(&self) -> bool {
        self.crd_name.is_none()
    }

    /// The APIResource entries (main resource plus subresources) for discovery.
    pub fn api_resources(&self) -> Vec<Value> {
        let mut main = json!({
            "name": self.plural,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": self.verbs,
        });
        if !self.short_names.is_empty() {
            main["shortNames"] = json!(self.short_names);
        }
        if !self.categories.is_empty() {
            main["categories"] = json!(self.categories);
        }
        if !self.builtin() || self.storage {
            main["storageVersionHash"] = json!(storage_hash(&self.group_resource()));
        }
        let mut out = vec![main];
        if self.status_subresource {
            out.push(json!({"name": format!("{}/status", self.plural), "singularName": "", "namespaced": self.namespaced, "kind": self.kind, "verbs": ["get", "patch", "update"]}));
        }
        if self.plural == "pods" && self.group.is_empty() {
            out.push(json!({"name": "pods/log", "singularName": "", "namespaced": true, "kind": "Pod", "verbs": ["get"]}));
        }
        out
    }
}

fn storage_hash(s: &str) -> String {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(s.as_bytes());
    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &d[..8])
}

#[allow(clippy::too_many_arguments)]
fn builtin(group: &str, version: &str, kind: &str, plural: &str, namespaced: bool, short: &[&str], status: bool, verbs: &[&str]) -> ResourceType {
    ResourceType {
        group: group.into(),
        version: version.into(),
        kind: kind.into(),
        plural: plural.into(),
        singular: kind.to_lowercase(),
        namespaced,
        short_names: short.iter().map(|s| s.to_string()).collect(),
        categories: Vec::new(),
        verbs: verbs.iter().map(|s| s.to_string()).collect(),
        status_subresource: status,
        strategic_merge: true,
        crd_name: None,
        schema: None,
        storage: true,
    }
}

/// The built-in kinds served by the stand-in.
pub fn builtins() -> Vec<ResourceType> {
    let nsv: &[&str] = &["create", "delete", "get", "list", "patch", "update", "watch"];
    let mut v = vec![
        builtin("", "v1", "Pod", "pods", true, &["po"], true, ALL_VERBS),
        builtin("", "v1", "Service", "services", true, &["svc"], true, &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]),
        builtin("", "v1", "ConfigMap", "configmaps", true, &["cm"], false, ALL_VERBS),
        builtin("", "v1", "Secret", "secrets", true, &[], false, ALL_VERBS),
        builtin("", "v1", "Event", "events", true, &["ev"], false, ALL_VERBS),
        builtin("", "v1", "Namespace", "namespaces", false, &["ns"], true, nsv),
        builtin("", "v1", "Node", "nodes", false, &["no"], true, ALL_VERBS),
        builtin("", "v1", "ServiceAccount", "serviceaccounts", true, &["sa"], false, ALL_VERBS),
        builtin("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", true, &["pvc"], true, ALL_VERBS),
        builtin("batch", "v1", "Job", "jobs", true, &[], true, ALL_VERBS),
        builtin("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions", false, &["crd", "crds"], true, ALL_VERBS),
    ];
    for r in v.iter_mut() {
        if r.plural == "pods" || r.plural == "jobs" || r.plural == "services" {
            r.categories = vec!["all".into()];
        }
        if r.plural == "customresourcedefinitions" {
            r.categories = vec!["api-extensions".into()];
            r.strategic_merge = false;
        }
    }
    v
}

/// The live set of served kinds.
#[derive(Debug, Default)]
pub struct Registry {
    types: RwLock<Vec<ResourceType>>,
}

impl Registry {
    /// A registry holding the built-in kinds.
    pub fn new() -> Self {
        Registry { types: RwLock::new(builtins()) }
    }

    /// Snapshot of all served kinds.
    pub fn all(&self) -> Vec<ResourceType> {
        self.types.read().expect("registry lock").clone()
    }

    /// Looks up `group/version/plural`.
    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<ResourceType> {
        self.types
            .read()
            .expect("registry lock")
            .iter()
            .find(|t| t.group == group && t.version == version && t.plural == plural)
            .cloned()
    }

    /// Looks up a kind by group and kind name (any served version, storage version first).
    pub fn find_kind(&self, group: &str, kind: &str) -> Option<ResourceType> {
        let types = self.types.read().expect("registry lock");
        let mut candidates: Vec<&ResourceType> = types.iter().filter(|t| t.group == group && t.kind == kind).collect();
        candidates.sort_by_key(|t| !t.storage);
        candidates.first().map(|t| (*t).clone())
    }

    /// Whether a group/version is served at all.
    pub fn has_group_version(&self, group: &str, version: &str) -> bool {
        self.types.read().expect("registry lock").iter().any(|t| t.group == group && t.version == version)
    }

    /// Replaces the kinds of one CRD (by CRD name) with `new_types`.
    pub fn set_crd(&self, crd_name: &str, new_types: Vec<ResourceType>) {
        let mut types = self.types.write().expect("registry lock");
        types.retain(|t| t.crd_name.as_deref() != Some(crd_name));
        types.extend(new_types);
    }

    /// Removes the kinds of one CRD; returns whether any were removed.
    pub fn remove_crd(&self, crd_name: &str) -> bool {
        let mut types = self.types.write().expect("registry lock");
        let before = types.len();
        types.retain(|t| t.crd_name.as_deref() != Some(crd_name));
        before != types.len()
    }

    /// Groups with their versions, in registration order; the preferred version is the
    /// storage version when there is one.
    pub fn groups(&self) -> Vec<(String, Vec<String>, String)> {
        let types = self.types.read().expect("registry lock");
        let mut out: Vec<(String, Vec<String>, String)> = Vec::new();
        for t in types.iter() {
            if t.group.is_empty() {
                continue;
            }
            match out.iter_mut().find(|g| g.0 == t.group) {
                Some(g) => {
                    if !g.1.contains(&t.version) {
                        g.1.push(t.version.clone());
                    }
                    if t.storage {
                        g.2 = t.version.clone();
                    }
                }
                None => out.push((t.group.clone(), vec![t.version.clone()], t.version.clone())),
            }
        }
        for g in out.iter_mut() {
            g.1.sort_by_key(|v| std::cmp::Reverse(version_priority(v)));
        }
        out
    }
}

/// Kubernetes version ordering: GA > beta > alpha, then by numbers.
pub fn version_priority(v: &str) -> (u8, u32, u32) {
    let re = regex::Regex::new(r"^v(\d+)(?:(alpha|beta)(\d+))?$").expect("static regex");
    match re.captures(v) {
        Some(c) => {
            let major: u32 = c[1].parse().unwrap_or(0);
            match c.get(2).map(|m| m.as_str()) {
                None => (3, major, 0),
                Some("beta") => (2, major, c[3].parse().unwrap_or(0)),
                _ => (1, major, c[3].parse().unwrap_or(0)),
            }
        }
        None => (0, 0, 0),
    }
}

/// `/api` document.
pub fn core_versions(server_address: &str) -> Value {
    json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]})
}

/// `/apis` document (APIGroupList).
pub fn group_list(reg: &Registry) -> Value {
    let groups: Vec<Value> = reg
        .groups()
        .into_iter()
        .map(|(g, versions, preferred)| {
            json!({
                "name": g,
                "versions": versions.iter().map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v})).collect::<Vec<_>>(),
                "preferredVersion": {"groupVersion": format!("{g}/{preferred}"), "version": preferred},
            })
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/<group>` document (APIGroup), if served.
pub fn group_doc(reg: &Registry, group: &str) -> Option<Value> {
    reg.groups().into_iter().find(|g| g.0 == group).map(|(g, versions, preferred)| {
        json!({
            "kind": "APIGroup", "apiVersion": "v1", "name": g,
            "versions": versions.iter().map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v})).collect::<Vec<_>>(),
            "preferredVersion": {"groupVersion": format!("{g}/{preferred}"), "version": preferred},
        })
    })
}

/// `/api/v1` or `/apis/<g>/<v>` document (APIResourceList), if served.
pub fn resource_list(reg: &Registry, group: &str, version: &str) -> Option<Value> {
    let types: Vec<ResourceType> = reg.all().into_iter().filter(|t| t.group == group && t.version == version).collect();
    if types.is_empty() {
        return None;
    }
    let gv = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    let resources: Vec<Value> = types.iter().flat_map(|t| t.api_resources()).collect();
    Some(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}))
}

/// Aggregated discovery (`apidiscovery.k8s.io/v2` APIGroupDiscoveryList) for `/api` (core) or `/apis`.
pub fn aggregated(reg: &Registry, core: bool) -> Value {
    let all = reg.all();
    let groups: Vec<(String, Vec<String>)> = if core {
        vec![(String::new(), vec!["v1".to_string()])]
    } else {
        reg.groups().into_iter().map(|(g, v, _)| (g, v)).collect()
    };
    let items: Vec<Value> = groups
        .into_iter()
        .map(|(g, versions)| {
            let versions: Vec<Value> = versions
                .iter()
                .map(|v| {
                    let resources: Vec<Value> = all
                        .iter()
                        .filter(|t| t.group == g && &t.version == v)
                        .map(|t| {
                            let mut r = json!({
                                "resource": t.plural,
                                "responseKind": {"group": t.group, "version": t.version, "kind": t.kind},
                                "scope": if t.namespaced { "Namespaced" } else { "Cluster" },
                                "singularResource": t.singular,
                                "verbs": t.verbs,
                            });
                            if !t.short_names.is_empty() {
                                r["shortNames"] = json!(t.short_names);
                            }
                            if !t.categories.is_empty() {
                                r["categories"] = json!(t.categories);
                            }
                            let mut subs = Vec::new();
                            if t.status_subresource {
                                subs.push(json!({"subresource": "status", "responseKind": {"group": t.group, "version": t.version, "kind": t.kind}, "verbs": ["get", "patch", "update"]}));
                            }
                            if t.plural == "pods" && t.group.is_empty() {
                                subs.push(json!({"subresource": "log", "responseKind": {"group": "", "version": "v1", "kind": "Pod"}, "verbs": ["get"]}));
                            }
                            if !subs.is_empty() {
                                r["subresources"] = Value::Array(subs);
                            }
                            r
                        })
                        .collect();
                    json!({"version": v, "resources": resources, "freshness": "Current"})
                })
                .collect();
            let mut meta = json!({"creationTimestamp": null});
            if !g.is_empty() {
                meta["name"] = json!(g);
            }
            json!({"metadata": meta, "versions": versions})
        })
        .collect();
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items})
}
