//! Following a local job in a cell: its event log replayed into the cell's
//! output through a [`LogMux`] (prefixed lines) and, when asked, a
//! [`StatusBoard`] (the live table and the `[ciao]` status lines).

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::backend::Outcome;
use crate::backend::logs::{LineSplitter, LogMux, PARTIAL_FLUSH};
use crate::backend::status::{Condition, StatusBoard};
use crate::output::{Output, Stream};

use super::job::{Event, Job, PIP_STREAM};

/// How often the table's elapsed time is refreshed.
const TICK: Duration = Duration::from_secs(1);

/// Why following stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// The job is over.
    Finished(Outcome),
    /// The cell was interrupted; the job is as it was.
    Cancelled,
    /// Not following: everything logged so far was shown.
    CaughtUp,
}

/// One cell's view of a job.
pub struct Follower {
    mux: LogMux,
    splitters: Vec<LineSplitter>,
    board: Option<StatusBoard>,
    out: Output,
    cursor: u64,
    last_tick: Instant,
}

impl Follower {
    /// A view from the job's first event; with `board`, the live table
    /// (which announces the job); with `colors`, coloured replica prefixes.
    pub fn new(job: &Job, out: &Output, board: bool, colors: bool) -> Follower {
        let mut mux = LogMux::new(out.clone(), colors);
        for s in &job.streams {
            mux.replica(s);
        }
        let board = board.then(|| StatusBoard::with_stream(out.clone(), Stream::Stderr, &job.kind, "", &job.name, job.replicas as u32));
        Follower {
            mux,
            splitters: job.streams.iter().map(|_| LineSplitter::new()).collect(),
            board,
            out: out.clone(),
            cursor: 0,
            last_tick: Instant::now(),
        }
    }

    /// Shows the job's events until it ends, `cancel` fires, or (without
    /// `follow`) the log so far has been shown.
    pub async fn run(&mut self, job: &Job, follow: bool, cancel: &CancellationToken) -> Ended {
        let mut changed = job.subscribe();
        loop {
            changed.borrow_and_update();
            let read = job.read_from(self.cursor);
            self.cursor = read.next;
            if read.skipped > 0 {
                self.mux.close_line();
                self.out.stderr(format!(
                    "[ciao] {} earlier log events of {} were dropped (a local job keeps its last 32 MiB of output)\n",
                    read.skipped, job.name
                ));
                if let Some(b) = self.board.as_mut() {
                    for p in job.phases() {
                        b.replica(p);
                    }
                }
            }
            for event in read.events {
                if let Some(outcome) = self.show(event) {
                    return Ended::Finished(outcome);
                }
            }
            if !follow {
                self.show_partials();
                self.mux.close_line();
                return Ended::CaughtUp;
            }
            tokio::select! {
                biased;
                _ = cancel.cancelled() => {
                    self.mux.close_line();
                    return Ended::Cancelled;
                }
                r = changed.changed() => {
                    if r.is_err() {
                        // The job is gone; what it logged was read above.
                        return Ended::CaughtUp;
                    }
                }
                _ = tokio::time::sleep(PARTIAL_FLUSH) => {
                    self.show_partials();
                    if self.last_tick.elapsed() >= TICK {
                        self.last_tick = Instant::now();
                        if let Some(b) = self.board.as_mut() {
                            b.tick();
                        }
                    }
                }
            }
        }
    }

    fn show_partials(&mut self) {
        for (i, s) in self.splitters.iter().enumerate() {
            self.mux.show_partial(i, s.partial());
        }
    }

    /// Shows one event; the outcome when it is the last.
    fn show(&mut self, event: Event) -> Option<Outcome> {
        match event {
            Event::Output { stream, data } => {
                let pieces = self.splitters[stream].feed(&data);
                self.mux.write(stream, pieces);
            }
            Event::Closed { stream } => {
                if let Some(piece) = self.splitters[stream].finish() {
                    self.mux.write(stream, vec![piece]);
                }
            }
            Event::Note(text) => {
                self.mux.close_line();
                self.out.stderr(text);
            }
            Event::Replica(state) => {
                if let Some(b) = self.board.as_mut() {
                    self.mux.close_line();
                    b.replica(state);
                }
            }
            Event::Condition(c) => {
                if let Some(b) = self.board.as_mut() {
                    b.condition(c);
                }
            }
            Event::Finished { condition, outcome } => {
                for i in 0..self.splitters.len() {
                    if let Some(piece) = self.splitters[i].finish() {
                        self.mux.write(i, vec![piece]);
                    }
                }
                self.mux.close_line();
                if let Some(b) = self.board.as_mut() {
                    b.finish(condition);
                }
                return Some(outcome);
            }
        }
        None
    }

    /// Ends the table when the cell leaves a running job (detached).
    pub fn detach(&mut self, name: &str) {
        self.mux.close_line();
        if let Some(b) = self.board.as_mut() {
            b.finish(Condition {
                state: "Detached".into(),
                reason: None,
                message: Some(format!("it keeps running; %attach {name} follows it again, %delete {name} stops it")),
            });
        }
    }

    /// The failing stream's last lines under their prefixes.
    pub fn tail(&self, outcome: &Outcome) -> Vec<String> {
        match outcome {
            Outcome::Failed { replica: Some(r), .. } => self.mux.prefixed_tail(r),
            Outcome::Failed { replica: None, .. } => self.mux.prefixed_tail(PIP_STREAM),
            _ => Vec::new(),
        }
    }
}
