//! The kernel core driven over in-memory queues with a small test language:
//! protocol bookkeeping (busy/idle, parents, execution count, stop_on_error,
//! interrupt, shutdown) without sockets. The Python suite runs the same
//! behaviour end to end through jupyter_client.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use super::connection::{self, OutboundQueues};
use super::execute::STREAM_CHUNK;
use super::history::History;
use super::message::{KernelSession, Message};
use super::{Ended, Kernel, Language};
use crate::interpreter::{Completion, IsComplete};
use crate::output::{CellError, MimeBundle, Output, bundle};

/// A language whose cells are commands:
/// `ok`, `result:TEXT`, `fail:TEXT`, `lines:N`, `mixed`, `display`, `gate`
/// (waits for the test), `wait` (runs until cancelled), `panic`.
#[derive(Default)]
struct TestLanguage {
    gate: Notify,
}

#[async_trait]
impl Language for TestLanguage {
    async fn execute(&self, code: &str, out: Output, cancel: CancellationToken) -> Result<Option<MimeBundle>, CellError> {
        let (cmd, arg) = code.split_once(':').unwrap_or((code, ""));
        match cmd {
            "ok" => Ok(None),
            "result" => Ok(Some(bundle(arg, None))),
            "fail" => Err(CellError::new("TestError", arg).with_traceback(vec!["detail".into()])),
            "lines" => {
                for i in 0..arg.parse::<usize>().unwrap() {
                    out.stdout(format!("line {i}\n"));
                }
                Ok(None)
            }
            "mixed" => {
                out.stdout("a\n");
                out.stdout("b\n");
                out.stderr("c\n");
                out.stdout("d\n");
                Ok(None)
            }
            "display" => {
                out.display(bundle("v1", None), Some("d1".into()));
                out.update_display(bundle("v2", None), "d1");
                out.display(bundle("plain", None), None);
                Ok(None)
            }
            "gate" => {
                self.gate.notified().await;
                Ok(None)
            }
            "wait" => {
                out.stdout("started\n");
                cancel.cancelled().await;
                Err(CellError::new("Interrupted", "the cell was interrupted"))
            }
            "panic" => panic!("test language panicked"),
            _ => Err(CellError::new("Unknown", code)),
        }
    }

    fn is_complete(&self, code: &str) -> IsComplete {
        match code {
            "incomplete" => IsComplete::Incomplete { indent: "  ".into() },
            "invalid" => IsComplete::Invalid,
            _ => IsComplete::Complete,
        }
    }

    fn complete(&self, _code: &str, cursor_pos: usize) -> Completion {
        Completion { matches: vec!["%framework=".into()], cursor_start: 0, cursor_end: cursor_pos }
    }

    fn inspect(&self, code: &str, _cursor_pos: usize, _detail_level: u8) -> Option<MimeBundle> {
        match code {
            "boom" => panic!("inspect panicked"),
            c if c.starts_with('%') => Some(bundle("docs", None)),
            _ => None,
        }
    }

    fn user_expression(&self, expr: &str) -> Result<MimeBundle, CellError> {
        match expr {
            "framework" => Ok(bundle("python", None)),
            _ => Err(CellError::new("NameError", format!("{expr} is not known"))),
        }
    }
}

struct Harness {
    lang: Arc<TestLanguage>,
    kernel: Arc<Kernel<TestLanguage>>,
    shell: mpsc::Sender<Message>,
    control: mpsc::Sender<Message>,
    out: OutboundQueues,
    client: KernelSession,
    run: tokio::task::JoinHandle<Ended>,
}

const WAIT: Duration = Duration::from_secs(10);

impl Harness {
    async fn start() -> Harness {
        Self::with_history(History::new(None, 100)).await
    }

    async fn with_history(history: History) -> Harness {
        let lang = Arc::new(TestLanguage::default());
        let (shell, control, inbound, outbound, out) = connection::queues();
        let kernel = Kernel::new(Arc::clone(&lang), outbound, history);
        let run = tokio::spawn(Arc::clone(&kernel).run(inbound));
        let mut h = Harness { lang, kernel, shell, control, out, client: KernelSession::new(), run };
        let starting = h.iopub().await;
        assert_eq!(starting.content, json!({"execution_state": "starting"}));
        assert!(starting.parent_header.is_empty());
        h
    }

