//! Completion and inspection of magics, driven by the magic table.
//!
//! Jupyter counts cursor positions in Unicode code points; the cell is
//! handled in bytes, so positions are converted at the edges.

use crate::frameworks::{Descriptor, Frameworks};
use crate::output::MimeBundle;

use super::help;
use super::lines::{self, Form, Item, Kind, Line, RawMagic};
use super::magics::{self, Action, MAGICS, MagicSpec, Values};

/// A complete_reply's content. Offsets are in Unicode code points.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Completion {
    /// Replacement texts, in table order.
    pub matches: Vec<String>,
    /// Start of the text the matches replace.
    pub cursor_start: usize,
    /// End of the text the matches replace.
    pub cursor_end: usize,
}

/// The byte offset of code point `pos` (the end of `s` when past it).
fn byte_at(s: &str, pos: usize) -> usize {
    s.char_indices().nth(pos).map_or(s.len(), |(i, _)| i)
}

/// The code point offset of byte `at` (a char boundary).
fn char_at(s: &str, at: usize) -> usize {
    s.get(..at).map_or_else(|| s.chars().count(), |p| p.chars().count())
}

/// The magic item under a cursor.
struct Spot<'a> {
    lines: Vec<Line<'a>>,
    line: usize,
    /// Position of the item on its line.
    item: usize,
    raw: RawMagic<'a>,
    /// Cursor's byte offset within the line.
    col: usize,
}

impl<'a> Spot<'a> {
    /// The item of a magic line whose span holds the cursor (its end included).
    fn find(code: &'a str, cursor: usize) -> Option<Spot<'a>> {
        let lines = lines::split(code);
        let line = lines.iter().rposition(|l| l.offset <= cursor)?;
        let col = cursor - lines[line].offset;
        let Kind::Magics(items) = &lines[line].kind else { return None };
        let item = items.iter().position(|m| m.span.start <= col && col <= m.span.end)?;
        let raw = items[item].clone();
        Some(Spot { lines, line, item, raw, col })
    }

    fn line(&self) -> &Line<'a> {
        &self.lines[self.line]
    }

    /// The framework the cell names with a valid `%framework=`, if any.
    fn framework<'f>(&self, frameworks: &'f Frameworks) -> Option<&'f Descriptor> {
        cell_framework(&self.lines, frameworks)
    }
}

fn cell_framework<'f>(lines: &[Line<'_>], frameworks: &'f Frameworks) -> Option<&'f Descriptor> {
    lines
        .iter()
        .filter_map(|l| match &l.kind {
            Kind::Magics(items) => Some(items),
            _ => None,
        })
        .flatten()
        .find_map(|m| match &m.item {
            Item::Magic { name: "framework", form: Form::Value { value, .. }, .. } => {
                frameworks.get(&value.to_ascii_lowercase())
            }
            _ => None,
        })
}

/// Completions at `cursor_pos` (code points): magic names after `%` at the
/// start of a line or after `;`, and values of magics with known values.
pub fn complete(code: &str, cursor_pos: usize, frameworks: &Frameworks) -> Completion {
    let cursor = byte_at(code, cursor_pos);
    let here = char_at(code, cursor);
    let none = Completion { matches: Vec::new(), cursor_start: here, cursor_end: here };
    let Some(spot) = Spot::find(code, cursor) else { return none };
    let line = spot.line();
    let raw = &spot.raw;
    let effective = spot.framework(frameworks);
    // (replace from, replace to, matches), bytes within the line.
    let found = match &raw.item {
        Item::NoName if spot.col == raw.span.start + 1 => {
            Some((raw.span.start, spot.col, names("", spot.item == 0, frameworks, effective)))
        }
        Item::Magic { name_span, form, .. } if spot.col <= name_span.end => {
            let typed = line.text.get(name_span.start..spot.col).unwrap_or("");
            let mut end = name_span.end;
            if let Form::Value { .. } = form {
                if let Some(eq) = line.text.get(end..).and_then(|r| r.find('=')) {
                    end += eq + 1;
                }
            }
            Some((raw.span.start, end, names(typed, spot.item == 0, frameworks, effective)))
        }
        Item::Magic { name, form: Form::Value { value, value_start }, .. } if spot.col >= *value_start => {
            let spec = magics::lookup(name, frameworks);
            spec.and_then(|s| values(s, line.text, *value_start, value.len(), spot.col, frameworks, effective))
        }
        _ => None,
    };
    match found {
        Some((from, to, matches)) if !matches.is_empty() => Completion {
            matches,
            cursor_start: char_at(code, line.offset + from),
            cursor_end: char_at(code, line.offset + to),
        },
        _ => none,
    }
}

/// Magic names starting with `typed` (case ignored), as they are inserted.
/// The first magic of a line may be anything; after a `;` only settings,
/// resources and flags.
fn names(typed: &str, first: bool, frameworks: &Frameworks, effective: Option<&Descriptor>) -> Vec<String> {
    let typed = typed.to_ascii_lowercase();
    let fits = |n: &str| n.to_ascii_lowercase().starts_with(&typed);
    let mut out = Vec::new();
    for spec in MAGICS {
        match spec.action {
            Action::Role if first => {
                for role in spec.allowed_values(frameworks, effective) {
                    if fits(&role) {
                        out.push(spec.insert_text(Some(&role)));
                    }
                }
            }
            Action::Role | Action::Command(_) | Action::Module if !first => {}
            _ if fits(spec.name) => out.push(spec.insert_text(None)),
            _ => {}
        }
    }
    out
}

/// Values of `spec` for the value token under the cursor.
fn values(
    spec: &MagicSpec,
    text: &str,
    value_start: usize,
    value_len: usize,
    col: usize,
    frameworks: &Frameworks,
    effective: Option<&Descriptor>,
) -> Option<(usize, usize, Vec<String>)> {
    let typed = text.get(value_start..col)?;
    let (start, typed) = match spec.values {
        Values::Any | Values::Roles => return None,
        Values::AfterColon(_) => {
            let colon = typed.rfind(':')?;
            (value_start + colon + 1, &typed[colon + 1..])
        }
        Values::Fixed(_) | Values::Frameworks => (value_start, typed),
    };
    let lower = typed.trim_start().to_ascii_lowercase();
    let matches = spec
        .allowed_values(frameworks, effective)
        .into_iter()
        .filter(|v| v.to_ascii_lowercase().starts_with(&lower))
        .collect();
    Some((start, (value_start + value_len).max(col), matches))
}

/// Documentation of the magic under the cursor, or `None` off magics.
pub fn inspect(code: &str, cursor_pos: usize, frameworks: &Frameworks) -> Option<MimeBundle> {
    let spot = Spot::find(code, byte_at(code, cursor_pos))?;
    let name = spot.raw.name()?;
    let spec = magics::lookup(name, frameworks)?;
    let effective = spot.framework(frameworks);
    Some(help::magic_doc(spec, spec.is_role().then_some(name), frameworks, effective))
}

#[cfg(test)]
mod tests;
