//! Many replicas' logs into one cell output.
//!
//! Each replica's bytes go through a [`LineSplitter`] (UTF-8 safe, `\r\n`,
//! `\n` and `\r` aware) and the [`LogMux`] writes whole pieces under the
//! replica's prefix (`[worker-0] `), so lines of different replicas never mix
//! mid-line. Carriage-return progress (tqdm) keeps updating in place under
//! its prefix: a progress piece is written as `\r[worker-0] 40%|####`, which
//! frontends draw over the previous one, as long as no other replica wrote in
//! between (then it starts a fresh line). The mux also keeps each replica's
//! last lines for the error a failed job ends with.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use crate::output::Output;

/// How long a partial line (no `\n` or `\r` yet) waits before it is shown
/// as progress.
pub const PARTIAL_FLUSH: Duration = Duration::from_millis(200);

/// Lines kept per replica for a failure's traceback.
pub const TAIL_LINES: usize = 20;

/// A piece of one replica's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// A finished line (without its terminator).
    Line(String),
    /// Text that will be redrawn: ended by `\r`, or a partial line shown
    /// after [`PARTIAL_FLUSH`].
    Progress(String),
}

/// Splits a byte stream into pieces; keeps incomplete UTF-8 and partial
/// lines until more bytes arrive.
#[derive(Debug, Default)]
pub struct LineSplitter {
    bytes: Vec<u8>,
    /// A `\r` ended the last chunk: it is a line end if `\n` follows.
    pending_cr: bool,
}

impl LineSplitter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds `chunk`; returns the pieces it completes.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<Piece> {
        let mut out = Vec::new();
        let mut rest = chunk;
        if self.pending_cr {
            self.pending_cr = false;
            if let Some(after) = rest.strip_prefix(b"\n") {
                out.push(Piece::Line(self.take()));
                rest = after;
            } else {
                // Already shown as progress when the `\r` arrived.
                self.bytes.clear();
            }
        }
        let mut i = 0;
        while i < rest.len() {
            match rest[i] {
                b'\n' => {
                    self.bytes.extend_from_slice(&rest[..i]);
                    out.push(Piece::Line(self.take()));
                    rest = &rest[i + 1..];
                    i = 0;
                }
                b'\r' => {
                    self.bytes.extend_from_slice(&rest[..i]);
                    match rest.get(i + 1) {
                        None => {
                            // `\r` ends the chunk: show the text as progress now,
                            // and keep it in case a `\n` follows (then it is a line).
                            self.pending_cr = true;
                            let text = String::from_utf8_lossy(&self.bytes).into_owned();
                            if !text.is_empty() {
                                out.push(Piece::Progress(text));
                            }
                            return out;
                        }
                        Some(b'\n') => {
                            out.push(Piece::Line(self.take()));
                            rest = &rest[i + 2..];
                        }
                        Some(_) => {
                            let text = self.take();
                            if !text.is_empty() {
                                out.push(Piece::Progress(text));
                            }
                            rest = &rest[i + 1..];
                        }
                    }
                    i = 0;
                }
                _ => i += 1,
            }
        }
        self.bytes.extend_from_slice(rest);
        out
    }

    /// The partial line, if any, as progress (nothing is consumed: the line
    /// is still completed later).
    pub fn partial(&self) -> Option<Piece> {
        let text = String::from_utf8_lossy(&self.bytes);
        (!text.is_empty() && !self.pending_cr).then(|| Piece::Progress(text.into_owned()))
    }

    /// Ends the stream: the partial line becomes a line.
    pub fn finish(&mut self) -> Option<Piece> {
        self.pending_cr = false;
        let text = self.take();
        (!text.is_empty()).then_some(Piece::Line(text))
    }

    fn take(&mut self) -> String {
        let s = String::from_utf8_lossy(&self.bytes).into_owned();
        self.bytes.clear();
        s
    }
}

/// ANSI colours for replica prefixes, cycled by replica.
const COLOURS: [u8; 6] = [36, 33, 35, 32, 34, 31];

