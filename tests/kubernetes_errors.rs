//! Submission problems against the Kubernetes API stand-in (`fake-cluster`,
//! a stand-in for tests, not an API server; its 403s and other refusals are
//! injected faults shaped like a real server's): each is a clear cell
//! error, and nothing is left behind.

mod kubeharness;
mod support;

use fake_cluster::Fault;
use kubeharness::{Harness, eventually, run};

const PY: &str = "print('hello')\n";
const CM: &str = "%provider=configmap\nprint('from a configmap')\n";

fn fault(method: &str, path: &str) -> Fault {
    Fault { method: Some(method.into()), path: path.into(), times: Some(1), ..Default::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configmap_cell_mounts_its_code_and_the_configmap_goes_with_the_job() {
    let h = Harness::start().await;
    let engine = h.engine();
    let r = run(&engine, CM).await;
    r.ok();
    assert_eq!(r.screen(), ["[main-0] from a configmap"]);
    assert!(!r.stderr().contains("[ciao] image"), "no image is built: {}", r.stderr());
    let name = r.job_name();
    let cm = h.cluster.object("configmaps", "default", &name).expect("the ConfigMap exists");
    let job = h.cluster.object("jobs.batch", "default", &name).unwrap();
    assert_eq!(cm["metadata"]["ownerReferences"][0]["uid"], job["metadata"]["uid"]);
    assert_eq!(cm["metadata"]["ownerReferences"][0]["kind"], "Job");

    let d = run(&engine, &format!("%delete {name}")).await;
    d.ok();
    let said = d.stdout();
    assert!(said.starts_with(&format!("deleted Job default/{name} and its 1 pod (")), "{said}");
    assert!(said.trim_end().ends_with(&format!("and ConfigMap {name}")), "{said}");
    eventually(10, "the job, its pod and its ConfigMap to go", || async {
        (h.names("jobs.batch", "default").is_empty() && h.names("configmaps", "default").iter().all(|n| *n != name)
            && h.names("pods", "default").is_empty())
        .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_job_leaves_no_configmap_behind() {
    let h = Harness::start().await;
    h.cluster.inject_fault(Fault { preset: Some("quota".into()), ..fault("POST", "/jobs$") }).unwrap();
    let r = run(&h.engine(), CM).await;
    let e = r.error();
    assert_eq!(e.ename, "Forbidden");
    assert!(e.evalue.contains("exceeded quota"), "{}", e.evalue);
    assert!(e.traceback.is_empty(), "a quota rejection gets no RBAC rule: {:?}", e.traceback);
    assert!(h.names("configmaps", "default").iter().all(|n| !n.starts_with("python-")), "{:?}", h.names("configmaps", "default"));
    assert!(h.names("jobs.batch", "default").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_owner_reference_deletes_both_the_job_and_its_configmap() {
    let h = Harness::start().await;
    h.cluster.inject_fault(Fault { status: Some(500), ..fault("PATCH", "/configmaps/") }).unwrap();
    let r = run(&h.engine(), CM).await;
    let e = r.error();
    assert!(e.evalue.contains("owner of its ConfigMap") && e.evalue.contains("500"), "{}", e.evalue);
    eventually(10, "nothing left", || async {
        (h.names("jobs.batch", "default").is_empty() && h.names("configmaps", "default").iter().all(|n| !n.starts_with("python-")))
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_clash_retries_with_the_next_name() {
    let h = Harness::start().await;
    let engine = h.engine();
    let first = run(&engine, PY).await;
    first.ok();
    let second = run(&engine, PY).await;
    second.ok();
    let (a, b) = (first.job_name(), second.job_name());
    assert_eq!(b, format!("{a}-1"));
    assert_eq!(second.replica("main-0"), ["hello"]);
    assert_eq!(h.names("jobs.batch", "default"), [a.clone(), b]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kind_that_is_not_installed_says_who_installs_it() {
    let h = Harness::start().await;
    let engine = h.engine();
    let tf = "%framework=tensorflow\nprint('tf')\n";
    run(&engine, tf).await.ok();
    // Known from discovery, then removed: the create's 404 says it.
    assert!(h.cluster.uninstall_crd("tfjobs.kubeflow.org"));
    let r = run(&engine, tf).await;
    let e = r.error();
    assert_eq!(e.ename, "NotInstalled");
    assert!(e.evalue.starts_with("TFJob is not installed in this cluster (Kubeflow training-operator)"), "{}", e.evalue);
    // A fresh session finds out from discovery.
    let r = run(&h.engine(), tf).await;
    assert!(r.error().evalue.starts_with("TFJob is not installed in this cluster"), "{}", r.error().evalue);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rbac_denial_prints_the_missing_rule() {
    let h = Harness::start().await;
    h.cluster
        .inject_fault(Fault { preset: Some("rbac".into()), user: Some("system:serviceaccount:default:ciao".into()), ..fault("POST", "/tfjobs$") })
        .unwrap();
    let r = run(&h.engine(), "%framework=tensorflow\nprint('tf')\n").await;
    let e = r.error();
    assert_eq!(e.ename, "Forbidden");
    assert!(
        e.evalue.contains("User \"system:serviceaccount:default:ciao\" cannot create resource \"tfjobs\" in API group \"kubeflow.org\""),
        "{}",
        e.evalue
    );
    assert_eq!(e.traceback[1..], ["rules:", "- apiGroups: [\"kubeflow.org\"]", "  resources: [\"tfjobs\"]", "  verbs: [\"create\"]"]);
    assert!(e.traceback[0].contains("Role") && e.traceback[0].contains("namespace default"), "{:?}", e.traceback);
    assert!(h.names("tfjobs.kubeflow.org", "default").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_and_pod_security_refusals_give_the_servers_message_and_no_rule() {
    let h = Harness::start().await;
    let engine = h.engine();
    h.cluster.inject_fault(Fault { preset: Some("podsecurity".into()), ..fault("POST", "/jobs$") }).unwrap();
    let r = run(&engine, PY).await;
    let e = r.error();
    assert_eq!(e.ename, "Forbidden");
    assert!(e.evalue.contains("violates PodSecurity \"restricted:latest\""), "{}", e.evalue);
    assert!(e.traceback.is_empty(), "{:?}", e.traceback);
    h.cluster.inject_fault(Fault { preset: Some("quota".into()), ..fault("POST", "/jobs$") }).unwrap();
    let e = run(&engine, PY).await.error().clone();
    assert!(e.evalue.contains("is forbidden: exceeded quota: compute-resources"), "{}", e.evalue);
    assert!(e.traceback.is_empty(), "{:?}", e.traceback);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_job_shows_the_servers_message_and_a_missing_namespace_says_how_to_fix_it() {
    let h = Harness::start().await;
    let engine = h.engine();
    h.cluster
        .inject_fault(Fault { status: Some(422), message: Some("Job.batch \"x\" is invalid: spec.template: Required value".into()), ..fault("POST", "/jobs$") })
        .unwrap();
    let e = run(&engine, PY).await.error().clone();
    assert_eq!(e.ename, "Invalid");
    assert!(e.evalue.contains("spec.template: Required value"), "{}", e.evalue);
    let e = run(&engine, "%namespace=nowhere\nprint(1)\n").await.error().clone();
    assert_eq!(e.ename, "NamespaceNotFound");
    assert!(e.evalue.contains("\"nowhere\"") && e.evalue.contains("%namespace="), "{}", e.evalue);
}
