//! CustomResourceDefinitions: loading them from YAML, turning them into served kinds, and
//! the structural-schema treatment a real API server gives custom resources on write:
//! defaulting, pruning of unknown fields (reported as warnings, or rejected with
//! `fieldValidation=Strict`) and OpenAPI v3 validation with `details.causes`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::error::{ApiError, Cause};
use crate::resources::ResourceType;

/// Errors while reading CRD files.
#[derive(Debug, thiserror::Error)]
pub enum CrdError {
    /// A file could not be read.
    #[error("cannot read CRD file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    /// A file is not valid YAML.
    #[error("cannot parse CRD file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    /// A document is not a usable CRD.
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    /// A directory could not be listed.
    #[error("cannot list CRD directory {path}: {source}")]
    Dir { path: PathBuf, source: std::io::Error },
}

/// The schema of one served version, compiled for validation.
#[derive(Debug)]
pub struct CrdVersionSchema {
    /// The `openAPIV3Schema` as written in the CRD.
    pub openapi: Value,
    validator: Option<jsonschema::Validator>,
}

impl CrdVersionSchema {
    /// Compiles an `openAPIV3Schema`.
    pub fn new(openapi: Value) -> Self {
        let converted = to_json_schema(&openapi);
        let validator = jsonschema::draft4::options().should_validate_formats(false).build(&converted).ok();
        CrdVersionSchema { openapi, validator }
    }
}

/// Reads every CRD document found in `dir` (recursively; `.yaml`, `.yml`, `.json`).
/// Returned in a stable (path-sorted) order, so a later file wins on name clashes.
pub fn load_dir(dir: &Path) -> Result<Vec<(PathBuf, Value)>, CrdError> {
    let mut files = Vec::new();
    collect_files(dir, &mut files)?;
    files.sort();
    let mut out = Vec::new();
    for f in files {
        for doc in load_file(&f)? {
            out.push((f.clone(), doc));
        }
    }
    Ok(out)
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), CrdError> {
    let rd = std::fs::read_dir(dir).map_err(|source| CrdError::Dir { path: dir.to_path_buf(), source })?;
    for entry in rd {
        let entry = entry.map_err(|source| CrdError::Dir { path: dir.to_path_buf(), source })?;
        let p = entry.path();
        if p.is_dir() {
            collect_files(&p, out)?;
        } else if matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml" | "json")) {
            out.push(p);
        }
    }
    Ok(())
}

/// Parses the CRD documents of one file (other kinds are skipped).
pub fn load_file(path: &Path) -> Result<Vec<Value>, CrdError> {
    let text = std::fs::read_to_string(path).map_err(|source| CrdError::Read { path: path.to_path_buf(), source })?;
    parse_crds(&text).map_err(|message| CrdError::Parse { path: path.to_path_buf(), message })
}

/// Parses CRD documents from YAML or JSON text.
pub fn parse_crds(text: &str) -> Result<Vec<Value>, String> {
    let docs: Vec<Value> = if text.trim_start().starts_with('{') {
        vec![serde_json::from_str(text).map_err(|e| e.to_string())?]
    } else {
        serde_saphyr::from_multiple::<Value>(text).map_err(|e| e.to_string())?
    };
    Ok(docs.into_iter().filter(|d| d.get("kind").and_then(Value::as_str) == Some("CustomResourceDefinition")).collect())
}

/// Turns a CRD into the kinds it serves (one per served version).
pub fn resource_types(crd: &Value) -> Result<Vec<ResourceType>, String> {
    let name = crd.pointer("/metadata/name").and_then(Value::as_str).ok_or("CRD has no metadata.name")?;
    let spec = crd.get("spec").ok_or("CRD has no spec")?;
    let group = spec.get("group").and_then(Value::as_str).ok_or("CRD has no spec.group")?;
    let names = spec.get("names").ok_or("CRD has no spec.names")?;
    let plural = names.get("plural").and_then(Value::as_str).ok_or("CRD has no spec.names.plural")?;
    let kind = names.get("kind").and_then(Value::as_str).ok_or("CRD has no spec.names.kind")?;
    let singular = names.get("singular").and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| kind.to_lowercase());
    let strs = |v: Option<&Value>| -> Vec<String> {
        v.and_then(Value::as_array).map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect()).unwrap_or_default()
    };
    let namespaced = spec.get("scope").and_then(Value::as_str) != Some("Cluster");
    let versions = spec.get("versions").and_then(Value::as_array).ok_or("CRD has no spec.versions")?;
    let mut out = Vec::new();
    for v in versions {
        if v.get("served").and_then(Value::as_bool) == Some(false) {
            continue;
        }
        let vname = v.get("name").and_then(Value::as_str).ok_or("CRD version has no name")?;
        let schema = v.pointer("/schema/openAPIV3Schema").cloned().unwrap_or_else(|| json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}));
        out.push(ResourceType {
            group: group.into(),
            version: vname.into(),
            kind: kind.into(),
            plural: plural.into(),
            singular: singular.clone(),
            namespaced,
            short_names: strs(names.get("shortNames")),
            categories: strs(names.get("categories")),
            verbs: crate::resources::ALL_VERBS.iter().map(|s| s.to_string()).collect(),
            status_subresource: v.pointer("/subresources/status").is_some(),
            strategic_merge: false,
            crd_name: Some(name.to_string()),
            schema: Some(Arc::new(CrdVersionSchema::new(schema))),
            storage: v.get("storage").and_then(Value::as_bool).unwrap_or(false),
        });
    }
    if out.is_empty() {
        return Err(format!("CRD {name} serves no version"));
    }
    Ok(out)
}

