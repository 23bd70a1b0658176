//! Patch application: JSON merge patch, JSON patch and (for built-in kinds) strategic merge
//! patch with the merge keys of the core types the stand-in serves.

use serde_json::Value;

/// The patch content types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    /// `application/merge-patch+json`
    Merge,
    /// `application/json-patch+json`
    Json,
    /// `application/strategic-merge-patch+json`
    Strategic,
    /// `application/apply-patch+yaml`
    Apply,
}

impl PatchType {
    /// From a Content-Type header value.
    pub fn from_content_type(ct: &str) -> Option<Self> {
        let base = ct.split(';').next().unwrap_or_default().trim();
        match base {
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/json-patch+json" => Some(PatchType::Json),
            "application/strategic-merge-patch+json" => Some(PatchType::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => Some(PatchType::Apply),
            _ => None,
        }
    }
}

fn merge_key(field: &str, sample: &Value) -> Option<&'static str> {
    match field {
        "containers" | "initContainers" | "ephemeralContainers" | "env" | "volumes" | "imagePullSecrets" | "resourceClaims" => Some("name"),
        "volumeMounts" | "volumeDevices" => Some("mountPath"),
        "conditions" => Some("type"),
        "ownerReferences" => Some("uid"),
        "hostAliases" => Some("ip"),
        "ports" => Some(if sample.get("containerPort").is_some() { "containerPort" } else { "port" }),
        _ => None,
    }
}

/// Applies a strategic merge patch in place.
pub fn strategic_merge(target: &mut Value, patch: &Value) {
    let Some(pobj) = patch.as_object() else {
        *target = patch.clone();
        return;
    };
    if pobj.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut p = patch.clone();
        p.as_object_mut().expect("object").remove("$patch");
        *target = p;
        return;
    }
    if !target.is_object() {
        *target = Value::Object(Default::default());
    }
    for (k, pv) in pobj {
        if k == "$patch" || k.starts_with("$setElementOrder/") || k == "$retainKeys" {
            continue;
        }
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(arr), Some(del)) = (target.get_mut(field).and_then(Value::as_array_mut), pv.as_array()) {
                arr.retain(|x| !del.contains(x));
            }
            continue;
        }
        let tobj = target.as_object_mut().expect("object");
        if pv.is_null() {
            tobj.remove(k);
            continue;
        }
        match (tobj.get_mut(k), pv) {
            (Some(tv @ Value::Object(_)), Value::Object(_)) => strategic_merge(tv, pv),
            (Some(Value::Array(tarr)), Value::Array(parr)) => {
                let sample = parr.first().or(tarr.first()).cloned().unwrap_or(Value::Null);
                if let Some(key) = merge_key(k, &sample) {
                    for pe in parr {
                        let kv = pe.get(key).cloned();
                        let pos = kv.as_ref().and_then(|kv| tarr.iter().position(|te| te.get(key) == Some(kv)));
                        let delete = pe.get("$patch").and_then(Value::as_str) == Some("delete");
                        match (pos, delete) {
                            (Some(i), true) => {
                                tarr.remove(i);
                            }
                            (None, true) => {}
                            (Some(i), false) => strategic_merge(&mut tarr[i], pe),
                            (None, false) => tarr.push(pe.clone()),
                        }
                    }
                } else if k == "finalizers" {
                    for pe in parr {
                        if !tarr.contains(pe) {
                            tarr.push(pe.clone());
                        }
                    }
                } else {
                    *tarr = parr.clone();
                }
            }
            _ => {
                tobj.insert(k.clone(), pv.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn containers_merge_by_name_and_env_by_name() {
        let mut t = json!({"spec": {"containers": [{"name": "a", "image": "x", "env": [{"name": "A", "value": "1"}]}, {"name": "b", "image": "y"}]}});
        let p = json!({"spec": {"containers": [{"name": "a", "env": [{"name": "B", "value": "2"}]}, {"name": "b", "$patch": "delete"}]}});
        strategic_merge(&mut t, &p);
        assert_eq!(t, json!({"spec": {"containers": [{"name": "a", "image": "x", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}]}}));
    }
}
