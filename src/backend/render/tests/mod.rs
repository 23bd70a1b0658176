//! Behaviour of the renderer. Every object rendered here is checked by
//! [`schema::assert_valid`] against the real CRD schemas (made strict) or the
//! `k8s_openapi` types.

mod kinds;
mod options;
mod schema;

use std::collections::BTreeMap;

use serde_json::Value;

use super::*;
use crate::config::Config;
use crate::frameworks::Frameworks;
use crate::interpreter::params::{JobParams, Quantity, Resources, RoleParams};
use crate::plan::Plan;

pub(super) const CELL: &str = "sha256:3f2a9c81d0e4b5a6978877665544332211000ffeeddccbbaa9988776655443f";
pub(super) const SESSION: &str = "6f1c2b1e-3d4a-4b5c-9d8e-7f6a5b4c3d2e";
pub(super) const IMAGE: &str =
    "registry.local:5000/team/cell@sha256:0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9";
pub(super) const IMAGE_DIGEST: &str = "sha256:0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9";
pub(super) const NAME: &str = "cell-3f2a9c81";

pub(super) fn config() -> Config {
    Config::from_yaml("registry: registry.local:5000/team\n", None, &BTreeMap::new()).unwrap()
}

/// The plan of a cell with `%framework=<framework>` and `params`.
pub(super) fn plan(framework: &str, params: JobParams) -> Plan {
    plan_in(Frameworks::embedded(), framework, params)
}

pub(super) fn plan_in(frameworks: &Frameworks, framework: &str, params: JobParams) -> Plan {
    let params = JobParams { framework: Some(framework.into()), ..params };
    Plan::resolve_with(&params, &config(), frameworks, true).unwrap_or_else(|e| panic!("{e}"))
}

/// `%<magic>=<replicas>` with no resources.
pub(super) fn role(magic: &str, replicas: u32) -> RoleParams {
    RoleParams { role: magic.into(), replicas, resources: Resources::default(), line: 1 }
}

pub(super) fn resources(cpu: Option<&str>, memory: Option<&str>, gpu: Option<u32>) -> Resources {
    Resources { cpu: cpu.map(|c| Quantity(c.into())), memory: memory.map(|m| Quantity(m.into())), gpu }
}

pub(super) fn image() -> CodeSource {
    CodeSource::Image { reference: IMAGE.into(), digest: Some(IMAGE_DIGEST.into()) }
}

/// The code as a ConfigMap: `main.py` at the descriptor's code path.
pub(super) fn configmap(plan: &Plan) -> CodeSource {
    CodeSource::ConfigMap {
        base_image: plan.base_image.clone(),
        files: vec![CodeFile {
            key: "main.py".into(),
            path: plan.framework.code.clone(),
            content: b"print('hi')\n".to_vec(),
        }],
    }
}

/// An input with the defaults a kernel uses (first API version, Istio off).
pub(super) fn input<'a>(plan: &'a Plan, code: &'a CodeSource) -> RenderInput<'a> {
    RenderInput {
        plan,
        api_version: &plan.framework.job.api_versions[0],
        name: NAME,
        namespace: "team-a",
        code,
        session: SESSION,
        cell_digest: CELL,
        pull_secret: None,
        pod_template_patch: None,
        disable_istio_sidecar: true,
    }
}

/// Renders and validates every object.
pub(super) fn rendered(input: &RenderInput<'_>) -> Rendered {
    let r = render(input).unwrap_or_else(|e| panic!("{e}"));
    schema::assert_valid(&r.job);
    if let Some(cm) = &r.config_map {
        schema::assert_valid(cm);
    }
    r
}

/// `(replica type, pod template)` of every replica; `""` for a batch Job.
pub(super) fn templates(job: &Value) -> Vec<(String, &Value)> {
    let spec = job["spec"].as_object().expect("a spec");
    if let Some(t) = spec.get("template") {
        return vec![(String::new(), t)];
    }
    let (_, specs) = spec.iter().find(|(k, _)| k.ends_with("ReplicaSpecs")).expect("replica specs");
    specs.as_object().unwrap().iter().map(|(k, v)| (k.clone(), &v["template"])).collect()
}

/// The main container of a pod template.
pub(super) fn main_container(template: &Value) -> &Value {
    &template["spec"]["containers"][0]
}

pub(super) fn strings(v: &Value) -> Vec<&str> {
    v.as_array().unwrap_or_else(|| panic!("{v} is not an array")).iter().map(|s| s.as_str().unwrap()).collect()
}
