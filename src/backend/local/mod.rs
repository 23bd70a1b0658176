//! The local backend: a job's replicas as processes on this machine, run
//! from the built image, with the environment the training operator would
//! give their pods, so distributed code written for the cluster runs
//! unchanged. The default when no cluster is configured.
//!
//! For a cell this means: ciao's layers of the image (code, `%files`,
//! `%module`) are unpacked into a job directory ([`workspace`]); each
//! replica ([`env`]) gets `localhost` addresses and free ports wherever the
//! operator would write service names; each runs as its own process group
//! ([`process`]) under a supervisor ([`job`]) that keeps its output for
//! `%logs` / `%attach` while cells follow it ([`follow`]) with the same
//! `[worker-0]` prefixes and live table as a cluster job. `%packages` go into
//! a virtual environment of the job's own, never into the notebook's.

pub mod env;
pub mod follow;
pub mod job;
pub mod process;
pub mod workspace;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use super::render::job_name;
use super::{Backend, JobReport, Outcome, Shipment, Submission};
use crate::config::Config;
use crate::image::{self, ImageError};
use crate::interpreter::params::{JobCommand, OnInterrupt};
use crate::output::{CellError, MimeBundle, Output, bundle};
use crate::plan::{Plan, escape};

use follow::{Ended, Follower};
use job::{Job, Setup};
use workspace::{PythonFinder, Workspace, is_python};

/// Jobs kept for `%jobs` / `%logs`; the oldest finished ones go beyond this.
const KEEP_JOBS: usize = 50;

