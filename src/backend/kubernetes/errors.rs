//! Kubernetes API errors as cell errors that name the problem and the fix:
//! the server's own message, the missing RBAC rule for an RBAC denial, the
//! causes of an invalid object.

use crate::output::CellError;

/// The parts of an RBAC denial (`… cannot create resource "tfjobs" in API
/// group "kubeflow.org" in the namespace "ns"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RbacDenial {
    pub verb: String,
    /// `tfjobs`, or `pods/log` for a subresource.
    pub resource: String,
    /// `""` for the core group.
    pub group: String,
    pub namespace: Option<String>,
}

impl RbacDenial {
    /// Recognises an RBAC denial; quota and PodSecurity rejections (also
    /// 403 Forbidden) are not RBAC denials.
    pub fn parse(message: &str) -> Option<RbacDenial> {
        if message.contains("exceeded quota") || message.contains("violates PodSecurity") {
            return None;
        }
        let rest = &message[message.find(" cannot ")? + " cannot ".len()..];
        let (verb, rest) = rest.split_once(' ')?;
        let rest = rest.strip_prefix("resource \"")?;
        let (resource, rest) = rest.split_once('"')?;
        let rest = rest.strip_prefix(" in API group \"")?;
        let (group, rest) = rest.split_once('"')?;
        let namespace = rest
            .strip_prefix(" in the namespace \"")
            .and_then(|r| r.split_once('"'))
            .map(|(ns, _)| ns.to_string());
        Some(RbacDenial { verb: verb.to_string(), resource: resource.to_string(), group: group.to_string(), namespace })
    }

    /// The Role rule that would allow the request, as YAML lines.
    pub fn rule(&self) -> Vec<String> {
        let kind = if self.namespace.is_some() { "Role" } else { "ClusterRole" };
        let where_ = self.namespace.as_ref().map(|ns| format!(" in namespace {ns}")).unwrap_or_default();
        vec![
            format!("the account needs this rule in a {kind} bound to it{where_} (ask the cluster administrator):"),
            "rules:".to_string(),
            format!("- apiGroups: [\"{}\"]", self.group),
            format!("  resources: [\"{}\"]", self.resource),
            format!("  verbs: [\"{}\"]", self.verb),
        ]
    }
}

