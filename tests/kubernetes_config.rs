//! How the backend reaches the cluster, against the Kubernetes API stand-in
//! (`fake-cluster`, a stand-in for tests, not an API server): in-cluster
//! configuration from a service-account directory over TLS with a checked
//! bearer token that rotates while the session runs, and proxies.

mod kubeharness;
mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use ciao::backend::kubernetes::KubernetesBackend;
use ciao::backend::{Backend, CodeFile, JobReport, Outcome, Shipment, Submission};
use ciao::config::Config;
use ciao::frameworks::Frameworks;
use ciao::interpreter::params::Cell;
use ciao::output::{CellError, Output, OutputEvent, Stream};
use ciao::plan::Plan;
use kubeharness::Harness;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

/// The harness's config without its kubeconfig line (or with another).
fn config(h: &Harness, kubeconfig: Option<&Path>) -> Config {
    let text = std::fs::read_to_string(&h.config).unwrap();
    let mut text: String = text.lines().filter(|l| !l.starts_with("kubeconfig:")).map(|l| format!("{l}\n")).collect();
    if let Some(k) = kubeconfig {
        text.push_str(&format!("kubeconfig: {}\n", k.display()));
    }
    let env: BTreeMap<String, String> = [("HOME".to_string(), support::fresh_dir("home-").display().to_string())].into();
    Config::from_yaml(&text, None, &env).unwrap()
}

/// Runs a cell with the code in a ConfigMap through `backend`; returns the
/// report and the replica lines.
async fn run(backend: &KubernetesBackend, config: &Config, code: &str) -> (Result<JobReport, CellError>, String, String) {
    let frameworks = Frameworks::embedded();
    let Cell::Job(job) = ciao::interpreter::parse(code, frameworks, "python").unwrap() else { panic!("a job cell") };
    let plan = Plan::resolve_with(&job.params, config, frameworks, true).unwrap();
    let files = vec![CodeFile { key: "main.py".into(), path: plan.framework.code.clone(), content: job.code.as_bytes().to_vec() }];
    let shipment = Shipment::ConfigMap { base_image: plan.base_image.clone(), files };
    let digest = ciao::image::sha256_digest(job.code.as_bytes());
    let (out, mut rx) = Output::channel();
    let submission = Submission {
        plan: &plan,
        config,
        shipment: &shipment,
        cell_digest: &digest,
        session: "configtests",
    };
    let report = backend.run(submission, &out, &CancellationToken::new()).await;
    drop(out);
    let (mut stdout, mut stderr) = (String::new(), String::new());
    while let Some(e) = rx.recv().await {
        match e {
            OutputEvent::Text(Stream::Stdout, t) => stdout.push_str(&t),
            OutputEvent::Text(Stream::Stderr, t) => stderr.push_str(&t),
            _ => {}
        }
    }
    let error = report.as_ref().err().map(|e| format!("{e}\n{e:?}")).unwrap_or_default();
    support::canary::capture("rust-engine", &format!("{stdout}\n{stderr}\n{error}"));
    (report, stdout, stderr)
}

fn env(pairs: &[(&str, String)]) -> Arc<BTreeMap<String, String>> {
    let mut m: BTreeMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    m.entry("HOME".into()).or_insert_with(|| support::fresh_dir("home-").display().to_string());
    Arc::new(m)
}

fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_cluster_over_tls_with_a_rotating_service_account_token() {
    let secrets = support::fresh_dir("secrets-");
    let server_token = secrets.join("accepted-token");
    std::fs::write(&server_token, support::canary::get("kube-token")).unwrap();
    let sa = secrets.join("serviceaccount");
    let h = Harness::start_with(
        |o| {
            o.tls = true;
            o.token_file = Some(server_token.clone());
            o.serviceaccount_dir = Some(sa.clone());
            o.namespace = "incluster".into();
        },
        "",
    )
    .await;
    assert_eq!(std::fs::read_to_string(sa.join("token")).unwrap(), support::canary::get("kube-token"));
    let port = h.cluster.url().rsplit(':').next().unwrap().to_string();
    let backend = KubernetesBackend::with_env(env(&[
        ("KUBERNETES_SERVICE_HOST", "127.0.0.1".into()),
        ("KUBERNETES_SERVICE_PORT", port),
        ("CIAO_SERVICEACCOUNT_DIR", sa.display().to_string()),
    ]));
    let cfg = config(&h, None);

    let (report, stdout, _) = run(&backend, &cfg, "print('inside the cluster')\n").await;
    let report = report.unwrap();
    assert_eq!(report.outcome, Outcome::Succeeded);
    assert_eq!(report.namespace, "incluster", "the service account's namespace");
    assert_eq!(stdout, "[main-0] inside the cluster\n");

    // The token rotates: the server accepts only the new one from now on.
    replace(&server_token, support::canary::get("kube-token-rotated"));
    replace(&sa.join("token"), support::canary::get("kube-token-rotated"));
    let (report, stdout, _) = run(&backend, &cfg, "print('after rotation')\n").await;
    assert_eq!(report.unwrap().outcome, Outcome::Succeeded);
    assert_eq!(stdout, "[main-0] after rotation\n");

    // A token the server does not accept is a clear error, without the token.
    replace(&sa.join("token"), support::canary::get("wrong-password"));
    let (report, _, _) = run(&backend, &cfg, "print('rejected')\n").await;
    let e = report.unwrap_err();
    assert_eq!(e.ename, "Unauthorized");
    assert!(e.evalue.contains("401") && e.evalue.contains(&h.cluster.url()), "{}", e.evalue);
    assert!(support::canary::leaks(&format!("{e}\n{e:?}"), &[]).is_empty(), "{e:?}");
    replace(&sa.join("token"), support::canary::get("kube-token-rotated"));
    let (report, _, _) = run(&backend, &cfg, "print('accepted again')\n").await;
    assert_eq!(report.unwrap().outcome, Outcome::Succeeded);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubeconfig_token_file_is_read_again_when_it_changes() {
    let secrets = support::fresh_dir("secrets-");
    let token = secrets.join("token");
    std::fs::write(&token, support::canary::get("kube-token")).unwrap();
    let h = Harness::start_with(|o| o.token_file = Some(token.clone()), "").await;
    let backend = KubernetesBackend::with_env(env(&[]));
    let cfg = config(&h, Some(h.cluster.kubeconfig_path()));
    assert_eq!(run(&backend, &cfg, "print(1)\n").await.0.unwrap().outcome, Outcome::Succeeded);
    replace(&token, support::canary::get("kube-token-rotated"));
    assert_eq!(run(&backend, &cfg, "print(2)\n").await.0.unwrap().outcome, Outcome::Succeeded);
}

/// A CONNECT proxy on loopback that sends every tunnel to 127.0.0.1 on the
/// requested port, and records the requests.
async fn connect_proxy() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if client.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let text = String::from_utf8_lossy(&head).to_string();
                let line = text.lines().next().unwrap_or_default().to_string();
                log.lock().unwrap().push(line.clone());
                let port = line.split_whitespace().nth(1).and_then(|hp| hp.rsplit(':').next()).and_then(|p| p.parse::<u16>().ok());
                let Some(port) = port else { return };
                let Ok(mut upstream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else { return };
                if client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n").await.is_err() {
                    return;
                }
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            });
        }
    });
    (format!("http://{addr}"), seen)
}

/// A kubeconfig naming the stand-in by a host name only the proxy resolves.
fn proxied_kubeconfig(h: &Harness, proxy_url: Option<&str>) -> std::path::PathBuf {
    let port = h.cluster.url().rsplit(':').next().unwrap().to_string();
    let proxy = proxy_url.map(|p| format!("    proxy-url: {p}\n")).unwrap_or_default();
    let path = h.dir.join(format!("proxied-{}.yaml", proxy_url.is_some()));
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n- name: k\n  cluster:\n    server: http://cluster.ciao-test.invalid:{port}\n{proxy}\
             contexts:\n- name: c\n  context:\n    cluster: k\n    user: u\nusers:\n- name: u\n  user: {{token: {token}}}\n",
            token = support::canary::get("kube-token")
        ),
    )
    .unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_comes_from_the_environment_or_the_kubeconfig() {
    let h = Harness::start().await;
    let (proxy, seen) = connect_proxy().await;
    let backend = KubernetesBackend::with_env(env(&[("HTTP_PROXY", proxy.clone())]));
    let cfg = config(&h, Some(&proxied_kubeconfig(&h, None)));
    let (report, stdout, _) = run(&backend, &cfg, "print('through the proxy')\n").await;
    assert_eq!(report.unwrap().outcome, Outcome::Succeeded);
    assert_eq!(stdout, "[main-0] through the proxy\n");
    let tunnels = std::mem::take(&mut *seen.lock().unwrap());
    assert!(!tunnels.is_empty() && tunnels.iter().all(|l| l.starts_with("CONNECT cluster.ciao-test.invalid:")), "{tunnels:?}");

    let backend = KubernetesBackend::with_env(env(&[]));
    let cfg = config(&h, Some(&proxied_kubeconfig(&h, Some(&proxy))));
    let (report, _, _) = run(&backend, &cfg, "print('proxy-url')\n").await;
    assert_eq!(report.unwrap().outcome, Outcome::Succeeded);
    assert!(!seen.lock().unwrap().is_empty(), "the kubeconfig's proxy-url is used");
}
