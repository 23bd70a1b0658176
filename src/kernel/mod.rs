//! The Jupyter kernel: ZeroMQ sockets, signed wire messages, and the handlers
//! of messaging protocol 5.3.
//!
//! The kernel knows nothing about jobs: it drives a [`Language`] (the engine,
//! or a test double) and turns its [`crate::output::OutputEvent`]s into iopub
//! messages with the right parent header.
//!
//! Layers, from the network in:
//! - [`guard`]: the public listeners; refuses frames claiming absurd sizes;
//! - [`connection`]: connection file, ZeroMQ sockets, reader/writer tasks;
//! - [`wire`]: frames ⇄ [`message::Message`], HMAC-SHA256 signing and checking;
//! - [`handlers`] and [`execute`]: the core, over in-memory queues (tested
//!   without sockets in `tests.rs`), with [`history`] for history_request;
//! - [`install`]: `ciao install`, the kernelspec.

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

pub mod connection;
pub mod execute;
pub mod guard;
pub mod handlers;
pub mod history;
pub mod install;
pub mod message;
pub mod wire;

#[cfg(test)]
mod tests;

pub use connection::ConnectionInfo;
pub use handlers::{Ended, Kernel};

/// How long, after the last request, queued replies get to reach the sockets.
const FLUSH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Runs the kernel described by `connection_file` until shutdown.
///
/// Start-up is cheap on purpose: no configuration is read and nothing touches
/// the network or the history file before the first reply; the engine and
/// the history load lazily.
///
/// # Errors
/// An unreadable connection file, an unsupported signature scheme, or a
/// socket that cannot be bound.
pub fn run_kernel(connection_file: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    let info = ConnectionInfo::from_file(connection_file)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 4)))
        .enable_all()
        .build()?;
    let engine = std::sync::Arc::new(crate::engine::Engine::new(crate::engine::ConfigSource::Default));
    let ended = runtime.block_on(serve(&info, engine));
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    match ended? {
        Ended::Shutdown { .. } | Ended::InputClosed => Ok(()),
        Ended::Failed(why) => Err(why.into()),
    }
}

/// How often the kernel checks that the process that started it is alive.
const PARENT_POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// The parent to outlive no longer than [`PARENT_POLL`]: jupyter_client names
/// itself in `JPY_PARENT_PID` (as ipykernel's parent poller uses it). Only
/// when that is this process's parent now, so a kernel started through a
/// wrapper is not stopped by mistake.
fn parent_to_watch() -> Option<u32> {
    let named: u32 = std::env::var("JPY_PARENT_PID").ok()?.trim().parse().ok()?;
    (named > 1 && named == std::os::unix::process::parent_id()).then_some(named)
}

/// Binds the sockets of `info` and serves `lang` until shutdown; SIGINT
/// interrupts the running cell (as interrupt_request does).
///
/// # Errors
/// A socket that cannot be bound.
pub async fn serve<L: Language>(info: &ConnectionInfo, lang: std::sync::Arc<L>) -> Result<Ended, connection::ConnectionError> {
    let (inbound, outbound, transport) = connection::start(info).await?;
    let kernel = Kernel::new(lang, outbound, history::History::new(history::History::default_path(), history::DEFAULT_LIMIT));
    let interrupter = std::sync::Arc::clone(&kernel);
    let sigint = tokio::spawn(async move {
        while tokio::signal::ctrl_c().await.is_ok() {
            interrupter.interrupt();
        }
    });
    let orphaned = parent_to_watch().map(|parent| {
        let k = std::sync::Arc::clone(&kernel);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(PARENT_POLL);
            loop {
                tick.tick().await;
                if std::os::unix::process::parent_id() != parent {
                    tracing::warn!("the process that started the kernel ({parent}) is gone; shutting down");
                    k.shut_down();
                    return;
                }
            }
        })
    });
    let ended = kernel.run(inbound).await;
    sigint.abort();
    let _ = sigint.await;
    if let Some(t) = orphaned {
        t.abort();
    }
    // The kernel (and with it every queue sender) is gone once the writers drain.
    transport.finish(FLUSH_TIMEOUT).await;
    // The socket tasks hand frames to per-peer writers; give those a moment.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    tracing::info!("kernel stopped: {ended:?}");
    Ok(ended)
}
