//! Just enough of Python's lexical structure, line by line: string literals
//! (single- and triple-quoted, with escapes), comments, brackets and
//! backslash continuations. The magic splitter uses it to know whether a line
//! is inside a triple-quoted string; `is_complete` uses all of it.

/// A string literal left open at the end of a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct OpenString {
    quote: char,
    triple: bool,
}

/// Lexical state carried from one line to the next.
#[derive(Debug, Clone, Default)]
pub(crate) struct PyState {
    open: Option<OpenString>,
    brackets: Vec<char>,
    /// A closing bracket matched nothing or the wrong opener.
    pub unbalanced: bool,
    /// A single-quoted string ended at a line end without a backslash.
    pub unterminated: bool,
}

/// What the end of one scanned line looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct LineEnd {
    /// The last character outside strings and comments that is not whitespace.
    pub last: Option<char>,
    /// The line ends with a backslash (an explicit continuation).
    pub backslash: bool,
}

impl PyState {
    /// Whether the next line starts inside a string literal.
    pub fn in_string(&self) -> bool {
        self.open.is_some()
    }

    /// Whether the next line starts inside a triple-quoted string.
    #[cfg(test)]
    pub fn in_triple_string(&self) -> bool {
        self.open.is_some_and(|o| o.triple)
    }

    /// Brackets opened and not closed yet.
    pub fn open_brackets(&self) -> usize {
        self.brackets.len()
    }

    /// Scans one line (without its line terminator) and updates the state.
    pub fn scan_line(&mut self, line: &str) -> LineEnd {
        let chars: Vec<char> = line.chars().collect();
        let n = chars.len();
        let mut end = LineEnd::default();
        let mut i = 0;
        while i < n {
            let c = chars[i];
            if let Some(open) = self.open {
                if c == '\\' {
                    if i + 1 == n {
                        end.backslash = true;
                    }
                    i += 2;
                    continue;
                }
                if c == open.quote {
                    if !open.triple {
                        self.open = None;
                        end.last = Some(c);
                        i += 1;
                        continue;
                    }
                    if i + 2 < n && chars[i + 1] == c && chars[i + 2] == c {
                        self.open = None;
                        end.last = Some(c);
                        i += 3;
                        continue;
                    }
                }
                i += 1;
                continue;
            }
            match c {
                '#' => break,
                '"' | '\'' => {
                    let triple = i + 2 < n && chars[i + 1] == c && chars[i + 2] == c;
                    self.open = Some(OpenString { quote: c, triple });
                    i += if triple { 3 } else { 1 };
                    end.last = Some(c);
                    continue;
                }
                '(' | '[' | '{' => self.brackets.push(c),
                ')' | ']' | '}' => {
                    let want = match c {
                        ')' => '(',
                        ']' => '[',
                        _ => '{',
                    };
                    if self.brackets.pop() != Some(want) {
                        self.unbalanced = true;
                    }
                }
                '\\' if i + 1 == n => end.backslash = true,
                _ => {}
            }
            if !c.is_whitespace() {
                end.last = Some(c);
            }
            i += 1;
        }
        if self.open.is_some_and(|o| !o.triple) && !end.backslash {
            self.unterminated = true;
            self.open = None;
        }
        end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(lines: &[&str]) -> (PyState, LineEnd) {
        let mut s = PyState::default();
        let mut end = LineEnd::default();
        for l in lines {
            end = s.scan_line(l);
        }
        (s, end)
    }

    #[test]
    fn triple_quoted_strings_open_and_close_across_lines() {
        let (s, _) = scan(&["x = \"\"\"doc"]);
        assert!(s.in_triple_string());
        let (s, _) = scan(&["x = \"\"\"doc", "%worker=2", "\"\"\""]);
        assert!(!s.in_string());
        let (s, _) = scan(&["x = '''a''' + '''b"]);
        assert!(s.in_triple_string());
        let (s, _) = scan(&["x = \"\"\"a\"\"\"  # '''"]);
        assert!(!s.in_string(), "a triple quote in a comment opens nothing");
        let (s, _) = scan(&["s = \"'''\""]);
        assert!(!s.in_string(), "a triple quote inside a short string opens nothing");
        let (s, _) = scan(&["'''", "it\\'''s", "'''"]);
        assert!(!s.in_string(), "an escaped quote does not close");
    }

    #[test]
    fn brackets_are_counted_outside_strings_and_comments() {
        let (s, end) = scan(&["f(a, [1, '(' ,", "  2  # )"]);
        assert_eq!(s.open_brackets(), 2);
        assert_eq!(end.last, Some('2'));
        let (s, _) = scan(&["f(a]"]);
        assert!(s.unbalanced);
        let (s, _) = scan(&[")"]);
        assert!(s.unbalanced);
    }

    #[test]
    fn line_ends_report_colon_and_backslash() {
        assert_eq!(scan(&["if x:  # why"]).1.last, Some(':'));
        assert!(scan(&["x = 1 + \\"]).1.backslash);
        let (s, end) = scan(&["s = 'abc\\"]);
        assert!(end.backslash && s.in_string() && !s.unterminated);
        let (s, _) = scan(&["s = 'abc"]);
        assert!(s.unterminated && !s.in_string());
    }
}
