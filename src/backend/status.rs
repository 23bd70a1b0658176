//! What a running job looks like in the cell: one live table (a
//! `display_data` with a display id, updated in place) plus a `[ciao]` line
//! for each change a console reader needs (creation, pending reasons, the
//! final condition and the elapsed time), on stdout, or on stderr for a
//! backend that keeps stdout for what the replicas print
//! ([`StatusBoard::with_stream`]).
//!
//! Both backends report through a [`StatusBoard`]; it decides what is a
//! change and how it is drawn.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crate::output::{MimeBundle, Output, OutputEvent, Stream, bundle};
use crate::plan::escape;

/// Minimum time between two table updates that are not forced.
const MIN_UPDATE: Duration = Duration::from_millis(250);

/// One replica's state as the table shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaState {
    /// `worker-0`, `ps-1`, …
    pub name: String,
    /// `Pending`, `Running`, `Succeeded`, `Failed`, `Deleted`.
    pub phase: String,
    /// Why it is in that phase (`ImagePullBackOff`, `Unschedulable`, `Error`).
    pub reason: Option<String>,
    pub message: Option<String>,
    pub restarts: u32,
}

/// The job's final (or current) condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    /// `Created`, `Running`, `Succeeded`, `Failed`, `Detached`, `Deleted`.
    pub state: String,
    pub reason: Option<String>,
    pub message: Option<String>,
}

/// The live view of one job.
#[derive(Debug)]
pub struct StatusBoard {
    out: Output,
    /// Where the `[ciao]` lines go.
    stream: Stream,
    display_id: String,
    kind: String,
    name: String,
    namespace: String,
    expected: u32,
    replicas: Vec<ReplicaState>,
    /// When each replica was first seen and when it reached a final phase.
    clocks: HashMap<String, (Instant, Option<Instant>)>,
    condition: Condition,
    started: Instant,
    finished: Option<Duration>,
    last_update: Option<Instant>,
    dirty: bool,
}

impl StatusBoard {
    /// Starts the view of a job that was just created with `expected` replicas.
    pub fn new(out: Output, kind: &str, namespace: &str, name: &str, expected: u32) -> Self {
        Self::with_stream(out, Stream::Stdout, kind, namespace, name, expected)
    }

    /// [`StatusBoard::new`] with the `[ciao]` lines on `stream`.
    pub fn with_stream(out: Output, stream: Stream, kind: &str, namespace: &str, name: &str, expected: u32) -> Self {
        let display_id = format!("ciao-job-{}", uuid::Uuid::new_v4().simple());
        out.send(OutputEvent::Text(stream, format!(
            "[ciao] {kind} {} created: {expected} replica{} expected\n",
            super::qualified_name(namespace, name),
            if expected == 1 { "" } else { "s" }
        )));
        let board = StatusBoard {
            out,
            stream,
            display_id,
            kind: kind.to_string(),
            name: name.to_string(),
            namespace: namespace.to_string(),
            expected,
            replicas: Vec::new(),
            clocks: HashMap::new(),
            condition: Condition { state: "Created".into(), reason: None, message: None },
            started: Instant::now(),
            finished: None,
            last_update: None,
            dirty: false,
        };
        board.out.display(board.bundle(), Some(board.display_id.clone()));
        board
    }

    /// The display id of the live table.
    pub fn display_id(&self) -> &str {
        &self.display_id
    }

    /// Elapsed time since creation (frozen once finished).
    pub fn elapsed(&self) -> Duration {
        self.finished.unwrap_or_else(|| self.started.elapsed())
    }

    /// Records a replica's state; a change of phase or reason prints a line.
    pub fn replica(&mut self, state: ReplicaState) {
        let now = Instant::now();
        let clock = self.clocks.entry(state.name.clone()).or_insert((now, None));
        if is_final_phase(&state.phase) {
            clock.1.get_or_insert(now);
        } else {
            clock.1 = None;
        }
        let changed = match self.replicas.iter_mut().find(|r| r.name == state.name) {
            Some(r) if *r == state => false,
            Some(r) => {
                let line_worthy = r.phase != state.phase || r.reason != state.reason || r.restarts != state.restarts;
                *r = state.clone();
                if line_worthy {
                    self.line_for(&state);
                }
                true
            }
            None => {
                self.line_for(&state);
                self.replicas.push(state);
                self.replicas.sort_by(|a, b| replica_order(&a.name).cmp(&replica_order(&b.name)));
                true
            }
        };
        if changed {
            self.dirty = true;
            self.update(false);
        }
    }

