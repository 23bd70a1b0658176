//! Job kinds, roles, versions, clean policies, names.

use serde_json::{Value, json};

use super::*;
use crate::interpreter::params::{CleanPolicy, SecretEnv, Toleration, Volume};

/// Every role of `d` at a count other than its default (1 for replica types
/// the operators allow only one of).
fn all_roles(d: &crate::frameworks::Descriptor) -> Vec<RoleParams> {
    d.job
        .roles
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let single = matches!(r.replica_type.as_str(), "Chief" | "Launcher")
                || (r.replica_type == "Master" && d.job.kind != "PaddleJob");
            let n = if single { 1 } else { 2 + i as u32 % 2 };
            let cpu = format!("{}", i + 1);
            RoleParams {
                role: r.magic.clone(),
                replicas: n,
                resources: resources(Some(&cpu), Some("1Gi"), Some(1)),
                line: i + 1,
            }
        })
        .collect()
}

/// A cell using every magic that reaches the job.
fn every_option(d: &crate::frameworks::Descriptor) -> JobParams {
    JobParams {
        roles: all_roles(d),
        resources: if d.is_roleless() { resources(Some("500m"), Some("2Gi"), Some(2)) } else { Resources::default() },
        nodes: if d.is_roleless() { Some(3) } else { None },
        clean_policy: Some(CleanPolicy::Running),
        env: vec![("EPOCHS".into(), "3".into()), ("MODE".into(), "fast run".into())],
        secret_env: vec![SecretEnv { var: "TOKEN".into(), secret: "hub".into(), key: "token".into() }],
        volumes: vec![
            Volume { claim: "data".into(), path: "/data".into() },
            Volume { claim: "data".into(), path: "/data2".into() },
            Volume { claim: "Models_Claim.v2".into(), path: "/models".into() },
        ],
        node_selector: vec![("kubernetes.io/arch".into(), "amd64".into())],
        tolerations: vec![
            Toleration { key: "gpu".into(), value: Some("a100".into()), effect: "NoSchedule".into() },
            Toleration { key: "spot".into(), value: None, effect: "NoExecute".into() },
        ],
        service_account: Some("trainer".into()),
        queue: Some("team-queue".into()),
        labels: vec![("team".into(), "vision".into())],
        annotations: vec![("example.com/owner".into(), "Ann Smith <ann@example.com>".into())],
        packages: vec!["numpy>=1.26".into(), "pandas".into()],
        pip_index_url: Some("http://pypi.local:8080/simple".into()),
        ..Default::default()
    }
}

#[test]
fn every_framework_and_api_version_renders_a_valid_job_with_every_option() {
    let patch = json!({"spec": {"securityContext": {"runAsNonRoot": true}}});
    let mut count = 0;
    for d in Frameworks::embedded().iter() {
        let p = plan(&d.name, every_option(d));
        for api_version in &d.job.api_versions {
            for code in [image(), configmap(&p)] {
                let input = RenderInput {
                    api_version,
                    pull_secret: Some("regcred"),
                    pod_template_patch: Some(&patch),
                    ..input(&p, &code)
                };
                let r = rendered(&input);
                assert_eq!(r.job["apiVersion"], api_version.as_str());
                assert_eq!(r.job["kind"], d.job.kind.as_str());
                assert_eq!(r.config_map.is_some(), matches!(code, CodeSource::ConfigMap { .. }));
                if d.job.shape != crate::frameworks::JobShape::TrainJob {
                    let got: Vec<(String, u64)> =
                        templates(&r.job).iter().map(|(t, _)| (t.clone(), replicas_of(&r.job, t))).collect();
                    let want: Vec<(String, u64)> =
                        p.replicas.iter().map(|r| (r.replica_type.clone(), r.replicas as u64)).collect();
                    assert_eq!(sorted(got), sorted(want), "{} {api_version}", d.name);
                }
                count += 1;
            }
        }
    }
    assert_eq!(count, 18, "8 frameworks, MPIJob in two versions, two code modes");
}

fn sorted(mut v: Vec<(String, u64)>) -> Vec<(String, u64)> {
    v.sort();
    v
}

fn replicas_of(job: &Value, replica_type: &str) -> u64 {
    let spec = job["spec"].as_object().unwrap();
    if replica_type.is_empty() {
        return spec.get("completions").map_or(1, |c| c.as_u64().unwrap());
    }
    let (_, specs) = spec.iter().find(|(k, _)| k.ends_with("ReplicaSpecs")).unwrap();
    specs[replica_type]["replicas"].as_u64().unwrap()
}

