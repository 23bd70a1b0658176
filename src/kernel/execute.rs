//! execute_request: execution count, execute_input, the cell's output
//! forwarded to iopub, the result or error, user_expressions, history, and
//! stop_on_error.
//!
//! The language runs on a task of its own; this side forwards its
//! [`OutputEvent`]s as they come. Consecutive texts of one stream that are
//! already queued go out as one `stream` message (at most [`STREAM_CHUNK`]
//! bytes), so a job fanning in 100k log lines a second becomes a few
//! messages, not 100k.
//!
//! Execution count: a cell with store_history (and not silent) takes the next
//! number; execute_input, execute_result and the reply all show it. Other
//! cells show the last number taken, as ipykernel's reply does.
//!
//! stop_on_error: when a cell fails, the execute_requests already waiting on
//! shell are answered `aborted` without running. "Already waiting" includes
//! requests still arriving in a short burst ([`ABORT_SETTLE`] of quiet ends
//! it), because a magic error comes back faster than a notebook's Run All
//! finishes sending; this happens before the failed cell's reply, so nothing
//! sent after the client saw that reply is aborted.

use std::sync::Mutex;
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::sync::CancellationToken;

use super::Language;
use super::handlers::{Kernel, RequestError, ShellState, bool_field, empty, guarded, string_field, type_name};
use super::message::Message;
use crate::output::{CellError, MimeBundle, Output, OutputEvent, Stream};

/// The largest `stream` message text, in bytes.
pub const STREAM_CHUNK: usize = 64 * 1024;

/// After a failed cell, requests are collected until the queue has been quiet this long.
const ABORT_SETTLE: Duration = Duration::from_millis(10);

/// …but for no longer than this in all.
const ABORT_MAX: Duration = Duration::from_millis(500);

/// An execute_request's content.
#[derive(Debug)]
struct ExecuteRequest {
    code: String,
    silent: bool,
    store_history: bool,
    user_expressions: Map<String, Value>,
    stop_on_error: bool,
}

impl ExecuteRequest {
    fn parse(content: &Value) -> Result<Self, RequestError> {
        let silent = bool_field(content, "silent", false)?;
        Ok(ExecuteRequest {
            code: string_field(content, "code")?.to_string(),
            silent,
            store_history: bool_field(content, "store_history", true)? && !silent,
            user_expressions: match content.get("user_expressions") {
                None | Some(Value::Null) => Map::new(),
                Some(Value::Object(m)) => m.clone(),
                Some(other) => {
                    return Err(RequestError::new(
                        "InvalidRequest",
                        format!("user_expressions must be an object, not {}", type_name(other)),
                    ));
                }
            },
            stop_on_error: bool_field(content, "stop_on_error", true)?,
        })
    }
}

impl<L: Language> Kernel<L> {
    /// Runs an execute_request and returns the reply content.
    pub(super) async fn execute(&self, req: &Message, state: &mut ShellState) -> Value {
        let request = match ExecuteRequest::parse(&req.content) {
            Ok(r) => r,
            Err(e) => {
                let mut content = e.content();
                content["execution_count"] = json!(state.count);
                return content;
            }
        };
        if request.store_history {
            state.count += 1;
        }
        let count = state.count;
        if !request.silent {
            let input = json!({"code": request.code, "execution_count": count});
            self.out.publish(self.session.child(req, "execute_input", input)).await;
        }

        let (result, pages) = self.run_cell(req, &request).await;
        // Documentation for the pager (`%help MAGIC`), as IPython sends `obj?`.
        let payload: Vec<Value> =
            pages.into_iter().map(|data| json!({"source": "page", "data": data, "start": 0})).collect();

        match result {
            Ok(bundle) => {
                if request.store_history {
                    let text = bundle.as_ref().and_then(|b| b.get("text/plain")).and_then(Value::as_str);
                    self.history().record(count, &request.code, text);
                }
                if let (Some(data), false) = (bundle, request.silent) {
                    let result = json!({"execution_count": count, "data": data, "metadata": {}});
                    self.out.publish(self.session.child(req, "execute_result", result)).await;
                }
                json!({
                    "status": "ok",
                    "execution_count": count,
                    "payload": payload,
                    "user_expressions": self.user_expressions(&request.user_expressions),
                })
            }
            Err(e) => {
                if request.store_history {
                    self.history().record(count, &request.code, None);
                }
                let traceback = e.display_traceback();
                if !request.silent {
                    let error = json!({"ename": e.ename, "evalue": e.evalue, "traceback": traceback});
                    self.out.publish(self.session.child(req, "error", error)).await;
                    if request.stop_on_error {
                        collect_queued(state).await;
                    }
                }
                json!({
                    "status": "error",
                    "execution_count": count,
                    "ename": e.ename,
                    "evalue": e.evalue,
                    "traceback": traceback,
                    "payload": [],
                    "user_expressions": empty(),
                })
            }
        }
    }

