//! Workloads run for real: images pulled from a real docker-registry, replicas executed as
//! processes, operator env, logs, conditions, clean-pod policies, restarts, scheduling and
//! pull failures.

mod common;

use std::time::Duration;

use common::{Registry, condition, eventually, start_with_registry};
use fake_cluster::{FakeCluster, Fault};
use futures::{AsyncBufReadExt, StreamExt, TryStreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, DynamicObject, ListParams, LogParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};

const MAIN: &str = r#"import json, os, sys, time
mode = os.environ.get("MODE", "tf")
if mode == "tf":
    cfg = json.loads(os.environ["TF_CONFIG"])
    print("task %s %d" % (cfg["task"]["type"], cfg["task"]["index"]))
    print("workers " + ",".join(cfg["cluster"]["worker"]))
elif mode == "fail":
    print("failing now", flush=True)
    sys.exit(3)
elif mode == "env":
    for k in sorted(os.environ):
        if k.startswith(("PET_", "MASTER_", "WORLD_SIZE", "RANK", "OMPI_COMM_WORLD_RANK", "JOB_COMPLETION", "IMAGE_MARKER", "HOSTNAME", "SECRET_")):
            print("%s=%s" % (k, os.environ[k]))
elif mode == "file":
    sys.stdout.write(open(os.environ["FILE"]).read())
elif mode == "flaky":
    if os.path.exists("marker"):
        print("attempt 2")
    else:
        open("marker", "w").write("x")
        print("attempt 1")
        sys.exit(1)
elif mode == "lines":
    n = int(os.environ.get("N", "1000"))
    w = sys.stdout.write
    for i in range(n):
        w("line %d\n" % i)
    sys.stdout.write("progress 1\rprogress 2\r\n")
elif mode == "sleep":
    print("sleeping", flush=True)
    time.sleep(60)
"#;

async fn image(reg: &Registry, repo: &str) -> String {
    reg.push_image(repo, "v1", &[("/app/main.py", MAIN)], &["python3", "/app/main.py"], "/app").await
}

fn dyn_api(c: kube::Client, group: &str, version: &str, kind: &str, plural: &str) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
    Api::namespaced_with(c, "default", &ar)
}

fn replica(image: &str, container: &str, replicas: i64, env: Value, restart: &str) -> Value {
    json!({"replicas": replicas, "restartPolicy": restart, "template": {"spec": {"containers": [{"name": container, "image": image, "env": env}]}}})
}

async fn wait_condition(api: &Api<DynamicObject>, name: &str, type_: &str, secs: u64) -> Value {
    eventually(secs, &format!("{name} condition {type_}"), || async {
        let o = api.get(name).await.ok()?;
        let v = serde_json::to_value(&o).ok()?;
        let c = condition(&v, type_)?;
        (c["status"] == "True").then_some(v)
    })
    .await
}

async fn pod_log(pods: &Api<Pod>, name: &str) -> String {
    pods.logs(name, &LogParams::default()).await.unwrap()
}

/// The log of pod `name` once it has ended (a TFJob succeeds when worker 0 does,
/// as the training operator decides; the other replicas may still be running).
async fn finished_pod_log(pods: &Api<Pod>, name: &str) -> String {
    eventually(30, &format!("{name} to end"), || async {
        let p = pods.get(name).await.ok()?;
        matches!(p.status?.phase.as_deref(), Some("Succeeded" | "Failed")).then_some(())
    })
    .await;
    pod_log(pods, name).await
}

