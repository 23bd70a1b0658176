//! `metav1.Status` failures, shaped exactly as the Kubernetes API server writes them.

use serde_json::{Value, json};

/// One entry of `details.causes` in a `Status`.
#[derive(Debug, Clone, PartialEq)]
pub struct Cause {
    /// Machine-readable reason such as `FieldValueRequired`.
    pub reason: String,
    /// Human-readable message, without the field prefix.
    pub message: String,
    /// Dotted field path such as `spec.tfReplicaSpecs.Worker.replicas`.
    pub field: String,
}

/// A failed API call: serialises to a `Status` object with the given HTTP code.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code} {reason}: {message}")]
pub struct ApiError {
    /// HTTP status code.
    pub code: u16,
    /// `Status.reason` (`NotFound`, `AlreadyExists`, ...).
    pub reason: String,
    /// `Status.message`.
    pub message: String,
    /// `details.name`.
    pub name: Option<String>,
    /// `details.group`.
    pub group: Option<String>,
    /// `details.kind` (the resource plural for most errors, the kind for `Invalid`).
    pub kind: Option<String>,
    /// `details.causes`.
    pub causes: Vec<Cause>,
    /// `details.retryAfterSeconds`.
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// A bare error with code, reason and message.
    pub fn new(code: u16, reason: &str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason: reason.to_string(),
            message: message.into(),
            name: None,
            group: None,
            kind: None,
            causes: Vec::new(),
            retry_after: None,
        }
    }

    /// Adds `details` name/group/kind.
    pub fn details(mut self, name: &str, group: &str, kind: &str) -> Self {
        self.name = Some(name.to_string());
        self.group = Some(group.to_string());
        self.kind = Some(kind.to_string());
        self
    }

    /// `<resource>.<group> "<name>" not found`.
    pub fn not_found(group: &str, plural: &str, name: &str) -> Self {
        ApiError::new(404, "NotFound", format!("{} \"{name}\" not found", qualified(plural, group)))
            .details(name, group, plural)
    }

    /// 404 for a path that names no served resource.
    pub fn no_resource() -> Self {
        ApiError::new(404, "NotFound", "the server could not find the requested resource")
    }

    /// `<resource>.<group> "<name>" already exists`.
    pub fn already_exists(group: &str, plural: &str, name: &str) -> Self {
        ApiError::new(409, "AlreadyExists", format!("{} \"{name}\" already exists", qualified(plural, group)))
            .details(name, group, plural)
    }

    /// The optimistic-concurrency conflict message.
    pub fn conflict(group: &str, plural: &str, name: &str) -> Self {
        ApiError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                qualified(plural, group)
            ),
        )
        .details(name, group, plural)
    }

    /// `<Kind>.<group> "<name>" is invalid: ...` with causes.
    pub fn invalid(group: &str, kind: &str, name: &str, causes: Vec<Cause>) -> Self {
        let parts: Vec<String> = causes
            .iter()
            .map(|c| if c.field.is_empty() { c.message.clone() } else { format!("{}: {}", c.field, c.message) })
            .collect();
        let joined = if parts.len() == 1 { parts[0].clone() } else { format!("[{}]", parts.join(", ")) };
        let gk = if group.is_empty() { kind.to_string() } else { format!("{kind}.{group}") };
        ApiError::new(422, "Invalid", format!("{gk} \"{name}\" is invalid: {joined}")).details(name, group, kind).with_causes(causes)
    }

    /// 400 BadRequest.
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(400, "BadRequest", message)
    }

    /// 405 MethodNotAllowed.
    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        ApiError::new(405, "MethodNotAllowed", message)
    }

    /// 415 for a patch type the resource does not accept.
    pub fn unsupported_patch(accepted: &[&str]) -> Self {
        ApiError::new(
            415,
            "UnsupportedMediaType",
            format!("the body of the request was in an unknown format - accepted media types include: {}", accepted.join(", ")),
        )
    }

    /// 401 Unauthorized.
    pub fn unauthorized() -> Self {
        ApiError::new(401, "Unauthorized", "Unauthorized")
    }

    /// 500 InternalError.
    pub fn internal(message: impl Into<String>) -> Self {
        let m = message.into();
        ApiError::new(500, "InternalError", format!("Internal error occurred: {m}"))
            .with_causes(vec![Cause { reason: String::new(), message: m, field: String::new() }])
    }

    /// 410 Expired for a watch or list from a compacted resourceVersion.
    pub fn expired(message: impl Into<String>) -> Self {
        ApiError::new(410, "Expired", message)
    }

    /// Replaces the causes.
    pub fn with_causes(mut self, causes: Vec<Cause>) -> Self {
        self.causes = causes;
        self
    }

    /// The `Status` object.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
        });
        let mut details = serde_json::Map::new();
        if let Some(n) = &self.name {
            details.insert("name".into(), json!(n));
        }
        if let Some(g) = &self.group
            && !g.is_empty() {
                details.insert("group".into(), json!(g));
            }
        if let Some(k) = &self.kind {
            details.insert("kind".into(), json!(k));
        }
        if !self.causes.is_empty() {
            let causes: Vec<Value> = self
                .causes
                .iter()
                .map(|c| {
                    let mut o = serde_json::Map::new();
                    if !c.reason.is_empty() {
                        o.insert("reason".into(), json!(c.reason));
                    }
                    o.insert("message".into(), json!(c.message));
                    if !c.field.is_empty() {
                        o.insert("field".into(), json!(c.field));
                    }
                    Value::Object(o)
                })
                .collect();
            details.insert("causes".into(), Value::Array(causes));
        }
        if let Some(r) = self.retry_after {
            details.insert("retryAfterSeconds".into(), json!(r));
        }
        if !details.is_empty() || self.code == 404 {
            status["details"] = Value::Object(details);
        }
        status["code"] = json!(self.code);
        status
    }
}

/// `plural.group`, or `plural` for the core group.
pub fn qualified(plural: &str, group: &str) -> String {
    if group.is_empty() { plural.to_string() } else { format!("{plural}.{group}") }
}

/// Convenience alias.
pub type ApiResult<T> = Result<T, ApiError>;
