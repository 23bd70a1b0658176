//! What a running cell says: the sink every phase writes to, and the error a
//! failed cell ends with.
//!
//! The kernel turns [`OutputEvent`]s into iopub messages with the cell's
//! request as parent; the command line prints them. Phases never see either.

use serde_json::{Map, Value};
use tokio::sync::mpsc;

/// A MIME bundle: `{"text/plain": "...", "text/html": "..."}`.
pub type MimeBundle = Map<String, Value>;

/// Builds a bundle with a text/plain entry and, optionally, text/html.
pub fn bundle(plain: impl Into<String>, html: Option<String>) -> MimeBundle {
    let mut m = Map::new();
    m.insert("text/plain".into(), Value::String(plain.into()));
    if let Some(h) = html {
        m.insert("text/html".into(), Value::String(h));
    }
    m
}

/// Which stream a piece of text belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// One thing a cell shows, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum OutputEvent {
    /// Text on stdout or stderr (replica logs on stdout, kernel-side problems on stderr).
    Text(Stream, String),
    /// A rich display; with `display_id` it can be updated in place later.
    Display { data: MimeBundle, display_id: Option<String> },
    /// Replace the display shown earlier under `display_id`.
    UpdateDisplay { data: MimeBundle, display_id: String },
    /// Documentation for the front end's pager (an execute_reply `page`
    /// payload in a notebook), not part of the cell's output.
    Page(MimeBundle),
}

/// A cheap, cloneable handle phases write their output to.
///
/// Sending never blocks and never fails the cell: when nobody listens any
/// more (the client went away) the text is dropped.
#[derive(Debug, Clone)]
pub struct Output {
    tx: mpsc::UnboundedSender<OutputEvent>,
}

impl Output {
    /// A sink and the receiving end the kernel or the CLI drains.
    pub fn channel() -> (Output, mpsc::UnboundedReceiver<OutputEvent>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Output { tx }, rx)
    }

    pub fn send(&self, event: OutputEvent) {
        let _ = self.tx.send(event);
    }

    pub fn stdout(&self, text: impl Into<String>) {
        self.send(OutputEvent::Text(Stream::Stdout, text.into()));
    }

    pub fn stderr(&self, text: impl Into<String>) {
        self.send(OutputEvent::Text(Stream::Stderr, text.into()));
    }

    /// Sends `data` to the pager (see [`OutputEvent::Page`]).
    pub fn page(&self, data: MimeBundle) {
        self.send(OutputEvent::Page(data));
    }

    pub fn display(&self, data: MimeBundle, display_id: Option<String>) {
        self.send(OutputEvent::Display { data, display_id });
    }

    pub fn update_display(&self, data: MimeBundle, display_id: impl Into<String>) {
        self.send(OutputEvent::UpdateDisplay { data, display_id: display_id.into() });
    }
}

/// How a cell failed: becomes one `error` output and an `error` reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellError {
    /// A short class-like name, e.g. `MagicError`, `RegistryError`, `JobFailed`.
    pub ename: String,
    /// One line that names the problem and the fix.
    pub evalue: String,
    /// Lines shown under it (may be empty), e.g. the failing replica's last log lines.
    pub traceback: Vec<String>,
}

impl CellError {
    pub fn new(ename: impl Into<String>, evalue: impl Into<String>) -> Self {
        CellError { ename: ename.into(), evalue: evalue.into(), traceback: Vec::new() }
    }

    pub fn with_traceback(mut self, lines: Vec<String>) -> Self {
        self.traceback = lines;
        self
    }

    /// The traceback a frontend shows: the traceback lines, or `ename: evalue`
    /// when there are none (frontends show only the traceback).
    pub fn display_traceback(&self) -> Vec<String> {
        let head = format!("{}: {}", self.ename, self.evalue);
        if self.traceback.is_empty() {
            vec![head]
        } else {
            let mut v = vec![head];
            v.extend(self.traceback.iter().cloned());
            v
        }
    }
}

impl std::fmt::Display for CellError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.ename, self.evalue)?;
        for line in &self.traceback {
            write!(f, "\n{line}")?;
        }
        Ok(())
    }
}

impl std::error::Error for CellError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_arrive_in_order_and_a_closed_receiver_is_harmless() {
        let (out, mut rx) = Output::channel();
        out.stdout("a\n");
        out.stderr("b\n");
        out.display(bundle("t", None), Some("d1".into()));
        assert_eq!(rx.try_recv().unwrap(), OutputEvent::Text(Stream::Stdout, "a\n".into()));
        assert_eq!(rx.try_recv().unwrap(), OutputEvent::Text(Stream::Stderr, "b\n".into()));
        assert!(matches!(rx.try_recv().unwrap(), OutputEvent::Display { display_id: Some(_), .. }));
        drop(rx);
        out.stdout("nobody listens");
    }

    #[test]
    fn traceback_starts_with_the_summary_line() {
        let e = CellError::new("JobFailed", "worker-1 failed").with_traceback(vec!["[worker-1] boom".into()]);
        assert_eq!(e.display_traceback(), ["JobFailed: worker-1 failed", "[worker-1] boom"]);
        assert_eq!(CellError::new("X", "y").display_traceback(), ["X: y"]);
    }
}
