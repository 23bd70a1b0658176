//! Pod-level options: command, env, resources, magics, labels, patch, ConfigMap.

use serde_json::{Value, json};

use super::*;
use crate::interpreter::params::{SecretEnv, Toleration, Volume};

fn tf(params: JobParams) -> Plan {
    let roles = vec![role("ps", 1), role("worker", 2)];
    plan("tensorflow", JobParams { roles, ..params })
}

#[test]
fn resources_are_requests_and_limits_and_gpus_are_limits_per_role() {
    let params = JobParams {
        roles: vec![
            RoleParams { resources: resources(Some("500m"), None, None), ..role("ps", 1) },
            RoleParams { resources: resources(None, Some("3Gi"), Some(4)), ..role("worker", 2) },
            role("chief", 1),
        ],
        ..Default::default()
    };
    let p = plan("tensorflow", params);
    let code = image();
    let r = rendered(&input(&p, &code));
    let specs = &r.job["spec"]["tfReplicaSpecs"];
    assert_eq!(
        main_container(&specs["PS"]["template"])["resources"],
        json!({"requests": {"cpu": "500m"}, "limits": {"cpu": "500m"}})
    );
    assert_eq!(
        main_container(&specs["Worker"]["template"])["resources"],
        json!({"requests": {"memory": "3Gi"}, "limits": {"memory": "3Gi", "nvidia.com/gpu": "4"}})
    );
    assert!(main_container(&specs["Chief"]["template"]).get("resources").is_none(), "nothing set: cluster defaults");

    let p = plan("python", JobParams { resources: resources(None, None, Some(1)), ..Default::default() });
    let r = rendered(&input(&p, &code));
    assert_eq!(main_container(&r.job["spec"]["template"])["resources"], json!({"limits": {"nvidia.com/gpu": "1"}}));
}

#[test]
fn image_mode_leaves_the_command_to_the_image_unless_the_role_brings_one() {
    let p = tf(JobParams::default());
    let code = image();
    let r = rendered(&input(&p, &code));
    for (t, template) in templates(&r.job) {
        let c = main_container(template);
        assert!(c.get("command").is_none(), "{t}: the image's Cmd applies");
        assert_eq!(c["workingDir"], "/app");
    }
    let code = configmap(&p);
    let r = rendered(&input(&p, &code));
    for (t, template) in templates(&r.job) {
        assert_eq!(strings(&main_container(template)["command"]), ["python", "-u", "/app/main.py"], "{t}");
    }
}

#[test]
fn packages_wrap_the_command_in_a_pip_install_with_quoted_specs() {
    let params = JobParams {
        packages: vec!["numpy>=1.26".into(), "pandas".into()],
        pip_index_url: Some("http://pypi.local:8080/simple".into()),
        ..Default::default()
    };
    let p = plan("python", params);
    let code = configmap(&p);
    let r = rendered(&input(&p, &code));
    let cmd = strings(&main_container(&r.job["spec"]["template"])["command"]);
    assert_eq!(
        cmd,
        [
            "sh",
            "-c",
            "pip install --quiet --no-cache-dir --disable-pip-version-check --index-url http://pypi.local:8080/simple \
         --trusted-host pypi.local 'numpy>=1.26' pandas && exec \"$@\"",
            "ciao",
            "python",
            "-u",
            "/app/main.py",
        ]
    );

    // Image mode: the image's Cmd installs the packages, except where a role
    // brings its own command (MPI), which gets the same wrapper.
    let p = plan("mpi", JobParams { packages: vec!["horovod".into()], ..Default::default() });
    let code = image();
    let r = rendered(&input(&p, &code));
    for (t, template) in templates(&r.job) {
        let cmd = strings(&main_container(template)["command"]);
        assert_eq!(&cmd[..2], ["sh", "-c"], "{t}");
        assert!(cmd[2].contains("pip install") && cmd[2].ends_with("horovod && exec \"$@\""), "{t}: {}", cmd[2]);
    }
}

