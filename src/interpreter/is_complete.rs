//! is_complete: whether a cell can run as typed, for consoles that decide
//! between running the cell and inserting a new line.
//!
//! Python lines follow IPython's rules: an open bracket, a triple-quoted
//! string, a trailing `\` or `:`, or an indented block not yet closed by a
//! blank line make the cell incomplete; a closing bracket that closes nothing
//! or an unterminated short string make it invalid. Magic lines cannot
//! continue on the next line, so they are complete as soon as they are
//! typed (mistakes are reported when the cell runs), except a magic line
//! ending in `=`, which is invalid: nothing typed on later lines can give
//! it a value.

use super::lines::{self, Kind};
use super::pyscan::{LineEnd, PyState};

/// An is_complete_reply's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IsComplete {
    /// Ready to run (including cells whose magics are wrong: running reports why).
    Complete,
    /// More input is needed; `indent` is the suggested indentation of the next line.
    Incomplete { indent: String },
    /// Cannot become valid by adding lines.
    Invalid,
}

fn leading_ws(s: &str) -> &str {
    &s[..s.len() - s.trim_start().len()]
}

/// Whether `code` is ready to run.
pub fn is_complete(code: &str) -> IsComplete {
    let lines = lines::split(code);
    let Some(last) = lines.iter().rposition(|l| !l.text.trim().is_empty()) else {
        return IsComplete::Complete;
    };
    let mut state = PyState::default();
    // The indentation of the last logical line's first physical line, and its end.
    let mut logical_indent = "";
    let mut end = LineEnd::default();
    for line in &lines[..=last] {
        if let Kind::Code = line.kind {
            let continues = state.in_string() || state.open_brackets() > 0 || end.backslash;
            if !continues && !line.text.trim().is_empty() {
                logical_indent = leading_ws(line.text);
            }
            end = state.scan_line(line.text);
            if state.unbalanced {
                return IsComplete::Invalid;
            }
        }
    }
    if state.in_string() {
        return IsComplete::Incomplete { indent: String::new() };
    }
    if state.unterminated {
        return IsComplete::Invalid;
    }
    if state.open_brackets() > 0 {
        return IsComplete::Incomplete { indent: logical_indent.to_string() };
    }
    let last_line = &lines[last];
    if last_line.is_magic() {
        return if matches!(last_line.kind, Kind::Magics(_)) && last_line.text.trim_end().ends_with('=') {
            IsComplete::Invalid
        } else {
            IsComplete::Complete
        };
    }
    if end.backslash {
        return IsComplete::Incomplete { indent: logical_indent.to_string() };
    }
    if end.last == Some(':') {
        return IsComplete::Incomplete { indent: format!("{logical_indent}    ") };
    }
    let ends_with_blank_line = last + 1 < lines.len() && lines[last + 1..].iter().all(|l| l.text.trim().is_empty());
    if !logical_indent.is_empty() && !ends_with_blank_line {
        return IsComplete::Incomplete { indent: logical_indent.to_string() };
    }
    IsComplete::Complete
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incomplete(indent: &str) -> IsComplete {
        IsComplete::Incomplete { indent: indent.into() }
    }

    #[test]
    fn empty_and_simple_cells_are_complete() {
        for code in ["", "   \n\n", "x = 1", "print('a')\n", "import tensorflow as tf\nprint(tf)", "x = {'a': (1, [2])}"] {
            assert_eq!(is_complete(code), IsComplete::Complete, "{code:?}");
        }
    }

    #[test]
    fn open_brackets_need_more_lines() {
        assert_eq!(is_complete("x = (1,"), incomplete(""));
        assert_eq!(is_complete("def f():\n    y = [1,\n         2,"), incomplete("    "));
        assert_eq!(is_complete("d = {'k': ("), incomplete(""));
        assert_eq!(is_complete("s = '(' + \"[\"  # {"), IsComplete::Complete, "brackets in strings and comments");
    }

    #[test]
    fn a_trailing_colon_indents_four_more() {
        assert_eq!(is_complete("for i in range(3):"), incomplete("    "));
        assert_eq!(is_complete("if x:\n    while y:  # loop"), incomplete("        "));
        assert_eq!(is_complete("\tif x:"), incomplete("\t    "));
        assert_eq!(is_complete("d = {'a': 1}"), IsComplete::Complete);
    }

    #[test]
    fn a_trailing_backslash_continues() {
        assert_eq!(is_complete("x = 1 + \\"), incomplete(""));
        assert_eq!(is_complete("x = 1 # \\"), IsComplete::Complete, "a backslash in a comment");
    }

    #[test]
    fn an_open_triple_quoted_string_needs_more_lines() {
        assert_eq!(is_complete("s = \"\"\"doc"), incomplete(""));
        assert_eq!(is_complete("s = '''\n%worker=2"), incomplete(""), "the % line is inside the string");
        assert_eq!(is_complete("s = '''a\nb'''"), IsComplete::Complete);
    }

    #[test]
    fn an_indented_block_completes_with_a_blank_line() {
        assert_eq!(is_complete("for i in x:\n    print(i)"), incomplete("    "));
        assert_eq!(is_complete("for i in x:\n    print(i)\n"), IsComplete::Complete);
        assert_eq!(is_complete("for i in x:\n    print(i)\n\n"), IsComplete::Complete);
        assert_eq!(is_complete("for i in x:\n    print(i)\nprint('done')"), IsComplete::Complete);
        assert_eq!(is_complete("x = f(1,\n      2)"), IsComplete::Complete, "a continuation line is not a block");
    }

    #[test]
    fn unbalanced_closers_and_unterminated_strings_are_invalid() {
        assert_eq!(is_complete(")"), IsComplete::Invalid);
        assert_eq!(is_complete("x = [1, 2)"), IsComplete::Invalid);
        assert_eq!(is_complete("x = 1)\ny = ("), IsComplete::Invalid);
        assert_eq!(is_complete("s = 'abc"), IsComplete::Invalid);
    }

    #[test]
    fn magic_lines_are_complete_unless_they_end_in_equals() {
        assert_eq!(is_complete("%framework=tensorflow\n%worker=2;%cpu=1"), IsComplete::Complete);
        assert_eq!(is_complete("%worker=2;"), IsComplete::Complete, "a trailing ; is accepted by the parser");
        assert_eq!(is_complete("%wroker=2"), IsComplete::Complete, "mistakes are reported on execute");
        assert_eq!(is_complete("%jobs"), IsComplete::Complete);
        assert_eq!(is_complete("%%bash"), IsComplete::Complete);
        assert_eq!(is_complete("%worker="), IsComplete::Invalid);
        assert_eq!(is_complete("%worker=2;%cpu= "), IsComplete::Invalid);
        assert_eq!(is_complete("%framework=pytorch\nfor i in x:"), incomplete("    "));
        assert_eq!(is_complete("for i in x:\n    pass\n%dryrun"), IsComplete::Complete);
    }
}
