//! Stage 2: raw magics → a validated [`Cell`].
//!
//! The lines come from [`super::lines::split`]; every magic is looked up in
//! the table and applied by its row's action. Checks that need the whole cell
//! (the effective framework's roles, resources placed before a role,
//! TrainJob-only magics) run at the end, and the earliest failing line wins.

use std::collections::HashMap;

use crate::frameworks::{Descriptor, Frameworks, JobShape};
use crate::output::CellError;

use super::apply::{self, Builder};
use super::habits;
use super::lines::{self, Form, Item, Kind, Line, RawMagic};
use super::magics::{self, Action, MagicSpec, ValueKind};
use super::params::{Cell, JobCell, JobCommand, JobParams, RoleParams};
use super::validate;

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
///
/// # Errors
/// The first mistake in the cell's magics, with its line and the fix.
pub fn parse(code: &str, frameworks: &Frameworks, default_framework: &str) -> Result<Cell, MagicError> {
    let lines = lines::split(code);
    let mut p = Parser::new(frameworks);
    for line in &lines {
        p.line(line)?;
    }
    p.finish(code, &lines, default_framework)
}

/// Where a line is, for errors found after it was read.
#[derive(Debug, Clone)]
struct At {
    line: usize,
    text: String,
}

impl At {
    fn of(line: &Line<'_>) -> At {
        At { line: line.number, text: line.text.to_string() }
    }

    fn error(&self, message: impl Into<String>) -> MagicError {
        MagicError { line: self.line, text: self.text.clone(), message: message.into() }
    }
}