/// Converts an OpenAPI v3 (Kubernetes structural) schema to a JSON Schema draft 4 document.
pub fn to_json_schema(s: &Value) -> Value {
    let Some(obj) = s.as_object() else { return s.clone() };
    let mut out = Map::new();
    for (k, v) in obj {
        match k.as_str() {
            "properties" | "patternProperties" | "definitions" => {
                let m: Map<String, Value> = v.as_object().map(|m| m.iter().map(|(k, v)| (k.clone(), to_json_schema(v))).collect()).unwrap_or_default();
                out.insert(k.clone(), Value::Object(m));
            }
            "items" | "additionalProperties" | "not" if v.is_object() => {
                out.insert(k.clone(), to_json_schema(v));
            }
            "allOf" | "anyOf" | "oneOf" => {
                // Kubernetes only allows value validations here; nested type-less subschemas
                let arr: Vec<Value> = v.as_array().map(|a| a.iter().map(to_json_schema).collect()).unwrap_or_default();
                out.insert(k.clone(), Value::Array(arr));
            }
            "nullable" | "x-kubernetes-int-or-string" | "x-kubernetes-preserve-unknown-fields" | "x-kubernetes-embedded-resource"
            | "x-kubernetes-list-type" | "x-kubernetes-list-map-keys" | "x-kubernetes-map-type" | "x-kubernetes-validations" | "default"
            | "description" | "example" | "externalDocs" | "format" | "title" => {}
            _ => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    if obj.get("x-kubernetes-int-or-string").and_then(Value::as_bool) == Some(true) {
        out.remove("type");
        let mut any = vec![json!({"type": "integer"}), json!({"type": "string"})];
        if obj.get("nullable").and_then(Value::as_bool) == Some(true) {
            any.push(json!({"type": "null"}));
        }
        out.insert("anyOf".into(), Value::Array(any));
    } else if obj.get("nullable").and_then(Value::as_bool) == Some(true) {
        if let Some(t) = out.get("type").and_then(Value::as_str).map(str::to_string) {
            out.insert("type".into(), json!([t, "null"]));
        }
        if let Some(Value::Array(e)) = out.get_mut("enum") {
            e.push(Value::Null);
        }
    }
    Value::Object(out)
}

/// Applies `default` values of the schema to absent fields, as the API server does.
pub fn apply_defaults(schema: &Value, v: &mut Value) {
    let Some(obj) = v.as_object_mut() else {
        if let (Some(items), Some(arr)) = (schema.get("items"), v.as_array_mut()) {
            for e in arr {
                apply_defaults(items, e);
            }
        }
        return;
    };
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (k, ps) in props {
            if !obj.contains_key(k)
                && let Some(d) = ps.get("default") {
                    obj.insert(k.clone(), d.clone());
                }
            if let Some(child) = obj.get_mut(k) {
                apply_defaults(ps, child);
            }
        }
    } else if let Some(ap) = schema.get("additionalProperties").filter(|a| a.is_object()) {
        for (_, child) in obj.iter_mut() {
            apply_defaults(ap, child);
        }
    }
}

/// Removes fields the schema does not declare; returns their dotted paths.
pub fn prune(schema: &Value, v: &mut Value, path: &str, root: bool, out: &mut Vec<String>) {
    if schema.get("x-kubernetes-preserve-unknown-fields").and_then(Value::as_bool) == Some(true) && schema.get("properties").is_none() {
        return;
    }
    match v {
        Value::Object(obj) => {
            let preserve = schema.get("x-kubernetes-preserve-unknown-fields").and_then(Value::as_bool) == Some(true);
            let embedded = schema.get("x-kubernetes-embedded-resource").and_then(Value::as_bool) == Some(true);
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                let keys: Vec<String> = obj.keys().cloned().collect();
                for k in keys {
                    let child_path = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                    if (root || embedded) && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                        if k == "metadata" && root {
                            prune_metadata(obj.get_mut("metadata").expect("key exists"), out);
                        }
                        continue;
                    }
                    match props.get(&k) {
                        Some(ps) => prune(ps, obj.get_mut(&k).expect("key exists"), &child_path, false, out),
                        None if preserve => {}
                        None => {
                            obj.remove(&k);
                            out.push(child_path);
                        }
                    }
                }
            } else if let Some(ap) = schema.get("additionalProperties").filter(|a| a.is_object()) {
                for (k, child) in obj.iter_mut() {
                    let child_path = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                    prune(ap, child, &child_path, false, out);
                }
            } else if !preserve && schema.get("type").and_then(Value::as_str) == Some("object") && schema.get("additionalProperties").is_none() {
                let keys: Vec<String> = obj.keys().cloned().collect();
                for k in keys {
                    if (root || embedded) && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                        continue;
                    }
                    obj.remove(&k);
                    out.push(if path.is_empty() { k } else { format!("{path}.{k}") });
                }
            }
        }
        Value::Array(arr) => {
            if let Some(items) = schema.get("items") {
                for (i, e) in arr.iter_mut().enumerate() {
                    prune(items, e, &format!("{path}[{i}]"), false, out);
                }
            }
        }
        _ => {}
    }
}

