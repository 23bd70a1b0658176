//! The `fake-cluster` binary: prints its URL first, writes a kubeconfig, serves the admin API.

mod common;

use std::io::BufRead;
use std::process::{Command, Stdio};

#[tokio::test]
async fn binary_prints_its_url_first_and_writes_a_kubeconfig() {
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kubeconfig");
    let mut child = Command::new(env!("CARGO_BIN_EXE_fake-cluster"))
        .args(["--port", "0", "--kubeconfig-out"])
        .arg(&kc)
        .arg("--crd-dir")
        .arg(common::spec_dir("training-operator-v1.9.0"))
        .args(["--namespace", "team-a", "--token", "t0k3n", "--node-gpus", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    let url = first.trim().strip_prefix("listening on ").expect("first line names the URL").to_string();
    assert!(url.starts_with("http://127.0.0.1:"));
    let text = std::fs::read_to_string(&kc).unwrap();
    assert!(text.contains(&url) && text.contains("team-a") && text.contains("t0k3n"), "{text}");
    let http = reqwest::Client::new();
    let node: serde_json::Value = http.get(format!("{url}/_fake/node")).send().await.unwrap().json().await.unwrap();
    assert_eq!(node["gpus"], 2);
    let r = http.get(format!("{url}/api/v1/namespaces/team-a")).bearer_auth("t0k3n").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = http.get(format!("{url}/apis/kubeflow.org/v1")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let _ = child.kill();
    let _ = child.wait();
}
