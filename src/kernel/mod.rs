//! The Jupyter kernel: ZeroMQ sockets, signed wire messages, and the handlers
//! of messaging protocol 5.3.
//!
//! The kernel knows nothing about jobs: it drives a [`Language`] (the engine,
//! or a test double) and turns its [`crate::output::OutputEvent`]s into iopub
//! messages with the right parent header.

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use crate::interpreter::{Completion, IsComplete};
use crate::output::{CellError, MimeBundle, Output};

/// What the kernel needs from the language behind it (xeus's interpreter).
#[async_trait]
pub trait Language: Send + Sync + 'static {
    /// Runs a cell. Output goes to `out`; `Ok(Some(bundle))` becomes an
    /// execute_result. `cancel` fires on interrupt: stop promptly.
    async fn execute(&self, code: &str, out: Output, cancel: CancellationToken) -> Result<Option<MimeBundle>, CellError>;
    /// is_complete_request.
    fn is_complete(&self, code: &str) -> IsComplete;
    /// complete_request; offsets in Unicode code points.
    fn complete(&self, code: &str, cursor_pos: usize) -> Completion;
    /// inspect_request: documentation for what is under the cursor.
    fn inspect(&self, code: &str, cursor_pos: usize, detail_level: u8) -> Option<MimeBundle>;
    /// One entry of an execute_request's user_expressions.
    fn user_expression(&self, expr: &str) -> Result<MimeBundle, CellError>;
}

pub mod install;

/// Runs the kernel described by `connection_file` until shutdown.
///
/// # Errors
/// An unreadable connection file, an unsupported signature scheme, or a
/// socket that cannot be bound.
pub fn run_kernel(connection_file: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    let _ = connection_file;
    Err("the kernel is not written yet".into())
}
