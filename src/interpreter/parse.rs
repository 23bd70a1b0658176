//! Cell text → [`Cell`]. (Implementation pending.)

use crate::frameworks::Frameworks;
use crate::output::CellError;

use super::params::Cell;

/// A mistake in a cell's magics: names the line and the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MagicError {
    /// 1-based line number in the cell.
    pub line: usize,
    /// The line as written.
    pub text: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl std::fmt::Display for MagicError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}: {}", self.line, self.text.trim_end(), self.message)
    }
}

impl std::error::Error for MagicError {}

impl From<MagicError> for CellError {
    fn from(e: MagicError) -> Self {
        CellError::new("MagicError", e.to_string())
    }
}

/// Parses a cell. `default_framework` applies when the cell has no `%framework=`.
pub fn parse(code: &str, frameworks: &Frameworks, default_framework: &str) -> Result<Cell, MagicError> {
    let _ = (code, frameworks, default_framework);
    Err(MagicError { line: 1, text: String::new(), message: "the interpreter is not written yet".into() })
}
