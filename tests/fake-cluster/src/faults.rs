//! Injectable faults: rules matched against each request (and against the pod creations of
//! the simulated controllers) that answer with an error Status, cut a watch after N events,
//! cut a log stream after N bytes, or drop the connection.

use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::error::ApiError;

/// One fault rule, as posted to `POST /_fake/faults`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub struct Fault {
    /// Assigned by the server.
    #[serde(default)]
    pub id: u64,
    /// HTTP method to match (`GET`, `POST`, ...); any when absent.
    #[serde(default)]
    pub method: Option<String>,
    /// Regular expression matched against the request path.
    #[serde(default)]
    pub path: String,
    /// Regular expression matched against the raw query string (e.g. `watch=true`).
    #[serde(default)]
    pub query: Option<String>,
    /// HTTP status to answer with (or, for watches, the code of the ERROR event).
    #[serde(default)]
    pub status: Option<u16>,
    /// `Status.reason`; derived from the status code when absent.
    #[serde(default)]
    pub reason: Option<String>,
    /// `Status.message`; derived from the preset or status when absent.
    #[serde(default)]
    pub message: Option<String>,
    /// Message shape: `rbac`, `quota` or `podsecurity` (all 403 Forbidden).
    #[serde(default)]
    pub preset: Option<String>,
    /// The user named in an RBAC denial (default `system:serviceaccount:<ns>:default`).
    #[serde(default)]
    pub user: Option<String>,
    /// How many requests the rule applies to; forever when absent.
    #[serde(default)]
    pub times: Option<u32>,
    /// Watches: send this many events first, then the ERROR event (with `status`) or drop.
    #[serde(default)]
    pub after_events: Option<u32>,
    /// Logs: send this many bytes first, then drop the connection.
    #[serde(default)]
    pub after_bytes: Option<u64>,
    /// Drop the connection instead of answering.
    #[serde(default)]
    pub drop: bool,
    /// Delay before answering, in milliseconds.
    #[serde(default)]
    pub delay_ms: Option<u64>,
    /// How many times the rule has fired.
    #[serde(default)]
    pub hits: u32,
}

/// What a request is, for matching and for building messages.
#[derive(Debug, Clone, Default)]
pub struct RequestInfo {
    /// HTTP method.
    pub method: String,
    /// Path.
    pub path: String,
    /// Raw query.
    pub query: String,
    /// RBAC verb (`get`, `list`, `watch`, `create`, ...).
    pub verb: String,
    /// API group.
    pub group: String,
    /// Resource plural (with `/sub` for subresources).
    pub resource: String,
    /// Namespace.
    pub namespace: String,
    /// Object name, when known.
    pub name: String,
}

/// The live fault rules.
#[derive(Debug, Default)]
pub struct Faults {
    rules: Mutex<Vec<Fault>>,
    next_id: Mutex<u64>,
}

impl Faults {
    /// Adds a rule; returns its id. Fails on a bad regular expression.
    pub fn add(&self, mut f: Fault) -> Result<u64, String> {
        regex::Regex::new(&f.path).map_err(|e| format!("invalid path regex: {e}"))?;
        if let Some(q) = &f.query {
            regex::Regex::new(q).map_err(|e| format!("invalid query regex: {e}"))?;
        }
        let mut id = self.next_id.lock().expect("fault lock");
        *id += 1;
        f.id = *id;
        f.hits = 0;
        self.rules.lock().expect("fault lock").push(f);
        Ok(*id)
    }

    /// Current rules.
    pub fn list(&self) -> Vec<Fault> {
        self.rules.lock().expect("fault lock").clone()
    }

    /// Removes one rule (or all with `None`).
    pub fn clear(&self, id: Option<u64>) {
        let mut rules = self.rules.lock().expect("fault lock");
        match id {
            Some(id) => rules.retain(|f| f.id != id),
            None => rules.clear(),
        }
    }

    /// Finds the first live rule matching the request and counts a hit.
    pub fn take(&self, req: &RequestInfo) -> Option<Fault> {
        let mut rules = self.rules.lock().expect("fault lock");
        let idx = rules.iter().position(|f| {
            f.times.is_none_or(|t| f.hits < t)
                && f.method.as_deref().is_none_or(|m| m.eq_ignore_ascii_case(&req.method))
                && regex::Regex::new(&f.path).is_ok_and(|r| r.is_match(&req.path))
                && f.query.as_deref().is_none_or(|q| regex::Regex::new(q).is_ok_and(|r| r.is_match(&req.query)))
        })?;
        rules[idx].hits += 1;
        Some(rules[idx].clone())
    }
}

fn default_reason(code: u16) -> &'static str {
    match code {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        409 => "Conflict",
        410 => "Expired",
        415 => "UnsupportedMediaType",
        422 => "Invalid",
        429 => "TooManyRequests",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "InternalError",
    }
}

impl Fault {
    /// The error Status this rule answers with for `req`.
    pub fn error(&self, req: &RequestInfo) -> ApiError {
        let res_group = if req.group.is_empty() { req.resource.clone() } else { format!("{}.{}", req.resource, req.group) };
        let subject = if req.name.is_empty() { res_group.clone() } else { format!("{res_group} \"{}\"", req.name) };
        let (code, message) = match self.preset.as_deref() {
            Some("rbac") => {
                let user = self.user.clone().unwrap_or_else(|| format!("system:serviceaccount:{}:default", if req.namespace.is_empty() { "default" } else { &req.namespace }));
                let scope = if req.namespace.is_empty() { "at the cluster scope".to_string() } else { format!("in the namespace \"{}\"", req.namespace) };
                let m = format!("{subject} is forbidden: User \"{user}\" cannot {} resource \"{}\" in API group \"{}\" {scope}", req.verb, req.resource, req.group);
                (403, self.message.clone().unwrap_or(m))
            }
            Some("quota") => {
                let tail = self.message.clone().unwrap_or_else(|| "exceeded quota: compute-resources, requested: requests.cpu=2, used: requests.cpu=8, limited: requests.cpu=8".into());
                (403, format!("{subject} is forbidden: {tail}"))
            }
            Some("podsecurity") => {
                let tail = self.message.clone().unwrap_or_else(|| {
                    "violates PodSecurity \"restricted:latest\": allowPrivilegeEscalation != false (container \"main\" must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container \"main\" must set securityContext.capabilities.drop=[\"ALL\"]), runAsNonRoot != true (pod or container \"main\" must set securityContext.runAsNonRoot=true), seccompProfile (pod or container \"main\" must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")".into()
                });
                (403, format!("{subject} is forbidden: {tail}"))
            }
            _ => {
                let code = self.status.unwrap_or(500);
                let m = self.message.clone().unwrap_or_else(|| match code {
                    409 => format!("Operation cannot be fulfilled on {subject}: the object has been modified; please apply your changes to the latest version and try again"),
                    410 => "too old resource version: 1 (2)".to_string(),
                    404 => "the server could not find the requested resource".to_string(),
                    500 => "Internal error occurred: injected failure".to_string(),
                    _ => format!("injected failure {code}"),
                });
                (code, m)
            }
        };
        let code = self.status.filter(|_| self.preset.is_none()).unwrap_or(code);
        let reason = self.reason.clone().unwrap_or_else(|| default_reason(code).to_string());
        let mut e = ApiError::new(code, &reason, message);
        if !req.resource.is_empty() {
            e = e.details(&req.name, &req.group, req.resource.split('/').next().unwrap_or_default());
            if req.name.is_empty() {
                e.name = None;
            }
        }
        e
    }
}
