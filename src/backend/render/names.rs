//! Job names and the syntax of Kubernetes names, label keys and values.

use super::RenderError;

/// The longest job name: operators name pods and services
/// `<job>-<replica type>-<index>` (and MPI `<job>-launcher`, Trainer
/// `<job>-node-<i>-<j>`), which must stay DNS labels of at most 63 characters.
pub const MAX_JOB_NAME: usize = 45;

/// Hex digits of the cell digest used in job names and the cell label.
const SHORT_DIGEST: usize = 8;

/// The first hex digits of a digest (`sha256:3f2a…` → `3f2a9c81`).
pub fn short_digest(digest: &str) -> String {
    let hex = digest.rsplit(':').next().unwrap_or(digest);
    hex.chars().filter(char::is_ascii_hexdigit).map(|c| c.to_ascii_lowercase()).take(SHORT_DIGEST).collect()
}

/// The name of a job: `<prefix>-<short digest>` and `-<attempt>` from the
/// second attempt on (the backend retries with `attempt + 1` after a name
/// clash). Always a DNS-1035 label (a letter first) of at most
/// [`MAX_JOB_NAME`] characters; the prefix is lowercased, other characters
/// become `-`, and it is shortened to fit.
pub fn job_name(prefix: &str, cell_digest: &str, attempt: u32) -> String {
    let mut suffix = String::new();
    let digest = short_digest(cell_digest);
    if !digest.is_empty() {
        suffix.push('-');
        suffix.push_str(&digest);
    }
    if attempt > 0 {
        suffix.push_str(&format!("-{attempt}"));
    }
    let mut base = sanitize(prefix);
    if !base.starts_with(|c: char| c.is_ascii_lowercase()) {
        base = format!("ciao-{base}").trim_end_matches('-').to_string();
    }
    let room = MAX_JOB_NAME.saturating_sub(suffix.len()).max(1);
    base.truncate(room);
    let base = base.trim_end_matches('-');
    format!("{base}{suffix}")
}

/// Lowercase letters, digits and single `-`s, no `-` at either end.
fn sanitize(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_end_matches('-').to_string()
}

/// A volume name: `<stem>-<index>` as a DNS-1123 label.
pub(super) fn volume_name(stem: &str, index: usize) -> String {
    let suffix = format!("-{index}");
    let mut base = sanitize(stem);
    if base.is_empty() {
        base = "volume".into();
    }
    base.truncate(63 - suffix.len());
    format!("{}{suffix}", base.trim_end_matches('-'))
}

fn is_alnum(c: char) -> bool {
    c.is_ascii_alphanumeric()
}

/// `[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?`, at most 63 characters.
fn qualified_name_part(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 63 {
        return Err("must be 1 to 63 characters".into());
    }
    let ok_inner = s.chars().all(|c| is_alnum(c) || matches!(c, '-' | '_' | '.'));
    if !ok_inner || !s.starts_with(is_alnum) || !s.ends_with(is_alnum) {
        return Err("must be letters, digits, '-', '_' or '.', starting and ending with a letter or digit".into());
    }
    Ok(())
}

/// A DNS-1123 subdomain: dot-separated lowercase labels, at most 253 characters.
fn dns_subdomain(s: &str) -> Result<(), String> {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if s.is_empty() || s.len() > 253 || !s.split('.').all(label_ok) {
        return Err(format!("the prefix {s:?} must be a DNS subdomain (lowercase, e.g. example.com)"));
    }
    Ok(())
}

/// A label or annotation key: `[prefix/]name`.
pub(super) fn check_qualified_name(what: &'static str, key: &str) -> Result<(), RenderError> {
    let bad = |why: String| RenderError::InvalidMetadata { what, key: key.to_string(), why };
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix {
        dns_subdomain(p).map_err(bad)?;
    }
    qualified_name_part(name).map_err(|why| bad(format!("the name part {why}")))
}

/// A label key and value.
pub(super) fn check_label(key: &str, value: &str) -> Result<(), RenderError> {
    check_qualified_name("label", key)?;
    if !value.is_empty() {
        qualified_name_part(value).map_err(|why| RenderError::InvalidMetadata {
            what: "label",
            key: key.to_string(),
            why: format!("the value {value:?} {why}"),
        })?;
    }
    Ok(())
}
