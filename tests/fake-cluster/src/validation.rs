//! Object-name and label validation with the API server's messages.

use serde_json::Value;

use crate::error::Cause;

const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1035_LABEL_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";

fn is_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// RFC 1123 subdomain (most object names).
pub fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_label)
}

/// Which name rule a resource uses.
pub fn name_rule(group: &str, plural: &str) -> &'static str {
    match (group, plural) {
        ("", "services") => "dns1035",
        ("", "namespaces") => "dns1123label",
        _ => "subdomain",
    }
}

/// Validates `metadata.name`; returns the cause on failure.
pub fn validate_name(group: &str, plural: &str, name: &str) -> Option<Cause> {
    let (ok, msg, max) = match name_rule(group, plural) {
        "dns1035" => (
            is_label(name) && name.as_bytes().first().is_some_and(|c| c.is_ascii_lowercase()),
            DNS1035_LABEL_MSG,
            63,
        ),
        "dns1123label" => (is_label(name), DNS1123_LABEL_MSG, 63),
        _ => (is_dns1123_subdomain(name), DNS1123_SUBDOMAIN_MSG, 253),
    };
    if name.len() > max {
        return Some(Cause { reason: "FieldValueInvalid".into(), message: format!("Invalid value: \"{name}\": must be no more than {max} characters"), field: "metadata.name".into() });
    }
    if ok { None } else { Some(Cause { reason: "FieldValueInvalid".into(), message: format!("Invalid value: \"{name}\": {msg}"), field: "metadata.name".into() }) }
}

fn is_qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// Validates `metadata.labels` keys and values.
pub fn validate_labels(meta: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    let Some(labels) = meta.get("labels").and_then(Value::as_object) else { return out };
    for (k, v) in labels {
        let (prefix, name) = match k.split_once('/') {
            Some((p, n)) => (Some(p), n),
            None => (None, k.as_str()),
        };
        let key_ok = is_qualified_name_part(name) && prefix.is_none_or(is_dns1123_subdomain);
        if !key_ok {
            out.push(Cause {
                reason: "FieldValueInvalid".into(),
                message: format!("Invalid value: \"{k}\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"),
                field: "metadata.labels".into(),
            });
        }
        let val = v.as_str().unwrap_or_default();
        if !val.is_empty() && !is_qualified_name_part(val) {
            out.push(Cause {
                reason: "FieldValueInvalid".into(),
                message: format!("Invalid value: \"{val}\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"),
                field: "metadata.labels".to_string(),
            });
        }
    }
    out
}

/// Kind-specific required fields of built-in kinds that the stand-in checks.
pub fn validate_builtin(group: &str, plural: &str, obj: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    let required = |out: &mut Vec<Cause>, field: &str| out.push(Cause { reason: "FieldValueRequired".into(), message: "Required value".into(), field: field.into() });
    match (group, plural) {
        ("", "pods") => {
            let containers = obj.pointer("/spec/containers").and_then(Value::as_array);
            match containers {
                None => required(&mut out, "spec.containers"),
                Some(cs) if cs.is_empty() => required(&mut out, "spec.containers"),
                Some(cs) => {
                    for (i, c) in cs.iter().enumerate() {
                        match c.get("name").and_then(Value::as_str) {
                            None | Some("") => required(&mut out, &format!("spec.containers[{i}].name")),
                            Some(n) if !is_label(n) => out.push(Cause {
                                reason: "FieldValueInvalid".into(),
                                message: format!("Invalid value: \"{n}\": {DNS1123_LABEL_MSG}"),
                                field: format!("spec.containers[{i}].name"),
                            }),
                            _ => {}
                        }
                        if c.get("image").and_then(Value::as_str).is_none_or(str::is_empty) {
                            required(&mut out, &format!("spec.containers[{i}].image"));
                        }
                    }
                }
            }
        }
        ("batch", "jobs") => {
            if obj.pointer("/spec/template/spec/containers").and_then(Value::as_array).is_none_or(Vec::is_empty) {
                required(&mut out, "spec.template.spec.containers");
            }
            let rp = obj.pointer("/spec/template/spec/restartPolicy").and_then(Value::as_str);
            if let Some(rp) = rp {
                if rp != "Never" && rp != "OnFailure" {
                    out.push(Cause {
                        reason: "FieldValueNotSupported".into(),
                        message: format!("Unsupported value: \"{rp}\": supported values: \"OnFailure\", \"Never\""),
                        field: "spec.template.spec.restartPolicy".into(),
                    });
                }
            } else {
                out.push(Cause {
                    reason: "FieldValueNotSupported".into(),
                    message: "Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\"".into(),
                    field: "spec.template.spec.restartPolicy".into(),
                });
            }
        }
        ("", "configmaps") | ("", "secrets") => {
            for field in ["data", "binaryData", "stringData"] {
                if let Some(m) = obj.get(field).and_then(Value::as_object) {
                    for k in m.keys() {
                        let ok = !k.is_empty() && k.len() <= 253 && k.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'));
                        if !ok {
                            out.push(Cause {
                                reason: "FieldValueInvalid".into(),
                                message: format!("Invalid value: \"{k}\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"),
                                field: format!("{field}[{k}]"),
                            });
                        }
                    }
                }
            }
        }
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subdomain_rules_match_the_api_server() {
        assert!(is_dns1123_subdomain("my-job.v1"));
        assert!(!is_dns1123_subdomain("My_Job"));
        assert!(!is_dns1123_subdomain("-x"));
        assert!(validate_name("", "services", "1abc").is_some());
        assert!(validate_name("", "pods", "1abc").is_none());
    }
}
