//! Phase 3, the backends: run the job a cell's plan describes, follow its
//! replicas and stream their logs.
//!
//! A [`Backend`] takes a [`Submission`] (the plan plus how the code ships) and
//! reports a [`JobReport`]; [`logs`] and [`status`] are the parts every
//! backend shares (prefixed log fan-in, the live job table). [`render`] turns
//! a plan into Kubernetes objects.

pub mod kubernetes;
pub mod local;
pub mod logs;
pub mod render;
pub mod status;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::image::BuildResult;
use crate::interpreter::params::JobCommand;
use crate::output::{CellError, MimeBundle, Output};
use crate::plan::Plan;

pub use render::CodeFile;

/// How the cell's code reaches the job.
#[derive(Debug, Clone)]
pub enum Shipment {
    /// An image built and published by phase 2.
    Image(BuildResult),
    /// Files in a ConfigMap mounted over the base image (no registry needed).
    ConfigMap { base_image: String, files: Vec<CodeFile> },
}

/// One job to run.
#[derive(Debug, Clone, Copy)]
pub struct Submission<'a> {
    pub plan: &'a Plan,
    pub config: &'a Config,
    pub shipment: &'a Shipment,
    /// The cell's content digest (`sha256:…`).
    pub cell_digest: &'a str,
    /// The kernel session id, so a session's jobs can be found again.
    pub session: &'a str,
}

/// How a job ended, as far as the cell is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    /// The job failed; `replica` is the first failing one when known.
    Failed { replica: Option<String>, reason: String, message: String },
    /// Interrupted with `%onInterrupt=detach`: the job keeps running.
    Detached,
    /// Interrupted with `%onInterrupt=delete`: the job and its replicas are gone.
    Deleted,
}

/// What a backend reports when the cell is done with the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobReport {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub outcome: Outcome,
    /// The failing replica's last log lines, prefixed (`[worker-1] …`).
    pub tail: Vec<String>,
}

impl JobReport {
    /// The cell's result: `Ok` only when the job succeeded.
    ///
    /// # Errors
    /// `JobFailed` (with the failing replica's last lines as traceback), or
    /// `KeyboardInterrupt` when the cell was interrupted.
    pub fn into_cell_result(self) -> Result<Option<MimeBundle>, CellError> {
        let JobReport { kind, namespace, name, outcome, tail } = self;
        let qualified = qualified_name(&namespace, &name);
        match outcome {
            Outcome::Succeeded => Ok(None),
            Outcome::Failed { replica, reason, message } => {
                let who = replica.map(|r| format!(" ({r} failed)")).unwrap_or_default();
                let mut evalue = format!("{kind} {qualified} failed{who}: {reason}");
                if !message.is_empty() {
                    evalue.push_str(&format!(": {message}"));
                }
                Err(CellError::new("JobFailed", evalue).with_traceback(tail))
            }
            Outcome::Detached => Err(CellError::new(
                "KeyboardInterrupt",
                format!("{kind} {qualified} keeps running (detached); follow it again with %attach {name}"),
            )),
            Outcome::Deleted => Err(CellError::new(
                "KeyboardInterrupt",
                format!("interrupted: {kind} {qualified} and its replicas were deleted"),
            )),
        }
    }
}

/// `namespace/name`, or `name` alone when there is no namespace (local jobs).
pub fn qualified_name(namespace: &str, name: &str) -> String {
    if namespace.is_empty() { name.to_string() } else { format!("{namespace}/{name}") }
}

/// Where jobs run: the Kubernetes API, or local processes.
#[async_trait]
pub trait Backend: Send + Sync {
    /// Submits the job and follows it to the end (or to an interrupt, which
    /// applies the plan's `onInterrupt`), streaming replica logs to `out`.
    ///
    /// # Errors
    /// Submission problems (not installed, forbidden, invalid), as cell
    /// errors naming the fix. A job that runs and fails is `Ok` with
    /// [`Outcome::Failed`].
    async fn run(&self, job: Submission<'_>, out: &Output, cancel: &CancellationToken) -> Result<JobReport, CellError>;

    /// Submits the job and returns as soon as it exists (`ciao run
    /// --detach`), with [`Outcome::Detached`].
    ///
    /// # Errors
    /// As [`Backend::run`]; backends whose jobs cannot outlive the process
    /// that started them refuse.
    async fn submit(&self, job: Submission<'_>, out: &Output, cancel: &CancellationToken) -> Result<JobReport, CellError> {
        let _ = (job, out, cancel);
        Err(CellError::new(
            "NotSupported",
            "this backend cannot leave a job running: its jobs end with the process that runs them; \
             use the Kubernetes backend (%backend=kubernetes) to submit and detach",
        ))
    }

    /// A job command (`%jobs`, `%logs`, `%attach`, `%delete`) in `namespace`
    /// (`None`: the backend's default).
    ///
    /// # Errors
    /// An unknown job, or the backend's own errors.
    async fn command(
        &self,
        command: &JobCommand,
        config: &Config,
        namespace: Option<&str>,
        out: &Output,
        cancel: &CancellationToken,
    ) -> Result<Option<MimeBundle>, CellError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(outcome: Outcome) -> JobReport {
        JobReport {
            kind: "TFJob".into(),
            namespace: "ns".into(),
            name: "tf-1".into(),
            outcome,
            tail: vec!["[worker-1] ZeroDivisionError: division by zero".into()],
        }
    }

    #[test]
    fn only_success_is_ok() {
        assert_eq!(report(Outcome::Succeeded).into_cell_result(), Ok(None));
        let e = report(Outcome::Failed {
            replica: Some("worker-1".into()),
            reason: "TFJobFailed".into(),
            message: "TFJob ns/tf-1 has failed because 1 Worker replica(s) failed.".into(),
        })
        .into_cell_result()
        .unwrap_err();
        assert_eq!(e.ename, "JobFailed");
        assert!(e.evalue.contains("(worker-1 failed): TFJobFailed"), "{}", e.evalue);
        assert_eq!(e.traceback, ["[worker-1] ZeroDivisionError: division by zero"]);
        let e = report(Outcome::Detached).into_cell_result().unwrap_err();
        assert!(e.evalue.contains("%attach tf-1"), "{}", e.evalue);
        assert_eq!(report(Outcome::Deleted).into_cell_result().unwrap_err().ename, "KeyboardInterrupt");
    }
}