    fn line_for(&self, r: &ReplicaState) {
        let mut line = format!("[ciao] {} {}", r.name, r.phase);
        if let Some(reason) = &r.reason {
            let _ = write!(line, ": {reason}");
        }
        if let Some(m) = &r.message
            && r.phase != "Running"
            && r.phase != "Succeeded"
        {
            let _ = write!(line, " ({})", one_line(m));
        }
        if r.restarts > 0 {
            let _ = write!(line, ", restarts {}", r.restarts);
        }
        line.push('\n');
        self.out.send(OutputEvent::Text(self.stream, line));
    }

    /// Records the job's condition (e.g. `Running`) without finishing it.
    pub fn condition(&mut self, condition: Condition) {
        if self.condition != condition {
            self.condition = condition;
            self.dirty = true;
            self.update(true);
        }
    }

    /// Ends the view: prints the final condition and the elapsed time.
    pub fn finish(&mut self, condition: Condition) {
        self.finished = Some(self.started.elapsed());
        let now = Instant::now();
        for clock in self.clocks.values_mut() {
            clock.1.get_or_insert(now);
        }
        // Deleting a job deletes its replicas: the rows say so even when the
        // pods' own deletions were not seen before the end.
        if condition.state == "Deleted" {
            for r in self.replicas.iter_mut().filter(|r| !is_final_phase(&r.phase)) {
                r.phase = "Deleted".into();
                r.reason = None;
                r.message = None;
            }
        }
        let mut line = format!(
            "[ciao] {} {} {} after {}",
            self.kind,
            super::qualified_name(&self.namespace, &self.name),
            condition.state,
            format_duration(self.elapsed())
        );
        if let Some(r) = &condition.reason {
            let _ = write!(line, ": {r}");
        }
        if let Some(m) = &condition.message {
            let _ = write!(line, " ({})", one_line(m));
        }
        line.push('\n');
        self.out.send(OutputEvent::Text(self.stream, line));
        self.condition = condition;
        self.dirty = true;
        self.update(true);
    }

    /// Refreshes the elapsed time in the table (call about once a second).
    pub fn tick(&mut self) {
        self.dirty = true;
        self.update(false);
    }

    fn update(&mut self, force: bool) {
        let due = self.last_update.is_none_or(|t| t.elapsed() >= MIN_UPDATE);
        if self.dirty && (force || due) {
            self.out.update_display(self.bundle(), self.display_id.clone());
            self.last_update = Some(Instant::now());
            self.dirty = false;
        }
    }

    /// Sends a pending update now.
    pub fn flush(&mut self) {
        self.update(true);
    }

    /// The table as text/plain and text/html.
    pub fn bundle(&self) -> MimeBundle {
        let title = format!(
            "{} {} · {} · {} · {} replica{}",
            self.kind,
            super::qualified_name(&self.namespace, &self.name),
            self.condition.state,
            format_duration(self.elapsed()),
            self.expected,
            if self.expected == 1 { "" } else { "s" }
        );
        let mut text = format!("{title}\n");
        let width = self.replicas.iter().map(|r| r.name.len()).max().unwrap_or(7).max(7);
        let _ = writeln!(text, "  {:<width$}  {:<10} {:>8}  {:>7}  reason", "replica", "phase", "restarts", "elapsed");
        for r in &self.replicas {
            let row = format!("  {:<width$}  {:<10} {:>8}  {:>7}  {}", r.name, r.phase, r.restarts, self.replica_elapsed(&r.name), detail(r));
            let _ = writeln!(text, "{}", row.trim_end());
        }
        if let Some(reason) = &self.condition.reason {
            let _ = write!(text, "  {}: {reason}", self.condition.state);
            if let Some(m) = &self.condition.message {
                let _ = write!(text, " ({})", one_line(m));
            }
            text.push('\n');
        }

        let colour = match self.condition.state.as_str() {
            "Succeeded" => "#1a7f37",
            "Failed" => "#cf222e",
            "Running" => "#0969da",
            _ => "#6e7781",
        };
        let mut html = format!(
            "<div class=\"ciao-job\" data-state=\"{state}\"><div><b>{kind}</b> {name} · \
             <span class=\"ciao-job-state\" style=\"color:{colour};font-weight:bold\">{state}</span> · {elapsed}</div>\
             <table><thead><tr><th>replica</th><th>phase</th><th>restarts</th><th>elapsed</th><th>reason</th></tr></thead><tbody>",
            state = escape(&self.condition.state),
            kind = escape(&self.kind),
            name = escape(&super::qualified_name(&self.namespace, &self.name)),
            elapsed = format_duration(self.elapsed()),
        );
        for r in &self.replicas {
            let _ = write!(
                html,
                "<tr data-replica=\"{n}\" data-phase=\"{p}\"><td>{n}</td><td>{p}</td><td>{rs}</td><td>{t}</td><td>{d}</td></tr>",
                n = escape(&r.name),
                p = escape(&r.phase),
                rs = r.restarts,
                t = self.replica_elapsed(&r.name),
                d = escape(&detail(r))
            );
        }
        html.push_str("</tbody></table>");
        if let Some(reason) = &self.condition.reason {
            let _ = write!(html, "<div>{}: {}", escape(&self.condition.state), escape(reason));
            if let Some(m) = &self.condition.message {
                let _ = write!(html, " ({})", escape(&one_line(m)));
            }
            html.push_str("</div>");
        }
        html.push_str("</div>");
        bundle(text, Some(html))
    }
}