    fn request(&self, msg_type: &str, content: Value) -> Message {
        let mut m = self.client.message(msg_type, content);
        m.identities = vec![Bytes::from_static(b"client-1")];
        m
    }

    fn execute_request(&self, code: &str) -> Message {
        self.request("execute_request", json!({"code": code, "silent": false, "store_history": true, "user_expressions": {}, "allow_stdin": false, "stop_on_error": true}))
    }

    async fn send_shell(&self, m: &Message) {
        self.shell.send(m.clone()).await.unwrap();
    }

    async fn send_control(&self, m: &Message) {
        self.control.send(m.clone()).await.unwrap();
    }

    async fn iopub(&mut self) -> Message {
        tokio::time::timeout(WAIT, self.out.iopub.recv()).await.expect("an iopub message in time").expect("iopub open")
    }

    async fn shell_reply(&mut self) -> Message {
        tokio::time::timeout(WAIT, self.out.shell.recv()).await.expect("a shell reply in time").expect("shell open")
    }

    async fn control_reply(&mut self) -> Message {
        tokio::time::timeout(WAIT, self.out.control.recv()).await.expect("a control reply in time").expect("control open")
    }

    /// The iopub messages caused by `req`, from busy to idle (both included).
    async fn iopub_for(&mut self, req: &Message) -> Vec<Message> {
        let mut seen = Vec::new();
        loop {
            let m = self.iopub().await;
            if m.parent_msg_id() != Some(req.header.msg_id.as_str()) {
                continue;
            }
            let idle = m.msg_type() == "status" && m.content["execution_state"] == "idle";
            seen.push(m);
            if idle {
                return seen;
            }
        }
    }

    /// Sends on shell and returns (reply, iopub messages busy..idle).
    async fn shell_roundtrip(&mut self, req: &Message) -> (Message, Vec<Message>) {
        self.send_shell(req).await;
        let reply = self.shell_reply().await;
        assert_eq!(reply.parent_msg_id(), Some(req.header.msg_id.as_str()));
        let iopub = self.iopub_for(req).await;
        (reply, iopub)
    }

    async fn execute(&mut self, code: &str) -> (Message, Vec<Message>) {
        let req = self.execute_request(code);
        self.shell_roundtrip(&req).await
    }
}

fn types(msgs: &[Message]) -> Vec<&str> {
    msgs.iter().map(Message::msg_type).collect()
}

fn assert_wrapped_in_busy_idle(msgs: &[Message]) {
    assert_eq!(msgs.first().unwrap().content["execution_state"], "busy", "{:?}", types(msgs));
    assert_eq!(msgs.last().unwrap().content["execution_state"], "idle", "{:?}", types(msgs));
}

#[tokio::test]
async fn kernel_info_is_answered_on_shell_and_control_inside_busy_idle() {
    let mut h = Harness::start().await;
    let req = h.request("kernel_info_request", json!({}));
    let (reply, iopub) = h.shell_roundtrip(&req).await;
    assert_wrapped_in_busy_idle(&iopub);
    assert_eq!(iopub.len(), 2);
    let c = &reply.content;
    assert_eq!(c["status"], "ok");
    assert_eq!(c["protocol_version"], "5.3");
    assert_eq!(c["implementation"], "ciao");
    assert_eq!(c["implementation_version"], crate::VERSION);
    assert_eq!(c["language_info"]["name"], "python");
    assert_eq!(c["language_info"]["file_extension"], ".py");
    assert_eq!(c["language_info"]["codemirror_mode"], json!({"name": "ipython", "version": 3}));
    let banner = c["banner"].as_str().unwrap();
    assert!(banner.contains("ciao") && banner.contains("Kubeflow") && banner.contains("%help"), "{banner}");
    assert!(!c["help_links"].as_array().unwrap().is_empty());
    assert_eq!(reply.identities, req.identities);

    let req = h.request("kernel_info_request", json!({}));
    h.send_control(&req).await;
    let reply = h.control_reply().await;
    assert_eq!(reply.msg_type(), "kernel_info_reply");
    assert_wrapped_in_busy_idle(&h.iopub_for(&req).await);
}

