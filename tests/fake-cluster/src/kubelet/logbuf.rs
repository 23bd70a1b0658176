//! Append-only container logs: bytes kept exactly as written, an index of line starts with
//! their timestamps (for `timestamps`, `tailLines`, `sinceSeconds`), and wake-ups for
//! followers. Readers copy only the bytes they have not seen; no lock is held across awaits.

use std::sync::Mutex;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use tokio::sync::Notify;

#[derive(Default)]
struct Data {
    bytes: Vec<u8>,
    /// (offset of line start, time the line started)
    lines: Vec<(usize, DateTime<Utc>)>,
    at_line_start: bool,
    closed: bool,
}

/// The log of one container instance.
pub struct LogBuf {
    data: Mutex<Data>,
    notify: Notify,
}

impl Default for LogBuf {
    fn default() -> Self {
        LogBuf { data: Mutex::new(Data { at_line_start: true, ..Default::default() }), notify: Notify::new() }
    }
}

impl LogBuf {
    /// Appends output.
    pub fn append(&self, chunk: &[u8]) {
        if chunk.is_empty() {
            return;
        }
        let now = Utc::now();
        {
            let mut d = self.data.lock().expect("log lock");
            let base = d.bytes.len();
            let mut start_line = d.at_line_start;
            for (i, b) in chunk.iter().enumerate() {
                if start_line {
                    d.lines.push((base + i, now));
                    start_line = false;
                }
                if *b == b'\n' {
                    start_line = true;
                }
            }
            d.at_line_start = start_line;
            d.bytes.extend_from_slice(chunk);
        }
        self.notify.notify_waiters();
    }

    /// Marks the end of the container instance.
    pub fn close(&self) {
        self.data.lock().expect("log lock").closed = true;
        self.notify.notify_waiters();
    }

    /// Whether the instance has ended.
    pub fn is_closed(&self) -> bool {
        self.data.lock().expect("log lock").closed
    }

    /// Total bytes written.
    pub fn len(&self) -> usize {
        self.data.lock().expect("log lock").bytes.len()
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Byte offset where reading starts for the given `tailLines` / since-time filters.
    pub fn start_offset(&self, tail_lines: Option<usize>, since: Option<DateTime<Utc>>) -> usize {
        let d = self.data.lock().expect("log lock");
        let mut off = 0;
        if let Some(since) = since {
            let idx = d.lines.partition_point(|(_, t)| *t < since);
            off = d.lines.get(idx).map_or(d.bytes.len(), |(o, _)| *o);
        }
        if let Some(n) = tail_lines {
            // a trailing partial line counts as a line
            let total = d.lines.len();
            let idx = total.saturating_sub(n);
            let o = d.lines.get(idx).map_or(d.bytes.len(), |(o, _)| *o);
            off = off.max(o);
        }
        off
    }

    /// Bytes from `offset` to the current end, optionally with RFC 3339 timestamps before
    /// each line, plus the new offset and whether the log is closed and fully read.
    pub fn read_from(&self, offset: usize, timestamps: bool) -> (Bytes, usize, bool) {
        let d = self.data.lock().expect("log lock");
        let end = d.bytes.len();
        if offset >= end {
            return (Bytes::new(), end, d.closed);
        }
        let out = if timestamps {
            let mut out = Vec::with_capacity(end - offset + 64);
            let mut idx = d.lines.partition_point(|(o, _)| *o < offset);
            let mut pos = offset;
            // a read starting inside a line does not repeat its timestamp
            while pos < end {
                let next_line_start = d.lines.get(idx).map(|(o, _)| *o);
                if next_line_start == Some(pos) {
                    let ts = d.lines[idx].1.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
                    out.extend_from_slice(ts.as_bytes());
                    out.push(b' ');
                    idx += 1;
                }
                let stop = d.lines.get(idx).map_or(end, |(o, _)| (*o).min(end));
                let stop = if stop <= pos { end } else { stop };
                out.extend_from_slice(&d.bytes[pos..stop]);
                pos = stop;
            }
            Bytes::from(out)
        } else {
            Bytes::copy_from_slice(&d.bytes[offset..end])
        };
        (out, end, d.closed)
    }

    /// Waits until more output arrives or the log closes (returns immediately if either
    /// already happened after `offset`).
    pub async fn wait_beyond(&self, offset: usize) {
        let notified = self.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        {
            let d = self.data.lock().expect("log lock");
            if d.bytes.len() > offset || d.closed {
                return;
            }
        }
        notified.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_lines_counts_from_the_end() {
        let b = LogBuf::default();
        b.append(b"a\nb\n");
        b.append(b"c\nd");
        let off = b.start_offset(Some(2), None);
        assert_eq!(&b.read_from(off, false).0[..], b"c\nd");
    }

    #[test]
    fn timestamps_prefix_each_line_once() {
        let b = LogBuf::default();
        b.append(b"x\r y\nz\n");
        let (out, _, _) = b.read_from(0, true);
        let s = String::from_utf8(out.to_vec()).unwrap();
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].ends_with(" x\r y"));
        assert!(lines[1].ends_with(" z"));
    }
}
