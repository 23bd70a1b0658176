//! The kernel core: one dispatcher for shell and control requests.
//!
//! The dispatcher, not the handlers, publishes `status: busy` before and
//! `status: idle` after every request, and turns what a handler returns into
//! the reply on the channel the request came from. Handlers only compute
//! reply contents (and publish the iopub messages that belong to them).
//!
//! Shell requests are handled one at a time, in order; an execute runs on a
//! task of its own so the control loop keeps answering (interrupt, shutdown,
//! kernel_info) while a cell runs.
//!
//! Unknown message types: like ipykernel, ciao logs "unknown message type"
//! and runs no handler. Unlike ipykernel, a request (a type ending in
//! `_request`) still gets a `*_reply` with status `error` and ename
//! `UnknownMessageType`, so a client waiting for it learns why instead of
//! timing out. Other unknown types (e.g. stray `*_reply`s) get no reply.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{Map, Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Language;
use super::connection::{Channel, Inbound, Outbound};
use super::history::{History, Query};
use super::message::{KernelSession, Message, MsgType, PROTOCOL_VERSION, reply_type};
use crate::interpreter::IsComplete;
use crate::output::MimeBundle;

/// How [`Kernel::run`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// A shutdown_request; `restart` as the client asked.
    Shutdown { restart: bool },
    /// The transport closed the request queues.
    InputClosed,
    /// A request loop stopped unexpectedly (a bug); the process should exit non-zero.
    Failed(String),
}

/// A request that cannot be answered normally: becomes a reply with status
/// `error` (ename, evalue, traceback).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestError {
    pub ename: String,
    pub evalue: String,
}

impl RequestError {
    pub fn new(ename: &str, evalue: impl Into<String>) -> Self {
        RequestError { ename: ename.into(), evalue: evalue.into() }
    }

    fn invalid(evalue: impl Into<String>) -> Self {
        RequestError::new("InvalidRequest", evalue)
    }

    /// The reply content.
    pub fn content(&self) -> Value {
        json!({
            "status": "error",
            "ename": self.ename,
            "evalue": self.evalue,
            "traceback": [format!("{}: {}", self.ename, self.evalue)],
        })
    }
}

/// What the shell loop keeps between requests.
pub(super) struct ShellState {
    /// Cells executed with store_history so far.
    pub(super) count: u32,
    pub(super) rx: mpsc::Receiver<Message>,
    /// Requests taken off the queue early (stop_on_error); `true`: abort if it is an execute_request.
    pub(super) backlog: VecDeque<(Message, bool)>,
}

/// What the loop does after a request.
#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Exit { restart: bool },
}

/// The kernel core, generic over the [`Language`] behind it.
pub struct Kernel<L: Language> {
    pub(super) lang: Arc<L>,
    pub(super) session: KernelSession,
    pub(super) out: Outbound,
    history: Mutex<History>,
    /// The running cell's cancellation token.
    running: Mutex<Option<CancellationToken>>,
    stop: CancellationToken,
    restart: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Runs a synchronous language call, turning a panic into an error reply.
pub(super) fn guarded<T>(what: &str, f: impl FnOnce() -> T) -> Result<T, RequestError> {
    std::panic::catch_unwind(AssertUnwindSafe(f)).map_err(|p| {
        let why = p
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown cause".into());
        tracing::error!("{what} panicked: {why}");
        RequestError::new("KernelError", format!("{what} failed unexpectedly ({why}); the kernel is still running"))
    })
}

impl<L: Language> Kernel<L> {
    /// A kernel driving `lang`, writing to `out`, with `history`.
    pub fn new(lang: Arc<L>, out: Outbound, history: History) -> Arc<Self> {
        Arc::new(Kernel {
            lang,
            session: KernelSession::new(),
            out,
            history: Mutex::new(history),
            running: Mutex::new(None),
            stop: CancellationToken::new(),
            restart: AtomicBool::new(false),
        })
    }

    /// Cancels the running cell, if any (interrupt_request, SIGINT).
    pub fn interrupt(&self) {
        if let Some(t) = lock(&self.running).as_ref() {
            tracing::info!("interrupting the running cell");
            t.cancel();
        }
    }

    pub(super) fn set_running(&self, token: Option<CancellationToken>) {
        *lock(&self.running) = token;
    }

