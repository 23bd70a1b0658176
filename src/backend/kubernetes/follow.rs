//! Following a job with watches: its conditions, its pods' states (pending
//! reasons as soon as they are known), and every replica's log streamed as
//! soon as its container starts, prefixed and never mixed, until the job
//! ends and the last lines are in.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DynamicObject, ListParams};
use kube::runtime::utils::{Backoff, WatchStreamExt as _};
use kube::runtime::watcher;
use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::client::Cluster;
use super::errors::{RbacDenial, api_error};
use super::jobs::{self, JobKind, JobState};
use super::podlogs::{ContainerView, LogEvent, follow_container};
use crate::backend::logs::{LineSplitter, LogMux, PARTIAL_FLUSH};
use crate::backend::status::{Condition, StatusBoard};
use crate::output::{CellError, Output, Stream};

/// How long replicas whose container still runs may keep streaming after
/// the job ended (MPI workers, a sidecar).
const RUNNING_GRACE: Duration = Duration::from_secs(1);
/// The longest wait for logs after the job ended.
const DRAIN_MAX: Duration = Duration::from_secs(15);
/// How often partial lines and the table's clock are looked at.
const TICK: Duration = Duration::from_millis(100);

/// What to follow.
pub struct Target<'a> {
    pub cluster: &'a Cluster,
    pub kind: &'a JobKind,
    pub namespace: &'a str,
    /// The job object as created or read.
    pub job: &'a Value,
    /// Replicas the table announces.
    pub expected: u32,
    /// Show the live table and `[ciao]` lines (not for `%logs --follow`).
    pub status: bool,
    /// Colour each replica's prefix (`logColors`).
    pub colors: bool,
}

/// How following ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    Finished(JobState),
    /// The job was deleted (or its kind uninstalled) while it was followed.
    Gone,
    Interrupted,
}

/// What following saw.
pub struct Followed {
    pub ending: Ending,
    /// The first replica whose container failed.
    pub failed_replica: Option<String>,
    /// That replica's last lines, prefixed.
    pub tail: Vec<String>,
    /// The live table, still open so the caller can finish it.
    pub board: Option<StatusBoard>,
}

impl Followed {
    /// Ends the table with `condition`.
    pub fn finish(&mut self, state: &str, reason: Option<String>, message: Option<String>) {
        if let Some(b) = self.board.as_mut() {
            b.finish(Condition { state: state.to_string(), reason, message });
        }
    }
}

/// Exponential back-off from 100 ms to 5 s between watch retries.
struct Quick(Duration);

impl Iterator for Quick {
    type Item = Duration;
    fn next(&mut self) -> Option<Duration> {
        let d = self.0;
        self.0 = (self.0 * 2).min(Duration::from_secs(5));
        Some(d)
    }
}

impl Backoff for Quick {
    fn reset(&mut self) {
        self.0 = Duration::from_millis(100);
    }
}

fn backoff() -> Quick {
    Quick(Duration::from_millis(100))
}

/// One followed container.
struct Task {
    view: watch::Sender<ContainerView>,
    done: bool,
}

/// One replica's output state.
struct Slot {
    splitter: LineSplitter,
    last_data: Instant,
    partial: bool,
}

struct Follower<'a> {
    t: &'a Target<'a>,
    out: Output,
    pods_api: Api<Pod>,
    mux: LogMux,
    board: Option<StatusBoard>,
    slots: Vec<Slot>,
    tasks: HashMap<String, Task>,
    set: JoinSet<String>,
    log_tx: mpsc::Sender<(usize, LogEvent)>,
    /// The failing replica so far: pods killed by a deletion rank last,
    /// then the earliest failure, then the first seen.
    failed: Option<(bool, Timestamp, u64, String)>,
    seen: u64,
    job_done: bool,
    reported: Vec<String>,
}

/// The live table of a Kubernetes job. Its `[ciao]` lines go to stderr:
/// the cell's stdout is what the replicas print.
pub fn status_board(out: &Output, kind: &str, namespace: &str, name: &str, expected: u32) -> StatusBoard {
    StatusBoard::with_stream(out.clone(), Stream::Stderr, kind, namespace, name, expected)
}

