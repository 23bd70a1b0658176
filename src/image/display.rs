//! The build and push of a cell's image as one display updated in place:
//! the base, the bytes sent, how many blobs were skipped (already there),
//! mounted or uploaded, and the time, as text/plain (consoles) and text/html
//! (notebooks).
//!
//! [`PushDisplay::progress_fn`] turns the builder's [`Progress`] events into
//! `display_data` (first event) and `update_display_data` (later ones, at
//! most every [`MIN_UPDATE`], the last one always).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::progress::{BlobAction, Progress, ProgressFn, Summary, human_bytes};
use crate::backend::status::format_duration;
use crate::output::{MimeBundle, Output, bundle};
use crate::plan::escape;

/// How the display ids of push displays begin (a command line prints them
/// on stderr, apart from the job's output).
pub const DISPLAY_ID_PREFIX: &str = "ciao-push-";

/// Minimum time between two updates that are not the last.
pub const MIN_UPDATE: Duration = Duration::from_millis(200);

/// Where the build is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Stage {
    Resolving,
    Pushing,
    Pushed { reference: String },
}

/// The state behind the display.
#[derive(Debug)]
struct State {
    started: Instant,
    stage: Stage,
    base: Option<String>,
    skipped: u64,
    mounted: u64,
    uploaded: u64,
    copied: u64,
    /// Bytes of blobs finished (uploaded or copied).
    sent: u64,
    /// Bytes so far of blobs still streaming.
    streaming: HashMap<String, u64>,
    summary: Option<Summary>,
    shown: bool,
    last_update: Option<Instant>,
}

/// One cell's push progress display.
#[derive(Debug, Clone)]
pub struct PushDisplay {
    out: Output,
    display_id: String,
    state: Arc<Mutex<State>>,
}

impl PushDisplay {
    /// A display that shows nothing until the first event.
    pub fn new(out: Output) -> Self {
        PushDisplay {
            out,
            display_id: format!("{DISPLAY_ID_PREFIX}{}", uuid::Uuid::new_v4().simple()),
            state: Arc::new(Mutex::new(State {
                started: Instant::now(),
                stage: Stage::Resolving,
                base: None,
                skipped: 0,
                mounted: 0,
                uploaded: 0,
                copied: 0,
                sent: 0,
                streaming: HashMap::new(),
                summary: None,
                shown: false,
                last_update: None,
            })),
        }
    }

    /// The display id.
    pub fn display_id(&self) -> &str {
        &self.display_id
    }

    /// The callback for the builder. Warnings (an unreachable base) still go
    /// to stderr as a line: they matter after the display has moved on.
    pub fn progress_fn(&self) -> ProgressFn {
        let me = self.clone();
        Arc::new(move |p: &Progress| me.on(p))
    }

    /// Records one event and redraws when due.
    pub fn on(&self, p: &Progress) {
        let mut s = self.state.lock().expect("push display lock");
        let mut force = false;
        match p {
            Progress::Resolving { reference } => {
                s.base.get_or_insert_with(|| reference.clone());
            }
            Progress::BaseResolved { reference, .. } => {
                s.base = Some(reference.clone());
                s.stage = Stage::Pushing;
            }
            Progress::EmptyBase { .. } => {
                if let Some(line) = p.line() {
                    self.out.stderr(format!("{line}\n"));
                }
                s.base = Some("(empty base)".into());
                s.stage = Stage::Pushing;
            }
            Progress::Blob { digest, size, action } => {
                s.streaming.remove(digest);
                match action {
                    BlobAction::Present => s.skipped += 1,
                    BlobAction::Mounted => s.mounted += 1,
                    BlobAction::Uploaded => {
                        s.uploaded += 1;
                        s.sent += size;
                    }
                    BlobAction::Copied => {
                        s.copied += 1;
                        s.sent += size;
                    }
                }
                s.stage = Stage::Pushing;
            }
            Progress::Bytes { digest, done, .. } => {
                s.streaming.insert(digest.clone(), *done);
            }
            Progress::Published { reference, summary } => {
                s.stage = Stage::Pushed { reference: reference.clone() };
                s.summary = Some(*summary);
                s.streaming.clear();
                force = true;
            }
        }
        let due = s.last_update.is_none_or(|t| t.elapsed() >= MIN_UPDATE);
        if !(force || due) {
            return;
        }
        s.last_update = Some(Instant::now());
        let data = render(&s);
        if s.shown {
            self.out.update_display(data, self.display_id.clone());
        } else {
            s.shown = true;
            self.out.display(data, Some(self.display_id.clone()));
        }
    }
}