#[tokio::test]
async fn tfjob_with_ps_and_workers_succeeds_and_each_replica_logs_its_task() {
    let reg = Registry::start().await;
    let img = image(&reg, "tf").await;
    let fc = start_with_registry(&reg).await;
    let c = common::client(&fc).await;
    let api = dyn_api(c.clone(), "kubeflow.org", "v1", "TFJob", "tfjobs");
    let job: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "kubeflow.org/v1", "kind": "TFJob", "metadata": {"name": "mnist"},
        "spec": {"runPolicy": {"cleanPodPolicy": "None"}, "tfReplicaSpecs": {
            "PS": replica(&img, "tensorflow", 1, json!([]), "Never"),
            "Worker": replica(&img, "tensorflow", 2, json!([]), "Never"),
        }},
    }))
    .unwrap();
    api.create(&PostParams::default(), &job).await.unwrap();
    let pods: Api<Pod> = Api::default_namespaced(c.clone());
    // follow worker-1 while it runs
    let follower = {
        let pods = pods.clone();
        tokio::spawn(async move {
            eventually(30, "worker-1 started", || async {
                let p = pods.get("mnist-worker-1").await.ok()?;
                (p.status?.phase.as_deref() != Some("Pending")).then_some(())
            })
            .await;
            let mut lines = pods.log_stream("mnist-worker-1", &LogParams { follow: true, ..Default::default() }).await.unwrap().lines();
            let mut out = Vec::new();
            while let Some(l) = lines.try_next().await.unwrap() {
                out.push(l);
            }
            out
        })
    };
    let done = wait_condition(&api, "mnist", "Succeeded", 60).await;
    let workers = "workers mnist-worker-0.default.svc:2222,mnist-worker-1.default.svc:2222";
    assert_eq!(finished_pod_log(&pods, "mnist-ps-0").await, format!("task ps 0\n{workers}\n"));
    assert_eq!(finished_pod_log(&pods, "mnist-worker-0").await, format!("task worker 0\n{workers}\n"));
    assert_eq!(finished_pod_log(&pods, "mnist-worker-1").await, format!("task worker 1\n{workers}\n"));
    assert_eq!(follower.await.unwrap(), vec!["task worker 1".to_string(), workers.to_string()]);
    let c_ok = condition(&done, "Succeeded").unwrap();
    assert_eq!((c_ok["reason"].as_str(), c_ok["message"].as_str()), (Some("TFJobSucceeded"), Some("TFJob default/mnist successfully completed.")));
    assert_eq!(condition(&done, "Created").unwrap()["reason"], "TFJobCreated");
    assert_eq!(condition(&done, "Running").unwrap()["status"], "False");
    assert!(done.pointer("/status/completionTime").is_some() && done.pointer("/status/startTime").is_some());
    let w0 = pods.get("mnist-worker-0").await.unwrap();
    let labels = w0.metadata.labels.clone().unwrap();
    assert_eq!(labels["training.kubeflow.org/job-name"], "mnist");
    assert_eq!(labels["training.kubeflow.org/replica-type"], "worker");
    assert_eq!(labels["training.kubeflow.org/replica-index"], "0");
    assert_eq!(labels["training.kubeflow.org/operator-name"], "tfjob-controller");
    assert_eq!(labels["training.kubeflow.org/job-role"], "master");
    let st = w0.status.unwrap();
    assert_eq!(st.phase.as_deref(), Some("Succeeded"));
    let cs = &st.container_statuses.unwrap()[0];
    let term = cs.state.as_ref().unwrap().terminated.as_ref().unwrap();
    assert_eq!((term.exit_code, term.reason.as_deref()), (0, Some("Completed")));
    let svcs: Api<k8s_openapi::api::core::v1::Service> = Api::default_namespaced(c);
    let svc = svcs.get("mnist-worker-1").await.unwrap();
    assert_eq!(svc.spec.unwrap().cluster_ip.as_deref(), Some("None"));
}

#[tokio::test]
async fn failing_replica_fails_the_job_and_clean_pod_policy_all_removes_pods() {
    let reg = Registry::start().await;
    let img = image(&reg, "fail").await;
    let fc = start_with_registry(&reg).await;
    let c = common::client(&fc).await;
    let api = dyn_api(c.clone(), "kubeflow.org", "v1", "TFJob", "tfjobs");
    let job: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "kubeflow.org/v1", "kind": "TFJob", "metadata": {"name": "boom"},
        "spec": {"runPolicy": {"cleanPodPolicy": "All"}, "tfReplicaSpecs": {"Worker": replica(&img, "tensorflow", 1, json!([{"name": "MODE", "value": "fail"}]), "Never")}},
    }))
    .unwrap();
    api.create(&PostParams::default(), &job).await.unwrap();
    let failed = wait_condition(&api, "boom", "Failed", 60).await;
    let c_f = condition(&failed, "Failed").unwrap();
    assert_eq!(c_f["reason"], "TFJobFailed");
    assert_eq!(c_f["message"], "TFJob default/boom has failed because 1 Worker replica(s) failed.");
    assert_eq!(failed.pointer("/status/replicaStatuses/Worker/failed").and_then(Value::as_i64), Some(1));
    let pods: Api<Pod> = Api::default_namespaced(c);
    eventually(20, "pods cleaned", || async { pods.get_opt("boom-worker-0").await.unwrap().is_none().then_some(()) }).await;
}