/// Follows the job until it ends, is deleted, or `cancel` fires.
///
/// # Errors
/// The job cannot be watched (forbidden).
pub async fn follow(t: &Target<'_>, out: &Output, cancel: &CancellationToken) -> Result<Followed, CellError> {
    let name = t.job.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string();
    let client = t.cluster.client.clone();
    let jobs_api: Api<DynamicObject> = Api::namespaced_with(client.clone(), t.namespace, &t.kind.resource);
    let pods_api: Api<Pod> = Api::namespaced(client, t.namespace);
    let board = t.status.then(|| status_board(out, &t.kind.resource.kind, t.namespace, &name, t.expected));
    let (log_tx, mut log_rx) = mpsc::channel(1024);
    let mut f = Follower {
        t,
        out: out.clone(),
        pods_api: pods_api.clone(),
        mux: LogMux::new(out.clone(), t.colors),
        board,
        slots: Vec::new(),
        tasks: HashMap::new(),
        set: JoinSet::new(),
        log_tx,
        failed: None,
        seen: 0,
        job_done: false,
        reported: Vec::new(),
    };

    let mut job_events = watcher(jobs_api, watcher::Config::default().fields(&format!("metadata.name={name}")))
        .backoff(backoff())
        .boxed();
    let selector = jobs::pod_selector(t.kind.shape, t.job);
    let mut pod_events = watcher(pods_api, watcher::Config::default().labels(&selector)).backoff(backoff()).boxed();

    let mut state = jobs::job_state(t.kind.shape, t.job);
    f.condition(&state);
    let mut finished_at: Option<Instant> = state.is_finished().then(Instant::now);
    if finished_at.is_some() {
        f.on_job_done().await;
    }
    let mut seen_in_init = true;
    let mut gone = false;
    let mut tick = tokio::time::interval(TICK);
    let mut last_clock = Instant::now();

    let ending = loop {
        if let Some(t0) = finished_at
            && f.drained(t0)
        {
            break if gone { Ending::Gone } else { Ending::Finished(state.clone()) };
        }
        tokio::select! {
            biased;
            _ = cancel.cancelled() => break Ending::Interrupted,
            Some((i, ev)) = log_rx.recv() => f.on_log(i, ev),
            Some(done) = f.set.join_next(), if !f.set.is_empty() => {
                if let Ok(key) = done && let Some(task) = f.tasks.get_mut(&key) {
                    task.done = true;
                }
            }
            ev = job_events.next(), if finished_at.is_none() => match ev {
                Some(Ok(watcher::Event::Init)) => seen_in_init = false,
                Some(Ok(watcher::Event::InitApply(obj) | watcher::Event::Apply(obj))) => {
                    seen_in_init = true;
                    if let Ok(v) = serde_json::to_value(&obj) {
                        state = jobs::job_state(t.kind.shape, &v);
                        f.condition(&state);
                        if state.is_finished() {
                            finished_at = Some(Instant::now());
                            f.on_job_done().await;
                        }
                    }
                }
                Some(Ok(watcher::Event::InitDone)) if !seen_in_init => {
                    gone = true;
                    finished_at = Some(Instant::now());
                    f.on_job_done().await;
                }
                Some(Ok(watcher::Event::InitDone)) => {}
                Some(Ok(watcher::Event::Delete(_))) => {
                    gone = true;
                    finished_at = Some(Instant::now());
                    f.on_job_done().await;
                }
                Some(Err(e)) => {
                    if let Some(fatal) = f.watch_error(&e, &format!("watching {} {}/{name}", t.kind.resource.kind, t.namespace), true) {
                        return Err(fatal);
                    }
                    if matches!(&e, watcher::Error::InitialListFailed(kube::Error::Api(s)) if s.code == 404) {
                        gone = true;
                        finished_at = Some(Instant::now());
                        f.on_job_done().await;
                    }
                }
                None => {}
            },
            ev = pod_events.next() => match ev {
                Some(Ok(watcher::Event::InitApply(pod) | watcher::Event::Apply(pod))) => f.on_pod(&pod, false),
                Some(Ok(watcher::Event::Delete(pod))) => f.on_pod(&pod, true),
                Some(Ok(_)) | None => {}
                Some(Err(e)) => {
                    let _ = f.watch_error(&e, &format!("watching the pods of {name}"), false);
                }
            },
            _ = tick.tick() => {
                f.flush_partials();
                if last_clock.elapsed() >= Duration::from_secs(1) {
                    last_clock = Instant::now();
                    if let Some(b) = f.board.as_mut() {
                        b.tick();
                    }
                }
            }
        }
    };
    f.set.abort_all();
    while let Ok((i, ev)) = log_rx.try_recv() {
        f.on_log(i, ev);
    }
    for i in 0..f.slots.len() {
        let piece = f.slots[i].splitter.finish();
        if let Some(p) = piece {
            f.mux.write(i, vec![p]);
        }
    }
    f.mux.close_line();
    let failed_replica = f.failed.as_ref().map(|f| f.3.clone());
    let tail = failed_replica.as_deref().map(|r| f.mux.prefixed_tail(r)).unwrap_or_default();
    Ok(Followed { ending, failed_replica, tail, board: f.board })
}

