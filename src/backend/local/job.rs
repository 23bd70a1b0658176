//! A local job: its shared state (an event log every follower reads at its
//! own pace, the replicas' phases, the outcome) and the supervisor that runs
//! its processes.
//!
//! The supervisor owns the processes; cells only follow. So a detached job
//! keeps running (and its output keeps being read and buffered) after its
//! cell ended, and `%logs` / `%attach` replay the buffer.
//!
//! The success rule, kept simple: the job succeeds when every replica that
//! must finish has exited 0; replicas that serve (TensorFlow parameter
//! servers and evaluators) are then stopped, as the operator's cleanPodPolicy
//! `Running` does. The first replica that exits non-zero fails the job and
//! the others are stopped. Stopping is `SIGTERM` to each replica's process
//! group, then `SIGKILL` after [`STOP_GRACE`]. When a replica's main process
//! exits, what it left running in its group is killed, as a container's
//! processes go with it.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use nix::sys::signal::Signal;
use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::backend::Outcome;
use crate::backend::status::{Condition, ReplicaState};

use super::env::ReplicaSpec;
use super::process::{self, Group, Launch};
use super::workspace::Workspace;

/// How long stopped replicas get between `SIGTERM` and `SIGKILL`.
pub const STOP_GRACE: Duration = Duration::from_secs(2);

/// How long a replica's output may still be read after its main process
/// exited (something it started may hold the pipe open).
const DRAIN: Duration = Duration::from_secs(1);

/// Output a job keeps for `%logs` and `%attach`; older output is dropped.
const MAX_LOG_BYTES: usize = 32 << 20;
const MAX_EVENTS: usize = 200_000;

/// The name of the stream pip writes to while `%packages` are installed.
pub const PIP_STREAM: &str = "pip";

/// One thing that happened in a job, in order.
#[derive(Debug, Clone)]
pub enum Event {
    /// Bytes written by stream `stream` (a replica, or pip).
    Output {
        stream: usize,
        data: Bytes,
    },
    /// The stream ended: its partial line is complete.
    Closed {
        stream: usize,
    },
    /// A line of ciao's own, shown as is.
    Note(String),
    Replica(ReplicaState),
    Condition(Condition),
    Finished {
        condition: Condition,
        outcome: Outcome,
    },
}

impl Event {
    fn size(&self) -> usize {
        match self {
            Event::Output { data, .. } => data.len(),
            Event::Note(s) => s.len(),
            _ => 0,
        }
    }
}

/// What a follower gets from [`Job::read_from`].
pub struct Read {
    pub events: Vec<Event>,
    /// Events dropped from the buffer before the follower read them.
    pub skipped: u64,
    /// The cursor after these events.
    pub next: u64,
}

#[derive(Debug)]
struct State {
    events: VecDeque<Event>,
    /// The absolute index of `events[0]`.
    base: u64,
    bytes: usize,
    phases: Vec<ReplicaState>,
    condition: Condition,
    outcome: Option<Outcome>,
    elapsed: Option<Duration>,
    /// Process groups whose leader has not exited yet, by replica.
    groups: Vec<Option<Group>>,
}

/// A job of this kernel, running or finished.
#[derive(Debug)]
pub struct Job {
    pub name: String,
    /// `TFJob (local)`.
    pub kind: String,
    /// Replica names, then [`PIP_STREAM`] when packages are installed.
    pub streams: Vec<String>,
    pub replicas: usize,
    pub created: SystemTime,
    started: Instant,
    /// Cancelled to delete the job (stop every replica).
    pub stop: CancellationToken,
    state: Mutex<State>,
    changed: watch::Sender<u64>,
}

