//! The magic table: one row per magic drives parsing, completion, inspection
//! and `%help` (and the README's reference, made from [`super::help_markdown`]).
//!
//! Role magics (`%worker=`, `%ps=`, …) come from the framework descriptors,
//! so the table has one row, [`ROLE`], standing for all of them.

use crate::frameworks::{Descriptor, Frameworks};

use super::apply::{self, Applied, Builder};
use super::params::{JobCommand, JobParams, Resources};

/// Sections of the reference, in display order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// What runs: framework, roles, replicas.
    Job,
    /// Per-replica resources.
    Resources,
    /// Base image, target image, packages, files.
    Image,
    /// Where and how it runs.
    Run,
    /// Pod specification: volumes, secrets, scheduling, metadata.
    Pod,
    /// Line magics with arguments, alone in their cell.
    Commands,
}

impl Group {
    pub const ALL: [Group; 6] = [Group::Job, Group::Resources, Group::Image, Group::Run, Group::Pod, Group::Commands];

    pub fn title(self) -> &'static str {
        match self {
            Group::Job => "Job",
            Group::Resources => "Resources",
            Group::Image => "Image and code",
            Group::Run => "Running",
            Group::Pod => "Pod settings",
            Group::Commands => "Commands (each in a cell of its own)",
        }
    }
}

/// What kind of value a magic takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    /// No value (`%dryrun`).
    None,
    /// A whole number.
    Count,
    /// A Kubernetes quantity.
    Quantity,
    /// One of a fixed or descriptor-given set, compared without case.
    Choice,
    /// A Kubernetes or Python name.
    Name,
    /// An image reference.
    Image,
    /// An http(s) URL.
    Url,
    /// `KEY=VALUE` or a similar compound.
    Pair,
    /// A comma-separated list.
    List,
    /// Space-separated command arguments.
    Args,
}

impl ValueKind {
    /// How the reference describes it.
    pub fn describe(self) -> &'static str {
        match self {
            ValueKind::None => "no value",
            ValueKind::Count => "whole number",
            ValueKind::Quantity => "Kubernetes quantity",
            ValueKind::Choice => "one of the listed values",
            ValueKind::Name => "name",
            ValueKind::Image => "image reference",
            ValueKind::Url => "URL",
            ValueKind::Pair => "key and value",
            ValueKind::List => "comma-separated list",
            ValueKind::Args => "arguments",
        }
    }
}

/// Where a magic's allowed values come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Values {
    /// Free text, checked by the magic's parser.
    Any,
    /// A fixed list.
    Fixed(&'static [&'static str]),
    /// The names of the framework descriptors.
    Frameworks,
    /// The effective framework's role magics.
    Roles,
    /// A fixed list for the part after the last `:` (`%toleration=KEY:EFFECT`).
    AfterColon(&'static [&'static str]),
}