impl Follower<'_> {
    fn condition(&mut self, s: &JobState) {
        if let Some(b) = self.board.as_mut()
            && !s.is_finished()
        {
            b.condition(Condition { state: s.state.clone(), reason: s.reason.clone(), message: s.message.clone() });
        }
    }

    /// The job ended: no container will be waited for after its current
    /// log, and pods the watch has not shown yet are read once.
    ///
    /// The pods are read before the log followers hear that the job is
    /// done: the job's condition can arrive before the pod event of a
    /// container's last restart, and a follower told "done" first would stop
    /// before reading that last run.
    async fn on_job_done(&mut self) {
        let selector = jobs::pod_selector(self.t.kind.shape, self.t.job);
        if let Ok(list) = self.pods_api.list(&ListParams::default().labels(&selector)).await {
            for pod in &list.items {
                self.on_pod(pod, false);
            }
        }
        self.job_done = true;
        for task in self.tasks.values() {
            task.view.send_modify(|v| v.job_done = true);
        }
    }

    /// Whether every log is in (or the waiting is over).
    fn drained(&mut self, t0: Instant) -> bool {
        let pending: Vec<&Task> = self.tasks.values().filter(|t| !t.done).collect();
        if pending.is_empty() {
            return true;
        }
        let elapsed = t0.elapsed();
        let still_running = pending.iter().all(|t| {
            let v = t.view.borrow();
            !v.terminated && !v.pod_done
        });
        if elapsed >= DRAIN_MAX {
            self.out.stderr(format!(
                "[ciao] stopped waiting for the logs of {} replica(s) {}s after the job ended\n",
                pending.len(),
                DRAIN_MAX.as_secs()
            ));
            return true;
        }
        elapsed >= RUNNING_GRACE && still_running
    }

    /// Reports a watch error once; returns a cell error when following
    /// cannot go on.
    fn watch_error(&mut self, e: &watcher::Error, doing: &str, fatal_if_forbidden: bool) -> Option<CellError> {
        let api = match e {
            watcher::Error::InitialListFailed(k) | watcher::Error::WatchStartFailed(k) | watcher::Error::WatchFailed(k) => {
                Some(k)
            }
            _ => None,
        };
        let forbidden = matches!(api, Some(kube::Error::Api(s)) if s.code == 403)
            || matches!(e, watcher::Error::WatchError(s) if s.code == 403);
        if !forbidden {
            tracing::debug!("{doing}: {e}");
            return None;
        }
        let err = match (api, e) {
            (Some(k), _) => api_error(k, doing, &self.t.cluster.server),
            (None, watcher::Error::WatchError(s)) => {
                let mut c = CellError::new("Forbidden", format!("{doing}: {}", s.message));
                if let Some(d) = RbacDenial::parse(&s.message) {
                    c = c.with_traceback(d.rule());
                }
                c
            }
            _ => return None,
        };
        if fatal_if_forbidden {
            return Some(err);
        }
        if !self.reported.contains(&err.evalue) {
            self.reported.push(err.evalue.clone());
            let mut text = format!("[ciao] {}\n", err.evalue);
            for l in &err.traceback {
                text.push_str(&format!("[ciao]   {l}\n"));
            }
            self.out.stderr(text);
        }
        None
    }

    fn slot(&mut self, replica: &str) -> usize {
        let i = self.mux.replica(replica);
        while self.slots.len() <= i {
            self.slots.push(Slot { splitter: LineSplitter::new(), last_data: Instant::now(), partial: false });
        }
        i
    }

    fn on_pod(&mut self, pod: &Pod, deleted: bool) {
        let Some(uid) = pod.metadata.uid.clone() else { return };
        let Some(container) = jobs::main_container(pod, &self.t.kind.container) else { return };
        let replica = jobs::replica_name(pod, &self.t.kind.container);
        let mut state = jobs::replica_state(pod, &replica, &container);
        if deleted {
            state.phase = "Deleted".into();
            state.reason = None;
            state.message = None;
        }
        if let Some(b) = self.board.as_mut()
            && !(deleted && self.job_done)
        {
            b.replica(state);
        }
        if let Some(at) = jobs::failed_at(pod, &container)
            && self.failed.as_ref().is_none_or(|f| f.3 != replica)
        {
            self.seen += 1;
            let candidate = (pod.metadata.deletion_timestamp.is_some(), at, self.seen, replica.clone());
            if self.failed.as_ref().is_none_or(|f| candidate < *f) {
                self.failed = Some(candidate);
            }
        }
        let cs = jobs::container_status(pod, &container);
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("Pending");
        let view = ContainerView {
            started: jobs::has_started(cs),
            terminated: jobs::is_terminated(cs),
            restart_count: cs.map_or(0, |c| c.restart_count),
            pod_done: deleted || matches!(phase, "Succeeded" | "Failed"),
            job_done: self.job_done,
        };
        let key = format!("{uid}/{container}");
        if let Some(task) = self.tasks.get(&key) {
            task.view.send_if_modified(|v| {
                let changed = *v != view;
                *v = view.clone();
                changed
            });
            return;
        }
        if !view.started {
            return;
        }
        let i = self.slot(&replica);
        let (tx, rx) = watch::channel(view);
        let Some(pod_name) = pod.metadata.name.clone() else { return };
        self.set.spawn({
            let api = self.pods_api.clone();
            let log_tx = self.log_tx.clone();
            let key = key.clone();
            async move {
                follow_container(api, pod_name, container, i, rx, log_tx).await;
                key
            }
        });
        self.tasks.insert(key, Task { view: tx, done: false });
    }

    fn on_log(&mut self, i: usize, ev: LogEvent) {
        if i >= self.slots.len() {
            return;
        }
        match ev {
            LogEvent::Data(bytes) => {
                let slot = &mut self.slots[i];
                let pieces = slot.splitter.feed(&bytes);
                slot.last_data = Instant::now();
                slot.partial = slot.splitter.partial().is_some();
                self.mux.write(i, pieces);
            }
            LogEvent::Reset => {
                self.slots[i].splitter = LineSplitter::new();
                self.slots[i].partial = false;
            }
            LogEvent::End => {
                let slot = &mut self.slots[i];
                slot.partial = false;
                if let Some(p) = slot.splitter.finish() {
                    self.mux.write(i, vec![p]);
                }
            }
            LogEvent::Problem(p) => {
                if !self.reported.contains(&p) {
                    self.reported.push(p.clone());
                    self.out.stderr(format!("[ciao] {p}\n"));
                }
            }
        }
    }

    fn flush_partials(&mut self) {
        for i in 0..self.slots.len() {
            let slot = &self.slots[i];
            if slot.partial && slot.last_data.elapsed() >= PARTIAL_FLUSH {
                let piece = slot.splitter.partial();
                self.mux.show_partial(i, piece);
            }
        }
    }
}
