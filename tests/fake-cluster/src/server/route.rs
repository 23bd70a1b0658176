//! URL paths to API targets.

use crate::cluster::Cluster;
use crate::faults::RequestInfo;
use crate::resources::ResourceType;

/// A resource request target.
#[derive(Debug, Clone)]
pub struct Target {
    /// Served kind (None when the group/version exists but not the plural).
    pub rt: ResourceType,
    /// Namespace from the URL.
    pub namespace: Option<String>,
    /// Object name.
    pub name: Option<String>,
    /// Subresource (`status`, `log`).
    pub sub: Option<String>,
}

/// What a path addresses.
#[derive(Debug)]
pub enum Route {
    /// `/`
    Root,
    /// `/healthz` etc.
    Health,
    /// `/version`
    Version,
    /// `/api`
    Api,
    /// `/apis`
    Apis,
    /// `/apis/<g>`
    Group(String),
    /// `/api/v1`, `/apis/<g>/<v>`
    GroupVersion(String, String),
    /// A resource path.
    Resource(Box<Target>),
    /// `/_fake/...`
    Admin(String),
    /// Nothing served there.
    NotFound,
}

/// Parses a request path.
pub fn parse(cluster: &Cluster, path: &str) -> Route {
    let segs: Vec<&str> = path.trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
    match segs.as_slice() {
        [] => Route::Root,
        ["healthz" | "livez" | "readyz", ..] => Route::Health,
        ["version"] => Route::Version,
        ["_fake", rest @ ..] => Route::Admin(rest.join("/")),
        ["api"] => Route::Api,
        ["apis"] => Route::Apis,
        ["apis", g] => Route::Group(g.to_string()),
        ["api", v] => Route::GroupVersion(String::new(), v.to_string()),
        ["apis", g, v] => Route::GroupVersion(g.to_string(), v.to_string()),
        ["api", v, rest @ ..] => resource(cluster, "", v, rest),
        ["apis", g, v, rest @ ..] => resource(cluster, g, v, rest),
        _ => Route::NotFound,
    }
}

fn resource(cluster: &Cluster, group: &str, version: &str, rest: &[&str]) -> Route {
    let (namespace, plural, name, sub) = match rest {
        ["namespaces", ns] => (None, "namespaces", Some(*ns), None),
        ["namespaces", ns, s @ ("status" | "finalize")] => (None, "namespaces", Some(*ns), Some(*s)),
        ["namespaces", ns, plural] => (Some(*ns), *plural, None, None),
        ["namespaces", ns, plural, name] => (Some(*ns), *plural, Some(*name), None),
        ["namespaces", ns, plural, name, sub] => (Some(*ns), *plural, Some(*name), Some(*sub)),
        [plural] => (None, *plural, None, None),
        [plural, name] => (None, *plural, Some(*name), None),
        [plural, name, sub] => (None, *plural, Some(*name), Some(*sub)),
        _ => return Route::NotFound,
    };
    let Some(rt) = cluster.registry.find(group, version, plural) else { return Route::NotFound };
    if let Some(s) = sub {
        let ok = (s == "status" && rt.status_subresource) || (s == "log" && rt.plural == "pods" && rt.group.is_empty());
        if !ok {
            return Route::NotFound;
        }
    }
    if namespace.is_some() && !rt.namespaced {
        return Route::NotFound;
    }
    Route::Resource(Box::new(Target {
        rt,
        namespace: namespace.map(str::to_string),
        name: name.map(str::to_string),
        sub: sub.map(str::to_string),
    }))
}

impl Route {
    /// Fills the RBAC view of the request (verb, resource, ...).
    pub fn fill_info(&self, info: &mut RequestInfo, method: &str, query: &str) {
        let Route::Resource(t) = self else { return };
        info.group = t.rt.group.clone();
        info.resource = match &t.sub {
            Some(s) => format!("{}/{s}", t.rt.plural),
            None => t.rt.plural.clone(),
        };
        info.namespace = t.namespace.clone().unwrap_or_default();
        info.name = t.name.clone().unwrap_or_default();
        let watch = form_urlencoded::parse(query.as_bytes()).any(|(k, v)| k == "watch" && (v == "true" || v == "1"));
        info.verb = match (method, t.name.is_some()) {
            ("GET", _) if watch => "watch",
            ("GET", true) => "get",
            ("GET", false) => "list",
            ("POST", _) => "create",
            ("PUT", _) => "update",
            ("PATCH", _) => "patch",
            ("DELETE", true) => "delete",
            ("DELETE", false) => "deletecollection",
            _ => "",
        }
        .to_string();
    }
}