/// What the parser does with a magic.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Action {
    /// A job setting: `%name=value`.
    Set(fn(&mut Builder<'_>, &str) -> Applied),
    /// A per-replica resource: the line's role's, or the job's.
    Resource(fn(&mut Resources, &str) -> Applied),
    /// A flag: `%name`.
    Flag(fn(&mut JobParams)),
    /// A role's replica count; first on its line.
    Role,
    /// `%module=NAME`.
    Module,
    /// A job command with space-separated arguments.
    Command(fn(&[&str]) -> Result<JobCommand, String>),
}

/// One magic.
#[derive(Debug)]
pub struct MagicSpec {
    /// The name after `%`, e.g. `framework` (`<role>` for the role row).
    pub name: &'static str,
    /// How it is written, e.g. `%framework=NAME`.
    pub syntax: &'static str,
    /// A complete example line.
    pub example: &'static str,
    /// What it does, one or two sentences.
    pub help: &'static str,
    pub group: Group,
    pub value: ValueKind,
    pub values: Values,
    /// May be given several times (each adds an entry).
    pub repeatable: bool,
    pub(crate) action: Action,
}

macro_rules! magic {
    ($name:expr, $group:ident, $value:ident, $values:expr, $repeatable:literal, $action:expr,
     $syntax:literal, $example:literal, $help:literal) => {
        MagicSpec {
            name: $name,
            syntax: $syntax,
            example: $example,
            help: $help,
            group: Group::$group,
            value: ValueKind::$value,
            values: $values,
            repeatable: $repeatable,
            action: $action,
        }
    };
}

use Action::{Command, Flag, Module, Resource, Set};
use Values::{AfterColon, Any, Fixed};

/// The role row's name (never typed; role magics are looked up in the descriptors).
pub const ROLE: &str = "<role>";

/// Every magic, in reference order.
pub static MAGICS: &[MagicSpec] = &[
    magic!("framework", Job, Choice, Values::Frameworks, false, Set(apply::framework),
        "%framework=NAME", "%framework=tensorflow",
        "The kind of job: a Kubeflow training framework, python (one process) or trainjob (Kubeflow Trainer). Without it, the configured default framework."),
    magic!(ROLE, Job, Count, Values::Roles, false, Action::Role,
        "%ROLE=N[;%cpu=Q;%memory=Q;%gpu=N]", "%worker=2;%cpu=1;%memory=2Gi",
        "Replicas of one of the framework's roles (each framework's roles are listed with the frameworks). The role is the first magic of its line; %cpu, %memory and %gpu after it on the same line are that role's resources."),
    magic!("cleanPolicy", Job, Choice, Fixed(apply::CLEAN_POLICIES), false, Set(apply::clean_policy),
        "%cleanPolicy=all|running|none", "%cleanPolicy=running",
        "Which pods the operator deletes when the job ends: all, running (only those still running) or none."),
    magic!("nodes", Job, Count, Any, false, Set(apply::nodes),
        "%nodes=N", "%nodes=2",
        "Number of nodes of a TrainJob (framework trainjob)."),
    magic!("runtime", Job, Name, Any, false, Set(apply::runtime),
        "%runtime=NAME", "%runtime=torch-distributed",
        "The (Cluster)TrainingRuntime a TrainJob uses (framework trainjob)."),
    magic!("cpu", Resources, Quantity, Any, false, Resource(apply::cpu),
        "%cpu=QUANTITY", "%cpu=500m",
        "CPU per replica (1, 500m, 2.5). After a role on its line; on a line of its own for frameworks without roles (python, trainjob)."),
    magic!("memory", Resources, Quantity, Any, false, Resource(apply::memory),
        "%memory=QUANTITY", "%memory=4Gi",
        "Memory per replica (512Mi, 4Gi). Placed like %cpu."),
    magic!("gpu", Resources, Count, Any, false, Resource(apply::gpu),
        "%gpu=N", "%gpu=1",
        "NVIDIA GPUs per replica (nvidia.com/gpu). Placed like %cpu."),
    magic!("base", Image, Image, Any, false, Set(apply::base),
        "%base=IMAGE", "%base=python:3.12-slim",
        "Base image the cell's code is added to, instead of the framework's."),
    magic!("image", Image, Image, Any, false, Set(apply::image),
        "%image=REPOSITORY[:TAG]", "%image=registry.example.com/team/train:v1",
        "Where the job's image is pushed, instead of the configured registry prefix."),
    magic!("packages", Image, List, Any, true, Set(apply::packages),
        "%packages=REQ[,REQ…]", "%packages=pandas,scikit-learn==1.5.2",
        "pip requirements installed in the job before the code runs."),
    magic!("pipIndexUrl", Image, Url, Any, false, Set(apply::pip_index_url),
        "%pipIndexUrl=URL", "%pipIndexUrl=https://pypi.example.com/simple",
        "The package index %packages= installs from."),
    magic!("files", Image, List, Any, true, Set(apply::files),
        "%files=PATH[,PATH…]", "%files=data/train.csv,configs",
        "Files or directories (relative to the notebook) shipped next to the code."),
    magic!("module", Image, Name, Any, false, Module,
        "%module=NAME", "%module=utils",
        "Keeps this cell's code as NAME.py, shipped with later jobs (import NAME). Takes no other magics."),
    magic!("dryrun", Run, None, Any, false, Flag(apply::dryrun),
        "%dryrun", "%dryrun",
        "Shows the resolved plan (image, job, replicas) without building or submitting anything."),
    magic!("backend", Run, Choice, Fixed(apply::BACKENDS), false, Set(apply::backend),
        "%backend=local|kubernetes", "%backend=local",
        "Runs the replicas as local processes, or as a job on the Kubernetes cluster."),
    magic!("provider", Run, Choice, Fixed(apply::PROVIDERS), false, Set(apply::provider),
        "%provider=image|configmap", "%provider=configmap",
        "Ships the code in an image layer pushed to a registry, or in a ConfigMap mounted over the base image."),
    magic!("namespace", Run, Name, Any, false, Set(apply::namespace),
        "%namespace=NS", "%namespace=team-a",
        "Kubernetes namespace of the job."),
    magic!("name", Run, Name, Any, false, Set(apply::name),
        "%name=PREFIX", "%name=mnist",
        "Prefix of the job's name (at most 40 characters; a unique suffix is added)."),
    magic!("onInterrupt", Run, Choice, Fixed(apply::ON_INTERRUPT), false, Set(apply::on_interrupt),
        "%onInterrupt=delete|detach", "%onInterrupt=detach",
        "What interrupting the cell does to the job: delete it, or leave it running (%attach NAME follows it again)."),
    magic!("env", Run, Pair, Any, true, Set(apply::env),
        "%env=KEY=VALUE", "%env=HF_HOME=/cache",
        "An environment variable of every replica."),
    magic!("secretEnv", Pod, Pair, Any, true, Set(apply::secret_env),
        "%secretEnv=VAR=SECRET:KEY", "%secretEnv=WANDB_API_KEY=wandb:token",
        "An environment variable taken from a key of a Kubernetes Secret."),
    magic!("volume", Pod, Pair, Any, true, Set(apply::volume),
        "%volume=CLAIM:/path", "%volume=datasets:/data",
        "Mounts a PersistentVolumeClaim in every replica."),
    magic!("nodeSelector", Pod, Pair, Any, true, Set(apply::node_selector),
        "%nodeSelector=KEY=VALUE", "%nodeSelector=gpu-type=a100",
        "Runs the pods only on nodes with this label."),
    magic!("toleration", Pod, Pair, AfterColon(apply::EFFECTS), true, Set(apply::toleration),
        "%toleration=KEY[=VALUE]:EFFECT", "%toleration=nvidia.com/gpu:NoSchedule",
        "Lets the pods run on nodes with a matching taint (EFFECT: NoSchedule, PreferNoSchedule, NoExecute)."),
    magic!("serviceAccount", Pod, Name, Any, false, Set(apply::service_account),
        "%serviceAccount=NAME", "%serviceAccount=trainer",
        "The pods' service account."),
    magic!("queue", Pod, Name, Any, false, Set(apply::queue),
        "%queue=NAME", "%queue=team-a-queue",
        "Kueue LocalQueue the job is submitted to (label kueue.x-k8s.io/queue-name)."),
    magic!("label", Pod, Pair, Any, true, Set(apply::label),
        "%label=KEY=VALUE", "%label=team=vision",
        "A label on the job and its pods."),
    magic!("annotation", Pod, Pair, Any, true, Set(apply::annotation),
        "%annotation=KEY=VALUE", "%annotation=example.com/owner=alice",
        "An annotation on the job and its pods."),
    magic!("jobs", Commands, Args, Any, false, Command(apply::cmd_jobs),
        "%jobs", "%jobs",
        "Lists this namespace's ciao jobs."),
    magic!("logs", Commands, Args, Any, false, Command(apply::cmd_logs),
        "%logs NAME [--follow]", "%logs mnist-7f3c --follow",
        "Shows a job's logs; --follow keeps streaming them."),
    magic!("attach", Commands, Args, Any, false, Command(apply::cmd_attach),
        "%attach NAME", "%attach mnist-7f3c",
        "Follows a running job again, as if its cell were running."),
    magic!("delete", Commands, Args, Any, false, Command(apply::cmd_delete),
        "%delete NAME", "%delete mnist-7f3c",
        "Deletes a job and its pods."),
    magic!("modules", Commands, Args, Any, false, Command(apply::cmd_modules),
        "%modules", "%modules",
        "Lists the modules kept by %module=."),
    magic!("help", Commands, Args, Any, false, Command(apply::cmd_help),
        "%help [MAGIC]", "%help framework",
        "Shows this reference; with a magic's name, that magic's documentation in the pager (as Shift-Tab does)."),
];

impl MagicSpec {
    pub(crate) fn is_role(&self) -> bool {
        matches!(self.action, Action::Role)
    }

    pub(crate) fn is_command(&self) -> bool {
        matches!(self.action, Action::Command(_))
    }

    /// What completion inserts for this magic (`role` names the role for the role row).
    pub(crate) fn insert_text(&self, role: Option<&str>) -> String {
        match self.action {
            Action::Role => format!("%{}=", role.unwrap_or("worker")),
            Action::Flag(_) => format!("%{}", self.name),
            Action::Command(_) if self.syntax.contains(' ') => format!("%{} ", self.name),
            Action::Command(_) => format!("%{}", self.name),
            _ => format!("%{}=", self.name),
        }
    }

    /// The allowed values, for completion and documentation (empty: free text).
    pub fn allowed_values(&self, frameworks: &Frameworks, effective: Option<&Descriptor>) -> Vec<String> {
        match self.values {
            Values::Any => Vec::new(),
            Values::Fixed(v) | Values::AfterColon(v) => v.iter().map(|s| s.to_string()).collect(),
            Values::Frameworks => frameworks.names().map(String::from).collect(),
            Values::Roles => match effective {
                Some(d) => d.job.roles.iter().map(|r| r.magic.clone()).collect(),
                None => frameworks.role_magics().into_iter().map(String::from).collect(),
            },
        }
    }
}

/// The row named `name`, role magics excluded.
pub fn find(name: &str) -> Option<&'static MagicSpec> {
    MAGICS.iter().find(|m| m.name == name && !m.is_role())
}

