//! One container's log, followed across dropped connections and restarts
//! with no line lost or shown twice.
//!
//! Logs are requested with `timestamps=true`. [`Dedup`] strips the
//! timestamps and remembers the last one shown and how many lines carried
//! it; after a reconnect (`sinceTime` = that second) it skips what was
//! already shown. A line cut by a dropped connection is sent again whole by
//! the server; the reader is told to forget its partial line ([`LogEvent::Reset`]).
//! When the container restarts, the new instance is followed; what the old
//! one wrote while the stream was down is read with `previous=true`.

use std::time::Duration;

use futures::AsyncBufReadExt as _;
use futures::io::AsyncBufRead as _;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::LogParams;
use tokio::sync::{mpsc, watch};

/// The longest timestamp prefix looked for at a line start.
const MAX_TIMESTAMP: usize = 40;

/// Where a log was read up to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Position {
    last: Option<Timestamp>,
    /// Complete lines shown that carry `last`.
    at_last: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Line {
    /// Collecting the timestamp at a line start.
    Head,
    /// Showing the rest of a line stamped `ts` (`None`: no timestamp).
    Show(Option<Timestamp>),
    /// Skipping a line already shown.
    Skip,
}

/// Strips per-line timestamps and drops lines already shown.
#[derive(Debug)]
pub struct Dedup {
    pos: Position,
    /// Lines stamped `pos.last` still to skip on this connection.
    skip_at_last: u32,
    line: Line,
    head: Vec<u8>,
}

impl Default for Dedup {
    fn default() -> Self {
        Dedup { pos: Position::default(), skip_at_last: 0, line: Line::Head, head: Vec::new() }
    }
}

impl Dedup {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts a new connection: returns the `sinceTime` to ask for (the
    /// last timestamp shown, down to its second). A line cut by the previous
    /// connection will come again; whatever was shown of it must be dropped
    /// by the reader (see [`Dedup::mid_line`]).
    pub fn reconnect(&mut self) -> Option<Timestamp> {
        self.line = Line::Head;
        self.head.clear();
        self.skip_at_last = self.pos.at_last;
        self.pos.last.map(|t| Timestamp::from_second(t.as_second()).unwrap_or(t))
    }

    /// Whether part of a line has been shown (the connection dropped inside it).
    pub fn mid_line(&self) -> bool {
        matches!(self.line, Line::Show(_))
    }

    /// Ends the instance: a partial line shown so far counts as complete.
    pub fn finish(&mut self) {
        if let Line::Show(Some(ts)) = self.line {
            self.complete(ts);
        }
        self.line = Line::Head;
        self.head.clear();
    }

    fn complete(&mut self, ts: Timestamp) {
        if self.pos.last == Some(ts) {
            self.pos.at_last += 1;
        } else {
            self.pos = Position { last: Some(ts), at_last: 1 };
        }
    }

    fn decide(&mut self, ts: Timestamp) -> Line {
        match self.pos.last {
            Some(last) if ts < last => Line::Skip,
            Some(last) if ts == last && self.skip_at_last > 0 => {
                self.skip_at_last -= 1;
                Line::Skip
            }
            _ => {
                self.skip_at_last = 0;
                Line::Show(Some(ts))
            }
        }
    }

    /// Feeds raw bytes; appends what is new, without timestamps, to `out`.
    pub fn feed(&mut self, mut chunk: &[u8], out: &mut Vec<u8>) {
        while !chunk.is_empty() {
            match self.line {
                Line::Head => {
                    let space = chunk.iter().position(|b| *b == b' ' || *b == b'\n');
                    let take = space.unwrap_or(chunk.len());
                    self.head.extend_from_slice(&chunk[..take]);
                    if space.is_none() && self.head.len() <= MAX_TIMESTAMP {
                        return;
                    }
                    let parsed = std::str::from_utf8(&self.head).ok().and_then(|s| s.parse::<Timestamp>().ok());
                    match (parsed, space.map(|i| chunk[i])) {
                        (Some(ts), Some(b' ')) => {
                            self.head.clear();
                            self.line = self.decide(ts);
                            chunk = &chunk[take + 1..];
                        }
                        _ => {
                            // Not a timestamped line: show it as it is.
                            out.append(&mut self.head);
                            self.line = Line::Show(None);
                            chunk = &chunk[take..];
                        }
                    }
                }
                Line::Show(ts) => {
                    let end = chunk.iter().position(|b| *b == b'\n');
                    let take = end.map_or(chunk.len(), |i| i + 1);
                    out.extend_from_slice(&chunk[..take]);
                    chunk = &chunk[take..];
                    if end.is_some() {
                        if let Some(ts) = ts {
                            self.complete(ts);
                        }
                        self.line = Line::Head;
                    }
                }
                Line::Skip => match chunk.iter().position(|b| *b == b'\n') {
                    Some(i) => {
                        chunk = &chunk[i + 1..];
                        self.line = Line::Head;
                    }
                    None => return,
                },
            }
        }
    }
}

/// What the pod watcher knows about a followed container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerView {
    /// It has run at least once (its log exists).
    pub started: bool,
    pub terminated: bool,
    pub restart_count: i32,
    /// The pod is finished or gone: the container will not run again.
    pub pod_done: bool,
    /// The job is finished: stop after the current instance's log.
    pub job_done: bool,
}

