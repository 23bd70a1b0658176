//! Job conditions with the Kubeflow common library's update rules.

use serde_json::{Value, json};

use crate::store::now_rfc3339;

/// Whether a condition of `type_` is True.
pub fn is_true(conds: &Value, type_: &str) -> bool {
    conds.as_array().is_some_and(|a| a.iter().any(|c| c["type"] == type_ && c["status"] == "True"))
}

/// `UpdateJobConditions`: sets a True condition of `type_`; Running and Restarting replace
/// each other; Succeeded/Failed turn Running False; an identical condition is kept as is.
pub fn update(conds: &mut Value, type_: &str, reason: &str, message: &str) {
    if !conds.is_array() {
        *conds = json!([]);
    }
    let arr = conds.as_array_mut().expect("array");
    if arr.iter().any(|c| c["type"] == type_ && c["status"] == "True" && c["reason"] == reason && c["message"] == message) {
        return;
    }
    let now = now_rfc3339();
    let mut out = Vec::new();
    for c in arr.iter() {
        let ct = c["type"].as_str().unwrap_or_default();
        if (type_ == "Restarting" && ct == "Running") || (type_ == "Running" && ct == "Restarting") || ct == type_ {
            continue;
        }
        let mut c = c.clone();
        if (type_ == "Failed" || type_ == "Succeeded") && ct == "Running" && c["status"] == "True" {
            c["status"] = json!("False");
            c["lastUpdateTime"] = json!(now);
            c["lastTransitionTime"] = json!(now);
        }
        out.push(c);
    }
    out.push(json!({"type": type_, "status": "True", "reason": reason, "message": message, "lastUpdateTime": now, "lastTransitionTime": now}));
    *arr = out;
}

/// Sets a `metav1.Condition` (Trainer / batch style) keeping lastTransitionTime when unchanged.
pub fn set_meta(conds: &mut Value, type_: &str, status: &str, reason: &str, message: &str, batch_style: bool) {
    if !conds.is_array() {
        *conds = json!([]);
    }
    let arr = conds.as_array_mut().expect("array");
    let now = now_rfc3339();
    let mut c = if batch_style {
        json!({"type": type_, "status": status, "reason": reason, "message": message, "lastProbeTime": now, "lastTransitionTime": now})
    } else {
        json!({"type": type_, "status": status, "reason": reason, "message": message, "lastTransitionTime": now})
    };
    match arr.iter().position(|x| x["type"] == type_) {
        Some(i) => {
            if arr[i]["status"] == status && arr[i]["reason"] == reason && arr[i]["message"] == message {
                return;
            }
            if arr[i]["status"] == status {
                c["lastTransitionTime"] = arr[i]["lastTransitionTime"].clone();
            }
            arr[i] = c;
        }
        None => arr.push(c),
    }
}
