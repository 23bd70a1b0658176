//! Framework descriptors: one YAML file per framework in `base-images/`.
//!
//! A descriptor says everything the phases need to know about a framework:
//! the default base image and where the code goes in it (image builder), and
//! the job kind, container, replica types and the environment the operator
//! injects (backends). The files are embedded at build time; a directory
//! named by the `frameworksDir` setting (or `CIAO_FRAMEWORKS_DIR`) adds or
//! replaces descriptors at run time, so adding a framework is adding a file.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded_frameworks.rs"));
}

/// One framework, as read from `base-images/<name>.yaml`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Descriptor {
    /// The value of `%framework=`.
    pub name: String,
    /// One line for completion and `%dryrun`.
    pub summary: String,
    /// Default base image (a public reference; `%base=` overrides it).
    pub image: String,
    /// Working directory of the job's container.
    pub workdir: String,
    /// Absolute path of the cell's code inside the image.
    pub code: String,
    /// The container command (`Cmd` of the image config).
    pub command: Vec<String>,
    /// Environment set in the image config.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// What the backends need.
    pub job: JobDescriptor,
}

/// How a framework's job is shaped and what its operator does.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JobDescriptor {
    pub shape: JobShape,
    /// Group/version pairs in order of preference; discovery picks the first
    /// the cluster serves.
    pub api_versions: Vec<String>,
    pub kind: String,
    pub plural: String,
    /// Who installs the kind, for "not installed" errors.
    pub installed_by: String,
    /// `spec.<field>` holding the replica specs (`replicaSpecs` shape only).
    #[serde(default)]
    pub replica_specs_field: Option<String>,
    /// Name of the main container (the operators look for it by name).
    pub container: String,
    #[serde(default)]
    pub ports: Vec<Port>,
    /// Which environment the operator injects into each replica.
    pub cluster_env: ClusterEnv,
    /// Replica types, in display order. Empty for role-less frameworks.
    #[serde(default)]
    pub roles: Vec<Role>,
    /// TrainJob only: the runtime used when the cell gives no `%runtime=`.
    #[serde(default)]
    pub default_runtime: Option<String>,
}

/// The three object shapes one table-driven renderer produces.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum JobShape {
    /// `kubeflow.org` jobs: `spec.<xReplicaSpecs>.<Type>.template`.
    ReplicaSpecs,
    /// Kubeflow Trainer v2 `TrainJob`.
    TrainJob,
    /// A plain `batch/v1` Job.
    BatchJob,
}

/// The environment convention of an operator.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum ClusterEnv {
    /// `TF_CONFIG`.
    Tensorflow,
    /// `MASTER_ADDR`, `MASTER_PORT`, `WORLD_SIZE`, `RANK` and `PET_*`.
    Pytorch,
    /// `MASTER_ADDR`, `MASTER_PORT`, `WORLD_SIZE`, `RANK`, `WORKER_PORT`, `WORKER_ADDRS`.
    Xgboost,
    /// `PADDLE_*`.
    Paddle,
    /// `COORDINATOR_ADDRESS`, `COORDINATOR_PORT`, `NUM_PROCESSES`, `PROCESS_ID`.
    Jax,
    /// A hostfile for the launcher (`OMPI_MCA_orte_default_hostfile`).
    Mpi,
    /// Nothing injected.
    None,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Port {
    pub name: String,
    pub container_port: u16,
}

/// A replica type of a framework.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Role {
    /// The magic that sets its replica count, e.g. `worker` for `%worker=N`.
    pub magic: String,
    /// The operator's replica type, e.g. `Worker`.
    pub replica_type: String,
    /// Replicas when the cell does not mention the role.
    pub replicas: u32,
    /// A command for this role instead of the descriptor's (`{workers}` is
    /// replaced by the worker count), e.g. the MPI launcher's `mpirun`.
    #[serde(default)]
    pub command: Option<Vec<String>>,
}

impl Descriptor {
    /// The role whose magic is `magic`.
    pub fn role(&self, magic: &str) -> Option<&Role> {
        self.job.roles.iter().find(|r| r.magic == magic)
    }

    /// Whether resources go on a line of their own (no replica types).
    pub fn is_roleless(&self) -> bool {
        self.job.roles.is_empty()
    }

