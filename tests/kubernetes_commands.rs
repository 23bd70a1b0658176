//! The job commands (`%jobs`, `%logs`, `%attach`, `%delete`) and where jobs
//! go (namespace precedence), against the Kubernetes API stand-in
//! (`fake-cluster`, a stand-in for tests, not an API server).

mod kubeharness;
mod support;

use kubeharness::{Harness, run, run_until, said};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_lists_logs_prints_and_delete_removes_ciao_jobs() {
    let h = Harness::start().await;
    let engine = h.engine();
    let tf = run(&engine, "%framework=tensorflow\n%cleanPolicy=none\n%ps=1\n%worker=1\nimport os\nprint('replica', os.environ['HOSTNAME'].rsplit('-', 2)[-2])\nprint('bye')\n").await;
    tf.ok();
    let py = run(&engine, "print('plain job')\n").await;
    py.ok();
    let (tf_name, py_name) = (tf.job_name(), py.job_name());

    let jobs = run(&engine, "%jobs").await;
    let table = jobs.result.as_ref().unwrap().as_ref().unwrap();
    let text = table["text/plain"].as_str().unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].starts_with("NAME") && lines[0].contains("KIND") && lines[0].contains("STATE"), "{text}");
    let row = |name: &str| lines.iter().find(|l| l.starts_with(&format!("{name} "))).copied().unwrap_or_else(|| panic!("no {name}: {text}"));
    let columns = |l: &str| l.split_whitespace().map(String::from).collect::<Vec<_>>();
    let tf_row = columns(row(&tf_name));
    assert_eq!(tf_row[..3], [tf_name.clone(), "TFJob".into(), "Succeeded".into()], "{text}");
    assert!(tf_row[4].starts_with(&format!("{}/", h.registry.host)), "the image is listed: {text}");
    assert_eq!(columns(row(&py_name))[..3], [py_name.clone(), "Job".into(), "Succeeded".into()], "{text}");
    let html = table["text/html"].as_str().unwrap();
    assert!(html.contains(&format!("<td>{tf_name}</td>")) && html.contains("<td>TFJob</td>"), "{html}");

    let logs = run(&engine, &format!("%logs {tf_name}")).await;
    logs.ok();
    assert_eq!(logs.screen(), ["[ps-0] replica ps", "[ps-0] bye", "[worker-0] replica worker", "[worker-0] bye"]);

    let missing = run(&engine, "%logs nosuchjob").await;
    let e = missing.error();
    assert_eq!(e.ename, "JobNotFound");
    assert!(e.evalue.contains("\"nosuchjob\"") && e.evalue.contains(&format!("{tf_name} (TFJob)")) && e.evalue.contains(&format!("{py_name} (Job)")), "{}", e.evalue);

    let del = run(&engine, &format!("%delete {tf_name}")).await;
    del.ok();
    assert!(del.stdout().starts_with(&format!("deleted TFJob default/{tf_name} and its 2 pods (")), "{}", del.stdout());
    kubeharness::eventually(10, "the TFJob to go", || async { h.names("tfjobs.kubeflow.org", "default").is_empty().then_some(()) }).await;
    let jobs = run(&engine, "%jobs").await;
    let text = jobs.result.as_ref().unwrap().as_ref().unwrap()["text/plain"].as_str().unwrap().to_string();
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(!text.contains(&tf_name), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_follow_streams_a_running_job_to_its_end() {
    let h = Harness::start().await;
    let engine = h.engine();
    let slow = "%onInterrupt=detach\nimport time\nprint('started', flush=True)\ntime.sleep(2)\nprint('finished')\n";
    let r = run_until(&engine, slow, |ev| said(ev, "[main-0] started")).await;
    let name = r.job_name();
    let f = run(&engine, &format!("%logs {name} --follow")).await;
    f.ok();
    assert_eq!(f.screen(), ["[main-0] started", "[main-0] finished"]);
    assert!(f.stderr().ends_with(&format!("[ciao] Job default/{name} Succeeded\n")), "{}", f.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_namespace_comes_from_the_magic_then_the_config_then_the_kubeconfig_context() {
    let h = Harness::start_with(|o| o.namespace = "team".into(), "").await;
    h.namespace("fromconfig").await;
    h.namespace("frommagic").await;
    let cell = "print('where')\n";
    let plain = run(&h.engine(), cell).await;
    plain.ok();
    assert_eq!(h.names("jobs.batch", "team"), [plain.job_name()]);
    let configured = h.engine_with("namespace: fromconfig");
    let c = run(&configured, "print('configured')\n").await;
    c.ok();
    assert_eq!(h.names("jobs.batch", "fromconfig"), [c.job_name()]);
    let m = run(&configured, "%namespace=frommagic\nprint('magic')\n").await;
    m.ok();
    assert_eq!(h.names("jobs.batch", "frommagic"), [m.job_name()]);
    // Commands look in the same namespace.
    let jobs = run(&configured, "%jobs").await;
    let text = jobs.result.as_ref().unwrap().as_ref().unwrap()["text/plain"].as_str().unwrap().to_string();
    assert!(text.contains(&c.job_name()) && !text.contains(&plain.job_name()), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_context_without_a_namespace_means_default() {
    let h = Harness::start().await;
    let kubeconfig = h.dir.join("no-namespace.yaml");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n- name: k\n  cluster:\n    server: {}\n\
             contexts:\n- name: c\n  context:\n    cluster: k\n    user: u\nusers:\n- name: u\n  user: {{token: {}}}\n",
            h.cluster.url(),
            support::canary::get("kube-token")
        ),
    )
    .unwrap();
    let text = std::fs::read_to_string(&h.config).unwrap();
    let kc_line = text.lines().find(|l| l.starts_with("kubeconfig:")).unwrap().to_string();
    let config = h.dir.join("other.yaml");
    std::fs::write(&config, text.replace(&kc_line, &format!("kubeconfig: {}", kubeconfig.display()))).unwrap();
    let engine = ciao::engine::Engine::new(ciao::engine::ConfigSource::File(config));
    let r = run(&engine, "print('x')\n").await;
    r.ok();
    assert_eq!(h.names("jobs.batch", "default"), [r.job_name()]);
}