impl StatusBoard {
    /// How long replica `name` has been seen (frozen once it ended).
    fn replica_elapsed(&self, name: &str) -> String {
        match self.clocks.get(name) {
            Some((seen, ended)) => format_duration(ended.unwrap_or_else(Instant::now).saturating_duration_since(*seen)),
            None => String::new(),
        }
    }
}

/// Phases after which a replica's clock stops.
fn is_final_phase(phase: &str) -> bool {
    matches!(phase, "Succeeded" | "Failed" | "Deleted")
}

fn detail(r: &ReplicaState) -> String {
    match (&r.reason, &r.message) {
        (Some(reason), Some(m)) if r.phase == "Pending" || r.phase == "Failed" => format!("{reason}: {}", one_line(m)),
        (Some(reason), _) => reason.clone(),
        _ => String::new(),
    }
}

/// Sorts `chief-0, master-0, launcher-0, ps-0, worker-0, worker-10` naturally.
fn replica_order(name: &str) -> (String, u64) {
    match name.rsplit_once('-') {
        Some((role, n)) if n.bytes().all(|b| b.is_ascii_digit()) => (role.to_string(), n.parse().unwrap_or(0)),
        _ => (name.to_string(), 0),
    }
}

fn one_line(s: &str) -> String {
    let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.chars().count() > 200 { format!("{}…", s.chars().take(200).collect::<String>()) } else { s }
}