#[test]
fn a_tfjob_renders_exactly_like_this() {
    let params = JobParams {
        roles: vec![
            RoleParams { resources: resources(Some("1"), Some("2Gi"), None), ..role("ps", 1) },
            RoleParams { resources: resources(Some("2"), Some("4Gi"), Some(1)), ..role("worker", 2) },
        ],
        ..Default::default()
    };
    let p = plan("tensorflow", params);
    let code = image();
    let r = rendered(&input(&p, &code));
    let template = |role: &str, resources: Value| {
        json!({
            "metadata": {
                "labels": {
                    "app.kubernetes.io/managed-by": "ciao",
                    "ciao.kubeflow.org/session": SESSION,
                    "ciao.kubeflow.org/cell": "3f2a9c81",
                    "ciao.kubeflow.org/role": role,
                },
                "annotations": {"sidecar.istio.io/inject": "false"},
            },
            "spec": {
                "containers": [{
                    "name": "tensorflow",
                    "image": IMAGE,
                    "workingDir": "/app",
                    "ports": [{"name": "tfjob-port", "containerPort": 2222}],
                    "resources": resources,
                }],
            },
        })
    };
    let expected = json!({
        "apiVersion": "kubeflow.org/v1",
        "kind": "TFJob",
        "metadata": {
            "name": NAME,
            "namespace": "team-a",
            "labels": {
                "app.kubernetes.io/managed-by": "ciao",
                "ciao.kubeflow.org/session": SESSION,
                "ciao.kubeflow.org/cell": "3f2a9c81",
            },
            "annotations": {
                "ciao.kubeflow.org/cell-digest": CELL,
                "ciao.kubeflow.org/image": IMAGE,
                "ciao.kubeflow.org/image-digest": IMAGE_DIGEST,
            },
        },
        "spec": {
            "tfReplicaSpecs": {
                "PS": {
                    "replicas": 1,
                    "restartPolicy": "Never",
                    "template": template("ps", json!({
                        "requests": {"cpu": "1", "memory": "2Gi"},
                        "limits": {"cpu": "1", "memory": "2Gi"},
                    })),
                },
                "Worker": {
                    "replicas": 2,
                    "restartPolicy": "Never",
                    "template": template("worker", json!({
                        "requests": {"cpu": "2", "memory": "4Gi"},
                        "limits": {"cpu": "2", "memory": "4Gi", "nvidia.com/gpu": "1"},
                    })),
                },
            },
            "runPolicy": {"backoffLimit": 0},
        },
    });
    assert_eq!(r.job, expected, "{:#}", r.job);
    assert!(r.config_map.is_none() && r.warnings.is_empty());
}

#[test]
fn every_role_gets_its_count_container_ports_and_never_restarts() {
    /// A cell's role counts and what the job must show.
    struct Case {
        framework: &'static str,
        roles: &'static [(&'static str, u32)],
        container: &'static str,
        port: &'static str,
        want: &'static [(&'static str, u64)],
    }
    let cases = [
        Case {
            framework: "tensorflow",
            roles: &[("chief", 1), ("ps", 2), ("worker", 3), ("evaluator", 1)],
            container: "tensorflow",
            port: "tfjob-port",
            want: &[("Chief", 1), ("PS", 2), ("Worker", 3), ("Evaluator", 1)],
        },
        Case {
            framework: "pytorch",
            roles: &[("master", 1), ("worker", 3)],
            container: "pytorch",
            port: "pytorchjob-port",
            want: &[("Master", 1), ("Worker", 3)],
        },
        Case {
            framework: "xgboost",
            roles: &[("master", 1), ("worker", 2)],
            container: "xgboost",
            port: "xgboostjob-port",
            want: &[("Master", 1), ("Worker", 2)],
        },
        Case {
            framework: "paddle",
            roles: &[("master", 2), ("worker", 4)],
            container: "paddle",
            port: "master",
            want: &[("Master", 2), ("Worker", 4)],
        },
        Case {
            framework: "jax",
            roles: &[("worker", 4)],
            container: "jax",
            port: "jaxjob-port",
            want: &[("Worker", 4)],
        },
    ];
    for Case { framework, roles, container, port, want } in cases {
        let p = plan(
            framework,
            JobParams { roles: roles.iter().map(|(m, n)| role(m, *n)).collect(), ..Default::default() },
        );
        let code = image();
        let r = rendered(&input(&p, &code));
        let field = p.framework.job.replica_specs_field.clone().unwrap();
        let specs = r.job["spec"][&field].as_object().unwrap();
        let got: Vec<(&str, u64)> = specs.iter().map(|(k, v)| (k.as_str(), v["replicas"].as_u64().unwrap())).collect();
        assert_eq!(got, want, "{framework}");
        for (t, spec) in specs {
            assert_eq!(spec["restartPolicy"], "Never", "{framework} {t}");
            let c = main_container(&spec["template"]);
            assert_eq!(c["name"], container);
            assert_eq!(c["ports"][0]["name"], port);
            assert_eq!(c["image"], IMAGE);
        }
    }
}