impl Job {
    pub fn new(name: String, kind: String, replicas: &[ReplicaSpec], pip: bool) -> Arc<Job> {
        let mut streams: Vec<String> = replicas.iter().map(|r| r.name.clone()).collect();
        if pip {
            streams.push(PIP_STREAM.into());
        }
        let phases = replicas
            .iter()
            .map(|r| ReplicaState {
                name: r.name.clone(),
                phase: "Pending".into(),
                reason: None,
                message: None,
                restarts: 0,
            })
            .collect();
        Arc::new(Job {
            name,
            kind,
            streams,
            replicas: replicas.len(),
            created: SystemTime::now(),
            started: Instant::now(),
            stop: CancellationToken::new(),
            state: Mutex::new(State {
                events: VecDeque::new(),
                base: 0,
                bytes: 0,
                phases,
                condition: Condition { state: "Created".into(), reason: None, message: None },
                outcome: None,
                elapsed: None,
                groups: vec![None; replicas.len()],
            }),
            changed: watch::channel(0).0,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("job state lock")
    }

    /// Appends `event` and wakes the followers.
    pub fn push(&self, event: Event) {
        let mut s = self.lock();
        match &event {
            Event::Replica(r) => {
                if let Some(p) = s.phases.iter_mut().find(|p| p.name == r.name) {
                    *p = r.clone();
                }
            }
            Event::Condition(c) => s.condition = c.clone(),
            Event::Finished { condition, outcome } => {
                s.condition = condition.clone();
                s.outcome = Some(outcome.clone());
                s.elapsed = Some(self.started.elapsed());
            }
            _ => {}
        }
        s.bytes += event.size();
        s.events.push_back(event);
        while (s.bytes > MAX_LOG_BYTES || s.events.len() > MAX_EVENTS) && s.events.len() > 1 {
            let dropped = s.events.pop_front().expect("not empty");
            s.bytes -= dropped.size();
            s.base += 1;
        }
        let total = s.base + s.events.len() as u64;
        drop(s);
        self.changed.send_replace(total);
    }

    /// The events from `cursor` on.
    pub fn read_from(&self, cursor: u64) -> Read {
        let s = self.lock();
        let start = cursor.max(s.base);
        let events: Vec<Event> = s.events.iter().skip((start - s.base) as usize).cloned().collect();
        Read { skipped: start - cursor, next: start + events.len() as u64, events }
    }

    /// The cursor after the last event so far.
    pub fn end(&self) -> u64 {
        let s = self.lock();
        s.base + s.events.len() as u64
    }

    /// Wakes up when events are pushed.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// The replicas' current phases.
    pub fn phases(&self) -> Vec<ReplicaState> {
        self.lock().phases.clone()
    }

    /// The job's condition (`Running`, `Succeeded`, …).
    pub fn condition(&self) -> Condition {
        self.lock().condition.clone()
    }

    /// The outcome, once the job is over.
    pub fn outcome(&self) -> Option<Outcome> {
        self.lock().outcome.clone()
    }

    /// How long the job ran (so far).
    pub fn elapsed(&self) -> Duration {
        self.lock().elapsed.unwrap_or_else(|| self.started.elapsed())
    }

    fn set_group(&self, replica: usize, group: Option<Group>) {
        self.lock().groups[replica] = group;
    }

    /// Kills every process group still running, at once (the kernel is going away).
    pub fn kill_now(&self) {
        for g in self.lock().groups.iter().flatten() {
            g.signal(Signal::SIGKILL);
        }
    }

    fn phase(&self, name: &str, phase: &str, reason: Option<&str>, message: Option<String>) {
        self.push(Event::Replica(ReplicaState {
            name: name.to_string(),
            phase: phase.to_string(),
            reason: reason.map(String::from),
            message,
            restarts: 0,
        }));
    }
}

/// Everything the supervisor needs to run a job.
pub struct Setup {
    pub workspace: Workspace,
    pub replicas: Vec<ReplicaSpec>,
    /// The environment every replica starts from (host, image, `%env`).
    pub env: BTreeMap<String, String>,
    /// The host's Python, when a command or pip needs it.
    pub python: Option<PathBuf>,
    /// Whether the host Python has pip (else the venv gets its own).
    pub has_pip: bool,
    pub packages: Vec<String>,
    pub pip_index_url: Option<String>,
}

/// Runs the job to its end and records the outcome; the workspace (and the
/// virtual environment in it) is removed before the job is marked finished.
pub async fn supervise(job: Arc<Job>, setup: Setup) {
    let Setup { workspace, replicas, env, python, has_pip, packages, pip_index_url } = setup;
    let mut python = python;
    let mut env = env;
    let outcome = 'run: {
        if !packages.is_empty() {
            let host = python.clone().unwrap_or_else(|| PathBuf::from("python3"));
            match install(&job, &workspace, &env, &host, has_pip, &packages, pip_index_url.as_deref()).await {
                Ok(venv_python) => {
                    let bin = workspace.venv().join("bin");
                    let path = env.get("PATH").cloned().unwrap_or_default();
                    env.insert(
                        "PATH".into(),
                        if path.is_empty() { bin.display().to_string() } else { format!("{}:{path}", bin.display()) },
                    );
                    env.insert("VIRTUAL_ENV".into(), workspace.venv().display().to_string());
                    python = Some(venv_python);
                }
                Err(_) if job.stop.is_cancelled() => break 'run Outcome::Deleted,
                Err(outcome) => break 'run outcome,
            }
        }
        run_replicas(&job, &workspace, &replicas, &env, python.as_deref()).await
    };
    drop(workspace);
    let condition = match &outcome {
        Outcome::Succeeded => Condition { state: "Succeeded".into(), reason: None, message: None },
        Outcome::Failed { replica, reason, message } => Condition {
            state: "Failed".into(),
            reason: Some(match replica {
                Some(r) => format!("{r} failed: {reason}"),
                None => reason.clone(),
            }),
            message: (!message.is_empty()).then(|| message.clone()),
        },
        Outcome::Deleted => Condition { state: "Deleted".into(), reason: None, message: None },
        Outcome::Detached => Condition { state: "Detached".into(), reason: None, message: None },
    };
    job.push(Event::Finished { condition, outcome });
}

/// Reads a process's merged output into the job's log until it ends.
async fn read_output(job: Arc<Job>, stream: usize, mut output: tokio::net::unix::pipe::Receiver) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match output.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => job.push(Event::Output { stream, data: Bytes::copy_from_slice(&buf[..n]) }),
        }
    }
}