/// The row for `%name`: a table magic, or the role row when some framework
/// has a role with that magic.
pub(crate) fn lookup(name: &str, frameworks: &Frameworks) -> Option<&'static MagicSpec> {
    find(name).or_else(|| frameworks.role_magics().contains(&name).then(role_row))
}

/// The row standing for every role magic.
pub(crate) fn role_row() -> &'static MagicSpec {
    MAGICS.iter().find(|m| m.is_role()).expect("the table has a role row")
}

/// The candidate nearest to `name` by edit distance (case ignored), if close
/// enough to be a likely typo, or when `name` is a prefix of it.
pub(crate) fn nearest<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let lower = name.to_lowercase();
    let limit = if lower.chars().count() >= 5 { 2 } else { 1 };
    candidates
        .filter_map(|c| {
            let cl = c.to_lowercase();
            let d = strsim::damerau_levenshtein(&lower, &cl);
            let prefix = lower.chars().count() >= 2 && cl.starts_with(&lower);
            (d <= limit || prefix).then_some((d, c))
        })
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Every name a user can write after `%`: table magics and role magics.
pub(crate) fn all_names(frameworks: &Frameworks) -> Vec<&str> {
    let mut v: Vec<&str> = MAGICS.iter().filter(|m| !m.is_role()).map(|m| m.name).collect();
    v.extend(frameworks.role_magics());
    v
}
