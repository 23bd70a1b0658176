//! Input history for `history_request`, kept across kernel restarts.
//!
//! Every kernel start is a new session (one more than the highest session
//! seen). Cells executed with `store_history` are appended as JSON lines to
//! `<jupyter data dir>/ciao/history.jsonl`; the file holds at most
//! [`DEFAULT_LIMIT`] entries after each start. The file is read lazily, on
//! the first execute or history request, so start-up does no I/O.
//!
//! A damaged file never stops the kernel: unreadable lines are skipped, the
//! original is kept as `history.jsonl.corrupt`, and the file is rewritten
//! with what could be read. When the file cannot be written, history lives
//! in memory for this session and one warning is logged.

use std::collections::{HashSet, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Entries kept in memory and in the file.
pub const DEFAULT_LIMIT: usize = 10_000;

/// Longest `output` kept per entry (bytes of text/plain).
const OUTPUT_LIMIT: usize = 4096;

/// Glob patterns longer than this are refused (matching is recursive per `*`).
const PATTERN_LIMIT: usize = 1024;

/// One executed cell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub session: u32,
    pub line: u32,
    pub input: String,
    #[serde(default)]
    pub output: Option<String>,
}

/// A line of the history file: an entry, or the start of a session.
#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
enum Record {
    Entry(Entry),
    Start { session: u32, start: String },
}

/// What a history_request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    /// The last `n` entries over all sessions.
    Tail { n: usize },
    /// Lines `start <= line < stop` of `session` (0: this session, negative: that many sessions back).
    Range { session: i64, start: i64, stop: Option<i64> },
    /// Entries whose whole input matches the glob `pattern` (`*`, `?`, `[…]`);
    /// with `unique`, only the latest of equal inputs; with `n`, the last `n`.
    Search { pattern: String, n: Option<usize>, unique: bool },
}

/// A query that cannot be answered.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("invalid glob pattern {pattern:?}: {source}; use * for any text and ? for one character")]
    Pattern {
        pattern: String,
        #[source]
        source: glob::PatternError,
    },
    #[error("the search pattern is {0} characters long; the limit is {PATTERN_LIMIT}")]
    PatternTooLong(usize),
}

/// The history store.
#[derive(Debug)]
pub struct History {
    path: Option<PathBuf>,
    limit: usize,
    loaded: Option<Loaded>,
}

#[derive(Debug)]
struct Loaded {
    session: u32,
    entries: VecDeque<Entry>,
    /// Open for appending; `None` once writing failed (memory only).
    file: Option<File>,
    /// Records in the file, to know when to compact.
    file_records: usize,
}

impl History {
    /// A store persisted at `path` (`None`: memory only) keeping `limit` entries.
    pub fn new(path: Option<PathBuf>, limit: usize) -> History {
        History { path, limit: limit.max(1), loaded: None }
    }

    /// `<jupyter data dir>/ciao/history.jsonl`.
    pub fn default_path() -> Option<PathBuf> {
        super::install::jupyter_data_dir().map(|d| d.join("ciao").join("history.jsonl"))
    }

    /// This kernel's session number.
    pub fn session(&mut self) -> u32 {
        self.loaded().session
    }

    /// Appends a cell executed as `line` of this session.
    pub fn record(&mut self, line: u32, input: &str, output: Option<&str>) {
        let limit = self.limit;
        let path = self.path.clone();
        let loaded = self.loaded();
        let entry = Entry {
            session: loaded.session,
            line,
            input: input.to_string(),
            output: output.map(|o| truncate(o, OUTPUT_LIMIT).to_string()),
        };
        if let Some(file) = &mut loaded.file {
            if let Err(e) = append(file, &Record::Entry(entry.clone())) {
                tracing::warn!("history: cannot append to {}: {e}; keeping history in memory", path_text(&path));
                loaded.file = None;
            } else {
                loaded.file_records += 1;
            }
        }
        loaded.entries.push_back(entry);
        while loaded.entries.len() > limit {
            loaded.entries.pop_front();
        }
        if let (Some(p), Some(_)) = (&path, &loaded.file) {
            if loaded.file_records > 2 * limit {
                loaded.file = rewrite(p, None, &loaded.entries, loaded.session);
                loaded.file_records = loaded.entries.len() + 1;
            }
        }
    }