/// Why a job could not start locally.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error(
        "%secretEnv takes values from Kubernetes Secrets, which a local job does not have; use %env=NAME=VALUE for a local run, or %backend=kubernetes"
    )]
    SecretEnv,
    #[error("cannot find the Python interpreter for local jobs: {why}; install Python 3 or set {var} to an interpreter", var = workspace::PYTHON_VAR)]
    NoPython { why: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Image(ImageError),
    #[error(transparent)]
    Env(#[from] env::EnvError),
}

impl From<LocalError> for CellError {
    fn from(e: LocalError) -> CellError {
        let ename = match &e {
            LocalError::SecretEnv => "MagicError",
            LocalError::Image(i) => i.ename(),
            LocalError::NoPython { .. } | LocalError::Io { .. } | LocalError::Env(_) => "LocalJobError",
        };
        CellError::new(ename, e.to_string())
    }
}

/// Runs jobs as local processes and keeps this kernel's local jobs.
#[derive(Default)]
pub struct LocalBackend {
    /// Reads images back (its own registry sessions).
    images: image::Builder,
    python: PythonFinder,
    jobs: Mutex<Vec<Arc<Job>>>,
}

impl LocalBackend {
    pub fn new() -> Self {
        Self::default()
    }

    fn jobs(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Job>>> {
        self.jobs.lock().expect("jobs lock")
    }

    fn find(&self, name: &str) -> Result<Arc<Job>, CellError> {
        let jobs = self.jobs();
        jobs.iter().find(|j| j.name == name).cloned().ok_or_else(|| {
            let known: Vec<&str> = jobs.iter().map(|j| j.name.as_str()).collect();
            let hint = if known.is_empty() {
                "this kernel has run no local job yet".to_string()
            } else {
                format!("its local jobs: {}", known.join(", "))
            };
            CellError::new("NotFound", format!("no local job named {name:?} in this kernel ({hint}); %jobs lists them"))
        })
    }

    /// A name no job of this kernel has: `<prefix>-<digest>`, then `-1`, `-2`, …
    fn unique_name(&self, prefix: &str, cell_digest: &str) -> String {
        let jobs = self.jobs();
        (0..)
            .map(|attempt| job_name(prefix, cell_digest, attempt))
            .find(|n| !jobs.iter().any(|j| &j.name == n))
            .expect("a free name")
    }

    fn register(&self, job: Arc<Job>) {
        let mut jobs = self.jobs();
        jobs.push(job);
        while jobs.len() > KEEP_JOBS {
            match jobs.iter().position(|j| j.outcome().is_some()) {
                Some(i) => {
                    jobs.remove(i);
                }
                None => break,
            }
        }
    }

    async fn start(&self, sub: Submission<'_>, out: &Output) -> Result<Arc<Job>, LocalError> {
        let plan = sub.plan;
        if !plan.secret_env.is_empty() {
            return Err(LocalError::SecretEnv);
        }
        if let Some(note) = ignored_note(plan) {
            out.stderr(note);
        }
        let name = self.unique_name(&plan.name_prefix, sub.cell_digest);
        let command: Vec<String> = match sub.shipment {
            // The launcher installs %packages in a container; here they go
            // into the job's virtual environment first, so it is left out.
            Shipment::Image(built) => match &built.launcher {
                Some(l) if built.command.get(1) == Some(l) => built.command[2..].to_vec(),
                _ => built.command.clone(),
            },
            Shipment::ConfigMap { .. } => plan.framework.command.clone(),
        };
        let mut ports = Ports::default();
        let replicas = env::replicas(plan, &name, &command, &mut || ports.next())?;
        drop(ports);

        let env = base_env(plan);
        let pairs: Vec<(String, String)> = env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let needs_python =
            !plan.packages.is_empty() || replicas.iter().any(|r| r.command.first().is_some_and(|c| is_python(c)));
        // Unpacking the image and finding Python do not depend on each other.
        let find = async { if needs_python { self.python.find(&pairs).await.map(Some) } else { Ok(None) } };
        let (workspace, host) =
            tokio::join!(Workspace::create(sub.shipment, plan, sub.config, &self.images, &name), find);
        let (workspace, host) = (workspace?, host?);

        let kind = format!("{} (local)", plan.framework.job.kind);
        let job = Job::new(name, kind, &replicas, !plan.packages.is_empty());
        self.register(job.clone());
        let setup = Setup {
            workspace,
            replicas,
            env,
            python: host.as_ref().map(|h| h.executable.clone()),
            has_pip: host.as_ref().is_some_and(|h| h.has_pip),
            packages: plan.packages.clone(),
            pip_index_url: plan.pip_index_url.clone(),
        };
        tokio::spawn(job::supervise(job.clone(), setup));
        Ok(job)
    }

    /// Follows `job` in a cell until it ends; an interrupt applies `on_interrupt`.
    async fn follow(
        &self,
        job: &Arc<Job>,
        out: &Output,
        on_interrupt: OnInterrupt,
        colors: bool,
        cancel: &CancellationToken,
    ) -> JobReport {
        let mut follower = Follower::new(job, out, true, colors);
        let outcome = match follower.run(job, true, cancel).await {
            Ended::Finished(outcome) => outcome,
            Ended::Cancelled | Ended::CaughtUp => match on_interrupt {
                OnInterrupt::Detach => {
                    follower.detach(&job.name);
                    Outcome::Detached
                }
                OnInterrupt::Delete => {
                    job.stop.cancel();
                    match follower.run(job, true, &CancellationToken::new()).await {
                        Ended::Finished(o) => o,
                        _ => Outcome::Deleted,
                    }
                }
            },
        };
        let tail = follower.tail(&outcome);
        JobReport { kind: job.kind.clone(), namespace: String::new(), name: job.name.clone(), outcome, tail }
    }

    fn jobs_bundle(&self) -> MimeBundle {
        let jobs = self.jobs();
        if jobs.is_empty() {
            return bundle("no local jobs in this kernel yet", None);
        }
        let mut text = format!("{:<40} {:<22} {:<10} {:>8}  {:>9}\n", "job", "kind", "state", "replicas", "elapsed");
        let mut html = String::from(
            "<table class=\"ciao-jobs\"><thead><tr><th>job</th><th>kind</th><th>state</th><th>replicas</th><th>elapsed</th></tr></thead><tbody>",
        );
        for j in jobs.iter() {
            let state = j.condition().state;
            let elapsed = super::status::format_duration(j.elapsed());
            text.push_str(&format!("{:<40} {:<22} {:<10} {:>8}  {:>9}\n", j.name, j.kind, state, j.replicas, elapsed));
            html.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&j.name),
                escape(&j.kind),
                escape(&state),
                j.replicas,
                elapsed
            ));
        }
        html.push_str("</tbody></table>");
        bundle(text, Some(html))
    }
}

impl Drop for LocalBackend {
    /// Local jobs do not outlive the kernel that started them.
    fn drop(&mut self) {
        if let Ok(jobs) = self.jobs.lock() {
            for j in jobs.iter() {
                j.kill_now();
            }
        }
    }
}

