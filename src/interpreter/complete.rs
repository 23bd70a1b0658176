//! Completion and inspection of magics. (Implementation pending.)

use crate::frameworks::Frameworks;
use crate::output::MimeBundle;

/// A complete_reply's content. Offsets are in Unicode code points.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Completion {
    pub matches: Vec<String>,
    pub cursor_start: usize,
    pub cursor_end: usize,
}

/// Completions at `cursor_pos` (code points).
pub fn complete(code: &str, cursor_pos: usize, frameworks: &Frameworks) -> Completion {
    let _ = (code, frameworks);
    Completion { matches: Vec::new(), cursor_start: cursor_pos, cursor_end: cursor_pos }
}

/// Documentation of the magic under the cursor.
pub fn inspect(code: &str, cursor_pos: usize, frameworks: &Frameworks) -> Option<MimeBundle> {
    let _ = (code, cursor_pos, frameworks);
    None
}