#[tokio::test]
async fn execute_publishes_input_output_result_in_order_with_the_request_as_parent() {
    let mut h = Harness::start().await;
    let (reply, iopub) = h.execute("result:42").await;
    assert_eq!(types(&iopub), ["status", "execute_input", "execute_result", "status"]);
    assert_eq!(iopub[1].content, json!({"code": "result:42", "execution_count": 1}));
    assert_eq!(iopub[2].content, json!({"execution_count": 1, "data": {"text/plain": "42"}, "metadata": {}}));
    assert_eq!(reply.content, json!({"status": "ok", "execution_count": 1, "payload": [], "user_expressions": {}}));

    let (reply, iopub) = h.execute("mixed").await;
    assert_eq!(reply.content["execution_count"], 2);
    let streams: Vec<(String, String)> = iopub
        .iter()
        .filter(|m| m.msg_type() == "stream")
        .map(|m| (m.content["name"].as_str().unwrap().into(), m.content["text"].as_str().unwrap().into()))
        .collect();
    assert_eq!(
        streams,
        [("stdout".into(), "a\nb\n".into()), ("stderr".into(), "c\n".into()), ("stdout".into(), "d\n".into())],
        "consecutive texts of one stream are coalesced, order is kept"
    );
}

#[tokio::test]
async fn the_execution_count_advances_only_for_stored_non_silent_cells() {
    let mut h = Harness::start().await;
    h.execute("ok").await;
    let mut req = h.execute_request("result:x");
    req.content["store_history"] = json!(false);
    let (reply, iopub) = h.shell_roundtrip(&req).await;
    assert_eq!(reply.content["execution_count"], 1);
    assert_eq!(iopub[1].content["execution_count"], 1);

    let mut req = h.execute_request("result:x");
    req.content["silent"] = json!(true);
    req.content["store_history"] = json!(true);
    let (reply, iopub) = h.shell_roundtrip(&req).await;
    assert_eq!(reply.content["status"], "ok");
    assert_eq!(reply.content["execution_count"], 1, "silent forces store_history off");
    assert_eq!(types(&iopub), ["status", "status"], "silent publishes no input and no outputs");

    let (reply, _) = h.execute("ok").await;
    assert_eq!(reply.content["execution_count"], 2);
}

#[tokio::test]
async fn a_silent_failing_cell_publishes_nothing_but_still_replies_with_the_error() {
    let mut h = Harness::start().await;
    let mut req = h.execute_request("fail:quiet");
    req.content["silent"] = json!(true);
    let (reply, iopub) = h.shell_roundtrip(&req).await;
    assert_eq!(types(&iopub), ["status", "status"]);
    assert_eq!(reply.content["status"], "error");
    assert_eq!(reply.content["ename"], "TestError");
}

#[tokio::test]
async fn a_failed_cell_publishes_one_error_and_replies_with_status_error() {
    let mut h = Harness::start().await;
    let (reply, iopub) = h.execute("fail:bad magic").await;
    assert_eq!(types(&iopub), ["status", "execute_input", "error", "status"]);
    let expected_tb = json!(["TestError: bad magic", "detail"]);
    assert_eq!(iopub[2].content, json!({"ename": "TestError", "evalue": "bad magic", "traceback": expected_tb}));
    let c = &reply.content;
    assert_eq!((c["status"].as_str(), c["ename"].as_str(), c["evalue"].as_str()), (Some("error"), Some("TestError"), Some("bad magic")));
    assert_eq!(c["traceback"], expected_tb);
    assert_eq!(c["execution_count"], 1);
}

#[tokio::test]
async fn after_an_error_the_queued_execute_requests_are_aborted_and_other_requests_still_answered() {
    let mut h = Harness::start().await;
    let gate = h.execute_request("gate");
    let fail = h.execute_request("fail:x");
    let queued1 = h.execute_request("result:never");
    let info = h.request("kernel_info_request", json!({}));
    let queued2 = h.execute_request("result:never");
    for m in [&gate, &fail, &queued1, &info, &queued2] {
        h.send_shell(m).await;
    }
    h.lang.gate.notify_one();
    let mut replies = Vec::new();
    for _ in 0..5 {
        replies.push(h.shell_reply().await);
    }
    let by_parent = |m: &Message| replies.iter().find(|r| r.parent_msg_id() == Some(m.header.msg_id.as_str())).unwrap().clone();
    assert_eq!(by_parent(&gate).content["status"], "ok");
    assert_eq!(by_parent(&fail).content["status"], "error");
    assert_eq!(by_parent(&queued1).content, json!({"status": "aborted"}));
    assert_eq!(by_parent(&queued2).content, json!({"status": "aborted"}));
    assert_eq!(by_parent(&info).msg_type(), "kernel_info_reply");
    let aborted_iopub = h.iopub_for(&queued1).await;
    assert_eq!(types(&aborted_iopub), ["status", "status"], "aborted requests are still wrapped in busy/idle");

    let (reply, _) = h.execute("result:after").await;
    assert_eq!(reply.content["status"], "ok", "aborting ends with the queue");
    assert_eq!(reply.content["execution_count"], 3, "aborted cells take no number");
}