    /// Answers `query`, oldest first.
    ///
    /// # Errors
    /// An invalid search pattern.
    pub fn query(&mut self, query: &Query) -> Result<Vec<Entry>, HistoryError> {
        let loaded = self.loaded();
        let all = &loaded.entries;
        Ok(match query {
            Query::Tail { n } => all.iter().skip(all.len().saturating_sub(*n)).cloned().collect(),
            Query::Range { session, start, stop } => {
                let current = i64::from(loaded.session);
                let wanted = if *session <= 0 { current.saturating_add(*session) } else { *session };
                all.iter()
                    .filter(|e| i64::from(e.session) == wanted)
                    .filter(|e| i64::from(e.line) >= *start && stop.is_none_or(|s| i64::from(e.line) < s))
                    .cloned()
                    .collect()
            }
            Query::Search { pattern, n, unique } => {
                if pattern.chars().count() > PATTERN_LIMIT {
                    return Err(HistoryError::PatternTooLong(pattern.chars().count()));
                }
                let glob = glob::Pattern::new(pattern)
                    .map_err(|source| HistoryError::Pattern { pattern: pattern.clone(), source })?;
                let mut seen = HashSet::new();
                let mut found: Vec<Entry> = all
                    .iter()
                    .rev()
                    .filter(|e| glob.matches(&e.input))
                    .filter(|e| !*unique || seen.insert(e.input.as_str()))
                    .take(n.unwrap_or(usize::MAX))
                    .cloned()
                    .collect();
                found.reverse();
                found
            }
        })
    }

    fn loaded(&mut self) -> &mut Loaded {
        if self.loaded.is_none() {
            self.loaded = Some(load(self.path.as_deref(), self.limit));
        }
        self.loaded.get_or_insert_with(|| Loaded { session: 1, entries: VecDeque::new(), file: None, file_records: 0 })
    }
}

fn path_text(path: &Option<PathBuf>) -> String {
    path.as_deref().map_or_else(|| "(memory)".into(), |p| p.display().to_string())
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn append(file: &mut File, record: &Record) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(record).map_err(std::io::Error::other)?;
    line.push(b'\n');
    // One write per record: with O_APPEND, concurrent kernels never interleave lines.
    file.write_all(&line)
}