#[tokio::test]
async fn clean_pod_policy_none_keeps_pods_and_running_deletes_only_running_ones() {
    let reg = Registry::start().await;
    let img = image(&reg, "clean").await;
    let fc = start_with_registry(&reg).await;
    let c = common::client(&fc).await;
    let api = dyn_api(c.clone(), "kubeflow.org", "v1", "PyTorchJob", "pytorchjobs");
    let mk = |name: &str, policy: Option<&str>| -> DynamicObject {
        let mut spec = json!({"pytorchReplicaSpecs": {
            "Master": replica(&img, "pytorch", 1, json!([{"name": "MODE", "value": "env"}]), "OnFailure"),
            "Worker": replica(&img, "pytorch", 1, json!([{"name": "MODE", "value": "sleep"}]), "OnFailure"),
        }});
        if let Some(p) = policy {
            spec["runPolicy"] = json!({"cleanPodPolicy": p});
        }
        serde_json::from_value(json!({"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": {"name": name}, "spec": spec})).unwrap()
    };
    api.create(&PostParams::default(), &mk("keep", Some("None"))).await.unwrap();
    api.create(&PostParams::default(), &mk("dflt", None)).await.unwrap();
    wait_condition(&api, "keep", "Succeeded", 60).await;
    wait_condition(&api, "dflt", "Succeeded", 60).await;
    let pods: Api<Pod> = Api::default_namespaced(c);
    // default (Running): the sleeping worker goes, the finished master stays
    eventually(20, "running worker deleted", || async { pods.get_opt("dflt-worker-0").await.unwrap().is_none().then_some(()) }).await;
    assert!(pods.get_opt("dflt-master-0").await.unwrap().is_some());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(pods.get("keep-worker-0").await.unwrap().status.unwrap().phase.as_deref(), Some("Running"));
    let log = pod_log(&pods, "keep-master-0").await;
    assert!(log.contains("MASTER_ADDR=keep-master-0\n") && log.contains("MASTER_PORT=23456\n") && log.contains("PET_NNODES=2\n"), "{log}");
    assert!(log.contains("RANK=0\n") && log.contains("WORLD_SIZE=2\n") && log.contains("PET_MASTER_ADDR=keep-master-0\n"), "{log}");
    assert!(log.contains("IMAGE_MARKER=from-image\n") && log.contains("HOSTNAME=keep-master-0\n"), "{log}");
}

#[tokio::test]
async fn restarted_container_keeps_its_previous_log() {
    let reg = Registry::start().await;
    let img = image(&reg, "flaky").await;
    let fc = start_with_registry(&reg).await;
    let pods: Api<Pod> = Api::default_namespaced(common::client(&fc).await);
    let p: Pod = serde_json::from_value(json!({"metadata": {"name": "flaky"}, "spec": {"restartPolicy": "OnFailure", "containers": [{"name": "main", "image": img, "env": [{"name": "MODE", "value": "flaky"}]}]}})).unwrap();
    pods.create(&PostParams::default(), &p).await.unwrap();
    let done = eventually(30, "flaky succeeded", || async {
        let p = pods.get("flaky").await.ok()?;
        (p.status.as_ref()?.phase.as_deref() == Some("Succeeded")).then_some(p)
    })
    .await;
    let cs = &done.status.unwrap().container_statuses.unwrap()[0];
    assert_eq!(cs.restart_count, 1);
    assert_eq!(cs.last_state.as_ref().unwrap().terminated.as_ref().unwrap().exit_code, 1);
    assert_eq!(pod_log(&pods, "flaky").await, "attempt 2\n");
    let prev = pods.logs("flaky", &LogParams { previous: true, ..Default::default() }).await.unwrap();
    assert_eq!(prev, "attempt 1\n");
}

