//! The backend end to end on small jobs shipped as files (no image needed):
//! the success rule, failures, interrupts and the job commands.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::*;
use crate::backend::CodeFile;
use crate::frameworks::Frameworks;
use crate::interpreter::params::{JobParams, RoleParams};
use crate::output::OutputEvent;

fn plan(framework: &str, roles: &[(&str, u32)], on_interrupt: OnInterrupt) -> Plan {
    let params = JobParams {
        framework: Some(framework.into()),
        roles: roles
            .iter()
            .map(|(r, n)| RoleParams { role: r.to_string(), replicas: *n, resources: Default::default(), line: 1 })
            .collect(),
        on_interrupt: Some(on_interrupt),
        ..Default::default()
    };
    Plan::resolve_with(&params, &config(), Frameworks::embedded(), false).unwrap()
}

fn config() -> Config {
    Config::from_yaml("", None, &BTreeMap::new()).unwrap()
}

fn shipment(plan: &Plan, code: &str) -> Shipment {
    Shipment::ConfigMap {
        base_image: plan.base_image.clone(),
        files: vec![CodeFile {
            key: "main.py".into(),
            path: plan.framework.code.clone(),
            content: code.as_bytes().to_vec(),
        }],
    }
}

/// Everything the job showed as text: the replicas' lines (stdout) and the
/// `[ciao]` lines (stderr), in order.
fn text(rx: &mut tokio::sync::mpsc::UnboundedReceiver<OutputEvent>) -> String {
    let mut s = String::new();
    while let Ok(e) = rx.try_recv() {
        if let OutputEvent::Text(_, t) = e {
            s.push_str(&t);
        }
    }
    s
}

async fn run(backend: &LocalBackend, plan: &Plan, code: &str, cancel: &CancellationToken) -> (JobReport, String) {
    let config = config();
    let ship = shipment(plan, code);
    let (out, mut rx) = Output::channel();
    let sub =
        Submission { plan, config: &config, shipment: &ship, cell_digest: "sha256:0123456789abcdef", session: "s" };
    let report = backend.run(sub, &out, cancel).await.unwrap();
    (report, text(&mut rx))
}

/// The workers finish once they reached the parameter server, which serves forever.
const TF: &str = "import json, os, socket, time\n\
    c = json.loads(os.environ['TF_CONFIG'])\n\
    t = c['task']\n\
    print(t['type'], t['index'], flush=True)\n\
    host, port = c['cluster']['ps'][0].rsplit(':', 1)\n\
    if t['type'] == 'ps':\n    s = socket.create_server(('', int(port)))\n    time.sleep(600)\n\
    for _ in range(400):\n    try:\n        socket.create_connection((host, int(port))).close()\n        break\n    \
    except OSError:\n        time.sleep(0.025)\n";

#[tokio::test]
async fn workers_finishing_end_the_job_and_stop_the_parameter_server() {
    let backend = LocalBackend::new();
    let p = plan("tensorflow", &[("ps", 1), ("worker", 2)], OnInterrupt::Delete);
    let started = Instant::now();
    let (report, text) = run(&backend, &p, TF, &CancellationToken::new()).await;
    assert_eq!(report.outcome, Outcome::Succeeded, "{text}");
    assert!(started.elapsed() < Duration::from_secs(20), "the ps did not hold the job up");
    assert_eq!(
        (report.kind.as_str(), report.namespace.as_str(), report.name.as_str()),
        ("TFJob (local)", "", "tensorflow-01234567")
    );
    for line in ["[ps-0] ps 0", "[worker-0] worker 0", "[worker-1] worker 1", "[ciao] worker-1 Succeeded: Completed"] {
        assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
    }
    assert!(text.contains("[ciao] ps-0 Deleted: Stopped"), "{text}");
    // The same cell again gets the next name.
    let (again, _) = run(&backend, &p, TF, &CancellationToken::new()).await;
    assert_eq!(again.name, "tensorflow-01234567-1");
}

#[tokio::test]
async fn the_first_failing_replica_fails_the_job_with_its_last_lines() {
    let backend = LocalBackend::new();
    let p = plan("pytorch", &[("master", 1), ("worker", 1)], OnInterrupt::Delete);
    let code = "import os, sys, time\nprint('rank', os.environ['RANK'])\nif os.environ['RANK'] == '1':\n    sys.exit(3)\ntime.sleep(600)\n";
    let (report, text) = run(&backend, &p, code, &CancellationToken::new()).await;
    assert_eq!(
        report.outcome,
        Outcome::Failed { replica: Some("worker-0".into()), reason: "Error".into(), message: "exit code 3".into() },
        "{text}"
    );
    assert_eq!(report.tail, ["[worker-0] rank 1"]);
    assert!(text.contains("[ciao] master-0 Deleted: Stopped (another replica failed)"), "{text}");
    let e = report.into_cell_result().unwrap_err();
    assert_eq!(e.evalue, "PyTorchJob (local) pytorch-01234567 failed (worker-0 failed): Error: exit code 3");
}