/// What a container's follower sends to the output side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogEvent {
    /// New log text (timestamps stripped).
    Data(Vec<u8>),
    /// The connection dropped inside a line, which will come again whole:
    /// forget the partial line.
    Reset,
    /// An instance's log ended: a partial last line is complete.
    End,
    /// A problem worth showing (on stderr), once.
    Problem(String),
}

/// Follows `container` of `pod` until it will not run again; sends events
/// tagged with `replica` (the output side's index).
pub async fn follow_container(
    api: Api<Pod>,
    pod: String,
    container: String,
    replica: usize,
    mut view: watch::Receiver<ContainerView>,
    tx: mpsc::Sender<(usize, LogEvent)>,
) {
    let send = |e: LogEvent| {
        let tx = tx.clone();
        async move { tx.send((replica, e)).await.is_ok() }
    };
    let mut dedup = Dedup::new();
    // The restart count of the instance being read, and whether its log was read to the end.
    let mut instance: Option<(i32, bool)> = None;
    let mut backoff = Duration::from_millis(50);
    let mut reported = false;
    loop {
        let v = match view.wait_for(|v| v.started || v.pod_done).await {
            Ok(v) => v.clone(),
            Err(_) => return,
        };
        if !v.started {
            return;
        }
        if let Some((n, complete)) = instance
            && v.restart_count > n
            && !complete
        {
            // The instance ended while the stream was down: read its rest.
            let since = dedup.reconnect();
            let lp = LogParams { container: Some(container.clone()), previous: true, timestamps: true, since_time: since, ..LogParams::default() };
            if let Ok(text) = api.logs(&pod, &lp).await {
                let mut out = Vec::new();
                dedup.feed(text.as_bytes(), &mut out);
                dedup.finish();
                if !out.is_empty() && !send(LogEvent::Data(out)).await {
                    return;
                }
                if !send(LogEvent::End).await {
                    return;
                }
            }
        }
        if instance.is_some_and(|(n, _)| n != v.restart_count) {
            dedup.finish();
        }
        instance = Some((v.restart_count, false));
        let since = dedup.reconnect();
        let lp = LogParams { container: Some(container.clone()), follow: true, timestamps: true, since_time: since, ..LogParams::default() };
        let ended = match api.log_stream(&pod, &lp).await {
            Ok(stream) => {
                let mut stream = std::pin::pin!(stream);
                let mut clean = false;
                loop {
                    match stream.as_mut().fill_buf().await {
                        Ok([]) => {
                            clean = true;
                            break;
                        }
                        Ok(buf) => {
                            let mut out = Vec::with_capacity(buf.len());
                            dedup.feed(buf, &mut out);
                            let n = buf.len();
                            stream.as_mut().consume(n);
                            backoff = Duration::from_millis(50);
                            if !out.is_empty() && !send(LogEvent::Data(out)).await {
                                return;
                            }
                        }
                        Err(_) => break,
                    }
                }
                clean
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {
                // The pod is gone.
                dedup.finish();
                let _ = send(LogEvent::End).await;
                return;
            }
            Err(kube::Error::Api(s)) if s.code == 400 => {
                // Not started yet (or no longer): wait for the pod watcher.
                let _ = tokio::time::timeout(Duration::from_secs(1), view.changed()).await;
                continue;
            }
            Err(e) => {
                if !reported && matches!(&e, kube::Error::Api(s) if s.code == 403) {
                    reported = true;
                    let denial = match &e {
                        kube::Error::Api(s) => s.message.clone(),
                        _ => String::new(),
                    };
                    let _ = send(LogEvent::Problem(format!("cannot read the log of pod {pod}: {denial}"))).await;
                }
                false
            }
        };
        if !ended {
            // Dropped: reconnect; a cut line comes again whole.
            if dedup.mid_line() && !send(LogEvent::Reset).await {
                return;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
            continue;
        }
        // The stream ended: did the instance end?
        let v = view.borrow().clone();
        let n = instance.map_or(0, |(n, _)| n);
        if v.restart_count != n {
            // The container restarted while this instance's log was read (the
            // pod view may jump straight to a later run, even to the pod's end):
            // this instance is over; go on with the next.
            instance = Some((n, true));
            dedup.finish();
            if !send(LogEvent::End).await {
                return;
            }
            continue;
        }
        if v.pod_done || v.terminated {
            instance = instance.map(|(n, _)| (n, true));
            dedup.finish();
            if !send(LogEvent::End).await {
                return;
            }
            if v.pod_done || v.job_done {
                return;
            }
            // Wait for a restart, or for the pod (or job) to finish.
            let Ok(next) = view.wait_for(|x| x.restart_count != v.restart_count || x.pod_done || x.job_done).await else {
                return;
            };
            if next.restart_count == v.restart_count {
                return;
            }
        } else {
            // The watcher has not caught up yet; give it a moment before reading again.
            let _ = tokio::time::timeout(Duration::from_millis(500), view.changed()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(d: &mut Dedup, s: &str) -> String {
        let mut out = Vec::new();
        d.feed(s.as_bytes(), &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn timestamps_are_stripped_even_when_split_across_chunks() {
        let mut d = Dedup::new();
        assert_eq!(feed(&mut d, "2025-01-01T00:00:01.5Z hel"), "hel");
        assert_eq!(feed(&mut d, "lo\n2025-01-01T00:00:0"), "lo\n");
        assert_eq!(feed(&mut d, "2.000000001Z world\n"), "world\n");
        assert_eq!(feed(&mut d, "2025-01-01T00:00:03Z a\rb\n"), "a\rb\n");
    }

    #[test]
    fn a_reconnect_skips_what_was_shown_and_resends_a_cut_line() {
        let mut d = Dedup::new();
        let first = "2025-01-01T00:00:01.1Z one\n2025-01-01T00:00:01.7Z two\n2025-01-01T00:00:01.7Z three\n2025-01-01T00:00:01.7Z fo";
        assert_eq!(feed(&mut d, first), "one\ntwo\nthree\nfo");
        assert!(d.mid_line());
        let since = d.reconnect().unwrap();
        assert_eq!(since.to_string(), "2025-01-01T00:00:01Z");
        // The server sends everything from that second again.
        let again = "2025-01-01T00:00:01.1Z one\n2025-01-01T00:00:01.7Z two\n2025-01-01T00:00:01.7Z three\n2025-01-01T00:00:01.7Z four\n2025-01-01T00:00:02Z five\n";
        assert_eq!(feed(&mut d, again), "four\nfive\n");
        let _ = d.reconnect();
        assert_eq!(feed(&mut d, "2025-01-01T00:00:02Z five\n2025-01-01T00:00:02Z six\n"), "six\n");
    }

    #[test]
    fn a_finished_partial_line_counts_as_shown() {
        let mut d = Dedup::new();
        assert_eq!(feed(&mut d, "2025-01-01T00:00:01Z no newline"), "no newline");
        d.finish();
        let _ = d.reconnect();
        assert_eq!(feed(&mut d, "2025-01-01T00:00:01Z no newline"), "");
        assert_eq!(feed(&mut d, "\n2025-01-01T00:00:05Z next instance\n"), "next instance\n");
    }

    #[test]
    fn lines_without_timestamps_are_shown_as_they_are() {
        let mut d = Dedup::new();
        assert_eq!(feed(&mut d, "plain words\n"), "plain words\n");
        assert_eq!(feed(&mut d, "\n"), "\n");
        let long = "x".repeat(100);
        assert_eq!(feed(&mut d, &format!("{long}\n")), format!("{long}\n"));
    }
}
