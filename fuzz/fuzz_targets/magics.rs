//! The magic parser and the editor helpers on arbitrary cells: `parse`
//! (with each default framework), `complete` and `inspect` at a cursor
//! taken from the input, and `is_complete`. None may panic; cursor offsets
//! stay within the cell.
#![no_main]

use ciao::frameworks::Frameworks;
use ciao::interpreter;
use libfuzzer_sys::fuzz_target;

const DEFAULTS: [&str; 3] = ["python", "tensorflow", "trainjob"];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    let code = String::from_utf8_lossy(rest);
    let frameworks = Frameworks::embedded();
    let _ = interpreter::parse(&code, frameworks, DEFAULTS[usize::from(selector) % DEFAULTS.len()]);
    let _ = interpreter::is_complete(&code);
    let chars = code.chars().count();
    // The cursor: anywhere in the cell, or past its end (clients send that too).
    let cursor = if chars == 0 { 0 } else { usize::from(selector) * 7 % (chars + 2) };
    let c = interpreter::complete(&code, cursor, frameworks);
    assert!(c.cursor_start <= c.cursor_end, "completion range {}..{}", c.cursor_start, c.cursor_end);
    assert!(c.cursor_end <= chars.max(cursor), "completion ends at {} past the cell ({chars})", c.cursor_end);
    let _ = interpreter::inspect(&code, cursor, frameworks);
});