    pub(super) fn history(&self) -> MutexGuard<'_, History> {
        lock(&self.history)
    }

    /// Serves requests until a shutdown_request (or until the queues close).
    /// Publishes `status: starting` first.
    pub async fn run(self: Arc<Self>, inbound: Inbound) -> Ended {
        self.out.publish(self.session.status(None, "starting")).await;
        let mut control = tokio::spawn(Arc::clone(&self).control_loop(inbound.control));
        let mut shell = tokio::spawn(Arc::clone(&self).shell_loop(inbound.shell));
        let (ended, control_done, shell_done) = tokio::select! {
            biased;
            () = self.stop.cancelled() => (Ended::Shutdown { restart: self.restart.load(Ordering::SeqCst) }, false, false),
            r = &mut control => (loop_end("control", r), true, false),
            r = &mut shell => (loop_end("shell", r), false, true),
        };
        if let Some(t) = lock(&self.running).take() {
            t.cancel();
        }
        // Wait for both loops to be gone, so nothing holds the outgoing queues.
        for (done, task) in [(control_done, control), (shell_done, shell)] {
            if !done {
                task.abort();
                let _ = task.await;
            }
        }
        ended
    }

    async fn control_loop(self: Arc<Self>, mut rx: mpsc::Receiver<Message>) {
        while let Some(msg) = rx.recv().await {
            if let Flow::Exit { restart } = self.dispatch(Channel::Control, &msg, None).await {
                self.exit(restart);
                return;
            }
        }
    }

    async fn shell_loop(self: Arc<Self>, rx: mpsc::Receiver<Message>) {
        let mut state = ShellState { count: 0, rx, backlog: VecDeque::new() };
        loop {
            let (msg, abort) = match state.backlog.pop_front() {
                Some(queued) => queued,
                None => match state.rx.recv().await {
                    Some(m) => (m, false),
                    None => return,
                },
            };
            if abort && MsgType::parse(msg.msg_type()) == MsgType::Execute {
                self.abort(&msg).await;
                continue;
            }
            if let Flow::Exit { restart } = self.dispatch(Channel::Shell, &msg, Some(&mut state)).await {
                self.exit(restart);
                return;
            }
        }
    }

    /// Ends the kernel as a shutdown_request without restart does (the
    /// running cell is cancelled).
    pub(super) fn shut_down(&self) {
        if let Some(t) = lock(&self.running).as_ref() {
            t.cancel();
        }
        self.exit(false);
    }

    fn exit(&self, restart: bool) {
        self.restart.store(restart, Ordering::SeqCst);
        self.stop.cancel();
    }

    /// Answers an execute_request queued behind a failed cell without running it.
    async fn abort(&self, req: &Message) {
        tracing::info!("aborting {} queued behind a failed cell", req.header.msg_id);
        self.out.publish(self.session.status(Some(req), "busy")).await;
        if let Some(reply) = self.session.reply(req, json!({"status": "aborted"})) {
            self.out.reply(Channel::Shell, reply).await;
        }
        self.out.publish(self.session.status(Some(req), "idle")).await;
    }