const META_FIELDS: &[&str] = &[
    "name", "generateName", "namespace", "selfLink", "uid", "resourceVersion", "generation", "creationTimestamp", "deletionTimestamp",
    "deletionGracePeriodSeconds", "labels", "annotations", "ownerReferences", "finalizers", "managedFields",
];

fn prune_metadata(meta: &mut Value, out: &mut Vec<String>) {
    if let Some(obj) = meta.as_object_mut() {
        let keys: Vec<String> = obj.keys().cloned().collect();
        for k in keys {
            if !META_FIELDS.contains(&k.as_str()) {
                obj.remove(&k);
                out.push(format!("metadata.{k}"));
            }
        }
    }
}

/// Validates a custom resource against the compiled schema; returns the causes.
pub fn validate(schema: &CrdVersionSchema, obj: &Value) -> Vec<Cause> {
    let Some(validator) = &schema.validator else { return Vec::new() };
    let mut causes = Vec::new();
    for err in validator.iter_errors(obj) {
        let ptr = err.instance_path().to_string();
        let field = pointer_to_field(&ptr);
        let instance = err.instance().clone().into_owned();
        let cause = match err.kind() {
            jsonschema::error::ValidationErrorKind::Required { property } => {
                let p = property.as_str().unwrap_or_default();
                let f = if field.is_empty() { p.to_string() } else { format!("{field}.{p}") };
                Cause { reason: "FieldValueRequired".into(), message: "Required value".into(), field: f }
            }
            jsonschema::error::ValidationErrorKind::Type { kind } => {
                let expected = match kind {
                    jsonschema::error::TypeKind::Single(t) => t.to_string(),
                    jsonschema::error::TypeKind::Multiple(ts) => ts.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(","),
                };
                let got = json_type(&instance);
                Cause {
                    reason: "FieldValueTypeInvalid".into(),
                    message: format!("Invalid value: \"{got}\": {field} in body must be of type {expected}: \"{got}\""),
                    field: field.clone(),
                }
            }
            jsonschema::error::ValidationErrorKind::AnyOf { .. } if is_int_or_string_failure(&instance) => Cause {
                reason: "FieldValueTypeInvalid".into(),
                message: format!("Invalid value: \"{}\": {field} in body must be of type integer,string: \"{}\"", json_type(&instance), json_type(&instance)),
                field: field.clone(),
            },
            jsonschema::error::ValidationErrorKind::Enum { options } => {
                let opts: Vec<String> = options.as_array().map(|a| a.iter().map(|o| o.to_string()).collect()).unwrap_or_default();
                Cause {
                    reason: "FieldValueNotSupported".into(),
                    message: format!("Unsupported value: {}: supported values: {}", instance, opts.join(", ")),
                    field: field.clone(),
                }
            }
            jsonschema::error::ValidationErrorKind::Minimum { limit } => Cause {
                reason: "FieldValueInvalid".into(),
                message: format!("Invalid value: {instance}: {field} in body should be greater than or equal to {limit}"),
                field: field.clone(),
            },
            jsonschema::error::ValidationErrorKind::Maximum { limit } => Cause {
                reason: "FieldValueInvalid".into(),
                message: format!("Invalid value: {instance}: {field} in body should be less than or equal to {limit}"),
                field: field.clone(),
            },
            jsonschema::error::ValidationErrorKind::MinLength { limit } => Cause {
                reason: "FieldValueInvalid".into(),
                message: format!("Invalid value: {instance}: {field} in body should be at least {limit} chars long"),
                field: field.clone(),
            },
            jsonschema::error::ValidationErrorKind::MaxLength { limit } => Cause {
                reason: "FieldValueTooLong".into(),
                message: format!("Too long: may not be more than {limit} bytes"),
                field: field.clone(),
            },
            jsonschema::error::ValidationErrorKind::MinItems { limit } => Cause {
                reason: "FieldValueInvalid".into(),
                message: format!("Invalid value: {}: {field} in body should have at least {limit} items", instance.as_array().map_or(0, Vec::len)),
                field: field.clone(),
            },
            jsonschema::error::ValidationErrorKind::MaxItems { limit } => Cause {
                reason: "FieldValueTooMany".into(),
                message: format!("Too many: {}: must have at most {limit} items", instance.as_array().map_or(0, Vec::len)),
                field: field.clone(),
            },
            jsonschema::error::ValidationErrorKind::Pattern { pattern } => Cause {
                reason: "FieldValueInvalid".into(),
                message: format!("Invalid value: {instance}: {field} in body should match '{pattern}'"),
                field: field.clone(),
            },
            _ => Cause { reason: "FieldValueInvalid".into(), message: format!("Invalid value: {instance}: {err}"), field: field.clone() },
        };
        if !causes.contains(&cause) {
            causes.push(cause);
        }
    }
    causes
}