    fn validate(&self, file: &str) -> Result<(), FrameworkError> {
        let bad = |why: String| FrameworkError::Invalid { file: file.to_string(), why };
        if self.name.is_empty() || !self.name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') {
            return Err(bad(format!("name {:?} must be lowercase letters, digits and '-'", self.name)));
        }
        if !self.code.starts_with('/') || !self.workdir.starts_with('/') {
            return Err(bad("code and workdir must be absolute paths".into()));
        }
        if self.command.is_empty() {
            return Err(bad("command must not be empty".into()));
        }
        if self.job.api_versions.is_empty() {
            return Err(bad("job.apiVersions must name at least one group/version".into()));
        }
        match self.job.shape {
            JobShape::ReplicaSpecs => {
                if self.job.replica_specs_field.is_none() {
                    return Err(bad("job.replicaSpecsField is required for shape replicaSpecs".into()));
                }
                if self.job.roles.is_empty() {
                    return Err(bad("a replicaSpecs job needs at least one role".into()));
                }
            }
            JobShape::TrainJob | JobShape::BatchJob => {
                if !self.job.roles.is_empty() {
                    return Err(bad("trainJob and batchJob shapes take no roles".into()));
                }
            }
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FrameworkError {
    #[error("framework descriptor {file}: {why}")]
    Invalid { file: String, why: String },
    #[error("framework descriptor {file} is not valid YAML: {source}")]
    Yaml {
        file: String,
        #[source]
        source: serde_saphyr::Error,
    },
    #[error("cannot read framework descriptors from {dir}: {source}")]
    Io {
        dir: String,
        #[source]
        source: std::io::Error,
    },
}

/// Every known framework, by name.
#[derive(Debug, Clone)]
pub struct Frameworks {
    by_name: BTreeMap<String, Descriptor>,
}

impl Frameworks {
    /// The descriptors built into the binary.
    pub fn embedded() -> &'static Frameworks {
        static EMBEDDED: std::sync::OnceLock<Frameworks> = std::sync::OnceLock::new();
        EMBEDDED.get_or_init(|| {
            let mut by_name = BTreeMap::new();
            for (file, text) in embedded::EMBEDDED {
                // The embedded files are checked by the unit tests below.
                let d = parse(file, text).expect("embedded framework descriptor is valid");
                by_name.insert(d.name.clone(), d);
            }
            Frameworks { by_name }
        })
    }

    /// The embedded descriptors plus those in `dir` (which win on a name clash).
    pub fn with_dir(dir: &Path) -> Result<Frameworks, FrameworkError> {
        let mut all = Self::embedded().clone();
        let io = |source| FrameworkError::Io { dir: dir.display().to_string(), source };
        let mut paths: Vec<_> = std::fs::read_dir(dir)
            .map_err(io)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
            .collect();
        paths.sort();
        for path in paths {
            let text = std::fs::read_to_string(&path).map_err(io)?;
            let d = parse(&path.display().to_string(), &text)?;
            all.by_name.insert(d.name.clone(), d);
        }
        Ok(all)
    }

    pub fn get(&self, name: &str) -> Option<&Descriptor> {
        self.by_name.get(name)
    }

    /// Framework names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Descriptor> {
        self.by_name.values()
    }

    /// Every role magic of every framework (`ps`, `worker`, …), sorted, unique.
    pub fn role_magics(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.iter().flat_map(|d| d.job.roles.iter().map(|r| r.magic.as_str())).collect();
        v.sort_unstable();
        v.dedup();
        v
    }
}

fn parse(file: &str, text: &str) -> Result<Descriptor, FrameworkError> {
    let d: Descriptor =
        serde_saphyr::from_str(text).map_err(|source| FrameworkError::Yaml { file: file.to_string(), source })?;
    d.validate(file)?;
    let stem = Path::new(file).file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_default();
    if stem != d.name {
        return Err(FrameworkError::Invalid {
            file: file.to_string(),
            why: format!("the file must be named after the framework ({}.yaml)", d.name),
        });
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_embedded_descriptor_parses_and_is_named_after_its_file() {
        for (file, text) in embedded::EMBEDDED {
            let d = parse(file, text).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(format!("{}.yaml", d.name), *file);
        }
    }

    #[test]
    fn the_eight_frameworks_are_there() {
        let names: Vec<_> = Frameworks::embedded().names().collect();
        assert_eq!(names, ["jax", "mpi", "paddle", "python", "pytorch", "tensorflow", "trainjob", "xgboost"]);
    }

    #[test]
    fn tensorflow_has_the_tfjob_roles() {
        let tf = Frameworks::embedded().get("tensorflow").unwrap();
        let roles: Vec<_> = tf.job.roles.iter().map(|r| (r.magic.as_str(), r.replica_type.as_str())).collect();
        assert_eq!(roles, [("chief", "Chief"), ("ps", "PS"), ("worker", "Worker"), ("evaluator", "Evaluator")]);
        assert_eq!(tf.job.kind, "TFJob");
        assert!(!tf.is_roleless());
        assert!(Frameworks::embedded().get("python").unwrap().is_roleless());
    }

    #[test]
    fn a_directory_adds_a_framework_and_bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let text = embedded::EMBEDDED.iter().find(|(f, _)| *f == "python.yaml").unwrap().1;
        std::fs::write(dir.path().join("mine.yaml"), text.replace("name: python", "name: mine")).unwrap();
        let all = Frameworks::with_dir(dir.path()).unwrap();
        assert!(all.get("mine").is_some());
        assert!(all.get("tensorflow").is_some());

        std::fs::write(dir.path().join("other.yaml"), text).unwrap();
        let err = Frameworks::with_dir(dir.path()).unwrap_err().to_string();
        assert!(err.contains("other.yaml") && err.contains("python.yaml"), "{err}");

        std::fs::write(dir.path().join("other.yaml"), "name: [").unwrap();
        let err = Frameworks::with_dir(dir.path()).unwrap_err().to_string();
        assert!(err.contains("other.yaml") && err.contains("not valid YAML"), "{err}");
    }
}