#[tokio::test]
async fn logs_keep_bytes_exactly_tail_and_a_dropped_stream_ends_early() {
    let reg = Registry::start().await;
    let img = image(&reg, "lines").await;
    let fc = start_with_registry(&reg).await;
    let pods: Api<Pod> = Api::default_namespaced(common::client(&fc).await);
    let p: Pod = serde_json::from_value(json!({"metadata": {"name": "lines"}, "spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": img, "env": [{"name": "MODE", "value": "lines"}, {"name": "N", "value": "20000"}]}]}})).unwrap();
    pods.create(&PostParams::default(), &p).await.unwrap();
    eventually(30, "lines done", || async { (pods.get("lines").await.ok()?.status?.phase.as_deref() == Some("Succeeded")).then_some(()) }).await;
    let log = pod_log(&pods, "lines").await;
    let expected: String = (0..20000).map(|i| format!("line {i}\n")).collect::<String>() + "progress 1\rprogress 2\r\n";
    assert_eq!(log, expected);
    let tail = pods.logs("lines", &LogParams { tail_lines: Some(2), ..Default::default() }).await.unwrap();
    assert_eq!(tail, "line 19999\nprogress 1\rprogress 2\r\n");
    let ts = pods.logs("lines", &LogParams { tail_lines: Some(1), timestamps: true, ..Default::default() }).await.unwrap();
    assert!(ts.ends_with("Z progress 1\rprogress 2\r\n") && ts.len() > 30, "{ts:?}");
    fc.inject_fault(Fault { path: "/pods/lines/log$".into(), after_bytes: Some(100), times: Some(1), ..Default::default() }).unwrap();
    let mut stream = pods.log_stream("lines", &LogParams { follow: true, ..Default::default() }).await.unwrap();
    let mut buf = Vec::new();
    let r = futures::AsyncReadExt::read_to_end(&mut stream, &mut buf).await;
    assert!(r.is_err() || buf.len() == 100, "the stream was cut: {} bytes, {r:?}", buf.len());
    assert!(buf.len() <= 100 && expected.as_bytes().starts_with(&buf));
}