#[tokio::test]
async fn stop_on_error_false_lets_the_queued_cells_run() {
    let mut h = Harness::start().await;
    let gate = h.execute_request("gate");
    let mut fail = h.execute_request("fail:x");
    fail.content["stop_on_error"] = json!(false);
    let next = h.execute_request("result:runs");
    for m in [&gate, &fail, &next] {
        h.send_shell(m).await;
    }
    h.lang.gate.notify_one();
    let statuses: Vec<Value> = [h.shell_reply().await, h.shell_reply().await, h.shell_reply().await]
        .iter()
        .map(|r| r.content["status"].clone())
        .collect();
    assert_eq!(statuses, ["ok", "error", "ok"]);
}

#[tokio::test]
async fn interrupt_on_control_is_answered_while_a_cell_runs_and_cancels_it() {
    let mut h = Harness::start().await;
    let cell = h.execute_request("wait");
    h.send_shell(&cell).await;
    // The cell is running once its first output arrives.
    loop {
        let m = h.iopub().await;
        if m.msg_type() == "stream" {
            assert_eq!(m.content["text"], "started\n");
            break;
        }
    }
    let info = h.request("kernel_info_request", json!({}));
    h.send_control(&info).await;
    assert_eq!(h.control_reply().await.msg_type(), "kernel_info_reply", "control is served while shell is busy");

    let interrupt = h.request("interrupt_request", json!({}));
    h.send_control(&interrupt).await;
    let reply = h.control_reply().await;
    assert_eq!(reply.content, json!({"status": "ok"}));
    assert_eq!(reply.parent_msg_id(), Some(interrupt.header.msg_id.as_str()));
    assert_wrapped_in_busy_idle(&h.iopub_for(&interrupt).await);

    let cell_reply = h.shell_reply().await;
    assert_eq!(cell_reply.content["status"], "error");
    assert_eq!(cell_reply.content["ename"], "Interrupted");
}

#[tokio::test]
async fn an_interrupt_signal_cancels_the_running_cell_and_is_harmless_when_idle() {
    let mut h = Harness::start().await;
    h.kernel.interrupt(); // nothing running: no effect
    let cell = h.execute_request("wait");
    h.send_shell(&cell).await;
    while h.iopub().await.msg_type() != "stream" {}
    h.kernel.interrupt();
    assert_eq!(h.shell_reply().await.content["ename"], "Interrupted");
    let (reply, _) = h.execute("ok").await;
    assert_eq!(reply.content["status"], "ok");
}

#[tokio::test]
async fn a_flood_of_log_lines_becomes_few_stream_messages_of_at_most_64_kib() {
    let mut h = Harness::start().await;
    let n = 100_000;
    let (reply, iopub) = h.execute(&format!("lines:{n}")).await;
    assert_eq!(reply.content["status"], "ok");
    let texts: Vec<&str> = iopub.iter().filter(|m| m.msg_type() == "stream").map(|m| m.content["text"].as_str().unwrap()).collect();
    let expected: String = (0..n).map(|i| format!("line {i}\n")).collect();
    assert_eq!(texts.concat(), expected, "nothing lost, nothing reordered");
    assert!(texts.iter().all(|t| t.len() <= STREAM_CHUNK));
    assert!(texts.len() < 100, "{} stream messages for {n} lines", texts.len());
}