/// Runs the wrapper with a stand-in `pip` that records its arguments.
#[test]
fn the_pip_wrapper_installs_first_then_runs_the_command_with_its_arguments_intact() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("pip.args");
    let pip = dir.path().join("pip");
    std::fs::write(&pip, format!("#!/bin/sh\nprintf '%s\\n' \"$@\" > '{}'\nexit ${{PIP_EXIT:-0}}\n", log.display()))
        .unwrap();
    std::fs::set_permissions(&pip, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();

    let p = plan("python", JobParams { packages: vec!["numpy>=1.26".into(), "a b".into()], ..Default::default() });
    let code = configmap(&p);
    let r = rendered(&input(&p, &code));
    let cmd = strings(&main_container(&r.job["spec"]["template"])["command"]);
    let n = cmd.iter().position(|a| *a == "ciao").unwrap() + 1;
    let run = |exit: &str| {
        let mut args: Vec<&str> = cmd[1..n].to_vec();
        args.extend(["printf", "<%s>", "two words", "it's", "$HOME"]);
        std::process::Command::new(cmd[0])
            .args(&args)
            .env("PATH", format!("{}:/usr/bin:/bin", dir.path().display()))
            .env("PIP_EXIT", exit)
            .output()
            .unwrap()
    };
    let out = run("0");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "<two words><it's><$HOME>");
    let pip_args = std::fs::read_to_string(&log).unwrap();
    assert_eq!(pip_args.lines().rev().take(2).collect::<Vec<_>>(), ["a b", "numpy>=1.26"]);
    let out = run("1");
    assert!(!out.status.success() && out.stdout.is_empty(), "a failed install stops the job: {out:?}");
}

#[test]
fn env_keeps_the_cell_order_and_secret_env_uses_secret_key_refs() {
    let params = JobParams {
        env: vec![("B".into(), "2".into()), ("A".into(), "1".into()), ("PYTHONUNBUFFERED".into(), "0".into())],
        secret_env: vec![SecretEnv { var: "TOKEN".into(), secret: "hub".into(), key: "token".into() }],
        ..Default::default()
    };
    let p = tf(params);
    let code = image();
    let r = rendered(&input(&p, &code));
    let expected = json!([
        {"name": "B", "value": "2"},
        {"name": "A", "value": "1"},
        {"name": "PYTHONUNBUFFERED", "value": "0"},
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "hub", "key": "token"}}},
    ]);
    for (t, template) in templates(&r.job) {
        assert_eq!(main_container(template)["env"], expected, "{t}: image mode has the descriptor's env in the image");
    }
    // ConfigMap mode: the base image lacks the descriptor's env; the cell's value wins.
    let code = configmap(&p);
    let r = rendered(&input(&p, &code));
    for (t, template) in templates(&r.job) {
        assert_eq!(main_container(template)["env"], expected, "{t}");
    }
    let p = tf(JobParams::default());
    let r = rendered(&input(&p, &code));
    assert_eq!(main_container(templates(&r.job)[0].1)["env"], json!([{"name": "PYTHONUNBUFFERED", "value": "1"}]));
}

