//! The magics reference rendered from the table: `%help` (text and HTML),
//! the README's Markdown, and one magic's documentation for inspection.

use std::fmt::Write as _;

use crate::frameworks::{Descriptor, Frameworks};
use crate::output::{MimeBundle, bundle};
use crate::plan::escape;

use super::magics::{Group, MAGICS, MagicSpec, Values};

const INTRO: &str = "Magics are lines that start with % at column 0 (not inside a triple-quoted string); several \
     on one line are separated by ';', so values cannot contain ';'. A role (e.g. %worker=2) is the first magic of its \
     line and the %cpu, %memory and %gpu after it are that role's resources. Magic lines are blanked in the code that \
     ships, so line numbers in tracebacks match the cell.";

fn roles_text(d: &Descriptor) -> String {
    if d.is_roleless() {
        return "none (resources on a line of their own)".into();
    }
    d.job.roles.iter().map(|r| format!("%{}=N ({}, default {})", r.magic, r.replica_type, r.replicas)).collect::<Vec<_>>().join(", ")
}

fn values_line(spec: &MagicSpec, frameworks: &Frameworks) -> Option<String> {
    match spec.values {
        Values::Frameworks => Some(format!("values: {}", frameworks.names().collect::<Vec<_>>().join(", "))),
        Values::Roles => Some(format!("roles: {}", frameworks.role_magics().join(", "))),
        Values::Fixed(_) | Values::AfterColon(_) | Values::Any => None,
    }
}

fn extra(spec: &MagicSpec) -> &'static str {
    if spec.repeatable { " Repeatable." } else { "" }
}

/// The magics reference, as text and HTML (`%help`).
pub fn help_bundle(frameworks: &Frameworks) -> MimeBundle {
    let mut text = format!("ciao magics\n\n{INTRO}\n");
    let mut html = format!("<div class=\"ciao-help\"><p><b>ciao magics</b></p><p>{}</p>", escape(INTRO));
    for group in Group::ALL {
        let _ = write!(text, "\n{}\n", group.title());
        let _ = write!(
            html,
            "<h4>{}</h4><table><thead><tr><th>magic</th><th>what it does</th><th>example</th></tr></thead><tbody>",
            escape(group.title())
        );
        for spec in MAGICS.iter().filter(|m| m.group == group) {
            let _ = writeln!(text, "  {:<34} {}{}", spec.syntax, spec.help, extra(spec));
            let values = values_line(spec, frameworks);
            if let Some(v) = &values {
                let _ = writeln!(text, "  {:<34} {v}", "");
            }
            let _ = writeln!(text, "  {:<34} e.g. {}", "", spec.example);
            let _ = write!(
                html,
                "<tr><td><code>{}</code></td><td>{}{}{}</td><td><code>{}</code></td></tr>",
                escape(spec.syntax),
                escape(spec.help),
                extra(spec),
                values.map(|v| format!("<br>{}", escape(&v))).unwrap_or_default(),
                escape(spec.example)
            );
        }
        html.push_str("</tbody></table>");
    }
    text.push_str("\nFrameworks\n");
    html.push_str(
        "<h4>Frameworks</h4><table><thead><tr><th>%framework=</th><th>job</th><th>roles</th></tr></thead><tbody>",
    );
    for d in frameworks.iter() {
        let _ = writeln!(text, "  {:<12} {}\n  {:<12} roles: {}", d.name, d.summary, "", roles_text(d));
        let _ = write!(
            html,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
            escape(&d.name),
            escape(&d.summary),
            escape(&roles_text(d))
        );
    }
    html.push_str("</tbody></table></div>");
    bundle(text, Some(html))
}