/// Writes the pieces of many replicas to one output.
#[derive(Debug)]
pub struct LogMux {
    out: Output,
    colour: bool,
    /// Index of the replica whose progress piece is the open last line.
    open: Option<usize>,
    replicas: Vec<Replica>,
    by_name: HashMap<String, usize>,
}

#[derive(Debug)]
struct Replica {
    name: String,
    prefix: String,
    tail: VecDeque<String>,
    /// Progress shown for the current partial line, to avoid re-sending it.
    shown_partial: Option<String>,
}

impl LogMux {
    /// `colour` adds an ANSI colour to each replica's prefix.
    pub fn new(out: Output, colour: bool) -> Self {
        LogMux { out, colour, open: None, replicas: Vec::new(), by_name: HashMap::new() }
    }

    /// The index of replica `name` (e.g. `worker-0`), registering it.
    pub fn replica(&mut self, name: &str) -> usize {
        if let Some(i) = self.by_name.get(name) {
            return *i;
        }
        let i = self.replicas.len();
        let prefix = if self.colour {
            format!("\x1b[{}m[{name}]\x1b[0m ", COLOURS[i % COLOURS.len()])
        } else {
            format!("[{name}] ")
        };
        self.replicas.push(Replica { name: name.to_string(), prefix, tail: VecDeque::new(), shown_partial: None });
        self.by_name.insert(name.to_string(), i);
        i
    }

    /// Writes `pieces` of replica `i` in one output event.
    pub fn write(&mut self, i: usize, pieces: Vec<Piece>) {
        let mut text = String::new();
        for piece in pieces {
            self.render(i, piece, &mut text);
        }
        if !text.is_empty() {
            self.out.stdout(text);
        }
    }

    /// Shows replica `i`'s partial line as progress if it changed.
    pub fn show_partial(&mut self, i: usize, piece: Option<Piece>) {
        if let Some(Piece::Progress(t)) = piece
            && self.replicas[i].shown_partial.as_deref() != Some(t.as_str())
        {
            self.replicas[i].shown_partial = Some(t.clone());
            let mut text = String::new();
            self.render_progress(i, &t, &mut text);
            self.out.stdout(text);
        }
    }

    fn render(&mut self, i: usize, piece: Piece, text: &mut String) {
        match piece {
            Piece::Line(line) => {
                match self.open {
                    Some(o) if o == i => text.push('\r'),
                    Some(_) => text.push('\n'),
                    None => {}
                }
                self.open = None;
                let r = &mut self.replicas[i];
                r.shown_partial = None;
                text.push_str(&r.prefix);
                text.push_str(&line);
                text.push('\n');
                if r.tail.len() == TAIL_LINES {
                    r.tail.pop_front();
                }
                r.tail.push_back(line);
            }
            Piece::Progress(p) => {
                self.replicas[i].shown_partial = None;
                self.render_progress(i, &p, text);
            }
        }
    }

    fn render_progress(&mut self, i: usize, p: &str, text: &mut String) {
        match self.open {
            Some(o) if o == i => text.push('\r'),
            Some(_) => text.push('\n'),
            None => {}
        }
        self.open = Some(i);
        text.push_str(&self.replicas[i].prefix);
        text.push_str(p);
    }

    /// Closes an open progress line so what follows starts on a new line.
    pub fn close_line(&mut self) {
        if self.open.take().is_some() {
            self.out.stdout("\n");
        }
    }

    /// The last lines of replica `name`, oldest first.
    pub fn tail(&self, name: &str) -> Vec<String> {
        self.by_name.get(name).map(|i| self.replicas[*i].tail.iter().cloned().collect()).unwrap_or_default()
    }

    /// The last lines of replica `name`, each under its (uncoloured) prefix.
    pub fn prefixed_tail(&self, name: &str) -> Vec<String> {
        self.tail(name).into_iter().map(|l| format!("[{name}] {l}")).collect()
    }

    /// Names of the replicas seen so far, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.replicas.iter().map(|r| r.name.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::{OutputEvent, Stream};

    fn drain(rx: &mut tokio::sync::mpsc::UnboundedReceiver<OutputEvent>) -> String {
        let mut s = String::new();
        while let Ok(OutputEvent::Text(Stream::Stdout, t)) = rx.try_recv() {
            s.push_str(&t);
        }
        s
    }

