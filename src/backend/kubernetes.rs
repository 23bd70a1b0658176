//! The Kubernetes backend. (Implementation pending.)

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use super::{Backend, JobReport, Submission};
use crate::config::Config;
use crate::interpreter::params::JobCommand;
use crate::output::{CellError, MimeBundle, Output};

/// Runs jobs through the Kubernetes API.
#[derive(Default)]
pub struct KubernetesBackend {}

impl KubernetesBackend {
    pub fn new() -> Self {
        KubernetesBackend {}
    }
}

#[async_trait]
impl Backend for KubernetesBackend {
    async fn run(&self, _job: Submission<'_>, _out: &Output, _cancel: &CancellationToken) -> Result<JobReport, CellError> {
        Err(CellError::new("NotAvailable", "the Kubernetes backend is not available in this build yet"))
    }

    async fn command(
        &self,
        _command: &JobCommand,
        _config: &Config,
        _namespace: Option<&str>,
        _out: &Output,
        _cancel: &CancellationToken,
    ) -> Result<Option<MimeBundle>, CellError> {
        Err(CellError::new("NotAvailable", "the Kubernetes backend is not available in this build yet"))
    }
}
