//! `ciao run CELL_FILE` against the Kubernetes API stand-in (`fake-cluster`,
//! a stand-in for tests, not an API server): the same lines as the kernel,
//! the exit status of the job, `--detach`, the environment's settings, and
//! Ctrl-C.

mod kubeharness;
mod support;

use std::process::Stdio;

use kubeharness::{Harness, eventually};
use tokio::io::{AsyncBufReadExt, BufReader};

fn cell_file(h: &Harness, code: &str) -> std::path::PathBuf {
    let path = h.dir.join(format!("cell-{}.py", uuid::Uuid::new_v4().simple()));
    std::fs::write(&path, code).unwrap();
    path
}

fn ciao(h: &Harness, args: &[&str]) -> tokio::process::Command {
    let mut cmd: tokio::process::Command = support::tools::ciao().into();
    for (k, _) in std::env::vars() {
        if k.starts_with("KUBE") || k.ends_with("_PROXY") || k.ends_with("_proxy") {
            cmd.env_remove(k);
        }
    }
    cmd.arg("run").arg("--config").arg(&h.config).args(args).env("CIAO_LOG", "warn");
    cmd.kill_on_drop(true);
    cmd
}

async fn output(mut cmd: tokio::process::Command) -> (i32, String, String) {
    let out = cmd.output().await.unwrap();
    support::canary::capture_output(&out);
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_succeeding_cell_prints_its_lines_then_the_table_and_exits_0() {
    let h = Harness::start().await;
    let cell = cell_file(&h, "print('hello from the command line')\n");
    let (code, stdout, stderr) = output(ciao(&h, &[cell.to_str().unwrap()])).await;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let name = kubeharness::job_name(&stderr).unwrap();
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some("[main-0] hello from the command line"));
    assert!(lines.next().unwrap().starts_with(&format!("Job default/{name} · Succeeded · ")), "{stdout}");
    assert_eq!(stdout.matches(&format!("Job default/{name} ·")).count(), 1, "the table once, as it ended: {stdout}");
    assert!(stderr.contains("[ciao] image ") && stderr.contains(&format!("[ciao] Job default/{name} Succeeded after ")), "{stderr}");
    // The push display, as it ended, on stderr: stdout is the job's.
    let push = stderr.lines().find(|l| l.starts_with("[ciao] image pushed ")).expect(&stderr);
    assert!(push.contains(" sent · blobs: ") && push.contains(" uploaded · "), "{push}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_cell_exits_1_with_the_replicas_traceback() {
    let h = Harness::start().await;
    let cell = cell_file(&h, "print('about to fail', flush=True)\nraise RuntimeError('boom')\n");
    let (code, stdout, stderr) = output(ciao(&h, &[cell.to_str().unwrap()])).await;
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    let name = kubeharness::job_name(&stderr).unwrap();
    assert!(stderr.contains(&format!("JobFailed: Job default/{name} failed (main-0 failed)")), "{stderr}");
    assert!(stderr.trim_end().ends_with("[main-0] RuntimeError: boom"), "{stderr}");
    assert!(stdout.starts_with("[main-0] about to fail\n"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detach_returns_once_the_job_exists_and_prints_its_name_last() {
    let h = Harness::start().await;
    let cell = cell_file(&h, "import time\ntime.sleep(1)\nprint('done later')\n");
    let (code, stdout, stderr) = output(ciao(&h, &["--detach", cell.to_str().unwrap()])).await;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let name = stdout.lines().last().unwrap().to_string();
    assert!(name.starts_with("python-"), "{stdout}");
    assert_eq!(h.names("jobs.batch", "default"), std::slice::from_ref(&name));
    assert!(!stdout.contains("done later"), "{stdout}");
    eventually(30, "the detached job to finish", || async {
        let job = h.cluster.object("jobs.batch", "default", &name)?;
        job["status"]["succeeded"].as_u64().filter(|n| *n == 1)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_environments_namespace_wins_over_the_configs() {
    let h = Harness::start().await;
    h.namespace("fromconfig").await;
    h.namespace("fromenv").await;
    std::fs::write(&h.config, format!("{}namespace: fromconfig\n", std::fs::read_to_string(&h.config).unwrap())).unwrap();
    let cell = cell_file(&h, "print('env')\n");
    let mut cmd = ciao(&h, &[cell.to_str().unwrap()]);
    cmd.env("CIAO_NAMESPACE", "fromenv");
    let (code, stdout, stderr) = output(cmd).await;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(h.names("jobs.batch", "fromenv").len(), 1);
    assert!(h.names("jobs.batch", "fromconfig").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_process_reaches_an_in_cluster_api_server_over_tls() {
    let secrets = support::fresh_dir("secrets-");
    let sa = secrets.join("sa");
    let h = Harness::start_with(
        |o| {
            o.tls = true;
            o.token = Some(support::canary::get("kube-token").into());
            o.serviceaccount_dir = Some(sa.clone());
        },
        "",
    )
    .await;
    let text: String = std::fs::read_to_string(&h.config).unwrap().lines().filter(|l| !l.starts_with("kubeconfig:")).map(|l| format!("{l}\n")).collect();
    std::fs::write(&h.config, text).unwrap();
    let cell = cell_file(&h, "print('over tls')\n");
    let mut cmd = ciao(&h, &[cell.to_str().unwrap()]);
    cmd.env("KUBERNETES_SERVICE_HOST", "127.0.0.1")
        .env("KUBERNETES_SERVICE_PORT", h.cluster.url().rsplit(':').next().unwrap())
        .env("CIAO_SERVICEACCOUNT_DIR", &sa);
    let (code, stdout, stderr) = output(cmd).await;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.starts_with("[main-0] over tls\n"), "{stdout}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_deletes_the_job_and_exits_130() {
    let h = Harness::start().await;
    let cell = cell_file(&h, "import time\nprint('started', flush=True)\ntime.sleep(60)\n");
    let mut cmd = ciao(&h, &[cell.to_str().unwrap()]);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    while let Some(line) = lines.next_line().await.unwrap() {
        if line == "[main-0] started" {
            break;
        }
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id().unwrap() as i32), nix::sys::signal::Signal::SIGINT).unwrap();
    let status = child.wait().await.unwrap();
    let mut stderr = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).await.unwrap();
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("KeyboardInterrupt: interrupted: Job default/") && stderr.contains("were deleted"), "{stderr}");
    eventually(15, "the job and its pod to go", || async {
        (h.names("jobs.batch", "default").is_empty() && h.names("pods", "default").is_empty()).then_some(())
    })
    .await;
}
