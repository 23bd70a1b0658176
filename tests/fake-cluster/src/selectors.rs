//! Label and field selectors as the API server parses them.

use serde_json::Value;

use crate::error::ApiError;

#[derive(Debug, Clone, PartialEq)]
enum Req {
    Eq(String, String),
    Ne(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed label selector (`a=b,c!=d,e in (f,g),h,!i`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabelSelector(Vec<Req>);

fn split_top(s: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut depth = 0;
    let mut cur = String::new();
    for c in s.chars() {
        match c {
            '(' => {
                depth += 1;
                cur.push(c)
            }
            ')' => {
                depth -= 1;
                cur.push(c)
            }
            ',' if depth == 0 => parts.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    if !cur.trim().is_empty() {
        parts.push(cur);
    }
    parts
}

fn parse_set(s: &str) -> Option<Vec<String>> {
    let s = s.trim();
    let inner = s.strip_prefix('(')?.strip_suffix(')')?;
    Some(inner.split(',').map(|v| v.trim().to_string()).filter(|v| !v.is_empty()).collect())
}

impl LabelSelector {
    /// Parses a selector string; an empty string selects everything.
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        let mut reqs = Vec::new();
        for part in split_top(s) {
            let p = part.trim();
            if p.is_empty() {
                continue;
            }
            let bad = || ApiError::bad_request(format!("unable to parse requirement: found '{p}', expected: in, notin, =, ==, !=, gt, lt"));
            if let Some(k) = p.strip_prefix('!') {
                reqs.push(Req::NotExists(k.trim().to_string()));
            } else if let Some((k, v)) = p.split_once("!=") {
                reqs.push(Req::Ne(k.trim().into(), v.trim().into()));
            } else if let Some((k, v)) = p.split_once("==") {
                reqs.push(Req::Eq(k.trim().into(), v.trim().into()));
            } else if let Some((k, v)) = p.split_once('=') {
                reqs.push(Req::Eq(k.trim().into(), v.trim().into()));
            } else if let Some(idx) = p.find(" notin ") {
                reqs.push(Req::NotIn(p[..idx].trim().into(), parse_set(&p[idx + 7..]).ok_or_else(bad)?));
            } else if let Some(idx) = p.find(" in ") {
                reqs.push(Req::In(p[..idx].trim().into(), parse_set(&p[idx + 4..]).ok_or_else(bad)?));
            } else if p.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/')) {
                reqs.push(Req::Exists(p.to_string()));
            } else {
                return Err(bad());
            }
        }
        Ok(LabelSelector(reqs))
    }

    /// Whether the labels (a JSON object or null) match.
    pub fn matches(&self, labels: Option<&Value>) -> bool {
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.0.iter().all(|r| match r {
            Req::Eq(k, v) => get(k) == Some(v.as_str()),
            Req::Ne(k, v) => get(k) != Some(v.as_str()),
            Req::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Req::NotIn(k, vs) => get(k).is_none_or(|x| !vs.iter().any(|v| v == x)),
            Req::Exists(k) => get(k).is_some(),
            Req::NotExists(k) => get(k).is_none(),
        })
    }

    /// Whether the selector is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A parsed field selector (`metadata.name=x,status.phase!=Running`).
#[derive(Debug, Clone, Default)]
pub struct FieldSelector(Vec<(String, bool, String)>);

impl FieldSelector {
    /// Parses a field selector; only `=`, `==`, `!=` exist for fields.
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        let mut out = Vec::new();
        for p in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if let Some((k, v)) = p.split_once("!=") {
                out.push((k.trim().to_string(), false, v.trim().to_string()));
            } else if let Some((k, v)) = p.split_once("==").or_else(|| p.split_once('=')) {
                out.push((k.trim().to_string(), true, v.trim().to_string()));
            } else {
                return Err(ApiError::bad_request(format!("invalid selector: '{s}'; can't understand '{p}'")));
            }
        }
        Ok(FieldSelector(out))
    }

    /// Checks the fields this resource supports; unknown fields are a 400 as on a real server.
    pub fn check_supported(&self, kind: &str, _api_version: &str) -> Result<(), ApiError> {
        for (k, _, _) in &self.0 {
            let ok = matches!(k.as_str(), "metadata.name" | "metadata.namespace")
                || (kind == "Pod" && matches!(k.as_str(), "status.phase" | "spec.nodeName" | "spec.restartPolicy" | "spec.schedulerName" | "spec.serviceAccountName" | "status.podIP" | "status.nominatedNodeName"))
                || (kind == "Event" && (k.starts_with("involvedObject.") || matches!(k.as_str(), "reason" | "type" | "source" | "reportingComponent")))
                || (kind == "Secret" && k == "type");
            if !ok {
                return Err(ApiError::bad_request(format!("\"{k}\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\"")).with_causes(Vec::new()));
            }
        }
        Ok(())
    }

    /// Whether an object matches.
    pub fn matches(&self, obj: &Value) -> bool {
        self.0.iter().all(|(k, eq, v)| {
            let ptr = format!("/{}", k.replace('.', "/"));
            let actual = obj.pointer(&ptr).and_then(Value::as_str).unwrap_or("");
            (actual == v) == *eq
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn set_based_and_equality_requirements() {
        let l = json!({"a": "1", "b": "x"});
        assert!(LabelSelector::parse("a=1,b in (x,y)").unwrap().matches(Some(&l)));
        assert!(!LabelSelector::parse("a!=1").unwrap().matches(Some(&l)));
        assert!(LabelSelector::parse("b notin (z),a,!c").unwrap().matches(Some(&l)));
        assert!(!LabelSelector::parse("c").unwrap().matches(Some(&l)));
    }

    #[test]
    fn field_selector_on_phase() {
        let p = json!({"metadata": {"name": "p"}, "status": {"phase": "Running"}});
        assert!(FieldSelector::parse("status.phase=Running").unwrap().matches(&p));
        assert!(!FieldSelector::parse("metadata.name!=p").unwrap().matches(&p));
    }
}