    /// busy → handler → reply → idle, for every request on shell or control.
    async fn dispatch(&self, channel: Channel, req: &Message, shell: Option<&mut ShellState>) -> Flow {
        self.out.publish(self.session.status(Some(req), "busy")).await;
        let mut flow = Flow::Continue;
        let reply: Option<Result<Value, RequestError>> = match MsgType::parse(req.msg_type()) {
            MsgType::KernelInfo => Some(Ok(kernel_info())),
            MsgType::Execute => Some(match shell {
                Some(state) => Ok(self.execute(req, state).await),
                None => Err(RequestError::new(
                    "WrongChannel",
                    "execute_request is served on the shell channel only; send it there",
                )),
            }),
            MsgType::IsComplete => Some(self.is_complete(&req.content)),
            MsgType::Complete => Some(self.complete(&req.content)),
            MsgType::Inspect => Some(self.inspect(&req.content)),
            MsgType::History => Some(self.history_reply(&req.content)),
            MsgType::CommInfo => Some(Ok(json!({"status": "ok", "comms": {}}))),
            MsgType::CommOpen => {
                self.comm_open(req).await;
                None
            }
            MsgType::CommMsg | MsgType::CommClose => None,
            MsgType::Shutdown => {
                let restart = req.content.get("restart").and_then(Value::as_bool).unwrap_or(false);
                if let Some(t) = lock(&self.running).as_ref() {
                    t.cancel();
                }
                flow = Flow::Exit { restart };
                let content = json!({"status": "ok", "restart": restart});
                // ipykernel also broadcasts the reply, so every client learns of the shutdown.
                self.out.publish(self.session.child(req, "shutdown_reply", content.clone())).await;
                Some(Ok(content))
            }
            MsgType::Interrupt => {
                self.interrupt();
                Some(Ok(json!({"status": "ok"})))
            }
            MsgType::Other(t) => {
                tracing::warn!("{channel:?}: unknown message type {t:?}");
                reply_type(&t).map(|_| {
                    Err(RequestError::new(
                        "UnknownMessageType",
                        format!("ciao does not handle {t:?} (protocol {PROTOCOL_VERSION})"),
                    ))
                })
            }
        };
        if let Some(content) = reply {
            let content = content.unwrap_or_else(|e| e.content());
            if let Some(msg) = self.session.reply(req, content) {
                self.out.reply(channel, msg).await;
            }
        }
        self.out.publish(self.session.status(Some(req), "idle")).await;
        flow
    }

    fn is_complete(&self, content: &Value) -> Result<Value, RequestError> {
        let code = string_field(content, "code")?;
        Ok(match guarded("is_complete", || self.lang.is_complete(code))? {
            IsComplete::Complete => json!({"status": "complete"}),
            IsComplete::Incomplete { indent } => json!({"status": "incomplete", "indent": indent}),
            IsComplete::Invalid => json!({"status": "invalid"}),
        })
    }

    fn complete(&self, content: &Value) -> Result<Value, RequestError> {
        let code = string_field(content, "code")?;
        let cursor = cursor_field(content, code)?;
        let c = guarded("completion", || self.lang.complete(code, cursor))?;
        Ok(json!({
            "status": "ok",
            "matches": c.matches,
            "cursor_start": c.cursor_start,
            "cursor_end": c.cursor_end,
            "metadata": {},
        }))
    }

    fn inspect(&self, content: &Value) -> Result<Value, RequestError> {
        let code = string_field(content, "code")?;
        let cursor = cursor_field(content, code)?;
        let detail = u8::from(int_field(content, "detail_level")?.unwrap_or(0) > 0);
        let found = guarded("inspection", || self.lang.inspect(code, cursor, detail))?;
        Ok(json!({
            "status": "ok",
            "found": found.is_some(),
            "data": found.unwrap_or_else(MimeBundle::new),
            "metadata": {},
        }))
    }

    fn history_reply(&self, content: &Value) -> Result<Value, RequestError> {
        let output = bool_field(content, "output", false)?;
        let query = match content.get("hist_access_type").and_then(Value::as_str) {
            Some("tail") => Query::Tail { n: count_field(content, "n")?.unwrap_or(10) },
            Some("range") => Query::Range {
                session: int_field(content, "session")?.unwrap_or(0),
                start: int_field(content, "start")?.unwrap_or(0),
                stop: int_field(content, "stop")?,
            },
            Some("search") => Query::Search {
                pattern: match content.get("pattern") {
                    None | Some(Value::Null) => "*".into(),
                    Some(Value::String(p)) => p.clone(),
                    Some(_) => return Err(RequestError::invalid("history_request: pattern must be a string")),
                },
                n: count_field(content, "n")?,
                unique: bool_field(content, "unique", false)?,
            },
            other => {
                return Err(RequestError::invalid(format!(
                    "history_request: hist_access_type must be \"tail\", \"range\" or \"search\", not {}",
                    other.map_or_else(|| "missing".into(), |o| format!("{o:?}"))
                )));
            }
        };
        let entries = self.history().query(&query).map_err(|e| RequestError::new("HistoryError", e.to_string()))?;
        let history: Vec<Value> = entries
            .into_iter()
            .map(|e| if output { json!([e.session, e.line, [e.input, e.output]]) } else { json!([e.session, e.line, e.input]) })
            .collect();
        Ok(json!({"status": "ok", "history": history}))
    }