#[tokio::test]
async fn displays_and_updates_carry_the_display_id_as_transient() {
    let mut h = Harness::start().await;
    let (_, iopub) = h.execute("display").await;
    let outputs: Vec<&Message> = iopub.iter().filter(|m| m.msg_type().contains("display")).collect();
    assert_eq!(outputs[0].msg_type(), "display_data");
    assert_eq!(outputs[0].content, json!({"data": {"text/plain": "v1"}, "metadata": {}, "transient": {"display_id": "d1"}}));
    assert_eq!(outputs[1].msg_type(), "update_display_data");
    assert_eq!(outputs[1].content["transient"], json!({"display_id": "d1"}));
    assert_eq!(outputs[2].content["transient"], json!({}));
}

#[tokio::test]
async fn a_panicking_language_yields_error_replies_and_the_kernel_keeps_serving() {
    let mut h = Harness::start().await;
    let (reply, iopub) = h.execute("panic").await;
    assert_eq!(reply.content["status"], "error");
    assert_eq!(reply.content["ename"], "KernelError");
    assert!(types(&iopub).contains(&"error"));
    let req = h.request("inspect_request", json!({"code": "boom", "cursor_pos": 1}));
    let (reply, _) = h.shell_roundtrip(&req).await;
    assert_eq!(reply.content["status"], "error");
    assert_eq!(reply.content["ename"], "KernelError");
    let (reply, _) = h.execute("result:fine").await;
    assert_eq!(reply.content["status"], "ok");
}

#[tokio::test]
async fn user_expressions_are_answered_per_key_after_a_successful_cell() {
    let mut h = Harness::start().await;
    let mut req = h.execute_request("ok");
    req.content["user_expressions"] = json!({"a": "framework", "b": "nope", "c": 5});
    let (reply, _) = h.shell_roundtrip(&req).await;
    let ue = &reply.content["user_expressions"];
    assert_eq!(ue["a"], json!({"status": "ok", "data": {"text/plain": "python"}, "metadata": {}}));
    assert_eq!(ue["b"]["status"], "error");
    assert_eq!(ue["b"]["ename"], "NameError");
    assert_eq!(ue["b"]["traceback"], json!(["NameError: nope is not known"]));
    assert_eq!(ue["c"]["status"], "error");
    assert_eq!(ue["c"]["ename"], "InvalidRequest");

    let mut req = h.execute_request("fail:x");
    req.content["user_expressions"] = json!({"a": "framework"});
    let (reply, _) = h.shell_roundtrip(&req).await;
    assert_eq!(reply.content["user_expressions"], json!({}), "not evaluated after a failed cell, as ipykernel does");
}

#[tokio::test]
async fn is_complete_complete_and_inspect_map_the_language_answers() {
    let mut h = Harness::start().await;
    for (code, expected) in [
        ("x", json!({"status": "complete"})),
        ("incomplete", json!({"status": "incomplete", "indent": "  "})),
        ("invalid", json!({"status": "invalid"})),
    ] {
        let (reply, iopub) = h.shell_roundtrip(&h.request("is_complete_request", json!({"code": code}))).await;
        assert_eq!(reply.content, expected);
        assert_wrapped_in_busy_idle(&iopub);
    }
    let (reply, _) = h.shell_roundtrip(&h.request("complete_request", json!({"code": "%fr€", "cursor_pos": 3}))).await;
    assert_eq!(reply.content, json!({"status": "ok", "matches": ["%framework="], "cursor_start": 0, "cursor_end": 3, "metadata": {}}));
    let (reply, _) = h.shell_roundtrip(&h.request("complete_request", json!({"code": "%fr€"}))).await;
    assert_eq!(reply.content["cursor_end"], 4, "no cursor_pos: the end, in code points");
    let (reply, _) = h.shell_roundtrip(&h.request("complete_request", json!({"code": "%fr", "cursor_pos": 99}))).await;
    assert_eq!(reply.content["cursor_end"], 3, "a cursor past the end is clamped");
    let (reply, _) = h.shell_roundtrip(&h.request("complete_request", json!({"code": "%fr", "cursor_pos": -1}))).await;
    assert_eq!(reply.content["status"], "error");

    let (reply, _) = h.shell_roundtrip(&h.request("inspect_request", json!({"code": "%framework", "cursor_pos": 3, "detail_level": 0}))).await;
    assert_eq!(reply.content, json!({"status": "ok", "found": true, "data": {"text/plain": "docs"}, "metadata": {}}));
    let (reply, _) = h.shell_roundtrip(&h.request("inspect_request", json!({"code": "x", "cursor_pos": 1}))).await;
    assert_eq!(reply.content, json!({"status": "ok", "found": false, "data": {}, "metadata": {}}));
}