/// Waits for the group leader, kills what it left, drains its output.
async fn watch_process(
    job: Arc<Job>,
    replica: Option<usize>,
    stream: usize,
    started: process::Started,
) -> std::io::Result<std::process::ExitStatus> {
    let process::Started { mut child, output, group } = started;
    let mut reader = tokio::spawn(read_output(job.clone(), stream, output));
    let status = child.wait().await;
    group.signal(Signal::SIGKILL);
    if let Some(r) = replica {
        job.set_group(r, None);
    }
    if tokio::time::timeout(DRAIN, &mut reader).await.is_err() {
        reader.abort();
    }
    job.push(Event::Closed { stream });
    status
}

fn full_env(env: &BTreeMap<String, String>, spec: &ReplicaSpec) -> Vec<(String, String)> {
    let mut e = env.clone();
    // The operator's variables come last in the pod spec, so they win.
    for (k, v) in &spec.env {
        e.insert(k.clone(), v.clone());
    }
    e.into_iter().collect()
}

async fn run_replicas(
    job: &Arc<Job>,
    workspace: &Workspace,
    replicas: &[ReplicaSpec],
    env: &BTreeMap<String, String>,
    python: Option<&std::path::Path>,
) -> Outcome {
    let (exits_tx, mut exits) = mpsc::unbounded_channel::<(usize, std::io::Result<std::process::ExitStatus>)>();
    let mut alive: Vec<Option<Group>> = vec![None; replicas.len()];
    let mut failure: Option<Outcome> = None;
    for (i, spec) in replicas.iter().enumerate() {
        if job.stop.is_cancelled() {
            break;
        }
        let launch: Launch = workspace.launch(&spec.command, python, full_env(env, spec));
        match process::start(&launch) {
            Ok(started) => {
                alive[i] = Some(started.group);
                job.set_group(i, Some(started.group));
                job.phase(&spec.name, "Running", None, None);
                let (job, tx) = (job.clone(), exits_tx.clone());
                tokio::spawn(async move {
                    let status = watch_process(job, Some(i), i, started).await;
                    let _ = tx.send((i, status));
                });
            }
            Err(e) => {
                let message = format!("cannot start {}: {e}", launch.program);
                job.phase(&spec.name, "Failed", Some("StartError"), Some(message.clone()));
                failure =
                    Some(Outcome::Failed { replica: Some(spec.name.clone()), reason: "StartError".into(), message });
                break;
            }
        }
    }
    drop(exits_tx);
    if failure.is_none() && !job.stop.is_cancelled() {
        job.push(Event::Condition(Condition { state: "Running".into(), reason: None, message: None }));
    }

    let must_finish = |alive: &[Option<Group>]| replicas.iter().zip(alive).any(|(r, a)| !r.serves && a.is_some());
    let mut stopped_by_user = false;
    if failure.is_none() {
        loop {
            if !must_finish(&alive) {
                break;
            }
            tokio::select! {
                biased;
                exit = exits.recv() => {
                    let Some((i, status)) = exit else { break };
                    alive[i] = None;
                    let name = &replicas[i].name;
                    match status {
                        Ok(s) if s.success() => job.phase(name, "Succeeded", Some("Completed"), None),
                        Ok(s) => {
                            let (_, message) = process::describe_exit(s);
                            job.phase(name, "Failed", Some("Error"), Some(message.clone()));
                            failure = Some(Outcome::Failed { replica: Some(name.clone()), reason: "Error".into(), message });
                            break;
                        }
                        Err(e) => {
                            let message = format!("cannot wait for it: {e}");
                            job.phase(name, "Failed", Some("Error"), Some(message.clone()));
                            failure = Some(Outcome::Failed { replica: Some(name.clone()), reason: "Error".into(), message });
                            break;
                        }
                    }
                }
                _ = job.stop.cancelled() => {
                    stopped_by_user = true;
                    break;
                }
            }
        }
    }
    if job.stop.is_cancelled() {
        stopped_by_user = true;
    }

    // Stop whatever still runs.
    let why = if stopped_by_user {
        ("Interrupted", "the job was deleted")
    } else if failure.is_some() {
        ("Stopped", "another replica failed")
    } else {
        ("Stopped", "the job is done; serving replicas stop with it, as with cleanPodPolicy Running")
    };
    let rest: Vec<usize> = (0..replicas.len()).filter(|i| alive[*i].is_some()).collect();
    if !rest.is_empty() {
        let groups: Vec<Group> = rest.iter().filter_map(|i| alive[*i]).collect();
        let mut pending = rest.len();
        let collect = async {
            while pending > 0 {
                match exits.recv().await {
                    Some(_) => pending -= 1,
                    None => break,
                }
            }
        };
        process::terminate(&groups, STOP_GRACE, collect).await;
        // After SIGKILL the leaders go at once; wait for them to be reaped.
        let _ = tokio::time::timeout(Duration::from_secs(10), async { while exits.recv().await.is_some() {} }).await;
        for i in rest {
            job.phase(&replicas[i].name, "Deleted", Some(why.0), Some(why.1.to_string()));
        }
    }
    if stopped_by_user {
        return Outcome::Deleted;
    }
    failure.unwrap_or(Outcome::Succeeded)
}