    /// ciao has no comm targets: every comm_open is closed again.
    async fn comm_open(&self, req: &Message) {
        let Some(comm_id) = req.content.get("comm_id").and_then(Value::as_str) else {
            tracing::warn!("comm_open without a comm_id: ignored");
            return;
        };
        let target = req.content.get("target_name").and_then(Value::as_str).unwrap_or("");
        tracing::info!("comm_open for unknown target {target:?}: closing comm {comm_id}");
        let close = json!({"comm_id": comm_id, "data": {}});
        self.out.publish(self.session.child(req, "comm_close", close)).await;
    }
}

fn loop_end(which: &str, r: Result<(), tokio::task::JoinError>) -> Ended {
    match r {
        Ok(()) => Ended::InputClosed,
        Err(e) => {
            tracing::error!("the {which} loop stopped: {e}");
            Ended::Failed(format!("the {which} loop stopped: {e}"))
        }
    }
}

const KUBEFLOW_TRAINER_URL: &str = "https://www.kubeflow.org/docs/components/trainer/";

/// The magics reference online: the README's magics section in the
/// repository named by Cargo.toml's `repository` (Kubeflow's docs until one is set).
fn magics_reference_url() -> String {
    match env!("CARGO_PKG_REPOSITORY") {
        "" => KUBEFLOW_TRAINER_URL.into(),
        repo => format!("{repo}#magics"),
    }
}

/// kernel_info_reply's content.
pub fn kernel_info() -> Value {
    json!({
        "status": "ok",
        "protocol_version": PROTOCOL_VERSION,
        "implementation": "ciao",
        "implementation_version": crate::VERSION,
        "language_info": {
            "name": "python",
            "version": "3",
            "mimetype": "text/x-python",
            "file_extension": ".py",
            "pygments_lexer": "ipython3",
            "codemirror_mode": {"name": "ipython", "version": 3},
            "nbconvert_exporter": "python",
        },
        "banner": format!(
            "ciao {} — a Jupyter kernel for Kubeflow.\nEach cell runs as a training job: magics such as %framework=, \
             %worker= and %dryrun describe it, the rest is the job's Python code.\nType %help for the magics reference.",
            crate::VERSION
        ),
        "help_links": [
            {"text": "ciao magics reference (also %help)", "url": magics_reference_url()},
            {"text": "Kubeflow Trainer", "url": KUBEFLOW_TRAINER_URL},
        ],
        "debugger": false,
    })
}

pub(super) fn string_field<'a>(content: &'a Value, name: &str) -> Result<&'a str, RequestError> {
    match content.get(name) {
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(RequestError::invalid(format!("{name} must be a string, not {}", type_name(other)))),
        None => Err(RequestError::invalid(format!("the request has no {name}"))),
    }
}

pub(super) fn bool_field(content: &Value, name: &str, default: bool) -> Result<bool, RequestError> {
    match content.get(name) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(RequestError::invalid(format!("{name} must be true or false, not {}", type_name(other)))),
    }
}

/// An integer field; JSON numbers like `3.0` count as integers.
pub(super) fn int_field(content: &Value, name: &str) -> Result<Option<i64>, RequestError> {
    match content.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15).map(|f| f as i64))
            .map(Some)
            .ok_or_else(|| RequestError::invalid(format!("{name} must be an integer, not {n}"))),
        Some(other) => Err(RequestError::invalid(format!("{name} must be an integer, not {}", type_name(other)))),
    }
}

fn count_field(content: &Value, name: &str) -> Result<Option<usize>, RequestError> {
    Ok(int_field(content, name)?.map(|n| usize::try_from(n).unwrap_or(0)))
}

/// cursor_pos in code points, within the code; missing means the end (as IPython does).
fn cursor_field(content: &Value, code: &str) -> Result<usize, RequestError> {
    let len = code.chars().count();
    match int_field(content, "cursor_pos")? {
        None => Ok(len),
        Some(n) if n < 0 => Err(RequestError::invalid(format!("cursor_pos must not be negative, not {n}"))),
        Some(n) => Ok(usize::try_from(n).unwrap_or(usize::MAX).min(len)),
    }
}

pub(super) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// An empty JSON object.
pub(super) fn empty() -> Value {
    Value::Object(Map::new())
}