#[test]
fn mpijob_v2beta1_has_one_slot_per_worker_and_a_launcher_that_waits_for_them() {
    let p = plan("mpi", JobParams { roles: vec![role("worker", 3)], ..Default::default() });
    let code = image();
    let r = rendered(&RenderInput { api_version: "kubeflow.org/v2beta1", ..input(&p, &code) });
    let spec = &r.job["spec"];
    assert_eq!(spec["slotsPerWorker"], 1);
    assert_eq!(spec["mpiImplementation"], "OpenMPI");
    assert_eq!(spec["launcherCreationPolicy"], "WaitForWorkersReady");
    let launcher = main_container(&spec["mpiReplicaSpecs"]["Launcher"]["template"]);
    let cmd = strings(&launcher["command"]);
    assert_eq!(cmd[0], "mpirun");
    assert!(cmd.windows(2).any(|w| w == ["-n", "3"]), "{cmd:?}");
    assert_eq!(
        strings(&main_container(&spec["mpiReplicaSpecs"]["Worker"]["template"])["command"]),
        ["/usr/sbin/sshd", "-De"]
    );
    assert_eq!(spec["mpiReplicaSpecs"]["Worker"]["replicas"], 3);

    let r1 = rendered(&RenderInput { api_version: "kubeflow.org/v1", ..input(&p, &code) });
    assert_eq!(r1.job["spec"]["mpiReplicaSpecs"], spec["mpiReplicaSpecs"], "the replicas look the same in v1");
    assert!(r1.job["spec"].get("launcherCreationPolicy").is_none());
}

#[test]
fn clean_policy_lands_where_each_operator_reads_it() {
    let kinds: Vec<_> = Frameworks::embedded()
        .iter()
        .filter(|d| d.job.shape == crate::frameworks::JobShape::ReplicaSpecs)
        .flat_map(|d| d.job.api_versions.iter().map(move |v| (d.name.clone(), v.clone())))
        .collect();
    assert_eq!(kinds.len(), 7);
    for (framework, api_version) in kinds {
        for (policy, value) in
            [(CleanPolicy::All, "All"), (CleanPolicy::Running, "Running"), (CleanPolicy::None, "None")]
        {
            let p = plan(&framework, JobParams { clean_policy: Some(policy), ..Default::default() });
            let code = image();
            let r = rendered(&RenderInput { api_version: &api_version, ..input(&p, &code) });
            let spec = &r.job["spec"];
            assert_eq!(spec["runPolicy"]["cleanPodPolicy"], value, "{framework} {api_version}");
            let deprecated_field = framework == "mpi" && api_version == "kubeflow.org/v1";
            assert_eq!(spec.get("cleanPodPolicy").is_some(), deprecated_field, "{framework} {api_version}");
            if deprecated_field {
                assert_eq!(spec["cleanPodPolicy"], value);
            }
        }
        let p = plan(&framework, JobParams::default());
        let code = image();
        let r = rendered(&RenderInput { api_version: &api_version, ..input(&p, &code) });
        assert_eq!(r.job["spec"]["runPolicy"], json!({"backoffLimit": 0}), "unset: the operator's default");
        assert!(r.job["spec"].get("cleanPodPolicy").is_none());
    }
}

