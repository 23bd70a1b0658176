//! The job parameters a cell's magics produce (phase 1's output).
//!
//! Only what the cell says is recorded here; defaults from the configuration
//! and the framework descriptor are applied later, when a [`crate::plan::Plan`]
//! is made, so that the precedence cell > environment > config > built-in
//! stays in one place.

use std::fmt;

/// A parsed cell: either a job to run, a module to keep, or a job command.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// Magics and code for a job.
    Job(Box<JobCell>),
    /// `%module=NAME`: the code is kept as `NAME.py` and shipped with later jobs.
    Module { name: String, code: String },
    /// A job command line magic (`%jobs`, `%logs NAME`, …), alone in its cell.
    Command(JobCommand),
}

/// A job cell: the parameters and the code that ships.
#[derive(Debug, Clone, PartialEq)]
pub struct JobCell {
    pub params: JobParams,
    /// The cell with every magic line blanked (replaced by an empty line), so
    /// line numbers in tracebacks match the cell.
    pub code: String,
}

/// Line magics with space-separated arguments that act on jobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobCommand {
    /// `%jobs`: this namespace's ciao jobs.
    Jobs,
    /// `%logs NAME [--follow]`.
    Logs { name: String, follow: bool },
    /// `%attach NAME`: follow a job again.
    Attach { name: String },
    /// `%delete NAME`.
    Delete { name: String },
    /// `%modules`: the modules kept by `%module=`.
    Modules,
    /// `%help`: the magics reference.
    Help,
    /// `%help MAGIC`: one magic's documentation, for the pager.
    HelpOn(String),
}

/// A Kubernetes quantity as the user wrote it, already validated
/// (`500m`, `2`, `4Gi`, `1.5`, `1e3`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Quantity(pub String);

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Per-replica resources. Unset fields fall back to the configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    pub cpu: Option<Quantity>,
    pub memory: Option<Quantity>,
    /// `nvidia.com/gpu` (a whole number of devices).
    pub gpu: Option<u32>,
}

impl Resources {
    pub fn is_empty(&self) -> bool {
        self.cpu.is_none() && self.memory.is_none() && self.gpu.is_none()
    }

    /// Fields set here win over `other`'s.
    pub fn or(&self, other: &Resources) -> Resources {
        Resources {
            cpu: self.cpu.clone().or_else(|| other.cpu.clone()),
            memory: self.memory.clone().or_else(|| other.memory.clone()),
            gpu: self.gpu.or(other.gpu),
        }
    }
}

/// `%worker=2;%cpu=1;%memory=2Gi`: a role's replica count and resources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleParams {
    /// The role's magic name (`worker`, `ps`, `master`, …).
    pub role: String,
    pub replicas: u32,
    pub resources: Resources,
    /// 1-based line of the cell where it was given.
    pub line: usize,
}

/// The original ciao's clean policies, mapped to the operators' values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CleanPolicy {
    All,
    Running,
    None,
}

impl CleanPolicy {
    /// The value of `runPolicy.cleanPodPolicy`.
    pub fn operator_value(self) -> &'static str {
        match self {
            CleanPolicy::All => "All",
            CleanPolicy::Running => "Running",
            CleanPolicy::None => "None",
        }
    }
}

/// Where a job runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// Replicas as local processes.
    Local,
    /// A Kubeflow job through the Kubernetes API.
    Kubernetes,
}

impl BackendKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Local => "local",
            BackendKind::Kubernetes => "kubernetes",
        }
    }
}

/// How the code ships to the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// In an image layer appended to the base image.
    Image,
    /// In a ConfigMap mounted over the base image.
    ConfigMap,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Image => "image",
            Provider::ConfigMap => "configmap",
        }
    }
}

/// What an interrupt does to a running job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnInterrupt {
    /// Delete the job and its pods.
    Delete,
    /// Leave it running; the output says how to re-attach.
    Detach,
}

impl OnInterrupt {
    pub fn as_str(self) -> &'static str {
        match self {
            OnInterrupt::Delete => "delete",
            OnInterrupt::Detach => "detach",
        }
    }
}

/// `%volume=CLAIM:/path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    pub claim: String,
    pub path: String,
}

/// `%secretEnv=VAR=SECRET:KEY`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretEnv {
    pub var: String,
    pub secret: String,
    pub key: String,
}

/// `%toleration=KEY[=VALUE]:EFFECT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Toleration {
    pub key: String,
    pub value: Option<String>,
    /// `NoSchedule`, `PreferNoSchedule` or `NoExecute`.
    pub effect: String,
}

/// Everything a job cell's magics say. `None` / empty means "not given".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobParams {
    /// `%framework=`; `None` uses the configured default.
    pub framework: Option<String>,
    /// Role lines in cell order (`%worker=2;%cpu=1`).
    pub roles: Vec<RoleParams>,
    /// Resources on a line of their own (role-less frameworks).
    pub resources: Resources,
    /// `%nodes=N` (TrainJob).
    pub nodes: Option<u32>,
    /// `%runtime=NAME` (TrainJob).
    pub runtime: Option<String>,
    pub clean_policy: Option<CleanPolicy>,
    /// `%base=IMAGE`.
    pub base: Option<String>,
    /// `%image=REPOSITORY[:TAG]`.
    pub image: Option<String>,
    pub namespace: Option<String>,
    /// `%name=PREFIX` of the job name.
    pub name: Option<String>,
    /// `%env=KEY=VALUE`, in order.
    pub env: Vec<(String, String)>,
    pub backend: Option<BackendKind>,
    pub provider: Option<Provider>,
    pub on_interrupt: Option<OnInterrupt>,
    /// `%packages=a,b`.
    pub packages: Vec<String>,
    pub pip_index_url: Option<String>,
    pub dryrun: bool,
    pub volumes: Vec<Volume>,
    pub secret_env: Vec<SecretEnv>,
    pub node_selector: Vec<(String, String)>,
    pub tolerations: Vec<Toleration>,
    pub service_account: Option<String>,
    /// `%queue=NAME` (Kueue's `kueue.x-k8s.io/queue-name` label).
    pub queue: Option<String>,
    pub labels: Vec<(String, String)>,
    pub annotations: Vec<(String, String)>,
    /// `%files=PATH[,PATH…]`, relative to the kernel's working directory.
    pub files: Vec<String>,
}
