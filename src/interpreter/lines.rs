//! Stage 1: a cell's lines, classified, with magic lines split into raw
//! magics. Pure: it knows neither the magic table nor the frameworks, so
//! parsing, completion and inspection can all share it.
//!
//! A magic line starts with `%` at column 0 outside any string literal
//! (a `%` line inside a triple-quoted string is code). Its magics are
//! separated by `;`; each is `%name`, `%name=value` or `%name args`.

use std::ops::Range;

use super::pyscan::PyState;

/// One line of the cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Line<'a> {
    /// 1-based.
    pub number: usize,
    /// Byte offset of the line in the cell.
    pub offset: usize,
    /// The line without its terminator (`\n`, and a `\r` before it).
    pub text: &'a str,
    pub kind: Kind<'a>,
}

/// What a line is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind<'a> {
    /// Python, or text inside a string literal.
    Code,
    /// `%…` magics separated by `;`.
    Magics(Vec<RawMagic<'a>>),
    /// `%%name …`: an IPython cell magic.
    CellMagic(&'a str),
    /// `!command`: an IPython shell escape.
    Shell,
}

/// One `;`-separated item of a magic line, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawMagic<'a> {
    /// Byte range of the item in the line, surrounding spaces excluded.
    pub span: Range<usize>,
    pub item: Item<'a>,
}

/// The shape of an item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Item<'a> {
    /// `%name`, `%name=value`, `%name args`.
    Magic { name: &'a str, name_span: Range<usize>, form: Form<'a> },
    /// Nothing between two `;`.
    Empty,
    /// Text not starting with `%` after a `;`.
    NoPercent(&'a str),
    /// `%` not followed by a name.
    NoName,
}

/// What follows a magic's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Form<'a> {
    /// Nothing (`%dryrun`, `%jobs`).
    Bare,
    /// `=value`, trimmed; `value_start` is its byte offset in the line.
    Value { value: &'a str, value_start: usize },
    /// Space-separated arguments (`%logs NAME --follow`, `%pip install x`).
    Args(&'a str),
    /// Anything else right after the name (`%worker:2`).
    Other(&'a str),
}

impl<'a> RawMagic<'a> {
    /// The magic's name, if the item has one.
    pub fn name(&self) -> Option<&'a str> {
        match &self.item {
            Item::Magic { name, .. } => Some(name),
            _ => None,
        }
    }
}

impl Line<'_> {
    /// Blank, or only a comment.
    pub fn is_blank_or_comment(&self) -> bool {
        let t = self.text.trim_start();
        t.is_empty() || t.starts_with('#')
    }

    /// Whether this line holds magics (or `%%`/`!` lines, which are blanked too).
    pub fn is_magic(&self) -> bool {
        !matches!(self.kind, Kind::Code)
    }
}

/// Splits a cell into classified lines.
pub(crate) fn split(code: &str) -> Vec<Line<'_>> {
    let mut state = PyState::default();
    let mut lines = Vec::new();
    let mut offset = 0;
    for (i, raw) in code.split('\n').enumerate() {
        let text = raw.strip_suffix('\r').unwrap_or(raw);
        let kind = if state.in_string() {
            state.scan_line(text);
            Kind::Code
        } else if let Some(rest) = text.strip_prefix("%%") {
            Kind::CellMagic(name_prefix(rest))
        } else if text.starts_with('%') {
            Kind::Magics(split_magics(text))
        } else if text.starts_with('!') {
            Kind::Shell
        } else {
            state.scan_line(text);
            Kind::Code
        };
        lines.push(Line { number: i + 1, offset, text, kind });
        offset += raw.len() + 1;
    }
    lines
}

/// The leading `[A-Za-z0-9_]*` of `s`.
fn name_prefix(s: &str) -> &str {
    let end = s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(s.len());
    &s[..end]
}

/// Splits a magic line on `;`. A trailing `;` is allowed.
pub(crate) fn split_magics(line: &str) -> Vec<RawMagic<'_>> {
    let mut items = Vec::new();
    let mut start = 0;
    let pieces: Vec<&str> = line.split(';').collect();
    let count = pieces.len();
    for (i, piece) in pieces.into_iter().enumerate() {
        let lead = piece.len() - piece.trim_start().len();
        let body = piece.trim();
        let span = start + lead..start + lead + body.len();
        let last = i + 1 == count;
        if !(body.is_empty() && last && i > 0) {
            items.push(RawMagic { span: span.clone(), item: item(body, span.start) });
        }
        start += piece.len() + 1;
    }
    items
}

