//! What the builder reports while it works, through a callback, so a display
//! (text lines now, a line updated in place later) can follow it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// What happened to one blob of the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobAction {
    /// The target already had it.
    Present,
    /// Mounted from another repository of the same registry.
    Mounted,
    /// Uploaded from memory (code layer, config).
    Uploaded,
    /// Streamed from another repository or registry.
    Copied,
}

impl BlobAction {
    pub fn as_str(self) -> &'static str {
        match self {
            BlobAction::Present => "present",
            BlobAction::Mounted => "mounted",
            BlobAction::Uploaded => "uploaded",
            BlobAction::Copied => "copied",
        }
    }
}

/// Totals of one build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Summary {
    /// HTTP requests sent to registries (token endpoints included).
    pub requests: u64,
    /// Bytes sent in blob uploads and copies.
    pub bytes: u64,
    pub uploaded: u64,
    pub copied: u64,
    pub mounted: u64,
    pub present: u64,
    pub elapsed: Duration,
}

/// One progress event.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    /// Looking up the base image.
    Resolving { reference: String },
    /// The base is known: its single-platform manifest digest.
    BaseResolved { reference: String, digest: String, platform: String, cached: bool },
    /// The base cannot be fetched; the image is built on the empty base.
    EmptyBase { reference: String, why: String },
    /// What happened to a blob.
    Blob { digest: String, size: u64, action: BlobAction },
    /// Bytes of a streamed blob so far.
    Bytes { digest: String, done: u64, total: u64 },
    /// The image is published under `reference`.
    Published { reference: String, summary: Summary },
}

impl Progress {
    /// A line of text for a log or stderr, for the events worth a line.
    pub fn line(&self) -> Option<String> {
        match self {
            Progress::Resolving { reference } => Some(format!("ciao: resolving base image {reference}")),
            Progress::BaseResolved { reference, digest, platform, cached } => Some(format!(
                "ciao: base {reference} is {} ({platform}{})",
                short(digest),
                if *cached { ", cached" } else { "" }
            )),
            Progress::EmptyBase { reference, why } => Some(format!(
                "ciao: warning: base image {reference} cannot be fetched ({why}); building on an empty base, \
                 so the cell runs with the host's Python"
            )),
            Progress::Blob { digest, size, action } => match action {
                BlobAction::Present => None,
                _ => Some(format!("ciao: {} {} ({})", action.as_str(), short(digest), human_bytes(*size))),
            },
            Progress::Bytes { .. } => None,
            Progress::Published { reference, summary: s } => Some(format!(
                "ciao: pushed {reference} ({} uploaded, {} copied, {} mounted, {} present; {} sent, {} requests, {} ms)",
                s.uploaded,
                s.copied,
                s.mounted,
                s.present,
                human_bytes(s.bytes),
                s.requests,
                s.elapsed.as_millis()
            )),
        }
    }
}

/// `sha256:0123456789ab`.
pub fn short(digest: &str) -> &str {
    let end = digest.find(':').map_or(12, |i| i + 13).min(digest.len());
    &digest[..end]
}

/// `4.0 KiB`, `200.0 MiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 { format!("{n} B") } else { format!("{v:.1} {}", UNITS[u]) }
}

/// Counters shared by every registry session of a builder; a build reads
/// the difference.
#[derive(Debug, Default)]
pub struct Counters {
    pub requests: AtomicU64,
    pub bytes: AtomicU64,
}

impl Counters {
    pub fn request(&self, n: u64) {
        self.requests.fetch_add(n, Ordering::Relaxed);
    }

    pub fn sent(&self, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
    }

    /// (requests, bytes) so far.
    pub fn snapshot(&self) -> (u64, u64) {
        (self.requests.load(Ordering::Relaxed), self.bytes.load(Ordering::Relaxed))
    }
}

/// The callback progress goes to.
pub type ProgressFn = std::sync::Arc<dyn Fn(&Progress) + Send + Sync>;

/// A callback that ignores progress.
pub fn no_progress() -> ProgressFn {
    std::sync::Arc::new(|_: &Progress| {})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_short_and_name_the_digest() {
        let d = format!("sha256:{}", "ab".repeat(32));
        let l = Progress::Blob { digest: d.clone(), size: 4096, action: BlobAction::Uploaded }.line().unwrap();
        assert_eq!(l, "ciao: uploaded sha256:abababababab (4.0 KiB)");
        assert!(Progress::Blob { digest: d, size: 1, action: BlobAction::Present }.line().is_none());
        let w = Progress::EmptyBase { reference: "python".into(), why: "no network".into() }.line().unwrap();
        assert!(w.contains("warning") && w.contains("empty base"));
        assert_eq!(human_bytes(200 * 1024 * 1024), "200.0 MiB");
    }
}