#[async_trait]
impl Backend for LocalBackend {
    async fn run(&self, sub: Submission<'_>, out: &Output, cancel: &CancellationToken) -> Result<JobReport, CellError> {
        let job = tokio::select! {
            biased;
            _ = cancel.cancelled() => {
                return Err(CellError::new("KeyboardInterrupt", "interrupted before the local job started; nothing runs"));
            }
            j = self.start(sub, out) => j?,
        };
        Ok(self.follow(&job, out, sub.plan.on_interrupt, sub.config.log_colors, cancel).await)
    }

    async fn command(
        &self,
        command: &JobCommand,
        config: &Config,
        _namespace: Option<&str>,
        out: &Output,
        cancel: &CancellationToken,
    ) -> Result<Option<MimeBundle>, CellError> {
        match command {
            JobCommand::Jobs => Ok(Some(self.jobs_bundle())),
            JobCommand::Logs { name, follow } => {
                let job = self.find(name)?;
                let mut f = Follower::new(&job, out, false, config.log_colors);
                f.run(&job, *follow, cancel).await;
                Ok(None)
            }
            JobCommand::Attach { name } => {
                let job = self.find(name)?;
                // Interrupting an attached cell leaves the job running.
                self.follow(&job, out, OnInterrupt::Detach, config.log_colors, cancel).await.into_cell_result()
            }
            JobCommand::Delete { name } => {
                let job = self.find(name)?;
                let running = job.outcome().is_none();
                job.stop.cancel();
                if running {
                    let mut f = Follower::new(&job, &Output::channel().0, false, false);
                    f.run(&job, true, &CancellationToken::new()).await;
                }
                self.jobs().retain(|j| !Arc::ptr_eq(j, &job));
                let what = if running { "stopped its replicas and deleted it" } else { "deleted it" };
                out.stderr(format!("[ciao] {} {}: {what}\n", job.kind, job.name));
                Ok(None)
            }
            JobCommand::Modules | JobCommand::Help | JobCommand::HelpOn(_) => {
                Err(CellError::new("InternalError", "%modules and %help are answered by the kernel, not by a backend"))
            }
        }
    }
}

/// Free local ports, distinct within one job: each is held open until
/// all are picked.
#[derive(Default)]
struct Ports {
    held: Vec<std::net::TcpListener>,
}

impl Ports {
    fn next(&mut self) -> u16 {
        match std::net::TcpListener::bind(("127.0.0.1", 0)) {
            Ok(l) => {
                let port = l.local_addr().map(|a| a.port()).unwrap_or(0);
                self.held.push(l);
                port
            }
            Err(_) => 0,
        }
    }
}

/// The environment replicas start from: the kernel's (without ciao's own
/// settings, which may hold credentials) with `PYTHONUNBUFFERED=1`, the
/// image's (descriptor `env`), then the cell's `%env`.
fn base_env(plan: &Plan) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = std::env::vars().filter(|(k, _)| !k.starts_with("CIAO_")).collect();
    // Output is followed live, as a pod's log is; the image or the cell may say otherwise.
    env.insert("PYTHONUNBUFFERED".into(), "1".into());
    for (k, v) in &plan.framework.env {
        env.insert(k.clone(), v.clone());
    }
    for (k, v) in &plan.env {
        env.insert(k.clone(), v.clone());
    }
    env
}

/// A note naming the cell's Kubernetes-only settings, which a local run
/// does not apply.
fn ignored_note(plan: &Plan) -> Option<String> {
    let mut ignored = Vec::new();
    if plan.replicas.iter().any(|r| !r.resources.is_empty()) {
        ignored.push("resources (%cpu, %memory, %gpu)");
    }
    let given = [
        (!plan.volumes.is_empty(), "%volume"),
        (!plan.node_selector.is_empty(), "%nodeSelector"),
        (!plan.tolerations.is_empty(), "%toleration"),
        (plan.service_account.is_some(), "%serviceAccount"),
        (plan.queue.is_some(), "%queue"),
        (!plan.labels.is_empty(), "%label"),
        (!plan.annotations.is_empty(), "%annotation"),
    ];
    ignored.extend(given.iter().filter(|(g, _)| *g).map(|(_, n)| *n));
    (!ignored.is_empty()).then(|| {
        format!(
            "[ciao] note: {} only apply to Kubernetes jobs; this local run ignores them (%backend=kubernetes to use them)\n",
            ignored.join(", ")
        )
    })
}