#[tokio::test]
async fn requests_with_wrong_field_types_get_an_error_reply_naming_the_field() {
    let mut h = Harness::start().await;
    let (reply, iopub) = h.shell_roundtrip(&h.request("execute_request", json!({"code": 5}))).await;
    assert_eq!(reply.content["status"], "error");
    assert_eq!(reply.content["ename"], "InvalidRequest");
    assert!(reply.content["evalue"].as_str().unwrap().contains("code"));
    assert_eq!(reply.content["execution_count"], 0);
    assert_wrapped_in_busy_idle(&iopub);
    let (reply, _) = h.shell_roundtrip(&h.request("execute_request", json!({"code": "ok", "silent": "yes"}))).await;
    assert!(reply.content["evalue"].as_str().unwrap().contains("silent"));
    let (reply, _) = h.shell_roundtrip(&h.request("is_complete_request", json!({}))).await;
    assert_eq!(reply.content["status"], "error");
    let (reply, _) = h.shell_roundtrip(&h.request("history_request", json!({"hist_access_type": "everything"}))).await;
    assert!(reply.content["evalue"].as_str().unwrap().contains("everything"));
}

#[tokio::test]
async fn history_requests_answer_tail_range_and_search_from_the_kernel_history() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = Harness::with_history(History::new(Some(dir.path().join("history.jsonl")), 100)).await;
    for code in ["result:1", "result:2", "result:1", "fail:x"] {
        h.execute(code).await;
    }
    let mut quiet = h.execute_request("result:unstored");
    quiet.content["store_history"] = json!(false);
    h.shell_roundtrip(&quiet).await;

    let client = h.client.clone();
    let hist = |c: Value| {
        let mut m = client.message("history_request", c);
        m.identities = vec![Bytes::from_static(b"client-1")];
        m
    };
    let (r, _) = h.shell_roundtrip(&hist(json!({"hist_access_type": "tail", "n": 2, "output": false, "raw": true}))).await;
    let history = r.content["history"].as_array().unwrap().clone();
    assert_eq!(history.len(), 2);
    assert_eq!(history[0][2], "result:1");
    assert_eq!(history[1][2], "fail:x");
    let session = history[0][0].as_u64().unwrap();

    let (r, _) = h.shell_roundtrip(&hist(json!({"hist_access_type": "range", "session": session, "start": 2, "stop": 3, "output": true, "raw": true}))).await;
    assert_eq!(r.content["history"], json!([[session, 2, ["result:2", "2"]]]));
    let (r, _) = h.shell_roundtrip(&hist(json!({"hist_access_type": "range", "session": 0, "start": 4.0, "output": true, "raw": true}))).await;
    assert_eq!(r.content["history"], json!([[session, 4, ["fail:x", null]]]));

    let (r, _) = h.shell_roundtrip(&hist(json!({"hist_access_type": "search", "pattern": "result:?", "unique": true, "output": false, "raw": true}))).await;
    assert_eq!(r.content["history"], json!([[session, 2, "result:2"], [session, 3, "result:1"]]));
    let (r, _) = h.shell_roundtrip(&hist(json!({"hist_access_type": "search", "pattern": "[", "output": false, "raw": true}))).await;
    assert_eq!(r.content["status"], "error");
    assert_eq!(r.content["ename"], "HistoryError");
}

#[tokio::test]
async fn comm_open_to_an_unknown_target_is_closed_and_comm_messages_are_ignored() {
    let mut h = Harness::start().await;
    let open = h.request("comm_open", json!({"comm_id": "c-1", "target_name": "jupyter.widget", "data": {}}));
    h.send_shell(&open).await;
    let iopub = h.iopub_for(&open).await;
    assert_eq!(types(&iopub), ["status", "comm_close", "status"]);
    assert_eq!(iopub[1].content, json!({"comm_id": "c-1", "data": {}}));

    let msg = h.request("comm_msg", json!({"comm_id": "c-1", "data": {}}));
    h.send_shell(&msg).await;
    assert_eq!(types(&h.iopub_for(&msg).await), ["status", "status"]);
    let (reply, _) = h.shell_roundtrip(&h.request("comm_info_request", json!({}))).await;
    assert_eq!(reply.content, json!({"status": "ok", "comms": {}}), "the comm messages got no reply");
}