    #[test]
    fn splitter_handles_crlf_split_across_chunks_and_utf8() {
        let mut s = LineSplitter::new();
        assert_eq!(s.feed(b"a\r"), vec![Piece::Progress("a".into())]);
        assert_eq!(s.feed(b"\nb"), vec![Piece::Line("a".into())]);
        let e = "é".as_bytes();
        assert_eq!(s.feed(&e[..1]), vec![]);
        assert_eq!(s.feed(&[&e[1..], b"\n"].concat()), vec![Piece::Line("bé".into())]);
        assert_eq!(s.feed(b"\r10%\r20%\rdone\n"), vec![
            Piece::Progress("10%".into()),
            Piece::Progress("20%".into()),
            Piece::Line("done".into())
        ]);
        assert_eq!(s.feed(b"tail"), vec![]);
        assert_eq!(s.partial(), Some(Piece::Progress("tail".into())));
        assert_eq!(s.finish(), Some(Piece::Line("tail".into())));
        assert_eq!(s.finish(), None);
    }

    #[test]
    fn lines_get_prefixes_and_never_mix() {
        let (out, mut rx) = Output::channel();
        let mut mux = LogMux::new(out, false);
        let w0 = mux.replica("worker-0");
        let ps = mux.replica("ps-0");
        let mut a = LineSplitter::new();
        let mut b = LineSplitter::new();
        mux.write(w0, a.feed(b"hello from w"));
        mux.write(ps, b.feed(b"ps up\n"));
        mux.write(w0, a.feed(b"orker\n"));
        assert_eq!(drain(&mut rx), "[ps-0] ps up\n[worker-0] hello from worker\n");
        assert_eq!(mux.tail("worker-0"), ["hello from worker"]);
    }

    #[test]
    fn progress_updates_in_place_under_its_prefix() {
        let (out, mut rx) = Output::channel();
        let mut mux = LogMux::new(out, false);
        let w0 = mux.replica("worker-0");
        let w1 = mux.replica("worker-1");
        let mut a = LineSplitter::new();
        mux.write(w0, a.feed(b"\r 10%\r 50%\r"));
        mux.write(w0, a.feed(b"100%\n"));
        assert_eq!(drain(&mut rx), "[worker-0]  10%\r[worker-0]  50%\r[worker-0] 100%\n");
        mux.write(w0, a.feed(b"\r 1/3\r"));
        mux.write(w1, vec![Piece::Line("other".into())]);
        mux.write(w0, a.feed(b" 2/3\r"));
        assert_eq!(drain(&mut rx), "[worker-0]  1/3\n[worker-1] other\n[worker-0]  2/3");
        mux.close_line();
        assert_eq!(drain(&mut rx), "\n");
    }

    #[test]
    fn a_partial_line_is_shown_once_then_completed_in_place() {
        let (out, mut rx) = Output::channel();
        let mut mux = LogMux::new(out, false);
        let w0 = mux.replica("worker-0");
        let mut a = LineSplitter::new();
        mux.write(w0, a.feed(b"Epoch 1 "));
        mux.show_partial(w0, a.partial());
        mux.show_partial(w0, a.partial());
        mux.write(w0, a.feed(b"loss=0.3\n"));
        assert_eq!(drain(&mut rx), "[worker-0] Epoch 1 \r[worker-0] Epoch 1 loss=0.3\n");
    }

    #[test]
    fn tails_are_bounded_and_coloured_prefixes_are_optional() {
        let (out, mut rx) = Output::channel();
        let mut mux = LogMux::new(out, true);
        let w0 = mux.replica("worker-0");
        for n in 0..50 {
            mux.write(w0, vec![Piece::Line(format!("line {n}"))]);
        }
        let tail = mux.prefixed_tail("worker-0");
        assert_eq!(tail.len(), TAIL_LINES);
        assert_eq!(tail.last().unwrap(), "[worker-0] line 49");
        assert!(drain(&mut rx).starts_with("\x1b[36m[worker-0]\x1b[0m line 0\n"));
    }
}