#[test]
fn a_batch_job_runs_once_never_restarts_and_is_kept_after_it_ends() {
    let p = plan("python", JobParams { resources: resources(Some("1"), None, None), ..Default::default() });
    let code = image();
    let r = rendered(&input(&p, &code));
    let spec = &r.job["spec"];
    assert_eq!(r.job["kind"], "Job");
    assert_eq!(spec["backoffLimit"], 0);
    assert_eq!(spec["template"]["spec"]["restartPolicy"], "Never");
    assert!(spec.get("ttlSecondsAfterFinished").is_none() && spec.get("completions").is_none());
    assert_eq!(main_container(&spec["template"])["name"], "main");
    assert_eq!(main_container(&spec["template"])["resources"]["limits"], json!({"cpu": "1"}));

    let p = plan("python", JobParams { nodes: Some(3), ..Default::default() });
    let r = rendered(&input(&p, &code));
    assert_eq!(r.job["spec"]["completions"], 3);
    assert_eq!(r.job["spec"]["parallelism"], 3);
    assert_eq!(r.job["spec"]["completionMode"], "Indexed");
}

#[test]
fn a_trainjob_names_its_runtime_and_sets_nodes_resources_command_and_env() {
    let params = JobParams {
        nodes: Some(4),
        runtime: Some("torch-distributed-gpu".into()),
        resources: resources(Some("8"), Some("32Gi"), Some(2)),
        env: vec![("EPOCHS".into(), "3".into())],
        secret_env: vec![SecretEnv { var: "HF_TOKEN".into(), secret: "hf".into(), key: "token".into() }],
        ..Default::default()
    };
    let p = plan("trainjob", params);
    let code = image();
    let r = rendered(&input(&p, &code));
    let spec = &r.job["spec"];
    assert_eq!(
        spec["runtimeRef"],
        json!({"name": "torch-distributed-gpu", "apiGroup": "trainer.kubeflow.org", "kind": "ClusterTrainingRuntime"})
    );
    let trainer = &spec["trainer"];
    assert_eq!(trainer["image"], IMAGE);
    assert_eq!(trainer["numNodes"], 4);
    assert_eq!(
        strings(&trainer["command"]),
        ["python", "-u", "/app/main.py"],
        "the runtime's own command must not run"
    );
    assert_eq!(
        trainer["resourcesPerNode"],
        json!({"requests": {"cpu": "8", "memory": "32Gi"}, "limits": {"cpu": "8", "memory": "32Gi", "nvidia.com/gpu": "2"}})
    );
    assert_eq!(trainer["env"][0], json!({"name": "EPOCHS", "value": "3"}));
    assert_eq!(trainer["env"][1]["valueFrom"]["secretKeyRef"], json!({"name": "hf", "key": "token"}));
    assert_eq!(spec["labels"][LABEL_SESSION], SESSION);
    assert!(spec.get("podSpecOverrides").is_none(), "no pod options, no overrides");
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);

    let p = plan("trainjob", JobParams::default());
    let r = rendered(&input(&p, &code));
    assert_eq!(r.job["spec"]["runtimeRef"]["name"], "torch-distributed", "the descriptor's default runtime");
    assert!(r.job["spec"]["trainer"].get("numNodes").is_none(), "the runtime's node count");
}

#[test]
fn clean_policy_on_kinds_without_one_is_a_warning() {
    for framework in ["python", "trainjob"] {
        let p = plan(framework, JobParams { clean_policy: Some(CleanPolicy::All), ..Default::default() });
        let code = image();
        let r = rendered(&input(&p, &code));
        assert_eq!(r.warnings.len(), 1, "{framework}: {:?}", r.warnings);
        assert!(r.warnings[0].contains("%cleanPolicy=all does not apply"), "{}", r.warnings[0]);
    }
}

#[test]
fn an_api_version_the_descriptor_does_not_list_is_an_error() {
    let p = plan("tensorflow", JobParams::default());
    let code = image();
    let e = render(&RenderInput { api_version: "kubeflow.org/v2", ..input(&p, &code) }).unwrap_err();
    assert_eq!(e.to_string(), "TFJob has no API version \"kubeflow.org/v2\"; this framework knows kubeflow.org/v1");
}

#[test]
fn replica_types_the_operator_allows_once_reject_more() {
    for (framework, magic, api_version) in [
        ("mpi", "launcher", "kubeflow.org/v2beta1"),
        ("mpi", "launcher", "kubeflow.org/v1"),
        ("tensorflow", "chief", "kubeflow.org/v1"),
        ("pytorch", "master", "kubeflow.org/v1"),
        ("xgboost", "master", "kubeflow.org/v1"),
    ] {
        let p = plan(framework, JobParams { roles: vec![role(magic, 2), role("worker", 1)], ..Default::default() });
        let code = image();
        let e = render(&RenderInput { api_version, ..input(&p, &code) }).unwrap_err();
        assert!(matches!(e, RenderError::TooManyReplicas { replicas: 2, .. }), "{framework}: {e}");
        assert!(e.to_string().contains("at most one"), "{e}");
    }
}