fn is_int_or_string_failure(v: &Value) -> bool {
    !v.is_i64() && !v.is_u64() && !v.is_string()
}

/// JSON type name as the API server prints it.
pub fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// `/spec/containers/0/name` → `spec.containers[0].name`.
pub fn pointer_to_field(ptr: &str) -> String {
    let mut out = String::new();
    for seg in ptr.split('/').skip(1) {
        let seg = seg.replace("~1", "/").replace("~0", "~");
        if seg.parse::<usize>().is_ok() && !out.is_empty() {
            out.push_str(&format!("[{seg}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&seg);
        }
    }
    out
}

/// The full write-path treatment of a custom resource: defaulting, pruning (warnings or a
/// strict-mode error) and validation. Returns the warnings to send back.
pub fn admit(rt: &ResourceType, obj: &mut Value, strict: bool) -> Result<Vec<String>, ApiError> {
    let Some(schema) = &rt.schema else { return Ok(Vec::new()) };
    let mut unknown = Vec::new();
    prune(&schema.openapi, obj, "", true, &mut unknown);
    if strict && !unknown.is_empty() {
        let list: Vec<String> = unknown.iter().map(|f| format!("unknown field \"{f}\"")).collect();
        return Err(ApiError::bad_request(format!("strict decoding error: {}", list.join(", "))));
    }
    apply_defaults(&schema.openapi, obj);
    let causes = validate(schema, obj);
    if !causes.is_empty() {
        let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string();
        return Err(ApiError::invalid(&rt.group, &rt.kind, &name, causes));
    }
    Ok(unknown.into_iter().map(|f| format!("unknown field \"{f}\"")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointer_becomes_dotted_field_path() {
        assert_eq!(pointer_to_field("/spec/containers/0/name"), "spec.containers[0].name");
        assert_eq!(pointer_to_field(""), "");
    }

    #[test]
    fn int_or_string_accepts_both() {
        let s = CrdVersionSchema::new(json!({"type": "object", "properties": {"p": {"x-kubernetes-int-or-string": true}}}));
        assert!(validate(&s, &json!({"p": 1})).is_empty());
        assert!(validate(&s, &json!({"p": "1"})).is_empty());
        assert_eq!(validate(&s, &json!({"p": true})).len(), 1);
    }

    #[test]
    fn pruning_reports_unknown_fields_and_keeps_preserved_ones() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {"a": {"type": "integer"}, "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}}});
        let mut v = json!({"apiVersion": "x/v1", "kind": "K", "metadata": {"name": "n"}, "spec": {"a": 1, "b": 2, "free": {"z": 1}}});
        let mut out = Vec::new();
        prune(&schema, &mut v, "", true, &mut out);
        assert_eq!(out, vec!["spec.b".to_string()]);
        assert_eq!(v["spec"], json!({"a": 1, "free": {"z": 1}}));
    }
}