#[test]
fn the_pull_secret_and_pod_spec_magics_reach_every_replica() {
    let params = JobParams {
        volumes: vec![
            Volume { claim: "data".into(), path: "/data".into() },
            Volume { claim: "data".into(), path: "/data-copy".into() },
        ],
        node_selector: vec![("pool".into(), "gpu".into()), ("zone".into(), "a".into())],
        tolerations: vec![
            Toleration { key: "gpu".into(), value: Some("a100".into()), effect: "NoSchedule".into() },
            Toleration { key: "spot".into(), value: None, effect: "NoExecute".into() },
        ],
        service_account: Some("trainer".into()),
        ..Default::default()
    };
    let p = tf(params);
    let code = image();
    let r = rendered(&RenderInput { pull_secret: Some("regcred"), ..input(&p, &code) });
    assert_eq!(templates(&r.job).len(), 2);
    for (t, template) in templates(&r.job) {
        let spec = &template["spec"];
        assert_eq!(spec["imagePullSecrets"], json!([{"name": "regcred"}]), "{t}");
        assert_eq!(
            spec["volumes"],
            json!([
                {"name": "data-0", "persistentVolumeClaim": {"claimName": "data"}},
                {"name": "data-1", "persistentVolumeClaim": {"claimName": "data"}},
            ])
        );
        assert_eq!(
            main_container(template)["volumeMounts"],
            json!([{"name": "data-0", "mountPath": "/data"}, {"name": "data-1", "mountPath": "/data-copy"}])
        );
        assert_eq!(spec["nodeSelector"], json!({"pool": "gpu", "zone": "a"}));
        assert_eq!(
            spec["tolerations"],
            json!([
                {"key": "gpu", "operator": "Equal", "value": "a100", "effect": "NoSchedule"},
                {"key": "spot", "operator": "Exists", "effect": "NoExecute"},
            ])
        );
        assert_eq!(spec["serviceAccountName"], "trainer");
    }
    let r = rendered(&input(&p, &code));
    assert!(templates(&r.job).iter().all(|(_, t)| t["spec"].get("imagePullSecrets").is_none()));
}

#[test]
fn labels_and_annotations_find_jobs_and_pods_again_and_the_queue_label_is_on_the_job() {
    let params = JobParams {
        labels: vec![("team".into(), "vision".into()), ("example.com/tier".into(), "".into())],
        annotations: vec![("example.com/note".into(), "any text: even spaces".into())],
        queue: Some("team-queue".into()),
        ..Default::default()
    };
    let p = tf(params);
    let code = image();
    let r = rendered(&input(&p, &code));
    let meta = &r.job["metadata"];
    assert_eq!(
        meta["labels"],
        json!({
            "team": "vision",
            "example.com/tier": "",
            "app.kubernetes.io/managed-by": "ciao",
            "ciao.kubeflow.org/session": SESSION,
            "ciao.kubeflow.org/cell": "3f2a9c81",
            "kueue.x-k8s.io/queue-name": "team-queue",
        })
    );
    assert_eq!(meta["annotations"]["example.com/note"], "any text: even spaces");
    assert_eq!(meta["annotations"][ANNOTATION_CELL_DIGEST], CELL);
    assert_eq!(meta["annotations"][ANNOTATION_IMAGE], IMAGE);
    assert_eq!(meta["annotations"][ANNOTATION_IMAGE_DIGEST], IMAGE_DIGEST);
    for (t, template) in templates(&r.job) {
        let labels = &template["metadata"]["labels"];
        assert_eq!(labels["team"], "vision");
        assert_eq!(labels[LABEL_MANAGED_BY], MANAGED_BY);
        assert_eq!(labels[LABEL_SESSION], SESSION);
        assert_eq!(labels[LABEL_CELL], "3f2a9c81");
        assert_eq!(labels[LABEL_ROLE], t.to_lowercase());
        assert!(labels.get(LABEL_QUEUE).is_none(), "Kueue admits the job, not its pods");
        assert_eq!(template["metadata"]["annotations"]["example.com/note"], "any text: even spaces");
    }
    assert_eq!(
        session_selector(SESSION),
        format!("app.kubernetes.io/managed-by=ciao,ciao.kubeflow.org/session={SESSION}")
    );
}

