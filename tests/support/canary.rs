//! Canary secrets and the capture of everything the tests see.
//!
//! Every credential the suites set is a value from `tests/canaries`
//! ([`get`]). What ciao shows (cell output, errors, CLI stdout/stderr,
//! kernel logs) is appended to the directory named by
//! `CIAO_CANARY_CAPTURE` ([`capture`]) when it is set (tests/run-all sets
//! it); `tests/scan-canaries` then fails the run if any canary, in any of
//! its forms, appears there. Secrets the test services make up at run time
//! (the token endpoint's bearer tokens) are added to the list with
//! [`issued`].

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::OnceLock;

/// The canary file, shared with the Python suites and the scanner.
const CANARIES: &str = include_str!("../canaries");

/// The value of canary `name` (a name from `tests/canaries`).
pub fn get(name: &str) -> &'static str {
    static PARSED: OnceLock<Vec<(&'static str, &'static str)>> = OnceLock::new();
    let all = PARSED.get_or_init(|| {
        CANARIES
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .filter_map(|l| l.split_once(char::is_whitespace).map(|(n, v)| (n, v.trim())))
            .collect()
    });
    all.iter().find(|(n, _)| *n == name).map(|(_, v)| *v).unwrap_or_else(|| panic!("no canary {name:?} in tests/canaries"))
}

/// Every canary value.
pub fn all() -> Vec<&'static str> {
    CANARIES
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect()
}

/// The capture directory, if the run collects captures.
pub fn capture_dir() -> Option<PathBuf> {
    std::env::var_os("CIAO_CANARY_CAPTURE").filter(|v| !v.is_empty()).map(PathBuf::from)
}

fn append(file: PathBuf, text: &str) {
    if let Some(parent) = file.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&file).unwrap_or_else(|e| panic!("cannot write the capture {}: {e}", file.display()));
    f.write_all(text.as_bytes()).unwrap_or_else(|e| panic!("cannot write the capture {}: {e}", file.display()));
}

/// Appends `text` to the capture of kind `kind` (`rust-cli`, `rust-engine`,
/// `rust-error`, `kernel-trace`, …) of this test process.
pub fn capture(kind: &str, text: &str) {
    if let Some(dir) = capture_dir() {
        let exe = std::env::current_exe().ok().and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned())).unwrap_or_default();
        let test = std::thread::current().name().unwrap_or("main").replace("::", "-");
        append(dir.join(format!("{kind}-{exe}-{}.txt", std::process::id())), &format!("\n=== {test}\n{text}\n"));
    }
}

/// Captures a command's stdout and stderr (`rust-cli`).
pub fn capture_output(out: &std::process::Output) {
    capture("rust-cli", &format!("--- stdout\n{}\n--- stderr\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)));
}

/// Adds a secret made up at run time to the list the scanner looks for.
pub fn issued(secret: &str) {
    if let Some(dir) = capture_dir() {
        append(dir.join(".issued").join(format!("{}.txt", std::process::id())), &format!("{secret}\n"));
    }
}

/// The canaries (and their base64 forms) found in `text`; empty when clean.
/// The same check as tests/scan-canaries, for asserting inside one test.
pub fn leaks(text: &str, extra: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for secret in all().into_iter().chain(extra.iter().copied()) {
        for form in forms(secret) {
            if text.contains(&form) {
                found.push(format!("{secret} (as {form})"));
            }
        }
    }
    found
}

/// A secret as it may appear: raw, and the parts of its standard and
/// URL-safe base64 encodings that do not depend on the bytes around it
/// (at each of the three alignments), as in `base64(user:password)`.
pub fn forms(secret: &str) -> Vec<String> {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    let mut v = vec![secret.to_string()];
    for k in 0..3usize {
        let mut bytes = vec![b'\0'; k];
        bytes.extend_from_slice(secret.as_bytes());
        let first = k.div_ceil(3);
        let last = (k + secret.len()) / 3;
        if last <= first + 1 {
            continue;
        }
        for enc in [STANDARD.encode(&bytes), URL_SAFE_NO_PAD.encode(&bytes)] {
            let part = &enc[first * 4..(last * 4).min(enc.len())];
            v.push(part.to_string());
        }
    }
    v.sort();
    v.dedup();
    v
}