#[tokio::test]
async fn configmap_volumes_and_secret_env_reach_the_process() {
    let reg = Registry::start().await;
    let img = image(&reg, "cm").await;
    let fc = start_with_registry(&reg).await;
    let c = common::client(&fc).await;
    let cms: Api<ConfigMap> = Api::default_namespaced(c.clone());
    cms.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "code"}, "data": {"hello.txt": "hello from a configmap\n", "other": "x"}})).unwrap()).await.unwrap();
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::default_namespaced(c.clone());
    secrets.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "s"}, "stringData": {"token": "sekrit"}})).unwrap()).await.unwrap();
    let pods: Api<Pod> = Api::default_namespaced(c);
    let p: Pod = serde_json::from_value(json!({"metadata": {"name": "reader"}, "spec": {"restartPolicy": "Never",
        "volumes": [{"name": "code", "configMap": {"name": "code"}}],
        "containers": [{"name": "main", "image": img, "volumeMounts": [{"name": "code", "mountPath": "/etc/code"}, {"name": "code", "mountPath": "/data/one.txt", "subPath": "hello.txt"}],
            "env": [{"name": "MODE", "value": "file"}, {"name": "FILE", "value": "/etc/code/hello.txt"}]}]}})).unwrap();
    pods.create(&PostParams::default(), &p).await.unwrap();
    let envp: Pod = serde_json::from_value(json!({"metadata": {"name": "env"}, "spec": {"restartPolicy": "Never",
        "containers": [{"name": "main", "image": img, "env": [{"name": "MODE", "value": "env"}, {"name": "SECRET_TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "token"}}}]}]}})).unwrap();
    pods.create(&PostParams::default(), &envp).await.unwrap();
    for n in ["reader", "env"] {
        eventually(30, "pod done", || async { (pods.get(n).await.ok()?.status?.phase.as_deref() == Some("Succeeded")).then_some(()) }).await;
    }
    assert_eq!(pod_log(&pods, "reader").await, "hello from a configmap\n");
    assert!(pod_log(&pods, "env").await.contains("SECRET_TOKEN=sekrit\n"));
}

#[tokio::test]
async fn gpu_requests_beyond_the_node_are_unschedulable_and_missing_images_back_off() {
    let reg = Registry::start().await;
    let img = image(&reg, "present").await;
    let fc = start_with_registry(&reg).await;
    let pods: Api<Pod> = Api::default_namespaced(common::client(&fc).await);
    let gpu: Pod = serde_json::from_value(json!({"metadata": {"name": "gpu"}, "spec": {"containers": [{"name": "main", "image": img, "resources": {"limits": {"nvidia.com/gpu": 1}}}]}})).unwrap();
    pods.create(&PostParams::default(), &gpu).await.unwrap();
    let cond = eventually(10, "unschedulable", || async {
        let p = pods.get("gpu").await.ok()?;
        let c = p.status?.conditions?.into_iter().find(|c| c.type_ == "PodScheduled")?;
        (c.status == "False").then_some(c)
    })
    .await;
    assert_eq!(cond.reason.as_deref(), Some("Unschedulable"));
    assert!(cond.message.unwrap().starts_with("0/1 nodes are available: 1 Insufficient nvidia.com/gpu."));
    let missing = format!("{}/nothing-here:v9", reg.host);
    let p: Pod = serde_json::from_value(json!({"metadata": {"name": "nopull"}, "spec": {"containers": [{"name": "main", "image": missing}]}})).unwrap();
    pods.create(&PostParams::default(), &p).await.unwrap();
    let waiting = eventually(20, "image pull back-off", || async {
        let p = pods.get("nopull").await.ok()?;
        let w = p.status?.container_statuses?.first()?.state.clone()?.waiting?;
        (w.reason.as_deref() == Some("ImagePullBackOff")).then_some(w)
    })
    .await;
    assert!(waiting.message.unwrap().contains("not found"));
    let e = match pods.logs("nopull", &LogParams::default()).await.unwrap_err() {
        kube::Error::Api(s) => s,
        other => panic!("{other:?}"),
    };
    assert_eq!(e.code, 400);
    assert_eq!(e.message, "container \"main\" in pod \"nopull\" is waiting to start: trying and failing to pull image");
    // more capacity schedules the GPU pod
    fc.set_node_capacity(fake_cluster::NodeCapacity { gpus: 1, ..Default::default() });
    eventually(10, "gpu pod scheduled", || async { pods.get("gpu").await.ok()?.spec?.node_name.map(|_| ()) }).await;
}

#[tokio::test]
async fn batch_job_completes_with_job_controller_labels() {
    let reg = Registry::start().await;
    let img = image(&reg, "batch").await;
    let fc = start_with_registry(&reg).await;
    let c = common::client(&fc).await;
    let jobs: Api<Job> = Api::default_namespaced(c.clone());
    let j: Job = serde_json::from_value(json!({"metadata": {"name": "once"}, "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": img, "env": [{"name": "MODE", "value": "env"}]}]}}}})).unwrap();
    jobs.create(&PostParams::default(), &j).await.unwrap();
    let done = eventually(30, "job complete", || async {
        let j = jobs.get("once").await.ok()?;
        j.status.clone()?.conditions?.iter().any(|c| c.type_ == "Complete" && c.status == "True").then_some(j)
    })
    .await;
    let st = done.status.unwrap();
    assert_eq!(st.succeeded, Some(1));
    assert!(st.conditions.unwrap().iter().any(|c| c.type_ == "SuccessCriteriaMet"));
    let pods: Api<Pod> = Api::default_namespaced(c);
    let list = pods.list(&ListParams::default().labels("batch.kubernetes.io/job-name=once")).await.unwrap();
    assert_eq!(list.items.len(), 1);
    let name = list.items[0].metadata.name.clone().unwrap();
    assert!(name.starts_with("once-") && name.len() == "once-".len() + 5, "{name}");
    let labels = list.items[0].metadata.labels.clone().unwrap();
    assert_eq!(labels["job-name"], "once");
    assert_eq!(labels["controller-uid"], done.metadata.uid.unwrap());
}

#[tokio::test]
async fn trainjob_on_torch_distributed_runs_numnodes_pods_with_torch_env() {
    let reg = Registry::start().await;
    let img = image(&reg, "trainer").await;
    let fc = start_with_registry(&reg).await;
    let c = common::client(&fc).await;
    let api = dyn_api(c.clone(), "trainer.kubeflow.org", "v1alpha1", "TrainJob", "trainjobs");
    let mk = |name: &str, runtime: &str| -> DynamicObject {
        serde_json::from_value(json!({"apiVersion": "trainer.kubeflow.org/v1alpha1", "kind": "TrainJob", "metadata": {"name": name},
            "spec": {"runtimeRef": {"name": runtime}, "trainer": {"image": img, "command": ["python3", "/app/main.py"], "numNodes": 2,
                "resourcesPerNode": {"requests": {"cpu": "1"}}, "env": [{"name": "MODE", "value": "env"}]}}})).unwrap()
    };
    let e = match api.create(&PostParams::default(), &mk("nope", "no-such-runtime")).await.unwrap_err() {
        kube::Error::Api(s) => s,
        other => panic!("{other:?}"),
    };
    assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"));
    assert!(e.message.contains("no-such-runtime"));
    api.create(&PostParams::default(), &mk("tj", "torch-distributed")).await.unwrap();
    let done = wait_condition(&api, "tj", "Complete", 60).await;
    assert_eq!(condition(&done, "Complete").unwrap()["reason"], "AllJobsCompleted");
    let pods: Api<Pod> = Api::default_namespaced(c);
    let list = pods.list(&ListParams::default().labels("jobset.sigs.k8s.io/jobset-name=tj,trainer.kubeflow.org/trainjob-ancestor-step=trainer")).await.unwrap();
    let mut names: Vec<String> = list.items.iter().map(|p| p.metadata.name.clone().unwrap()).collect();
    names.sort();
    assert_eq!(names.len(), 2);
    for (i, n) in names.iter().enumerate() {
        assert!(n.starts_with(&format!("tj-node-0-{i}-")) && n.len() == format!("tj-node-0-{i}-").len() + 5, "{n}");
        let log = pod_log(&pods, n).await;
        assert!(log.contains(&format!("PET_NODE_RANK={i}\n")), "{log}");
        assert!(log.contains("PET_NNODES=2\n") && log.contains("PET_MASTER_ADDR=tj-node-0-0.tj\n") && log.contains("PET_MASTER_PORT=29400\n") && log.contains("PET_NPROC_PER_NODE=1\n"), "{log}");
    }
}

#[tokio::test]
async fn mpijob_v2_launcher_runs_mpirun_ranks_while_workers_stay_up() {
    let reg = Registry::start().await;
    let img = image(&reg, "mpi").await;
    let fc: FakeCluster = start_with_registry(&reg).await;
    fc.install_crds(&common::spec_dir("mpi-operator-v0.8.0")).unwrap();
    let c = common::client(&fc).await;
    let api = dyn_api(c.clone(), "kubeflow.org", "v2beta1", "MPIJob", "mpijobs");
    let job: DynamicObject = serde_json::from_value(json!({"apiVersion": "kubeflow.org/v2beta1", "kind": "MPIJob", "metadata": {"name": "hvd"},
        "spec": {"slotsPerWorker": 1, "runPolicy": {"cleanPodPolicy": "Running"}, "mpiReplicaSpecs": {
            "Launcher": {"replicas": 1, "template": {"spec": {"containers": [{"name": "launcher", "image": img, "command": ["mpirun", "--allow-run-as-root", "-np", "2", "python3", "/app/main.py"], "env": [{"name": "MODE", "value": "env"}]}]}}},
            "Worker": {"replicas": 2, "template": {"spec": {"containers": [{"name": "worker", "image": img}]}}},
        }}})).unwrap();
    api.create(&PostParams::default(), &job).await.unwrap();
    let done = wait_condition(&api, "hvd", "Succeeded", 60).await;
    assert_eq!(condition(&done, "Succeeded").unwrap()["reason"], "MPIJobSucceeded");
    let pods: Api<Pod> = Api::default_namespaced(c);
    let launcher = pods.list(&ListParams::default().labels("training.kubeflow.org/job-name=hvd,training.kubeflow.org/job-role=launcher")).await.unwrap();
    let lname = launcher.items[0].metadata.name.clone().unwrap();
    assert!(lname.starts_with("hvd-launcher-"));
    let log = pod_log(&pods, &lname).await;
    assert!(log.contains("OMPI_COMM_WORLD_RANK=0\n") && log.contains("OMPI_COMM_WORLD_RANK=1\n"), "{log}");
    eventually(20, "running workers cleaned", || async { pods.get_opt("hvd-worker-0").await.unwrap().is_none().then_some(()) }).await;
    let mut w = kube::runtime::watcher(pods.clone(), kube::runtime::watcher::Config::default()).boxed();
    assert!(tokio::time::timeout(Duration::from_secs(5), w.next()).await.unwrap().is_some());
}