/// `850ms`, `12.3s`, `4m05s`, `1h02m`.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", d.as_secs_f64())
    } else if ms < 3_600_000 {
        format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60)
    } else {
        format!("{}h{:02}m", ms / 3_600_000, (ms / 60_000) % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(rx: &mut tokio::sync::mpsc::UnboundedReceiver<OutputEvent>) -> Vec<OutputEvent> {
        std::iter::from_fn(|| rx.try_recv().ok()).collect()
    }

    fn state(name: &str, phase: &str, reason: Option<&str>) -> ReplicaState {
        ReplicaState { name: name.into(), phase: phase.into(), reason: reason.map(Into::into), message: None, restarts: 0 }
    }

    #[test]
    fn creation_prints_a_line_and_opens_the_table() {
        let (out, mut rx) = Output::channel();
        let board = StatusBoard::new(out, "TFJob", "ns", "tf-1", 3);
        let ev = events(&mut rx);
        assert_eq!(ev[0], OutputEvent::Text(Stream::Stdout, "[ciao] TFJob ns/tf-1 created: 3 replicas expected\n".into()));
        match &ev[1] {
            OutputEvent::Display { data, display_id } => {
                assert_eq!(display_id.as_deref(), Some(board.display_id()));
                assert!(data["text/plain"].as_str().unwrap().starts_with("TFJob ns/tf-1 · Created"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn only_changes_print_lines_and_the_final_update_is_forced() {
        let (out, mut rx) = Output::channel();
        let mut board = StatusBoard::new(out, "TFJob", "ns", "tf-1", 2);
        events(&mut rx);
        board.replica(state("worker-0", "Pending", Some("ImagePullBackOff")));
        board.replica(state("worker-0", "Pending", Some("ImagePullBackOff")));
        board.replica(state("worker-0", "Running", None));
        board.replica(state("ps-0", "Running", None));
        board.finish(Condition { state: "Succeeded".into(), reason: Some("TFJobSucceeded".into()), message: None });
        let ev = events(&mut rx);
        let lines: Vec<_> = ev
            .iter()
            .filter_map(|e| match e {
                OutputEvent::Text(_, t) => Some(t.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(lines[..3], [
            "[ciao] worker-0 Pending: ImagePullBackOff\n",
            "[ciao] worker-0 Running\n",
            "[ciao] ps-0 Running\n"
        ]);
        assert!(lines[3].starts_with("[ciao] TFJob ns/tf-1 Succeeded after ") && lines[3].ends_with(": TFJobSucceeded\n"));
        let last = ev.iter().rev().find_map(|e| match e {
            OutputEvent::UpdateDisplay { data, .. } => Some(data.clone()),
            _ => None,
        });
        let last = last.expect("an update");
        let text = last["text/plain"].as_str().unwrap();
        assert!(text.contains("Succeeded") && text.find("ps-0").unwrap() < text.find("worker-0").unwrap(), "{text}");
        assert!(last["text/html"].as_str().unwrap().contains("data-state=\"Succeeded\""));
    }

    #[test]
    fn the_lines_can_go_to_stderr() {
        let (out, mut rx) = Output::channel();
        let mut board = StatusBoard::with_stream(out, Stream::Stderr, "TFJob", "ns", "tf-1", 1);
        board.replica(state("worker-0", "Running", None));
        let texts: Vec<_> = events(&mut rx).into_iter().filter_map(|e| match e {
            OutputEvent::Text(s, t) => Some((s, t)),
            _ => None,
        }).collect();
        assert_eq!(texts, [
            (Stream::Stderr, "[ciao] TFJob ns/tf-1 created: 1 replica expected\n".to_string()),
            (Stream::Stderr, "[ciao] worker-0 Running\n".to_string())
        ]);
    }

    #[test]
    fn each_row_shows_phase_restarts_and_an_elapsed_time_that_stops_when_the_replica_ends() {
        let (out, _rx) = Output::channel();
        let mut board = StatusBoard::new(out, "TFJob", "ns", "tf-1", 2);
        board.replica(ReplicaState { restarts: 2, ..state("worker-0", "Running", None) });
        board.replica(state("ps-0", "Succeeded", None));
        std::thread::sleep(Duration::from_millis(30));
        let text = board.bundle()["text/plain"].as_str().unwrap().to_string();
        let row = |name: &str| text.lines().find(|l| l.trim_start().starts_with(name)).unwrap().split_whitespace().map(String::from).collect::<Vec<_>>();
        assert_eq!(text.lines().nth(1).unwrap().split_whitespace().collect::<Vec<_>>(), ["replica", "phase", "restarts", "elapsed", "reason"]);
        let (w, p) = (row("worker-0"), row("ps-0"));
        assert_eq!(w[..3], ["worker-0", "Running", "2"]);
        assert_eq!(p[..3], ["ps-0", "Succeeded", "0"]);
        let ms = |s: &str| s.strip_suffix("ms").unwrap().parse::<u64>().unwrap();
        assert!(ms(&w[3]) >= 30, "the running replica's clock runs: {text}");
        assert!(ms(&p[3]) < 30, "the finished replica's clock stopped: {text}");
        board.finish(Condition { state: "Succeeded".into(), reason: None, message: None });
        let html = board.bundle()["text/html"].as_str().unwrap().to_string();
        assert!(html.contains("<th>elapsed</th>") && html.contains("<tr data-replica=\"worker-0\" data-phase=\"Running\"><td>worker-0</td><td>Running</td><td>2</td><td>"), "{html}");
        let frozen = board.bundle();
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(board.bundle(), frozen, "a finished table no longer changes");
    }

    #[test]
    fn a_deleted_job_shows_its_unfinished_replicas_deleted() {
        let (out, _rx) = Output::channel();
        let mut board = StatusBoard::new(out, "TFJob", "ns", "tf-1", 2);
        board.replica(state("worker-0", "Running", None));
        board.replica(state("worker-1", "Failed", Some("Error")));
        board.finish(Condition { state: "Deleted".into(), reason: None, message: Some("interrupted".into()) });
        let html = board.bundle()["text/html"].as_str().unwrap().to_string();
        assert!(html.contains("data-replica=\"worker-0\" data-phase=\"Deleted\""), "{html}");
        assert!(html.contains("data-replica=\"worker-1\" data-phase=\"Failed\""), "a finished replica keeps its phase: {html}");
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(format_duration(Duration::from_millis(850)), "850ms");
        assert_eq!(format_duration(Duration::from_millis(12_340)), "12.3s");
        assert_eq!(format_duration(Duration::from_secs(245)), "4m05s");
        assert_eq!(format_duration(Duration::from_secs(3720)), "1h02m");
    }

    #[test]
    fn replicas_sort_naturally() {
        let mut v = vec!["worker-10", "worker-2", "ps-0", "chief-0"];
        v.sort_by_key(|n| replica_order(n));
        assert_eq!(v, ["chief-0", "ps-0", "worker-2", "worker-10"]);
    }
}
