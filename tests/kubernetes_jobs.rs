//! Submit and follow, end to end, for every job kind: cells run through the
//! real engine against a real registry and the Kubernetes API stand-in
//! (`fake-cluster`, a stand-in for tests — not a Kubernetes API server —
//! whose simulated operators run each replica as a local process).

mod kubeharness;
mod support;

use kubeharness::{Harness, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tfjob_streams_each_replicas_tf_config_task_under_its_prefix() {
    let h = Harness::start().await;
    let engine = h.engine();
    // Worker 0's end is the job's end (the operator's success policy): it
    // waits a little so the other replicas are done too.
    let cell = "%framework=tensorflow\n%ps=1\n%worker=2\nimport json, os, time\ntask = json.loads(os.environ['TF_CONFIG'])['task']\n\
                print('task', task['type'], task['index'], flush=True)\nif task == {'type': 'worker', 'index': 0}:\n    time.sleep(1.5)\n";
    let r = run(&engine, cell).await;
    r.ok();
    assert_eq!(r.replica("ps-0"), ["task ps 0"]);
    assert_eq!(r.replica("worker-0"), ["task worker 0"]);
    assert_eq!(r.replica("worker-1"), ["task worker 1"]);
    let mut lines = r.screen();
    lines.sort();
    assert_eq!(lines, ["[ps-0] task ps 0", "[worker-0] task worker 0", "[worker-1] task worker 1"]);
    let err = r.stderr();
    let name = r.job_name();
    assert!(err.contains(&format!("[ciao] TFJob default/{name} created: 3 replicas expected\n")), "{err}");
    assert!(err.contains(&format!("[ciao] TFJob default/{name} Succeeded after ")), "{err}");
    assert_eq!(h.names("tfjobs.kubeflow.org", "default"), [name]);
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pytorchjob_gives_each_replica_its_rank_and_the_world_size() {
    let h = Harness::start().await;
    let r = run(&h.engine(), "%framework=pytorch\n%master=1\n%worker=2\nimport os, time\nprint('rank', os.environ['RANK'], 'of', os.environ['WORLD_SIZE'], flush=True)\n\
                              if os.environ['RANK'] == '0':\n    time.sleep(1.5)\n").await;
    r.ok();
    assert_eq!(r.replica("master-0"), ["rank 0 of 3"]);
    assert_eq!(r.replica("worker-0"), ["rank 1 of 3"]);
    assert_eq!(r.replica("worker-1"), ["rank 2 of 3"]);
    assert!(r.stderr().contains("[ciao] PyTorchJob default/"), "{}", r.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xgboost_paddle_and_jax_jobs_run_with_their_operators_environment() {
    let h = Harness::start().await;
    let engine = h.engine();
    // The master's end is the job's end (as XGBoost's tracker): it waits for the worker here.
    let r = run(&engine, "%framework=xgboost\n%master=1\n%worker=1\n%cleanPolicy=none\nimport os, time\nprint('rank', os.environ['RANK'], 'of', os.environ['WORLD_SIZE'], flush=True)\nif os.environ['RANK'] == '0':\n    time.sleep(2)\n").await;
    r.ok();
    assert_eq!((r.replica("master-0"), r.replica("worker-0")), (vec!["rank 0 of 2".to_string()], vec!["rank 1 of 2".to_string()]));

    let r = run(&engine, "%framework=paddle\n%worker=2\nimport os, time\nprint('nodes', os.environ['PADDLE_NNODES'], 'job', os.environ['PADDLE_JOB_ID'], flush=True)\n\
                          if os.environ['HOSTNAME'].endswith('-worker-0'):\n    time.sleep(1.5)\n").await;
    r.ok();
    let name = r.job_name();
    assert_eq!(r.replica("worker-0"), [format!("nodes 2 job {name}")]);
    assert_eq!(r.replica("worker-1"), [format!("nodes 2 job {name}")]);
    assert!(r.stderr().contains(&format!("[ciao] PaddleJob default/{name} Succeeded")), "{}", r.stderr());

    let r = run(&engine, "%framework=jax\n%worker=2\nimport os, time\nprint('process', os.environ['PROCESS_ID'], 'of', os.environ['NUM_PROCESSES'], flush=True)\n\
                          if os.environ['PROCESS_ID'] == '0':\n    time.sleep(1.5)\n").await;
    r.ok();
    assert_eq!((r.replica("worker-0"), r.replica("worker-1")), (vec!["process 0 of 2".to_string()], vec!["process 1 of 2".to_string()]));
    assert!(r.stderr().contains("[ciao] JAXJob default/"), "{}", r.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trainjob_runs_one_pod_per_node_named_after_its_index() {
    let h = Harness::start().await;
    let r = run(&h.engine(), "%framework=trainjob\n%nodes=2\n%cleanPolicy=all\nimport os\nprint('node', os.environ['PET_NODE_RANK'], 'of', os.environ['PET_NNODES'])\n").await;
    r.ok();
    assert!(r.stderr().contains("[ciao] warning: %cleanPolicy=all does not apply to a TrainJob"), "the renderer's warnings are shown: {}", r.stderr());
    assert_eq!(r.replica("node-0"), ["node 0 of 2"]);
    assert_eq!(r.replica("node-1"), ["node 1 of 2"]);
    let name = r.job_name();
    assert!(r.stderr().contains(&format!("[ciao] TrainJob default/{name} Succeeded")), "{}", r.stderr());
    assert_eq!(h.names("trainjobs.trainer.kubeflow.org", "default"), [name]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_cell_runs_as_a_batch_job_named_main_0() {
    let h = Harness::start().await;
    let r = run(&h.engine(), "print('hello from a Job')\nprint('second line')\n").await;
    r.ok();
    assert_eq!(r.screen(), ["[main-0] hello from a Job", "[main-0] second line"]);
    let name = r.job_name();
    assert!(r.stderr().contains(&format!("[ciao] Job default/{name} created: 1 replica expected")), "{}", r.stderr());
    assert_eq!(h.names("jobs.batch", "default"), [name]);
}

// Ranks share the launcher's log: each writes its line in one system call.
const MPI_CELL: &str = "%framework=mpi\n%worker=2\nimport os\nos.write(1, ('rank %s of %s\\n' % (os.environ['OMPI_COMM_WORLD_RANK'], os.environ['OMPI_COMM_WORLD_SIZE'])).encode())\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mpijob_uses_v2beta1_when_the_mpi_operator_serves_it() {
    let h = Harness::start_with(|o| o.crd_dirs.push(kubeharness::crd_dir("mpi-operator-v0.8.0")), "").await;
    let r = run(&h.engine(), MPI_CELL).await;
    r.ok();
    assert_eq!(sorted(r.replica("launcher-0")), ["rank 0 of 2", "rank 1 of 2"]);
    let jobs = h.objects("mpijobs.kubeflow.org", "default");
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0]["apiVersion"], "kubeflow.org/v2beta1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mpijob_falls_back_to_v1_from_the_training_operator() {
    let h = Harness::start().await;
    let r = run(&h.engine(), MPI_CELL).await;
    r.ok();
    assert_eq!(sorted(r.replica("launcher-0")), ["rank 0 of 2", "rank 1 of 2"]);
    let jobs = h.objects("mpijobs.kubeflow.org", "default");
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0]["apiVersion"], "kubeflow.org/v1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exception_in_worker_1_fails_the_job_with_worker_1s_last_lines() {
    let h = Harness::start().await;
    let cell = "%framework=tensorflow\n%worker=2\nimport json, os, time\ntask = json.loads(os.environ['TF_CONFIG'])['task']\n\
                print('starting', task['index'], flush=True)\nif task['index'] == 1:\n    raise ValueError('worker one is broken')\n\
                time.sleep(2)\nprint('done', task['index'])\n";
    let r = run(&h.engine(), cell).await;
    let e = r.error();
    let name = r.job_name();
    assert_eq!(e.ename, "JobFailed");
    assert!(e.evalue.starts_with(&format!("TFJob default/{name} failed (worker-1 failed): ")), "{}", e.evalue);
    assert_eq!(e.traceback.first().map(String::as_str), Some("[worker-1] starting 1"), "{:?}", e.traceback);
    assert_eq!(e.traceback.last().map(String::as_str), Some("[worker-1] ValueError: worker one is broken"), "{:?}", e.traceback);
    assert!(e.traceback.iter().any(|l| l.starts_with("[worker-1] Traceback (most recent call last)")), "{:?}", e.traceback);
    assert!(e.traceback.iter().all(|l| l.starts_with("[worker-1] ")), "{:?}", e.traceback);
    assert_eq!(r.replica("worker-1").last().map(String::as_str), Some("ValueError: worker one is broken"));
    assert!(r.stderr().contains(&format!("[ciao] TFJob default/{name} Failed after ")), "{}", r.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pull_secret_pod_template_patch_and_istio_switch_reach_the_job() {
    let h = Harness::start().await;
    let host = h.registry.host.clone();
    let api: kube::Api<k8s_openapi::api::core::v1::Secret> = kube::Api::default_namespaced(h.client().await);
    let auths = serde_json::json!({"auths": {}}).to_string();
    let secret = serde_json::json!({"metadata": {"name": "regcred"}, "type": "kubernetes.io/dockerconfigjson", "stringData": {".dockerconfigjson": auths}});
    api.create(&Default::default(), &serde_json::from_value(secret).unwrap()).await.unwrap();
    let text = std::fs::read_to_string(&h.config).unwrap();
    let text = text.replace(&format!("  {host}:\n    insecure: true\n"), &format!("  {host}:\n    insecure: true\n    pullSecret: regcred\n"));
    let config = h.dir.join("options.yaml");
    std::fs::write(&config, format!("{text}podTemplate:\n  metadata:\n    labels:\n      team: vision\n")).unwrap();
    let engine = ciao::engine::Engine::new(ciao::engine::ConfigSource::File(config));
    let r = run(&engine, "print('patched')\n").await;
    r.ok();
    let job = h.cluster.object("jobs.batch", "default", &r.job_name()).unwrap();
    let template = &job["spec"]["template"];
    assert_eq!(template["spec"]["imagePullSecrets"], serde_json::json!([{"name": "regcred"}]));
    assert_eq!(template["metadata"]["labels"]["team"], "vision");
    assert_eq!(template["metadata"]["annotations"]["sidecar.istio.io/inject"], "false");
    let pods = h.objects("pods", "default");
    assert_eq!(pods.len(), 1);
    assert_eq!(pods[0]["metadata"]["labels"]["team"], "vision");
}