/// A failed API call as a cell error; `doing` says what was attempted
/// (`creating TFJob ns/name`), `server` where.
pub fn api_error(err: &kube::Error, doing: &str, server: &str) -> CellError {
    match err {
        kube::Error::Api(status) => {
            let message = if status.message.is_empty() { status.reason.clone() } else { status.message.clone() };
            match status.code {
                403 => match RbacDenial::parse(&message) {
                    Some(denial) => CellError::new("Forbidden", format!("{doing}: {message}")).with_traceback(denial.rule()),
                    None => CellError::new("Forbidden", format!("{doing}: {message}")),
                },
                422 => {
                    let causes: Vec<String> = status
                        .details
                        .as_ref()
                        .map(|d| {
                            d.causes
                                .iter()
                                .map(|c| match (c.field.is_empty(), c.message.is_empty()) {
                                    (false, false) => format!("{}: {}", c.field, c.message),
                                    (true, false) => c.message.clone(),
                                    _ => c.reason.clone(),
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    CellError::new("Invalid", format!("{doing}: the API server rejected the object: {message}")).with_traceback(causes)
                }
                401 => CellError::new(
                    "Unauthorized",
                    format!(
                        "{doing}: the API server at {server} rejected the credentials (401 Unauthorized); \
                         renew the token or fix the kubeconfig's user"
                    ),
                ),
                code => {
                    let reason = if status.reason.is_empty() { String::new() } else { format!(" {}", status.reason) };
                    CellError::new("KubernetesError", format!("{doing}: the API server answered {code}{reason}: {message}"))
                }
            }
        }
        other => CellError::new(
            "ConnectionError",
            format!("{doing}: cannot talk to the Kubernetes API at {server}: {}", one_line(&other.to_string())),
        ),
    }
}

/// The HTTP status of an API error, if it is one.
pub fn status_code(err: &kube::Error) -> Option<u16> {
    match err {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

/// Whether a 404 says the namespace is missing (not the resource).
pub fn is_missing_namespace(err: &kube::Error) -> bool {
    match err {
        kube::Error::Api(s) if s.code == 404 => {
            s.details.as_ref().is_some_and(|d| d.kind == "namespaces") || s.message.starts_with("namespaces \"")
        }
        _ => false,
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use kube::core::Status;

    use super::*;

    fn status(code: u16, reason: &str, message: &str) -> kube::Error {
        let mut s = Status::failure(message, reason);
        s.code = code;
        kube::Error::Api(Box::new(s))
    }

    #[test]
    fn an_rbac_denial_gives_the_rule() {
        let m = "tfjobs.kubeflow.org \"x\" is forbidden: User \"system:serviceaccount:team:ciao\" cannot create resource \"tfjobs\" in API group \"kubeflow.org\" in the namespace \"team\"";
        let d = RbacDenial::parse(m).unwrap();
        assert_eq!(d, RbacDenial {
            verb: "create".into(),
            resource: "tfjobs".into(),
            group: "kubeflow.org".into(),
            namespace: Some("team".into())
        });
        let e = api_error(&status(403, "Forbidden", m), "creating TFJob team/x", "https://k");
        assert_eq!(e.ename, "Forbidden");
        assert!(e.evalue.ends_with(m), "{}", e.evalue);
        assert_eq!(e.traceback[1..], ["rules:", "- apiGroups: [\"kubeflow.org\"]", "  resources: [\"tfjobs\"]", "  verbs: [\"create\"]"]);
        assert!(e.traceback[0].contains("Role") && e.traceback[0].contains("team"));
        let logs = RbacDenial::parse("pods \"p\" is forbidden: User \"u\" cannot get resource \"pods/log\" in API group \"\" at the cluster scope").unwrap();
        assert_eq!((logs.resource.as_str(), logs.group.as_str(), logs.namespace.as_deref()), ("pods/log", "", None));
        assert!(logs.rule()[0].contains("ClusterRole"));
    }

    #[test]
    fn quota_and_pod_security_rejections_get_no_rule() {
        for m in [
            "pods \"x\" is forbidden: exceeded quota: compute, requested: cpu=4, used: cpu=0, limited: cpu=2",
            "pods \"x\" is forbidden: violates PodSecurity \"restricted:latest\": allowPrivilegeEscalation != false",
        ] {
            assert_eq!(RbacDenial::parse(m), None);
            let e = api_error(&status(403, "Forbidden", m), "creating", "s");
            assert!(e.traceback.is_empty() && e.evalue.contains(m), "{e:?}");
        }
    }

    #[test]
    fn invalid_objects_list_their_causes() {
        let s: Status = serde_json::from_value(serde_json::json!({
            "kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 422, "reason": "Invalid",
            "message": "TFJob.kubeflow.org \"x\" is invalid: spec.x: Invalid value",
            "details": {"name": "x", "kind": "TFJob", "causes": [
                {"reason": "FieldValueInvalid", "message": "Invalid value: 3", "field": "spec.x"}
            ]}
        }))
        .unwrap();
        let e = api_error(&kube::Error::Api(Box::new(s)), "creating TFJob ns/x", "s");
        assert_eq!(e.ename, "Invalid");
        assert_eq!(e.traceback, ["spec.x: Invalid value: 3"]);
    }

    #[test]
    fn missing_namespaces_are_told_apart_from_missing_kinds() {
        assert!(is_missing_namespace(&status(404, "NotFound", "namespaces \"nope\" not found")));
        assert!(!is_missing_namespace(&status(404, "NotFound", "the server could not find the requested resource")));
    }
}