#[test]
fn a_descriptor_added_from_a_directory_renders_without_code_changes() {
    let text = include_str!("../../../../base-images/tensorflow.yaml")
        .replace("name: tensorflow", "name: tf-custom")
        .replace("container: tensorflow", "container: trainer")
        .replace("containerPort: 2222", "containerPort: 3333")
        .replace("    - {magic: chief, replicaType: Chief, replicas: 0}\n", "");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tf-custom.yaml"), text).unwrap();
    let frameworks = Frameworks::with_dir(dir.path()).unwrap();
    let p = plan_in(
        &frameworks,
        "tf-custom",
        JobParams { roles: vec![role("ps", 1), role("worker", 2)], ..Default::default() },
    );
    let code = image();
    let r = rendered(&input(&p, &code));
    let worker = main_container(&r.job["spec"]["tfReplicaSpecs"]["Worker"]["template"]);
    assert_eq!(worker["name"], "trainer");
    assert_eq!(worker["ports"][0]["containerPort"], 3333);
}

#[test]
fn job_names_are_short_dns_labels_that_start_with_a_letter() {
    assert_eq!(job_name("mnist", CELL, 0), "mnist-3f2a9c81");
    assert_eq!(job_name("mnist", CELL, 2), "mnist-3f2a9c81-2");
    assert_eq!(job_name("My_Model v2!", CELL, 0), "my-model-v2-3f2a9c81");
    assert_eq!(job_name("3d-unet", CELL, 0), "ciao-3d-unet-3f2a9c81");
    assert_eq!(job_name("---", CELL, 0), "ciao-3f2a9c81");
    let long = "a-very-long-prefix-that-someone-wrote-for-their-experiment-name";
    for attempt in [0, 1, 9, 10, 1000, u32::MAX] {
        for prefix in [long, "x", "Über-Modell", "a.b.c", "ab-", &"z".repeat(200)] {
            let name = job_name(prefix, CELL, attempt);
            assert!(name.len() <= MAX_JOB_NAME, "{name}");
            assert!(name.starts_with(|c: char| c.is_ascii_lowercase()), "{name}");
            assert!(name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'), "{name}");
            assert!(!name.ends_with('-') && !name.contains("--"), "{name}");
            assert!(name.contains("3f2a9c81"), "{name}");
            assert_ne!(job_name(prefix, CELL, attempt), job_name(prefix, CELL, attempt.wrapping_add(1)));
            // The operators' longest pod and service names stay DNS labels.
            assert!(format!("{name}-evaluator-9999").len() <= 63, "{name}");
        }
    }
}

#[test]
fn kind_not_installed_message_names_the_kind_and_who_installs_it() {
    let tf = Frameworks::embedded().get("tensorflow").unwrap();
    let m = kind_not_installed_message(tf);
    assert!(m.starts_with("TFJob is not installed in this cluster (Kubeflow training-operator)"), "{m}");
    assert!(m.contains("does not serve tfjobs in kubeflow.org/v1;") && m.contains("%framework="), "{m}");
    let mpi = Frameworks::embedded().get("mpi").unwrap();
    let m = kind_not_installed_message(mpi);
    assert!(m.contains("MPIJob") && m.contains("mpi-operator or training-operator"), "{m}");
    assert!(m.contains("mpijobs in kubeflow.org/v2beta1 or kubeflow.org/v1;"), "{m}");
}

#[test]
fn plans_the_renderer_cannot_use_are_errors_not_panics() {
    let code = image();
    let mut p = plan("trainjob", JobParams::default());
    p.runtime = None;
    let e = render(&input(&p, &code)).unwrap_err();
    assert_eq!(e, RenderError::NoRuntime { kind: "TrainJob".into() });
    assert!(e.to_string().contains("%runtime=NAME"), "{e}");

    let mut p = plan("python", JobParams::default());
    p.replicas.clear();
    assert_eq!(render(&input(&p, &code)).unwrap_err(), RenderError::NoReplicas);

    let p = plan("python", JobParams { packages: vec!["numpy\0".into()], ..Default::default() });
    let code = configmap(&p);
    let e = render(&input(&p, &code)).unwrap_err().to_string();
    assert!(e.contains("NUL byte") && e.contains("numpy\\\\0"), "{e}");
}