#[test]
fn reserved_and_malformed_labels_are_rejected_with_the_key() {
    let code = image();
    let bad: &[(&str, &str, &str)] = &[
        ("ciao.kubeflow.org/cell", "x", "ciao sets this key"),
        ("app.kubernetes.io/managed-by", "me", "ciao sets this key"),
        ("kueue.x-k8s.io/queue-name", "q", "%queue=NAME"),
        ("team", "has space", "the value"),
        ("Bad_Prefix/x", "v", "DNS subdomain"),
        ("-lead", "v", "the name part"),
        ("team", &"v".repeat(64), "1 to 63"),
    ];
    for (k, v, why) in bad {
        let p = tf(JobParams { labels: vec![(k.to_string(), v.to_string())], ..Default::default() });
        let e = render(&input(&p, &code)).unwrap_err().to_string();
        assert!(e.contains(&format!("{k:?}")) && e.contains(why), "{k}={v}: {e}");
    }
    let p = tf(JobParams { annotations: vec![("ciao.kubeflow.org/image".into(), "x".into())], ..Default::default() });
    assert!(render(&input(&p, &code)).unwrap_err().to_string().contains("ciao sets this key"));
    let p = tf(JobParams::default());
    let e = render(&RenderInput { session: "not a label value", ..input(&p, &code) }).unwrap_err().to_string();
    assert!(e.contains(LABEL_SESSION), "{e}");
}

#[test]
fn istio_injection_is_turned_off_by_default_but_can_be_left_alone() {
    let p = tf(JobParams::default());
    let code = image();
    let r = rendered(&input(&p, &code));
    for (_, t) in templates(&r.job) {
        assert_eq!(t["metadata"]["annotations"], json!({"sidecar.istio.io/inject": "false"}));
    }
    let r = rendered(&RenderInput { disable_istio_sidecar: false, ..input(&p, &code) });
    for (_, t) in templates(&r.job) {
        assert!(t["metadata"].get("annotations").is_none(), "{t}");
    }
    let p = tf(JobParams { annotations: vec![(ANNOTATION_ISTIO_INJECT.into(), "true".into())], ..Default::default() });
    let r = rendered(&input(&p, &code));
    for (_, t) in templates(&r.job) {
        assert_eq!(t["metadata"]["annotations"][ANNOTATION_ISTIO_INJECT], "true", "the cell beats the default");
    }
}