/// The text and HTML of the display.
fn render(s: &State) -> MimeBundle {
    let (verb, elapsed, bytes, skipped, mounted, uploaded, copied) = match (&s.stage, &s.summary) {
        (Stage::Pushed { .. }, Some(sum)) => {
            ("pushed", sum.elapsed, sum.bytes, sum.present, sum.mounted, sum.uploaded, sum.copied)
        }
        (stage, _) => (
            if *stage == Stage::Resolving { "resolving" } else { "pushing" },
            s.started.elapsed(),
            s.sent + s.streaming.values().sum::<u64>(),
            s.skipped,
            s.mounted,
            s.uploaded,
            s.copied,
        ),
    };
    let what = match &s.stage {
        Stage::Pushed { reference } => reference.clone(),
        _ => format!("on {}", s.base.as_deref().unwrap_or("the base image")),
    };
    let mut blobs = format!("{skipped} skipped, {mounted} mounted, {uploaded} uploaded");
    if copied > 0 {
        blobs.push_str(&format!(", {copied} copied"));
    }
    let text = format!("image {verb} {what} · {} sent · blobs: {blobs} · {}", human_bytes(bytes), format_duration(elapsed));
    let html = format!(
        "<div class=\"ciao-push\" data-state=\"{verb}\"><b>image</b> {verb} <code>{what}</code> · {bytes} sent · \
         blobs: {blobs} · {elapsed}</div>",
        what = escape(&what),
        bytes = human_bytes(bytes),
        blobs = escape(&blobs),
        elapsed = format_duration(elapsed),
    );
    bundle(text, Some(html))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::{OutputEvent, Stream};

    fn digest(n: u8) -> String {
        format!("sha256:{}", format!("{n:02x}").repeat(32))
    }

    fn drain(rx: &mut tokio::sync::mpsc::UnboundedReceiver<OutputEvent>) -> Vec<OutputEvent> {
        std::iter::from_fn(|| rx.try_recv().ok()).collect()
    }

    fn plain(ev: &OutputEvent) -> &str {
        match ev {
            OutputEvent::Display { data, .. } | OutputEvent::UpdateDisplay { data, .. } => data["text/plain"].as_str().unwrap(),
            other => panic!("not a display: {other:?}"),
        }
    }

    #[test]
    fn one_display_is_opened_and_the_last_update_shows_the_totals() {
        let (out, mut rx) = Output::channel();
        let d = PushDisplay::new(out);
        let progress = d.progress_fn();
        progress(&Progress::Resolving { reference: "docker.io/library/python:3.11-slim".into() });
        progress(&Progress::BaseResolved {
            reference: "docker.io/library/python:3.11-slim".into(),
            digest: digest(1),
            platform: "linux/amd64".into(),
            cached: false,
        });
        progress(&Progress::Blob { digest: digest(2), size: 10, action: BlobAction::Present });
        progress(&Progress::Blob { digest: digest(3), size: 20, action: BlobAction::Mounted });
        progress(&Progress::Blob { digest: digest(4), size: 4096, action: BlobAction::Uploaded });
        let summary = Summary { requests: 7, bytes: 4096, uploaded: 1, copied: 0, mounted: 1, present: 1, elapsed: Duration::from_millis(42) };
        progress(&Progress::Published { reference: "r.example/t/python:ciao-1".into(), summary });
        let ev = drain(&mut rx);
        let OutputEvent::Display { display_id: Some(id), .. } = &ev[0] else { panic!("{ev:?}") };
        assert_eq!(id, d.display_id());
        assert!(plain(&ev[0]).starts_with("image resolving on docker.io/library/python:3.11-slim"), "{}", plain(&ev[0]));
        assert!(ev[1..].iter().all(|e| matches!(e, OutputEvent::UpdateDisplay { display_id, .. } if display_id == id)), "{ev:?}");
        let last = ev.last().unwrap();
        assert_eq!(plain(last), "image pushed r.example/t/python:ciao-1 · 4.0 KiB sent · blobs: 1 skipped, 1 mounted, 1 uploaded · 42ms");
        let OutputEvent::UpdateDisplay { data, .. } = last else { unreachable!() };
        assert!(data["text/html"].as_str().unwrap().contains("data-state=\"pushed\""));
    }

    #[test]
    fn streamed_bytes_count_while_they_flow_and_warnings_stay_lines() {
        let (out, mut rx) = Output::channel();
        let d = PushDisplay::new(out);
        d.on(&Progress::EmptyBase { reference: "python".into(), why: "no network".into() });
        // A second event within MIN_UPDATE is held back…
        d.on(&Progress::Bytes { digest: digest(5), done: 2048, total: 8192 });
        std::thread::sleep(MIN_UPDATE);
        // …and shown with the next one that is due.
        d.on(&Progress::Bytes { digest: digest(5), done: 3072, total: 8192 });
        let ev = drain(&mut rx);
        assert!(matches!(&ev[0], OutputEvent::Text(Stream::Stderr, t) if t.contains("warning") && t.ends_with('\n')), "{ev:?}");
        assert!(plain(&ev[1]).starts_with("image pushing on (empty base) · 0 B sent"), "{}", plain(&ev[1]));
        assert_eq!(ev.len(), 3, "{ev:?}");
        assert!(plain(&ev[2]).contains("· 3.0 KiB sent ·"), "{}", plain(&ev[2]));
    }
}