/// Makes the job's virtual environment and pip-installs `packages` into it;
/// returns its Python. A failure is the job's failure, with pip's words.
async fn install(
    job: &Arc<Job>,
    workspace: &Workspace,
    env: &BTreeMap<String, String>,
    host: &std::path::Path,
    has_pip: bool,
    packages: &[String],
    index: Option<&str>,
) -> Result<PathBuf, Outcome> {
    let stream = job.streams.iter().position(|s| s == PIP_STREAM).expect("a pip stream when packages are given");
    let failed = |message: String| Outcome::Failed { replica: None, reason: "PackageInstallFailed".into(), message };
    let venv = workspace.venv();
    job.push(Event::Note(format!(
        "[ciao] installing {} into a virtual environment of this job (it goes when the job ends)\n",
        packages.join(", ")
    )));
    for r in job.phases() {
        job.phase(&r.name, "Pending", Some("InstallingPackages"), None);
    }
    let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();

    // `--without-pip` when the host's pip can be used from inside (it
    // installs into the environment that runs it): no ensurepip, ~50 ms.
    let mut args = vec!["-m".to_string(), "venv".into(), "--system-site-packages".into()];
    if has_pip {
        args.push("--without-pip".into());
    }
    args.push(venv.display().to_string());
    let mut argv = vec![host.display().to_string()];
    argv.extend(args);
    if let Err(message) = run_step(job, workspace, &argv, &env, stream).await {
        return Err(failed(format!("cannot create the virtual environment: {message}")));
    }
    let python = venv.join("bin").join("python3");
    let mut argv = vec![
        python.display().to_string(),
        "-m".into(),
        "pip".into(),
        "install".into(),
        "--disable-pip-version-check".into(),
        "--no-input".into(),
        "--progress-bar".into(),
        "off".into(),
    ];
    if let Some(url) = index {
        argv.push("--index-url".into());
        argv.push(url.to_string());
    }
    argv.extend(packages.iter().cloned());
    if let Err(message) = run_step(job, workspace, &argv, &env, stream).await {
        return Err(failed(format!("pip could not install {}: {message}", packages.join(", "))));
    }
    for r in job.phases() {
        job.phase(&r.name, "Pending", None, None);
    }
    Ok(python)
}