/// Reads the file (if any), starts a new session and opens the file for appending.
fn load(path: Option<&Path>, limit: usize) -> Loaded {
    let Some(path) = path else {
        return Loaded { session: 1, entries: VecDeque::new(), file: None, file_records: 0 };
    };
    let mut entries = VecDeque::new();
    let mut max_session = 0u32;
    let mut records = 0usize;
    let mut bad = 0usize;
    match std::fs::read(path) {
        Ok(bytes) => {
            for line in bytes.split(|b| *b == b'\n').filter(|l| !l.iter().all(u8::is_ascii_whitespace)) {
                records += 1;
                match serde_json::from_slice::<Record>(line) {
                    Ok(Record::Entry(e)) => {
                        max_session = max_session.max(e.session);
                        entries.push_back(e);
                        if entries.len() > limit {
                            entries.pop_front();
                        }
                    }
                    Ok(Record::Start { session, .. }) => max_session = max_session.max(session),
                    Err(_) => bad += 1,
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!("history: cannot read {}: {e}; this session's history stays in memory", path.display());
            return Loaded { session: 1, entries, file: None, file_records: 0 };
        }
    }
    let session = max_session.saturating_add(1);
    let start = Record::Start { session, start: super::message::now_iso8601() };

    if bad > 0 || records > limit + limit / 10 {
        let backup = (bad > 0).then(|| {
            let b = path.with_extension("jsonl.corrupt");
            tracing::warn!(
                "history: {bad} unreadable line(s) in {}; keeping a copy as {} and starting the file afresh with the {} readable entries",
                path.display(),
                b.display(),
                entries.len()
            );
            b
        });
        let file = rewrite(path, backup.as_deref(), &entries, session);
        let file_records = entries.len() + 1;
        return Loaded { session, entries, file, file_records };
    }

    let file = open_append(path).and_then(|mut f| {
        append(&mut f, &start).map(|()| f).map_err(|e| {
            tracing::warn!("history: cannot write {}: {e}; this session's history stays in memory", path.display());
        })
    });
    Loaded { session, entries, file: file.ok(), file_records: records + 1 }
}

fn open_append(path: &Path) -> Result<File, ()> {
    let open = || {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        OpenOptions::new().create(true).append(true).open(path)
    };
    open().map_err(|e| tracing::warn!("history: cannot open {}: {e}; this session's history stays in memory", path.display()))
}

/// Replaces the file with `entries` and a session start, atomically (temp file + rename).
fn rewrite(path: &Path, backup: Option<&Path>, entries: &VecDeque<Entry>, session: u32) -> Option<File> {
    let result = (|| -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        if let Some(b) = backup {
            std::fs::copy(path, b)?;
        }
        let tmp = path.with_extension(format!("jsonl.tmp{}", std::process::id()));
        let mut buf = Vec::new();
        for e in entries {
            serde_json::to_writer(&mut buf, &Record::Entry(e.clone())).map_err(std::io::Error::other)?;
            buf.push(b'\n');
        }
        serde_json::to_writer(&mut buf, &Record::Start { session, start: super::message::now_iso8601() })
            .map_err(std::io::Error::other)?;
        buf.push(b'\n');
        std::fs::write(&tmp, &buf)?;
        std::fs::rename(&tmp, path)
    })();
    match result {
        Ok(()) => open_append(path).ok(),
        Err(e) => {
            tracing::warn!("history: cannot rewrite {}: {e}; this session's history stays in memory", path.display());
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(dir: &tempfile::TempDir) -> History {
        History::new(Some(dir.path().join("ciao/history.jsonl")), 100)
    }

    fn inputs(v: &[Entry]) -> Vec<&str> {
        v.iter().map(|e| e.input.as_str()).collect()
    }

    #[test]
    fn tail_returns_the_last_n_entries_oldest_first() {
        let mut h = History::new(None, 100);
        for (i, c) in ["a", "b", "c", "d"].iter().enumerate() {
            h.record(i as u32 + 1, c, None);
        }
        assert_eq!(inputs(&h.query(&Query::Tail { n: 2 }).unwrap()), ["c", "d"]);
        assert_eq!(inputs(&h.query(&Query::Tail { n: 10 }).unwrap()), ["a", "b", "c", "d"]);
        assert!(h.query(&Query::Tail { n: 0 }).unwrap().is_empty());
    }

    #[test]
    fn range_selects_lines_of_one_session_with_zero_meaning_the_current_one() {
        let mut h = History::new(None, 100);
        for i in 1..=5 {
            h.record(i, &format!("cell {i}"), None);
        }
        let s = i64::from(h.session());
        let r = h.query(&Query::Range { session: 0, start: 2, stop: Some(4) }).unwrap();
        assert_eq!(inputs(&r), ["cell 2", "cell 3"]);
        let r = h.query(&Query::Range { session: s, start: 4, stop: None }).unwrap();
        assert_eq!(inputs(&r), ["cell 4", "cell 5"]);
        assert!(h.query(&Query::Range { session: s + 1, start: 0, stop: None }).unwrap().is_empty());
    }

    #[test]
    fn search_matches_whole_inputs_with_glob_wildcards() {
        let mut h = History::new(None, 100);
        for (i, c) in ["%dryrun\nprint(1)", "%worker=2", "%dryrun\nprint(1)", "x = 1", "%dryrun\nprint(2)"].iter().enumerate() {
            h.record(i as u32 + 1, c, None);
        }
        let q = |pattern: &str, n, unique| Query::Search { pattern: pattern.into(), n, unique };
        assert_eq!(h.query(&q("%dryrun*", None, false)).unwrap().len(), 3);
        assert_eq!(h.query(&q("dryrun*", None, false)).unwrap().len(), 0, "the whole input must match");
        assert_eq!(inputs(&h.query(&q("%dryrun*", None, true)).unwrap()), ["%dryrun\nprint(1)", "%dryrun\nprint(2)"]);
        assert_eq!(inputs(&h.query(&q("*print(?)", Some(1), false)).unwrap()), ["%dryrun\nprint(2)"]);
        let last_two = h.query(&q("*", Some(2), false)).unwrap();
        assert_eq!(last_two.iter().map(|e| e.line).collect::<Vec<_>>(), [4, 5]);
        let unique = h.query(&q("%dryrun*print(1)", None, true)).unwrap();
        assert_eq!(unique.len(), 1);
        assert_eq!(unique[0].line, 3, "unique keeps the latest occurrence");
    }

    #[test]
    fn an_invalid_or_huge_pattern_is_an_error_not_a_crash() {
        let mut h = History::new(None, 100);
        h.record(1, "a", None);
        let err = h.query(&Query::Search { pattern: "[".into(), n: None, unique: false }).unwrap_err();
        assert!(err.to_string().contains("invalid glob pattern"), "{err}");
        let huge = "*".repeat(100_000);
        assert!(matches!(
            h.query(&Query::Search { pattern: huge, n: None, unique: false }),
            Err(HistoryError::PatternTooLong(100_000))
        ));
    }

    #[test]
    fn history_persists_and_each_load_is_a_new_session() {
        let dir = tempfile::tempdir().unwrap();
        let mut first = store(&dir);
        assert_eq!(first.session(), 1);
        first.record(1, "%dryrun", Some("plan"));
        first.record(2, "%help", None);
        drop(first);

        let mut second = store(&dir);
        assert_eq!(second.session(), 2);
        second.record(1, "third", None);
        let all = second.query(&Query::Tail { n: 10 }).unwrap();
        assert_eq!(
            all,
            vec![
                Entry { session: 1, line: 1, input: "%dryrun".into(), output: Some("plan".into()) },
                Entry { session: 1, line: 2, input: "%help".into(), output: None },
                Entry { session: 2, line: 1, input: "third".into(), output: None },
            ]
        );
        let previous = second.query(&Query::Range { session: -1, start: 0, stop: None }).unwrap();
        assert_eq!(inputs(&previous), ["%dryrun", "%help"]);
    }

    #[test]
    fn a_session_without_cells_still_takes_a_session_number() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(store(&dir).session(), 1);
        assert_eq!(store(&dir).session(), 2);
        assert_eq!(store(&dir).session(), 3);
    }

    #[test]
    fn the_file_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.jsonl");
        let mut h = History::new(Some(path.clone()), 10);
        for i in 1..=25 {
            h.record(i, &format!("c{i}"), None);
        }
        assert_eq!(h.query(&Query::Tail { n: 100 }).unwrap().len(), 10, "memory keeps the limit");
        drop(h);
        let mut h = History::new(Some(path.clone()), 10);
        assert_eq!(inputs(&h.query(&Query::Tail { n: 3 }).unwrap()), ["c23", "c24", "c25"]);
        let lines = std::fs::read_to_string(&path).unwrap().lines().count();
        assert!(lines <= 11, "{lines} lines after compaction");
    }

    #[test]
    fn a_corrupt_file_is_kept_aside_and_history_starts_afresh_with_what_was_readable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ciao/history.jsonl");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(
            &path,
            b"{\"session\":4,\"line\":1,\"input\":\"ok\",\"output\":null}\n\xff\xfe garbage\n{\"session\":\"x\"}\n[1,2]\n{\"session\":5,\"li",
        )
        .unwrap();
        let mut h = History::new(Some(path.clone()), 100);
        assert_eq!(h.session(), 5);
        assert_eq!(inputs(&h.query(&Query::Tail { n: 10 }).unwrap()), ["ok"]);
        h.record(1, "after", None);
        assert!(path.with_extension("jsonl.corrupt").exists());
        drop(h);
        let mut h = History::new(Some(path), 100);
        assert_eq!(h.session(), 6);
        assert_eq!(inputs(&h.query(&Query::Tail { n: 10 }).unwrap()), ["ok", "after"]);
    }

    #[test]
    fn an_unwritable_location_keeps_history_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, "not a directory").unwrap();
        let mut h = History::new(Some(blocker.join("history.jsonl")), 100);
        h.record(1, "still works", None);
        assert_eq!(inputs(&h.query(&Query::Tail { n: 1 }).unwrap()), ["still works"]);
    }

    #[test]
    fn long_outputs_are_truncated_on_a_character_boundary() {
        let mut h = History::new(None, 100);
        let out = "é".repeat(OUTPUT_LIMIT);
        h.record(1, "x", Some(&out));
        let kept = h.query(&Query::Tail { n: 1 }).unwrap()[0].output.clone().unwrap();
        assert!(kept.len() <= OUTPUT_LIMIT && kept.chars().all(|c| c == 'é'));
    }
}