/// One trimmed item starting at byte `at` of the line.
fn item(body: &str, at: usize) -> Item<'_> {
    if body.is_empty() {
        return Item::Empty;
    }
    let Some(after) = body.strip_prefix('%') else {
        return Item::NoPercent(body);
    };
    let name = name_prefix(after);
    if name.is_empty() {
        return Item::NoName;
    }
    let name_span = at + 1..at + 1 + name.len();
    let rest = &after[name.len()..];
    let trimmed = rest.trim_start();
    let form = if trimmed.is_empty() {
        Form::Bare
    } else if let Some(v) = trimmed.strip_prefix('=') {
        let value = v.trim();
        let value_start = name_span.end + (rest.len() - trimmed.len()) + 1 + (v.len() - v.trim_start().len());
        Form::Value { value, value_start }
    } else if rest.len() != trimmed.len() {
        Form::Args(trimmed)
    } else {
        Form::Other(rest)
    };
    Item::Magic { name, name_span, form }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn magic(name: &'static str, form: Form<'static>) -> (Option<&'static str>, Form<'static>) {
        (Some(name), form)
    }

    fn shapes(line: &str) -> Vec<(Option<&str>, Form<'_>)> {
        split_magics(line)
            .into_iter()
            .map(|m| match m.item {
                Item::Magic { name, form, .. } => (Some(name), form),
                _ => (None, Form::Bare),
            })
            .collect()
    }

    #[test]
    fn a_role_line_splits_into_three_magics_with_spans() {
        let items = split_magics("%worker=2;%cpu=1;%memory=2Gi");
        assert_eq!(items.len(), 3);
        assert_eq!(items[1].span, 10..16);
        let Item::Magic { name, name_span, form } = &items[2].item else { panic!() };
        assert_eq!((*name, name_span.clone()), ("memory", 18..24));
        assert_eq!(*form, Form::Value { value: "2Gi", value_start: 25 });
    }

    #[test]
    fn spaces_around_separators_are_tolerated() {
        let items = split_magics("%worker = 2 ; %cpu= 1 ;");
        assert_eq!(items.len(), 2, "a trailing ; adds nothing");
        let Item::Magic { form: Form::Value { value, value_start }, .. } = &items[0].item else { panic!() };
        assert_eq!((*value, *value_start), ("2", 10));
        assert_eq!(&"%worker = 2 ; %cpu= 1 ;"[10..11], "2");
    }

    #[test]
    fn forms_are_told_apart() {
        assert_eq!(
            shapes("%dryrun;%logs job-1 --follow;%worker:2;%env=A=b=c"),
            vec![
                magic("dryrun", Form::Bare),
                magic("logs", Form::Args("job-1 --follow")),
                magic("worker", Form::Other(":2")),
                magic("env", Form::Value { value: "A=b=c", value_start: 44 }),
            ]
        );
        let items = split_magics("%;;cpu=1;% x");
        assert_eq!(items[0].item, Item::NoName);
        assert_eq!(items[1].item, Item::Empty);
        assert_eq!(items[2].item, Item::NoPercent("cpu=1"));
        assert_eq!(items[3].item, Item::NoName);
    }

    #[test]
    fn percent_lines_inside_triple_quoted_strings_are_code() {
        let code = "s = \"\"\"\n%worker=2\n\"\"\"\n%worker=3\n  %cpu=1";
        let kinds: Vec<_> = split(code).into_iter().map(|l| l.is_magic()).collect();
        assert_eq!(kinds, [false, false, false, true, false]);
    }

    #[test]
    fn cell_magics_and_shell_escapes_are_recognised() {
        let lines = split("%%bash\n!pip install x\nx = 1 % 2\n");
        assert_eq!(lines[0].kind, Kind::CellMagic("bash"));
        assert_eq!(lines[1].kind, Kind::Shell);
        assert_eq!(lines[2].kind, Kind::Code);
        assert_eq!(lines.len(), 4);
    }

    #[test]
    fn offsets_and_crlf_line_ends() {
        let lines = split("%cpu=1\r\nprint(1)\r\n");
        assert_eq!(lines[0].text, "%cpu=1");
        assert_eq!(lines[1].offset, 8);
        assert_eq!(lines[1].text, "print(1)");
    }
}