/// Runs one install step with its output on the pip stream; `Err` holds
/// what went wrong (pip's last `ERROR:` line, else the exit status).
async fn run_step(
    job: &Arc<Job>,
    workspace: &Workspace,
    argv: &[String],
    env: &[(String, String)],
    stream: usize,
) -> Result<(), String> {
    let launch = Launch {
        program: argv[0].clone(),
        args: argv[1..].to_vec(),
        env: env.to_vec(),
        cwd: workspace.path().to_path_buf(),
    };
    let cursor = job.end();
    let started = process::start(&launch).map_err(|e| format!("cannot start {}: {e}", launch.program))?;
    let group = started.group;
    let watched = watch_process(job.clone(), None, stream, started);
    tokio::pin!(watched);
    let status = tokio::select! {
        s = &mut watched => s,
        _ = job.stop.cancelled() => {
            process::terminate(&[group], STOP_GRACE, async {}).await;
            let _ = (&mut watched).await;
            return Err("interrupted".into());
        }
    };
    let status = status.map_err(|e| e.to_string())?;
    if status.success() {
        return Ok(());
    }
    // pip's own explanation: its last ERROR line on this stream.
    let mut text = Vec::new();
    for e in job.read_from(cursor).events {
        if let Event::Output { stream: s, data } = e
            && s == stream
        {
            text.extend_from_slice(&data);
        }
    }
    let text = String::from_utf8_lossy(&text);
    let error = text
        .lines()
        .rev()
        .find(|l| l.starts_with("ERROR:"))
        .or_else(|| text.lines().rev().find(|l| !l.trim().is_empty()));
    let (_, exit) = process::describe_exit(status);
    Err(match error {
        Some(line) => format!("{} ({exit})", line.trim()),
        None => exit,
    })
}