struct Parser<'f> {
    b: Builder<'f>,
    /// Non-repeatable magics already given: (role index or job, name) → (line, value).
    seen: HashMap<(Option<usize>, &'static str), (usize, String)>,
    command: Option<(At, JobCommand, &'static str)>,
    module: Option<(At, String)>,
    /// The first job magic (anything but a command or `%module=`).
    first_job_magic: Option<(At, String)>,
    /// The first resource given on a line without a role.
    loose_resource: Option<(At, &'static str)>,
    nodes: Option<At>,
    runtime: Option<At>,
    framework_line: Option<usize>,
}

impl<'f> Parser<'f> {
    fn new(frameworks: &'f Frameworks) -> Self {
        Parser {
            b: Builder { frameworks, params: JobParams::default() },
            seen: HashMap::new(),
            command: None,
            module: None,
            first_job_magic: None,
            loose_resource: None,
            nodes: None,
            runtime: None,
            framework_line: None,
        }
    }

    fn line(&mut self, line: &Line<'_>) -> Result<(), MagicError> {
        let at = At::of(line);
        match &line.kind {
            Kind::Code => Ok(()),
            Kind::Shell => Err(at.error(habits::SHELL)),
            Kind::CellMagic(name) => Err(at.error(habits::cell_magic(name))),
            Kind::Magics(items) => {
                let mut role = None;
                for (k, raw) in items.iter().enumerate() {
                    self.item(&at, raw, k, items.len(), &mut role)?;
                }
                Ok(())
            }
        }
    }

    fn item(
        &mut self,
        at: &At,
        raw: &RawMagic<'_>,
        index: usize,
        count: usize,
        role: &mut Option<usize>,
    ) -> Result<(), MagicError> {
        let (name, form) = match &raw.item {
            Item::Magic { name, form, .. } => (*name, form),
            Item::Empty => return Err(at.error("there is an empty magic between two ';': remove the extra ';'")),
            Item::NoPercent(text) => {
                return Err(at.error(format!(
                    "{text:?} follows a ';' but does not start with %: every magic starts with %, e.g. %{text}"
                )));
            }
            Item::NoName => {
                return Err(at.error("a % must be followed by a magic name, e.g. %worker=2 (%help lists the magics)"));
            }
        };
        let Some(spec) = magics::lookup(name, self.b.frameworks) else {
            return Err(at.error(unknown_magic(name, form, self.b.frameworks)));
        };
        let value = check_form(spec, name, form).map_err(|m| at.error(m))?;

        if !spec.is_command() && !matches!(spec.action, Action::Module) && self.first_job_magic.is_none() {
            self.first_job_magic = Some((at.clone(), format!("%{name}")));
        }
        match spec.action {
            Action::Role => {
                if index > 0 {
                    return Err(at.error(format!(
                        "the role %{name} must be the first magic of its line: start a new line with it, e.g. %{name}={value};%cpu=1"
                    )));
                }
                let replicas = apply::count(value)
                    .map_err(|r| at.error(format!("bad number for %{name}: {r}; write a replica count, e.g. %{name}=2")))?;
                if let Some(prev) = self.b.params.roles.iter().find(|r| r.role == name) {
                    return Err(at.error(format!(
                        "the {name} role is already given on line {}; give each role once, with its resources on the same line",
                        prev.line
                    )));
                }
                self.b.params.roles.push(RoleParams {
                    role: name.to_string(),
                    replicas,
                    resources: Default::default(),
                    line: at.line,
                });
                *role = Some(self.b.params.roles.len() - 1);
            }
            Action::Resource(set) => {
                if self.seen_before(at, spec, *role, value)? {
                    return Ok(());
                }
                let target = match *role {
                    Some(i) => &mut self.b.params.roles[i].resources,
                    None => {
                        if self.loose_resource.is_none() {
                            self.loose_resource = Some((at.clone(), spec.name));
                        }
                        &mut self.b.params.resources
                    }
                };
                set(target, value).map_err(|r| at.error(bad_value(spec, r)))?;
            }
            Action::Set(set) => {
                if !spec.repeatable && self.seen_before(at, spec, None, value)? {
                    return Ok(());
                }
                set(&mut self.b, value).map_err(|r| at.error(bad_value(spec, r)))?;
                match spec.name {
                    "framework" => self.framework_line = Some(at.line),
                    "nodes" => self.nodes = Some(at.clone()),
                    "runtime" => self.runtime = Some(at.clone()),
                    _ => {}
                }
            }
            Action::Flag(set) => set(&mut self.b.params),
            Action::Module => {
                if self.seen_before(at, spec, None, value)? {
                    return Ok(());
                }
                validate::module_name(value).map_err(|r| at.error(bad_value(spec, r)))?;
                self.module = Some((at.clone(), value.to_string()));
            }
            Action::Command(run) => {
                if count > 1 {
                    return Err(at.error(format!(
                        "%{name} is a command and goes alone on its line, in a cell of its own: remove the other magics"
                    )));
                }
                if let Some((prev, _, prev_name)) = &self.command {
                    return Err(at.error(format!(
                        "a cell holds one command, and %{prev_name} is already on line {}: put %{name} in a cell of its own",
                        prev.line
                    )));
                }
                let args: Vec<&str> = match form {
                    Form::Args(a) => a.split_whitespace().collect(),
                    _ => Vec::new(),
                };
                let cmd = run(&args).map_err(|m| at.error(m))?;
                self.command = Some((at.clone(), cmd, spec.name));
            }
        }
        Ok(())
    }

    /// For a non-repeatable magic: whether the same value was given before
    /// (then it is skipped); an error if another value was.
    fn seen_before(
        &mut self,
        at: &At,
        spec: &'static MagicSpec,
        scope: Option<usize>,
        value: &str,
    ) -> Result<bool, MagicError> {
        let norm = if spec.value == ValueKind::Choice { value.to_ascii_lowercase() } else { value.to_string() };
        match self.seen.get(&(scope, spec.name)) {
            Some((_, old)) if *old == norm => Ok(true),
            Some((line, old)) => {
                let whose = scope
                    .and_then(|i| self.b.params.roles.get(i))
                    .map(|r| format!(" for the {} role", r.role))
                    .unwrap_or_default();
                Err(at.error(format!(
                    "%{}{whose} is already {old:?} (line {line}); it is given twice with different values: keep one",
                    spec.name
                )))
            }
            None => {
                self.seen.insert((scope, spec.name), (at.line, norm));
                Ok(false)
            }
        }
    }

    fn finish(self, code: &str, lines: &[Line<'_>], default_framework: &str) -> Result<Cell, MagicError> {
        let code_lines = || lines.iter().filter(|l| !l.is_magic() && !l.is_blank_or_comment());
        if let Some((at, cmd, name)) = self.command {
            let other = self.first_job_magic.as_ref().map(|(a, _)| a.line).or(self.module.as_ref().map(|(a, _)| a.line));
            if let Some(other) = other.or_else(|| code_lines().next().map(|l| l.number)) {
                return Err(at.error(format!(
                    "%{name} is a command and goes in a cell of its own: move line {other} (code or other magics) to another cell"
                )));
            }
            return Ok(Cell::Command(cmd));
        }
        if let Some((at, name)) = self.module {
            if let Some((other, magic)) = &self.first_job_magic {
                return Err(at.error(format!(
                    "%module= keeps this cell as {name}.py and takes no other magics: move {magic} (line {}) to a job cell",
                    other.line
                )));
            }
            if code_lines().next().is_none() {
                return Err(at.error(format!("the module {name} has no code: write its code below %module={name}")));
            }
            return Ok(Cell::Module { name, code: blank_magic_lines(code, lines) });
        }

        let given = self.b.params.framework.is_some();
        let effective = self.b.params.framework.clone().unwrap_or_else(|| default_framework.to_string());
        if let Some(d) = self.b.frameworks.get(&effective) {
            let check = Checks { d, frameworks: self.b.frameworks, given };
            let mut errors: Vec<MagicError> = Vec::new();
            for r in &self.b.params.roles {
                if d.role(&r.role).is_none() {
                    let text = lines.get(r.line - 1).map(|l| l.text.to_string()).unwrap_or_default();
                    errors.push(At { line: r.line, text }.error(check.missing_role(&r.role)));
                }
            }
            if let Some((at, name)) = &self.loose_resource {
                if !d.is_roleless() {
                    errors.push(at.error(check.loose_resource(name)));
                }
            }
            for (at, name) in [(&self.nodes, "nodes"), (&self.runtime, "runtime")] {
                if let Some(at) = at {
                    if d.job.shape != JobShape::TrainJob {
                        errors.push(at.error(check.trainjob_only(name)));
                    }
                }
            }
            if let Some(e) = errors.into_iter().min_by_key(|e| e.line) {
                return Err(e);
            }
        }
        Ok(Cell::Job(Box::new(JobCell { params: self.b.params, code: blank_magic_lines(code, lines) })))
    }
}

/// Messages for checks against the effective framework.
struct Checks<'a> {
    d: &'a Descriptor,
    frameworks: &'a Frameworks,
    /// Whether the cell named the framework (else it is the default).
    given: bool,
}

impl Checks<'_> {
    fn who(&self) -> String {
        if self.given {
            self.d.name.clone()
        } else {
            format!("{} (the default framework; choose another with %framework=NAME)", self.d.name)
        }
    }

    fn roles(&self) -> String {
        self.d.job.roles.iter().map(|r| r.magic.as_str()).collect::<Vec<_>>().join(", ")
    }

    fn missing_role(&self, role: &str) -> String {
        let with: Vec<&str> = self.frameworks.iter().filter(|f| f.role(role).is_some()).map(|f| f.name.as_str()).collect();
        let others = if with.is_empty() { String::new() } else { format!("; frameworks with a {role} role: {}", with.join(", ")) };
        if self.d.is_roleless() {
            let nodes = if self.d.job.shape == JobShape::TrainJob { " (use %nodes=N for the node count)" } else { "" };
            format!(
                "{} has no roles{nodes}: put its resources on a line of their own, e.g. %cpu=1;%memory=2Gi{others}",
                self.who()
            )
        } else {
            format!("{} has no {role} role; its roles are {} (e.g. %{}=1){others}", self.who(), self.roles(), self.d.job.roles[0].magic)
        }
    }

    fn loose_resource(&self, name: &str) -> String {
        let role = self.d.job.roles.iter().find(|r| r.replicas > 0).unwrap_or(&self.d.job.roles[0]);
        format!(
            "%{name} must follow a role on the same line, e.g. %{}=2;%{name}=…: resources of {} are per role (its roles are {})",
            role.magic,
            self.who(),
            self.roles()
        )
    }

    fn trainjob_only(&self, name: &str) -> String {
        let trainjobs: Vec<&str> =
            self.frameworks.iter().filter(|f| f.job.shape == JobShape::TrainJob).map(|f| f.name.as_str()).collect();
        let instead = if self.d.is_roleless() {
            "remove it".to_string()
        } else {
            format!("set replica counts with its roles instead ({})", self.roles())
        };
        format!(
            "%{name} is only for TrainJob frameworks ({}), and this cell's framework is {}: add %framework={} or {instead}",
            trainjobs.join(", "),
            self.who(),
            trainjobs.first().copied().unwrap_or("trainjob"),
        )
    }
}

/// Checks that `form` suits `spec` and returns the value (`""` for flags and commands).
fn check_form<'v>(spec: &MagicSpec, name: &str, form: &Form<'v>) -> Result<&'v str, String> {
    let unexpected = |rest: &str, how: &str| format!("unexpected {rest:?} after %{name}: write {how}");
    match spec.action {
        Action::Command(_) => match form {
            Form::Bare | Form::Args(_) => Ok(""),
            Form::Value { .. } => Err(format!("%{name} is a command and takes no '=': write {}", spec.syntax)),
            Form::Other(rest) => Err(unexpected(rest, spec.syntax)),
        },
        Action::Flag(_) => match form {
            Form::Bare => Ok(""),
            Form::Value { .. } | Form::Args(_) => Err(format!("%{name} takes no value: write just %{name}")),
            Form::Other(rest) => Err(unexpected(rest, spec.syntax)),
        },
        Action::Set(_) | Action::Resource(_) | Action::Role | Action::Module => {
            let example = if spec.is_role() { format!("%{name}=2") } else { spec.example.to_string() };
            match form {
                Form::Value { value: "", .. } => {
                    Err(format!("%{name} needs a value after '=': write e.g. {example}"))
                }
                Form::Value { value, .. } => Ok(value),
                Form::Args(args) => Err(habits::line_magic(name, args)
                    .unwrap_or_else(|| format!("%{name} takes its value after '=': write e.g. {example}"))),
                Form::Bare => Err(habits::line_magic(name, "")
                    .unwrap_or_else(|| format!("%{name} needs a value: write e.g. {example}"))),
                Form::Other(rest) => Err(unexpected(rest, &format!("e.g. {example}"))),
            }
        }
    }
}