    /// Runs the cell on its own task, forwarding output until it ends;
    /// returns its result and what it sent to the pager.
    async fn run_cell(&self, req: &Message, request: &ExecuteRequest) -> (Result<Option<MimeBundle>, CellError>, Vec<MimeBundle>) {
        let cancel = CancellationToken::new();
        self.set_running(Some(cancel.clone()));
        let (out, mut rx) = Output::channel();
        let lang = std::sync::Arc::clone(&self.lang);
        let code = request.code.clone();
        let mut task = tokio::spawn(async move { lang.execute(&code, out, cancel).await });
        let forward = Forwarder { kernel: self, parent: req, silent: request.silent, pages: Mutex::new(Vec::new()) };

        let joined = loop {
            tokio::select! {
                biased;
                event = rx.recv() => match event {
                    Some(event) => forward.forward(event, &mut rx).await,
                    None => break (&mut task).await,
                },
                joined = &mut task => break joined,
            }
        };
        // What the cell said before it ended; anything later is dropped with the receiver.
        while let Ok(event) = rx.try_recv() {
            forward.forward(event, &mut rx).await;
        }
        self.set_running(None);
        let result = joined.unwrap_or_else(|e| {
            tracing::error!("the cell's task failed: {e}");
            Err(CellError::new("KernelError", "the cell stopped unexpectedly (an internal error); the kernel is still running"))
        });
        (result, forward.pages.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    fn user_expressions(&self, exprs: &Map<String, Value>) -> Value {
        let answers: Map<String, Value> = exprs
            .iter()
            .map(|(key, expr)| {
                let answer = match expr {
                    Value::String(expr) => {
                        match guarded("user_expression", || self.lang.user_expression(expr)) {
                            Ok(Ok(data)) => json!({"status": "ok", "data": data, "metadata": {}}),
                            Ok(Err(e)) => json!({
                                "status": "error",
                                "ename": e.ename,
                                "evalue": e.evalue,
                                "traceback": e.display_traceback(),
                            }),
                            Err(e) => e.content(),
                        }
                    }
                    other => RequestError::new(
                        "InvalidRequest",
                        format!("user expression {key:?} must be a string, not {}", type_name(other)),
                    )
                    .content(),
                };
                (key.clone(), answer)
            })
            .collect();
        Value::Object(answers)
    }
}

/// Takes every request already waiting on shell off the queue, marking
/// execute_requests to be aborted (see the module docs).
async fn collect_queued(state: &mut ShellState) {
    for queued in &mut state.backlog {
        queued.1 = true;
    }
    let deadline = tokio::time::Instant::now() + ABORT_MAX;
    loop {
        while let Ok(m) = state.rx.try_recv() {
            state.backlog.push_back((m, true));
        }
        if tokio::time::Instant::now() >= deadline {
            return;
        }
        match tokio::time::timeout(ABORT_SETTLE, state.rx.recv()).await {
            Ok(Some(m)) => state.backlog.push_back((m, true)),
            Ok(None) | Err(_) => return,
        }
    }
}

/// Turns a cell's output events into iopub messages with the request as parent.
struct Forwarder<'a, L: Language> {
    kernel: &'a Kernel<L>,
    parent: &'a Message,
    silent: bool,
    /// Pager documents, for the execute_reply's payload.
    pages: Mutex<Vec<MimeBundle>>,
}

impl<L: Language> Forwarder<'_, L> {
    /// Publishes `first` and, with it, whatever else is already queued.
    async fn forward(&self, first: OutputEvent, rx: &mut UnboundedReceiver<OutputEvent>) {
        let mut next = Some(first);
        while let Some(event) = next.take() {
            match event {
                OutputEvent::Text(stream, mut text) => {
                    while text.len() < STREAM_CHUNK {
                        match rx.try_recv() {
                            Ok(OutputEvent::Text(s, more)) if s == stream => text.push_str(&more),
                            Ok(other) => {
                                next = Some(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    for chunk in chunks(&text, STREAM_CHUNK) {
                        self.publish("stream", json!({"name": stream_name(stream), "text": chunk})).await;
                    }
                }
                OutputEvent::Display { data, display_id } => {
                    let transient = display_id.map_or_else(empty, |id| json!({"display_id": id}));
                    self.publish("display_data", json!({"data": data, "metadata": {}, "transient": transient})).await;
                }
                OutputEvent::UpdateDisplay { data, display_id } => {
                    let content = json!({"data": data, "metadata": {}, "transient": {"display_id": display_id}});
                    self.publish("update_display_data", content).await;
                }
                OutputEvent::Page(data) => self.pages.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(data),
            }
        }
    }

    async fn publish(&self, msg_type: &str, content: Value) {
        if !self.silent {
            self.kernel.out.publish(self.kernel.session.child(self.parent, msg_type, content)).await;
        }
    }
}

fn stream_name(s: Stream) -> &'static str {
    s.name()
}

/// Splits `text` into pieces of at most `max` bytes, at a line end when one
/// is near, else at a character boundary.
pub fn chunks(text: &str, max: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while rest.len() > max {
        let mut end = max;
        while end > 0 && !rest.is_char_boundary(end) {
            end -= 1;
        }
        if let Some(nl) = rest[..end].rfind('\n').filter(|&nl| nl + 1 >= end / 2) {
            end = nl + 1;
        }
        if end == 0 {
            // max is smaller than one character: take the character whole.
            end = rest.chars().next().map_or(rest.len(), char::len_utf8);
        }
        out.push(&rest[..end]);
        rest = &rest[end..];
    }
    if !rest.is_empty() || out.is_empty() {
        out.push(rest);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_one_chunk() {
        assert_eq!(chunks("a\nb\n", 100), ["a\nb\n"]);
        assert_eq!(chunks("", 100), [""]);
    }

    #[test]
    fn long_text_splits_at_line_ends_and_never_inside_a_character() {
        let text = "line one\nline two\nline three\n";
        let parts = chunks(text, 12);
        assert_eq!(parts.concat(), text);
        assert!(parts.iter().all(|p| p.len() <= 12));
        assert_eq!(parts[0], "line one\n");
        let wide = "é".repeat(10);
        let parts = chunks(&wide, 5);
        assert_eq!(parts.concat(), wide);
        assert!(parts.iter().all(|p| p.len() <= 5 && !p.is_empty()));
        assert_eq!(chunks("€", 1), ["€"]);
    }
}