#[tokio::test]
async fn unknown_requests_get_an_error_reply_and_other_unknown_types_none() {
    let mut h = Harness::start().await;
    let (reply, iopub) = h.shell_roundtrip(&h.request("debug_request", json!({}))).await;
    assert_eq!(reply.msg_type(), "debug_reply");
    assert_eq!(reply.content["status"], "error");
    assert_eq!(reply.content["ename"], "UnknownMessageType");
    assert_wrapped_in_busy_idle(&iopub);

    let stray = h.request("input_reply", json!({"value": "x"}));
    h.send_shell(&stray).await;
    assert_eq!(types(&h.iopub_for(&stray).await), ["status", "status"]);
    let (reply, _) = h.shell_roundtrip(&h.request("kernel_info_request", json!({}))).await;
    assert_eq!(reply.msg_type(), "kernel_info_reply", "the stray message got no reply");

    let on_control = h.execute_request("ok");
    h.send_control(&on_control).await;
    let reply = h.control_reply().await;
    assert_eq!(reply.content["ename"], "WrongChannel");
}

#[tokio::test]
async fn shutdown_on_control_replies_with_restart_broadcasts_and_ends_the_kernel() {
    for restart in [true, false] {
        let mut h = Harness::start().await;
        let req = h.request("shutdown_request", json!({"restart": restart}));
        h.send_control(&req).await;
        let reply = h.control_reply().await;
        assert_eq!(reply.content, json!({"status": "ok", "restart": restart}));
        let iopub = h.iopub_for(&req).await;
        assert_eq!(types(&iopub), ["status", "shutdown_reply", "status"]);
        let ended = tokio::time::timeout(WAIT, h.run).await.unwrap().unwrap();
        assert_eq!(ended, Ended::Shutdown { restart });
    }
}

#[tokio::test]
async fn shutdown_on_shell_also_ends_the_kernel_and_cancels_a_running_cell() {
    let mut h = Harness::start().await;
    let req = h.request("shutdown_request", json!({}));
    let (reply, _) = h.shell_roundtrip(&req).await;
    assert_eq!(reply.content, json!({"status": "ok", "restart": false}));
    assert_eq!(tokio::time::timeout(WAIT, h.run).await.unwrap().unwrap(), Ended::Shutdown { restart: false });

    let mut h = Harness::start().await;
    h.send_shell(&h.execute_request("wait")).await;
    while h.iopub().await.msg_type() != "stream" {}
    h.send_control(&h.request("shutdown_request", json!({"restart": true}))).await;
    h.control_reply().await;
    assert_eq!(tokio::time::timeout(WAIT, h.run).await.unwrap().unwrap(), Ended::Shutdown { restart: true });
}

#[tokio::test]
async fn closing_the_request_queues_ends_the_kernel() {
    let h = Harness::start().await;
    drop(h.shell);
    assert_eq!(tokio::time::timeout(WAIT, h.run).await.unwrap().unwrap(), Ended::InputClosed);
}

#[test]
fn decoding_arbitrary_frames_never_panics() {
    use super::wire::{DELIMITER, Signer, decode};
    // A small deterministic generator (xorshift) of frame soups around valid pieces.
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let pieces: [&[u8]; 8] = [DELIMITER, b"", b"{}", br#"{"msg_id":"1","msg_type":"execute_request"}"#, b"[]", b"\xff", b"null", b"{\"a\":"];
    for signer in [Signer::new(b""), Signer::new(b"key")] {
        for _ in 0..20_000 {
            let n = (next() % 10) as usize;
            let frames: Vec<Bytes> = (0..n)
                .map(|_| {
                    let r = next();
                    if r % 5 == 0 {
                        Bytes::from((0..(r >> 8) % 64).map(|i| (i as u8).wrapping_mul(r as u8)).collect::<Vec<u8>>())
                    } else {
                        Bytes::from_static(pieces[(r % pieces.len() as u64) as usize])
                    }
                })
                .collect();
            let _ = decode(frames, &signer);
        }
    }
}