#[test]
fn the_pod_template_patch_is_merged_into_every_replica_last() {
    let patch = json!({
        "metadata": {"labels": {"access-ml-pipeline": "true"}, "annotations": {"sidecar.istio.io/inject": null}},
        "spec": {
            "securityContext": {"runAsNonRoot": true, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
            "priorityClassName": "batch",
        },
    });
    for framework in ["tensorflow", "mpi", "python"] {
        let p = plan(framework, JobParams::default());
        let code = image();
        let r = rendered(&RenderInput { pod_template_patch: Some(&patch), ..input(&p, &code) });
        let all = templates(&r.job);
        assert_eq!(all.len(), p.replicas.len());
        for (t, template) in all {
            assert_eq!(template["spec"]["securityContext"]["runAsUser"], 1000, "{framework} {t}");
            assert_eq!(template["spec"]["priorityClassName"], "batch");
            assert_eq!(template["metadata"]["labels"]["access-ml-pipeline"], "true");
            assert_eq!(template["metadata"]["labels"][LABEL_SESSION], SESSION, "merged, not replaced");
            assert_eq!(template["metadata"]["annotations"], json!({}), "null removes a key (RFC 7386)");
            assert_eq!(main_container(template)["image"], IMAGE, "the containers stay");
        }
    }
    let p = tf(JobParams::default());
    let code = image();
    let not_object = json!(["spec"]);
    let e = render(&RenderInput { pod_template_patch: Some(&not_object), ..input(&p, &code) }).unwrap_err();
    assert!(e.to_string().contains("must be a mapping"), "{e}");
}

#[test]
fn configmap_mode_mounts_each_file_with_subpath_over_the_base_image() {
    let p = plan("pytorch", JobParams { roles: vec![role("master", 1), role("worker", 2)], ..Default::default() });
    let code = CodeSource::ConfigMap {
        base_image: "docker.io/pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime".into(),
        files: vec![
            CodeFile { key: "main.py".into(), path: "/app/main.py".into(), content: b"import helper\n".to_vec() },
            CodeFile { key: "helper.py".into(), path: "/app/helper.py".into(), content: b"X = 1\n".to_vec() },
            CodeFile { key: "weights.bin".into(), path: "/app/weights.bin".into(), content: vec![0, 159, 146, 150] },
        ],
    };
    let r = rendered(&input(&p, &code));
    let cm = r.config_map.as_ref().unwrap();
    assert_eq!(cm["metadata"]["name"], NAME, "named after the job");
    assert_eq!(cm["metadata"]["namespace"], "team-a");
    assert_eq!(cm["metadata"]["labels"][LABEL_SESSION], SESSION);
    assert_eq!(cm["immutable"], true);
    assert_eq!(cm["data"], json!({"main.py": "import helper\n", "helper.py": "X = 1\n"}));
    assert_eq!(cm["binaryData"], json!({"weights.bin": "AJ+Slg=="}));
    for (t, template) in templates(&r.job) {
        let c = main_container(template);
        assert_eq!(c["image"], "docker.io/pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime", "{t}");
        assert_eq!(strings(&c["command"]), ["python", "-u", "/app/main.py"], "{t}: the code path");
        assert_eq!(template["spec"]["volumes"], json!([{"name": "ciao-code", "configMap": {"name": NAME}}]));
        assert_eq!(
            c["volumeMounts"][0],
            json!({"name": "ciao-code", "mountPath": "/app/main.py", "subPath": "main.py", "readOnly": true})
        );
        assert_eq!(c["volumeMounts"].as_array().unwrap().len(), 3);
    }
    assert_eq!(
        r.job["metadata"]["annotations"][ANNOTATION_IMAGE],
        "docker.io/pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime"
    );
    assert!(r.job["metadata"]["annotations"].get(ANNOTATION_IMAGE_DIGEST).is_none());
}

#[test]
fn configmap_keys_paths_and_size_are_checked() {
    let p = plan("python", JobParams::default());
    let file =
        |key: &str, path: &str, size: usize| CodeFile { key: key.into(), path: path.into(), content: vec![b'x'; size] };
    let cases: Vec<(Vec<CodeFile>, &str)> = vec![
        (vec![file("lib/x.py", "/app/x.py", 1)], "letters, digits"),
        (vec![file("", "/app/x.py", 1)], "1 to 253"),
        (vec![file("..", "/app/x.py", 1)], "'.' or '..'"),
        (vec![file("x.py", "app/x.py", 1)], "absolute"),
        (vec![file("x.py", "/app/x.py", 1), file("x.py", "/app/y.py", 1)], "used twice"),
        (vec![file("x.py", "/app/x.py", 1), file("y.py", "/app/x.py", 1)], "used twice"),
        (vec![file("a.py", "/app/a.py", MAX_CONFIG_MAP_BYTES), file("b.py", "/app/b.py", 1)], "%provider=image"),
    ];
    for (files, why) in cases {
        let code = CodeSource::ConfigMap { base_image: "python:3.11-slim".into(), files };
        let e = render(&input(&p, &code)).unwrap_err().to_string();
        assert!(e.contains(why), "{why}: {e}");
    }
    let code = CodeSource::ConfigMap {
        base_image: "python:3.11-slim".into(),
        files: vec![file("a.py", "/app/a.py", MAX_CONFIG_MAP_BYTES)],
    };
    rendered(&input(&p, &code));
}

#[test]
fn the_owner_reference_comes_from_the_created_job() {
    let p = tf(JobParams::default());
    let code = configmap(&p);
    let mut job = rendered(&input(&p, &code)).job;
    assert_eq!(owner_reference(&job).unwrap_err(), RenderError::NotCreated { field: "metadata.uid" });
    job["metadata"]["uid"] = json!("0b6e6a7c-1111-2222-3333-444455556666");
    assert_eq!(
        owner_reference(&job).unwrap(),
        json!({
            "apiVersion": "kubeflow.org/v1",
            "kind": "TFJob",
            "name": NAME,
            "uid": "0b6e6a7c-1111-2222-3333-444455556666",
            "controller": true,
            "blockOwnerDeletion": true,
        })
    );
    let reference: k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference =
        serde_json::from_value(owner_reference(&job).unwrap()).unwrap();
    assert_eq!(reference.controller, Some(true));
}

#[test]
fn a_trainjob_puts_pod_options_into_overrides_and_warns_about_what_it_cannot_set() {
    let params = JobParams {
        volumes: vec![Volume { claim: "data".into(), path: "/data".into() }],
        node_selector: vec![("pool".into(), "gpu".into())],
        tolerations: vec![Toleration { key: "gpu".into(), value: None, effect: "NoSchedule".into() }],
        service_account: Some("trainer".into()),
        labels: vec![("team".into(), "nlp".into())],
        ..Default::default()
    };
    let p = plan("trainjob", params);
    let code = configmap(&p);
    let patch = json!({"spec": {"securityContext": {"runAsNonRoot": true}}});
    let r =
        rendered(&RenderInput { pull_secret: Some("regcred"), pod_template_patch: Some(&patch), ..input(&p, &code) });
    let o = &r.job["spec"]["podSpecOverrides"][0];
    assert_eq!(o["targetJobs"], json!([{"name": "node"}]));
    assert_eq!(o["nodeSelector"], json!({"pool": "gpu"}));
    assert_eq!(o["tolerations"][0]["operator"], "Exists");
    assert_eq!(o["serviceAccountName"], "trainer");
    assert_eq!(
        o["volumes"],
        json!([
            {"name": "data-0", "persistentVolumeClaim": {"claimName": "data"}},
            {"name": "ciao-code", "configMap": {"name": NAME}},
        ])
    );
    assert_eq!(o["containers"][0]["name"], "node");
    assert_eq!(o["containers"][0]["volumeMounts"][1]["subPath"], "main.py");
    let trainer = &r.job["spec"]["trainer"];
    assert_eq!(trainer["image"], p.base_image.as_str());
    assert_eq!(trainer["env"], json!([{"name": "PYTHONUNBUFFERED", "value": "1"}]));
    assert_eq!(r.job["spec"]["labels"]["team"], "nlp");
    assert!(r.job["spec"].get("annotations").is_none(), "Istio's switch means nothing on Jobs");
    assert_eq!(r.warnings.len(), 2, "{:?}", r.warnings);
    assert!(r.warnings[0].contains("imagePullSecrets") && r.warnings[0].contains("regcred"), "{}", r.warnings[0]);
    assert!(r.warnings[1].contains("podTemplate") && r.warnings[1].contains("torch-distributed"), "{}", r.warnings[1]);
}

#[test]
fn the_strict_checks_reject_misplaced_unknown_and_malformed_fields() {
    let p =
        tf(JobParams { volumes: vec![Volume { claim: "data".into(), path: "/data".into() }], ..Default::default() });
    let code = image();
    let good = rendered(&input(&p, &code)).job;
    let broken = |f: &dyn Fn(&mut Value)| {
        let mut v = good.clone();
        f(&mut v);
        schema::problems(&v)
    };
    type Break = Box<dyn Fn(&mut Value)>;
    let ps = "/spec/tfReplicaSpecs/PS";
    let cases: Vec<(&str, &str, Break)> = vec![
        (
            "cleanPodPolicy outside runPolicy",
            "'cleanPodPolicy' was unexpected",
            Box::new(|v| v["spec"]["cleanPodPolicy"] = json!("All")),
        ),
        (
            "a typo in a container",
            "'imagePullSecret' was unexpected",
            Box::new(move |v| {
                v.pointer_mut(&format!("{ps}/template/spec/containers/0")).unwrap()["imagePullSecret"] = json!("x")
            }),
        ),
        (
            "replicas as a string",
            "is not of type \"integer\"",
            Box::new(move |v| *v.pointer_mut(&format!("{ps}/replicas")).unwrap() = json!("1")),
        ),
        ("an invalid job name", "not a valid job name", Box::new(|v| v["metadata"]["name"] = json!("Cell_1"))),
        (
            "an invalid pod label",
            "not a label value",
            Box::new(move |v| v.pointer_mut(&format!("{ps}/template/metadata/labels")).unwrap()["x"] = json!("a b")),
        ),
        (
            "a mount of a missing volume",
            "unknown volume \"data-0\"",
            Box::new(move |v| *v.pointer_mut(&format!("{ps}/template/spec/volumes")).unwrap() = json!([])),
        ),
    ];
    for (what, expected, f) in cases {
        let found = broken(&*f);
        assert!(found.iter().any(|p| p.contains(expected)), "{what} was not caught: {found:?}");
    }
    assert!(schema::problems(&good).is_empty());

    let p = plan("python", JobParams::default());
    let mut job = rendered(&input(&p, &code)).job;
    job["spec"]["ttlSecondsAfterFinishd"] = json!(5);
    assert!(schema::problems(&job).iter().any(|p| p.contains("round trip")), "{:?}", schema::problems(&job));
}

#[test]
fn a_python_cell_in_a_configmap_renders_exactly_like_this() {
    let p = plan("python", JobParams { env: vec![("SEED".into(), "7".into())], ..Default::default() });
    let code = configmap(&p);
    let r = rendered(&RenderInput { namespace: "kubeflow-user", pull_secret: Some("regcred"), ..input(&p, &code) });
    let labels = json!({
        "app.kubernetes.io/managed-by": "ciao",
        "ciao.kubeflow.org/session": SESSION,
        "ciao.kubeflow.org/cell": "3f2a9c81",
    });
    let expected_job = json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": NAME,
            "namespace": "kubeflow-user",
            "labels": labels,
            "annotations": {
                "ciao.kubeflow.org/cell-digest": CELL,
                "ciao.kubeflow.org/image": "docker.io/library/python:3.11-slim",
            },
        },
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {
                    "labels": {
                        "app.kubernetes.io/managed-by": "ciao",
                        "ciao.kubeflow.org/session": SESSION,
                        "ciao.kubeflow.org/cell": "3f2a9c81",
                        "ciao.kubeflow.org/role": "python",
                    },
                    "annotations": {"sidecar.istio.io/inject": "false"},
                },
                "spec": {
                    "containers": [{
                        "name": "main",
                        "image": "docker.io/library/python:3.11-slim",
                        "command": ["python", "-u", "/app/main.py"],
                        "workingDir": "/app",
                        "env": [{"name": "PYTHONUNBUFFERED", "value": "1"}, {"name": "SEED", "value": "7"}],
                        "volumeMounts": [{
                            "name": "ciao-code",
                            "mountPath": "/app/main.py",
                            "subPath": "main.py",
                            "readOnly": true,
                        }],
                    }],
                    "volumes": [{"name": "ciao-code", "configMap": {"name": NAME}}],
                    "imagePullSecrets": [{"name": "regcred"}],
                    "restartPolicy": "Never",
                },
            },
        },
    });
    assert_eq!(r.job, expected_job, "{:#}", r.job);
    let expected_cm = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": NAME,
            "namespace": "kubeflow-user",
            "labels": labels,
            "annotations": {"ciao.kubeflow.org/cell-digest": CELL},
        },
        "immutable": true,
        "data": {"main.py": "print('hi')\n"},
    });
    assert_eq!(r.config_map, Some(expected_cm));
    assert!(r.warnings.is_empty());
}
