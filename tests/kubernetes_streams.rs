//! Following jobs through trouble, against the Kubernetes API stand-in
//! (`fake-cluster`, a stand-in for tests, not an API server): expired and
//! dropped watches, log streams cut mid-line, pending pods, interrupts,
//! restarted containers. Lines are asserted exactly: nothing lost, nothing
//! twice.

mod kubeharness;
mod support;

use fake_cluster::Fault;
use kube::api::{Api, DynamicObject, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kubeharness::{Harness, eventually, run, run_until, said};
use serde_json::json;

const LINES: &str = "import sys, time\nfor i in range(40):\n    sys.stdout.write('line %d\\n' % i)\n    sys.stdout.flush()\n    \
                     if i % 10 == 9:\n        time.sleep(0.2)\nsys.stdout.write('partial ')\nsys.stdout.flush()\ntime.sleep(0.5)\n\
                     sys.stdout.write('then done\\n')\n";

fn expected_lines() -> Vec<String> {
    let mut v: Vec<String> = (0..40).map(|i| format!("line {i}")).collect();
    v.push("partial then done".into());
    v
}

fn watch_fault(path: &str) -> Fault {
    Fault { method: Some("GET".into()), path: path.into(), query: Some("watch=true".into()), ..Default::default() }
}

fn hits(h: &Harness) -> Vec<u32> {
    h.cluster.cluster().faults.list().iter().map(|f| f.hits).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_streams_cut_mid_line_lose_and_repeat_nothing() {
    let h = Harness::start().await;
    h.cluster
        .inject_fault(Fault { method: Some("GET".into()), path: "/log$".into(), after_bytes: Some(150), times: Some(3), ..Default::default() })
        .unwrap();
    let r = run(&h.engine(), LINES).await;
    r.ok();
    assert_eq!(r.replica("main-0"), expected_lines(), "{}", r.stdout());
    assert_eq!(r.screen().len(), 41, "{:?}", r.screen());
    assert_eq!(hits(&h), [3], "every cut was made");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_watches_are_resumed() {
    let h = Harness::start().await;
    h.cluster.inject_fault(Fault { after_events: Some(1), drop: true, times: Some(2), ..watch_fault("/pods$") }).unwrap();
    h.cluster.inject_fault(Fault { after_events: Some(1), drop: true, times: Some(2), ..watch_fault("/jobs$") }).unwrap();
    let r = run(&h.engine(), LINES).await;
    r.ok();
    assert_eq!(r.replica("main-0"), expected_lines());
    assert_eq!(hits(&h), [2, 2]);
    assert!(r.stderr().contains(" Succeeded after "), "{}", r.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_watch_is_relisted_and_following_goes_on() {
    let h = Harness::start().await;
    h.cluster.inject_fault(Fault { status: Some(410), times: Some(1), ..watch_fault("/pods$") }).unwrap();
    h.cluster.inject_fault(Fault { status: Some(410), times: Some(1), ..watch_fault("/tfjobs$") }).unwrap();
    // Two replicas: a partial line shown while the other replica writes stays
    // on the screen (the mux starts a fresh line), so only whole lines here.
    let cell = "%framework=tensorflow\n%worker=2\nimport time\nfor i in range(40):\n    print('line %d' % i, flush=True)\n    time.sleep(0.01)\n";
    let r = run(&h.engine(), cell).await;
    r.ok();
    let lines: Vec<String> = (0..40).map(|i| format!("line {i}")).collect();
    assert_eq!(r.replica("worker-0"), lines);
    assert_eq!(r.replica("worker-1"), lines);
    assert_eq!(hits(&h), [1, 1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unschedulable_gpu_request_is_reported_while_pending() {
    let h = Harness::start().await;
    let r = run_until(&h.engine(), "%gpu=1\nprint('never')\n", |ev| said(ev, "Pending: Unschedulable")).await;
    let e = r.error();
    assert_eq!(e.ename, "KeyboardInterrupt");
    let err = r.stderr();
    assert!(err.contains("[ciao] main-0 Pending: Unschedulable (0/1 nodes are available: 1 Insufficient nvidia.com/gpu"), "{err}");
    assert!(r.stdout().is_empty(), "{}", r.stdout());
    eventually(10, "the job to be deleted", || async { h.names("jobs.batch", "default").is_empty().then_some(()) }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_image_backs_off_and_says_so() {
    let h = Harness::start().await;
    let cell = format!("%provider=configmap\n%base={}/nothing/here:1\nprint('never')\n", h.registry.host);
    let r = run_until(&h.engine(), &cell, |ev| said(ev, "Pending: ImagePullBackOff")).await;
    assert_eq!(r.error().ename, "KeyboardInterrupt");
    let err = r.stderr();
    assert!(err.contains("[ciao] main-0 Pending: ErrImagePull"), "{err}");
    assert!(err.contains("[ciao] main-0 Pending: ImagePullBackOff"), "{err}");
    assert!(err.contains("nothing/here"), "the pull error names the image: {err}");
}

const SLOW: &str = "import time\nprint('started', flush=True)\ntime.sleep(3)\nprint('finished')\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupt_deletes_the_job_and_its_pods() {
    let h = Harness::start().await;
    let r = run_until(&h.engine(), "import time\nprint('started', flush=True)\ntime.sleep(60)\n", |ev| said(ev, "[main-0] started")).await;
    let e = r.error();
    let name = r.job_name();
    assert_eq!(e.ename, "KeyboardInterrupt");
    assert_eq!(e.evalue, format!("interrupted: Job default/{name} and its replicas were deleted"));
    assert!(r.stderr().contains(&format!("[ciao] Job default/{name} Deleted after ")), "{}", r.stderr());
    eventually(15, "the job, its pod and its process to go", || async {
        (h.names("jobs.batch", "default").is_empty() && h.names("pods", "default").is_empty() && h.cluster.processes().is_empty())
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupt_with_detach_leaves_the_job_and_attach_follows_it_again() {
    let h = Harness::start().await;
    let engine = h.engine();
    let r = run_until(&engine, &format!("%onInterrupt=detach\n{SLOW}"), |ev| said(ev, "[main-0] started")).await;
    let e = r.error();
    let name = r.job_name();
    assert_eq!(e.ename, "KeyboardInterrupt");
    assert!(e.evalue.contains(&format!("%attach {name}")), "{}", e.evalue);
    assert_eq!(h.names("jobs.batch", "default"), std::slice::from_ref(&name));

    let a = run(&engine, &format!("%attach {name}")).await;
    a.ok();
    assert_eq!(a.replica("main-0"), ["started", "finished"]);
    assert!(a.stderr().contains(&format!("[ciao] Job default/{name} Succeeded after ")), "{}", a.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_container_is_followed_into_its_next_run() {
    let h = Harness::start().await;
    let marker = support::fresh_dir("marker-").join("first-run-done");
    let code = "import os, sys\nm = os.environ['MARKER']\nif not os.path.exists(m):\n    open(m, 'w').close()\n    \
                print('attempt 1', flush=True)\n    sys.exit(1)\nprint('attempt 2')\n";
    let kc = kube::config::Kubeconfig::read_from(h.cluster.kubeconfig_path()).unwrap();
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await.unwrap();
    let client = kube::Client::try_from(cfg).unwrap();
    let cms: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::default_namespaced(client.clone());
    cms.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "restarts-code"}, "data": {"main.py": code}})).unwrap())
        .await
        .unwrap();
    let image = format!("{}/mirror/tensorflow/tensorflow:2.16.1", kubeharness::registry().host);
    // A job made by hand (ciao's own run with restartPolicy Never), found by its label.
    let job = json!({
        "apiVersion": "kubeflow.org/v1", "kind": "TFJob",
        "metadata": {"name": "restarts", "labels": {"app.kubernetes.io/managed-by": "ciao"}},
        "spec": {"tfReplicaSpecs": {"Worker": {"replicas": 1, "restartPolicy": "OnFailure", "template": {"spec": {
            "containers": [{"name": "tensorflow", "image": image, "command": ["python", "-u", "/app/main.py"],
                            "env": [{"name": "MARKER", "value": marker.display().to_string()}],
                            "volumeMounts": [{"name": "code", "mountPath": "/app/main.py", "subPath": "main.py"}]}],
            "volumes": [{"name": "code", "configMap": {"name": "restarts-code"}}]}}}}}
    });
    let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("kubeflow.org", "v1", "TFJob"), "tfjobs");
    let api: Api<DynamicObject> = Api::default_namespaced_with(client, &ar);
    api.create(&PostParams::default(), &serde_json::from_value(job).unwrap()).await.unwrap();

    let a = run(&h.engine(), "%attach restarts").await;
    a.ok();
    assert_eq!(a.replica("worker-0"), ["attempt 1", "attempt 2"]);
    assert!(a.stderr().contains("[ciao] worker-0 Running, restarts 1"), "{}", a.stderr());
}