#[tokio::test]
async fn a_program_that_cannot_start_is_the_replicas_failure() {
    let backend = LocalBackend::new();
    let mut p = plan("python", &[], OnInterrupt::Delete);
    p.framework.command = vec!["/nonexistent/interpreter".into(), "/app/main.py".into()];
    p.replicas[0].command = p.framework.command.clone();
    let (report, _) = run(&backend, &p, "print(1)\n", &CancellationToken::new()).await;
    match report.outcome {
        Outcome::Failed { replica, reason, message } => {
            assert_eq!((replica.as_deref(), reason.as_str()), (Some("main-0"), "StartError"));
            assert!(message.contains("/nonexistent/interpreter"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

/// Runs `code` and interrupts the cell once `line` was shown.
async fn run_until(backend: &LocalBackend, plan: &Plan, code: &str, line: &str) -> (JobReport, String) {
    let config = config();
    let ship = shipment(plan, code);
    let (out, mut rx) = Output::channel();
    let cancel = CancellationToken::new();
    let sub = Submission { plan, config: &config, shipment: &ship, cell_digest: "sha256:00", session: "s" };
    let mut seen = String::new();
    let watch = async {
        while let Some(e) = rx.recv().await {
            if let OutputEvent::Text(_, t) = e {
                seen.push_str(&t);
                if !cancel.is_cancelled() && seen.contains(line) {
                    cancel.cancel();
                }
            }
        }
    };
    let run = async {
        let r = backend.run(sub, &out, &cancel).await;
        drop(out);
        r
    };
    let (report, ()) = tokio::join!(run, watch);
    (report.unwrap(), seen)
}

#[tokio::test]
async fn an_interrupt_deletes_the_job_promptly() {
    let backend = LocalBackend::new();
    let p = plan("python", &[], OnInterrupt::Delete);
    let started = Instant::now();
    let code = "import time\nprint('up', flush=True)\ntime.sleep(600)\n";
    let (report, text) = run_until(&backend, &p, code, "[main-0] up\n").await;
    assert_eq!(report.outcome, Outcome::Deleted, "{text}");
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    assert!(text.contains("[ciao] main-0 Deleted: Interrupted"), "{text}");
}

#[tokio::test]
async fn a_detached_job_is_listed_replayed_and_deleted_by_name() {
    let backend = LocalBackend::new();
    let p = plan("python", &[], OnInterrupt::Detach);
    let config = config();
    let code = "import time\nprint('first', flush=True)\ntime.sleep(600)\n";
    let (report, _) = run_until(&backend, &p, code, "[main-0] first\n").await;
    assert_eq!(report.outcome, Outcome::Detached);
    let name = report.name.clone();
    let never = CancellationToken::new();
    let (out, mut rx) = Output::channel();
    let jobs = backend.command(&JobCommand::Jobs, &config, None, &out, &never).await.unwrap().unwrap();
    let table = jobs["text/plain"].as_str().unwrap();
    assert!(table.lines().any(|l| l.starts_with(&name) && l.contains("Running")), "{table}");
    backend
        .command(&JobCommand::Logs { name: name.clone(), follow: false }, &config, None, &out, &never)
        .await
        .unwrap();
    assert_eq!(text(&mut rx), "[main-0] first\n");
    backend.command(&JobCommand::Delete { name: name.clone() }, &config, None, &out, &never).await.unwrap();
    assert!(text(&mut rx).contains("stopped its replicas and deleted it"));
    let e = backend.command(&JobCommand::Attach { name }, &config, None, &out, &never).await.unwrap_err();
    assert_eq!(e.ename, "NotFound");
}

#[tokio::test]
async fn secret_env_is_refused_before_anything_runs() {
    let backend = LocalBackend::new();
    let mut p = plan("python", &[], OnInterrupt::Delete);
    p.secret_env.push(crate::interpreter::params::SecretEnv { var: "T".into(), secret: "s".into(), key: "k".into() });
    let config = config();
    let ship = shipment(&p, "print(1)\n");
    let (out, _rx) = Output::channel();
    let sub = Submission { plan: &p, config: &config, shipment: &ship, cell_digest: "sha256:00", session: "s" };
    let e = backend.run(sub, &out, &CancellationToken::new()).await.unwrap_err();
    assert_eq!(e.ename, "MagicError");
    assert!(e.evalue.contains("Kubernetes Secrets") && e.evalue.contains("%env"), "{}", e.evalue);
}