/// A Markdown table cell: `|` escaped, no line breaks.
fn md(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// The magics reference as Markdown tables (for the README).
pub fn help_markdown(frameworks: &Frameworks) -> String {
    let mut out = format!("{INTRO}\n");
    for group in Group::ALL {
        let _ = write!(out, "\n### {}\n\n| Magic | What it does | Example |\n|---|---|---|\n", group.title());
        for spec in MAGICS.iter().filter(|m| m.group == group) {
            let values = values_line(spec, frameworks).map(|v| format!(" ({v})")).unwrap_or_default();
            let _ = writeln!(
                out,
                "| `{}` | {}{}{} | `{}` |",
                md(spec.syntax),
                md(spec.help),
                extra(spec),
                md(&values),
                md(spec.example)
            );
        }
    }
    out.push_str("\n### Frameworks\n\n| `%framework=` | Job | Roles |\n|---|---|---|\n");
    for d in frameworks.iter() {
        let _ = writeln!(out, "| `{}` | {} | {} |", md(&d.name), md(&d.summary), md(&roles_text(d)));
    }
    out
}

/// `%help NAME`: the documentation of magic `%NAME` (a role magic is
/// described for the default framework's roles), or an error naming the
/// nearest magic.
///
/// # Errors
/// When no magic is called `name`.
pub fn magic_help(name: &str, frameworks: &Frameworks) -> Result<MimeBundle, String> {
    match super::magics::lookup(name, frameworks) {
        Some(spec) => Ok(magic_doc(spec, spec.is_role().then_some(name), frameworks, None)),
        None => Err(match super::magics::nearest(name, super::magics::all_names(frameworks).into_iter()) {
            Some(near) => format!("%help: no magic is called %{name}; did you mean %{near}? (%help alone lists them)"),
            None => format!("%help: no magic is called %{name}; %help alone lists them"),
        }),
    }
}

/// One magic's documentation for inspection: text/plain and text/markdown.
///
/// `role` is the role magic under the cursor (for the role row) and
/// `effective` the cell's framework, when the cell names one.
pub(crate) fn magic_doc(
    spec: &MagicSpec,
    role: Option<&str>,
    frameworks: &Frameworks,
    effective: Option<&Descriptor>,
) -> MimeBundle {
    let syntax = match role {
        Some(r) if spec.is_role() => spec.syntax.replace("ROLE", r),
        _ => spec.syntax.to_string(),
    };
    let mut lines: Vec<String> = vec![spec.help.to_string() + extra(spec)];
    match (spec.values, role) {
        (Values::Frameworks, _) => {
            lines.push("Frameworks:".into());
            lines.extend(frameworks.iter().map(|d| format!("  {:<12} {}", d.name, d.summary)));
        }
        (Values::Roles, Some(role)) => match effective {
            Some(d) => {
                match d.role(role) {
                    Some(r) => lines.push(format!(
                        "The {role} role of {}: replica type {}, {} replica(s) when not given.",
                        d.name, r.replica_type, r.replicas
                    )),
                    None => lines.push(format!("{} has no {role} role.", d.name)),
                }
                lines.push(format!("Roles of {}: {}", d.name, roles_text(d)));
            }
            None => {
                let with: Vec<String> = frameworks
                    .iter()
                    .filter_map(|d| d.role(role).map(|r| format!("{} ({}, default {})", d.name, r.replica_type, r.replicas)))
                    .collect();
                lines.push(format!("Frameworks with a {role} role: {}", with.join(", ")));
            }
        },
        (Values::Fixed(v) | Values::AfterColon(v), _) => lines.push(format!("Values: {}", v.join(", "))),
        _ => {}
    }
    lines.push(format!("Example: {}", spec.example));
    let text = format!("{syntax}\n\n{}", lines.join("\n"));
    let markdown = format!("`{syntax}`\n\n{}", lines.iter().map(|l| l.trim_start().to_string()).collect::<Vec<_>>().join("\n\n"));
    let mut b = bundle(text, None);
    b.insert("text/markdown".into(), markdown.into());
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_lists_every_magic_and_every_framework_with_its_roles() {
        let f = Frameworks::embedded();
        let b = help_bundle(f);
        let text = b["text/plain"].as_str().unwrap();
        let html = b["text/html"].as_str().unwrap();
        for spec in MAGICS {
            assert!(text.contains(spec.syntax), "{}", spec.syntax);
            assert!(html.contains(&escape(spec.syntax)), "{}", spec.syntax);
        }
        for d in f.iter() {
            assert!(text.contains(&d.summary) && html.contains(&escape(&d.summary)), "{}", d.name);
        }
        assert!(text.contains("%ps=N (PS, default 0)"), "roles come from the descriptors");
        assert!(text.contains("values: jax, mpi, paddle, python, pytorch, tensorflow, trainjob, xgboost"));
    }

    #[test]
    fn markdown_tables_escape_pipes() {
        let md = help_markdown(Frameworks::embedded());
        assert!(md.contains("| `%cleanPolicy=all\\|running\\|none` |"), "{md}");
        assert!(md.contains("### Frameworks"));
        assert!(md.contains("| `pytorch` | PyTorch distributed training (PyTorchJob) | %master=N (Master, default 1), %worker=N (Worker, default 0) |"));
        for line in md.lines().filter(|l| l.starts_with("| `%")) {
            let cells = line.replace("\\|", "").matches('|').count();
            assert_eq!(cells, 4, "three columns: {line}");
        }
    }
}