/// "bad value" with the reason and an example of the right form.
fn bad_value(spec: &MagicSpec, reason: String) -> String {
    let what = match spec.value {
        ValueKind::Count => "bad number",
        ValueKind::Quantity => "bad quantity",
        _ => "bad value",
    };
    format!("{what} for %{}: {reason} (e.g. {})", spec.name, spec.example)
}

fn unknown_magic(name: &str, form: &Form<'_>, frameworks: &Frameworks) -> String {
    let args = match form {
        Form::Args(a) => a,
        _ => "",
    };
    if let Some(advice) = habits::line_magic(name, args) {
        return advice;
    }
    match magics::nearest(name, magics::all_names(frameworks).into_iter()) {
        Some(near) => {
            let spec = magics::lookup(near, frameworks);
            let how = spec.map(|s| s.insert_text(Some(near))).unwrap_or_else(|| format!("%{near}"));
            format!("unknown magic %{name}: did you mean {how}? (%help lists the magics)")
        }
        None => format!("unknown magic %{name}: %help lists the magics"),
    }
}

/// The cell with every magic line made empty (a `\r` line end is kept), so
/// line numbers in tracebacks match the cell.
pub(crate) fn blank_magic_lines(code: &str, lines: &[Line<'_>]) -> String {
    let mut out = String::with_capacity(code.len());
    for (i, (raw, line)) in code.split('\n').zip(lines).enumerate() {
        if i > 0 {
            out.push('\n');
        }
        if line.is_magic() {
            if raw.ends_with('\r') {
                out.push('\r');
            }
        } else {
            out.push_str(raw);
        }
    }
    out
}

#[cfg(test)]
mod tests;
