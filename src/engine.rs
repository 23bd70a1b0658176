//! The pipeline behind a cell, in one direction:
//! cell text → parameters (interpreter) → plan → image reference (image
//! builder) → job (backend) → log lines → output.
//!
//! The kernel and the command line both drive an [`Engine`]; it owns what a
//! session keeps between cells.

use std::sync::Arc;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::backend::kubernetes::KubernetesBackend;
use crate::backend::local::LocalBackend;
use crate::backend::{Backend, CodeFile, JobReport, Shipment, Submission};
use crate::config::Config;
use crate::frameworks::Frameworks;
use crate::image::{self, BuildOptions, BuildResult, Layer, LayerFile, LayerKind, ProgressFn};
use crate::interpreter::params::{BackendKind, Cell, JobCell, JobCommand, Provider};
use crate::interpreter::{self, Completion, IsComplete};
use crate::kernel::Language;
use crate::output::{CellError, MimeBundle, Output, bundle};
use crate::plan::{DEFAULT_FRAMEWORK, Plan};

/// Where the configuration comes from.
#[derive(Debug, Clone, Default)]
pub enum ConfigSource {
    /// `CIAO_CONFIG` or `~/.ciao/config.yaml`, re-read for every cell so edits apply.
    #[default]
    Default,
    /// A file named on the command line.
    File(std::path::PathBuf),
}

/// A ciao session: configuration, caches, and the phases.
pub struct Engine {
    config_source: ConfigSource,
    /// The image builder, kept across cells for its caches (registry
    /// sessions, tokens, base manifests, blobs known to be pushed).
    image: image::Builder,
    /// This kernel session's id (a label on every job it submits).
    session: String,
    /// Modules kept with `%module=NAME`, shipped with every later job.
    modules: Mutex<BTreeMap<String, String>>,
    /// `%files` layers made so far.
    files: crate::files::FilesCache,
    local: LocalBackend,
    kubernetes: KubernetesBackend,
}

impl Engine {
    pub fn new(config_source: ConfigSource) -> Self {
        Engine {
            config_source,
            image: image::Builder::new(),
            session: uuid::Uuid::new_v4().simple().to_string()[..12].to_string(),
            modules: Mutex::new(BTreeMap::new()),
            files: crate::files::FilesCache::default(),
            local: LocalBackend::new(),
            kubernetes: KubernetesBackend::new(),
        }
    }

    /// This session's id.
    pub fn session(&self) -> &str {
        &self.session
    }

    fn backend(&self, kind: BackendKind) -> &dyn Backend {
        match kind {
            BackendKind::Local => &self.local,
            BackendKind::Kubernetes => &self.kubernetes,
        }
    }

    /// The image builder of this session.
    pub fn image_builder(&self) -> &image::Builder {
        &self.image
    }

    /// The configuration, read now.
    ///
    /// # Errors
    /// A bad or unreadable config file, as a cell error naming the file.
    pub fn config(&self) -> Result<Config, CellError> {
        let file = match &self.config_source {
            ConfigSource::Default => None,
            ConfigSource::File(p) => Some(p.as_path()),
        };
        Config::load_with(&crate::config::ProcessEnv, file).map_err(|e| CellError::new("ConfigError", e.to_string()))
    }

    /// The framework descriptors for `config` (embedded plus `frameworksDir`).
    pub fn frameworks(config: &Config) -> Result<Frameworks, CellError> {
        match &config.frameworks_dir {
            None => Ok(Frameworks::embedded().clone()),
            Some(dir) => Frameworks::with_dir(dir).map_err(|e| CellError::new("ConfigError", e.to_string())),
        }
    }

    fn default_framework(config: &Config) -> String {
        config.framework.clone().unwrap_or_else(|| DEFAULT_FRAMEWORK.into())
    }

    /// Phase 1 and the plan: parses `code` and resolves it.
    pub fn plan(&self, code: &str) -> Result<(Config, Cell, Option<Plan>), CellError> {
        let config = self.config()?;
        let frameworks = Self::frameworks(&config)?;
        let cell = interpreter::parse(code, &frameworks, &Self::default_framework(&config))?;
        let plan = match &cell {
            Cell::Job(job) => Some(Plan::resolve(&job.params, &config, &frameworks)?),
            _ => None,
        };
        Ok((config, cell, plan))
    }

    /// Runs one cell to the end.
    pub async fn run_cell(&self, code: &str, out: &Output, cancel: &CancellationToken) -> Result<Option<MimeBundle>, CellError> {
        let (config, cell, plan) = self.plan(code)?;
        match cell {
            Cell::Job(job) => {
                let plan = plan.expect("job cells have a plan");
                if job.params.dryrun {
                    return Ok(Some(plan.to_bundle()));
                }
                self.run_job(&config, &job, &plan, out, cancel).await
            }
            Cell::Command(JobCommand::Help) => Ok(Some(interpreter::help_bundle(&Self::frameworks(&config)?))),
            Cell::Command(JobCommand::HelpOn(name)) => {
                let doc = interpreter::magic_help(&name, &Self::frameworks(&config)?)
                    .map_err(|e| CellError::new("MagicError", e))?;
                out.page(doc);
                Ok(None)
            }
            Cell::Command(JobCommand::Modules) => Ok(Some(self.modules_bundle())),
            Cell::Command(command) => {
                let (_, _, plan) = self.plan("")?;
                let plan = plan.expect("an empty cell is a job cell");
                self.backend(plan.backend).command(&command, &config, plan.namespace.as_deref(), out, cancel).await
            }
            Cell::Module { name, code } => {
                let replaced = self.modules.lock().expect("modules lock").insert(name.clone(), code).is_some();
                let verb = if replaced { "updated" } else { "kept" };
                out.stdout(format!("[ciao] module {name}.py {verb}: later jobs can `import {name}`\n"));
                Ok(None)
            }
        }
    }

    /// `%modules`: the modules kept so far.
    fn modules_bundle(&self) -> MimeBundle {
        let modules = self.modules.lock().expect("modules lock");
        if modules.is_empty() {
            return bundle("no modules yet: a cell with %module=NAME keeps its code as NAME.py for later jobs", None);
        }
        let mut text = String::from("modules shipped with every job:\n");
        let mut html = String::from("<table><thead><tr><th>module</th><th>lines</th></tr></thead><tbody>");
        for (name, code) in modules.iter() {
            let lines = code.lines().count();
            text.push_str(&format!("  {name}.py  {lines} lines\n"));
            html.push_str(&format!("<tr><td>{name}.py</td><td>{lines}</td></tr>"));
        }
        html.push_str("</tbody></table>");
        bundle(text, Some(html))
    }

    /// The `%module` files, at the code's directory so `import NAME` works.
    fn module_files(&self, plan: &Plan) -> Vec<LayerFile> {
        let dir = plan.framework.code.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
        let modules = self.modules.lock().expect("modules lock");
        modules.iter().map(|(name, code)| LayerFile::file(format!("{dir}/{name}.py"), code.as_bytes().to_vec())).collect()
    }

    /// The cell's `%files`, read from the working directory (cached while
    /// unchanged), placed next to the code.
    fn job_files(&self, plan: &Plan, mtime: u64) -> Result<Option<Arc<crate::files::Shipped>>, CellError> {
        use crate::files;
        if plan.files.is_empty() {
            return Ok(None);
        }
        let bad = |e: files::FilesError| CellError::new("FilesError", e.to_string());
        let dir = std::env::current_dir()
            .map_err(|e| CellError::new("FilesError", format!("%files: cannot tell the kernel's working directory: {e}")))?;
        let found = files::collect(&dir, &plan.files, files::limit_from_env().map_err(bad)?).map_err(bad)?;
        let code_dir = plan.framework.code.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
        let mut taken = vec![(plan.framework.code.clone(), "the cell's code".to_string())];
        taken.extend(self.module_files(plan).into_iter().map(|m| (m.path, "a %module".to_string())));
        files::check_clashes(&found, code_dir, &taken).map_err(bad)?;
        Ok(Some(self.files.ship(&found, code_dir, mtime).map_err(bad)?))
    }

    async fn run_job(
        &self,
        config: &Config,
        job: &JobCell,
        plan: &Plan,
        out: &Output,
        cancel: &CancellationToken,
    ) -> Result<Option<MimeBundle>, CellError> {
        self.run_job_report(config, job, plan, out, cancel, false).await?.into_cell_result()
    }

    /// Submits a job cell and returns as soon as the job exists
    /// (`ciao run --detach`); the report's outcome is then `Detached`.
    ///
    /// # Errors
    /// Not a job cell, or the phases' own errors.
    pub async fn submit_cell(&self, code: &str, out: &Output, cancel: &CancellationToken) -> Result<JobReport, CellError> {
        let (config, cell, plan) = self.plan(code)?;
        match (cell, plan) {
            (Cell::Job(job), Some(plan)) if !job.params.dryrun => {
                self.run_job_report(&config, &job, &plan, out, cancel, true).await
            }
            _ => Err(CellError::new(
                "NotAJob",
                "only a job cell can be submitted and left running; this cell is a command, a module or a %dryrun",
            )),
        }
    }

    async fn run_job_report(
        &self,
        config: &Config,
        job: &JobCell,
        plan: &Plan,
        out: &Output,
        cancel: &CancellationToken,
        detach: bool,
    ) -> Result<JobReport, CellError> {
        let (shipment, cell_digest) = match plan.provider {
            Provider::ConfigMap => {
                let mut files: Vec<CodeFile> = self
                    .module_files(plan)
                    .into_iter()
                    .map(|f| CodeFile {
                        key: f.path.rsplit('/').next().unwrap_or_default().to_string(),
                        path: f.path,
                        content: f.data.to_vec(),
                    })
                    .collect();
                let main = &plan.framework.code;
                files.push(CodeFile {
                    key: main.rsplit('/').next().unwrap_or("main.py").to_string(),
                    path: main.clone(),
                    content: job.code.as_bytes().to_vec(),
                });
                if let Some(shipped) = self.job_files(plan, 0)? {
                    let code_dir = plan.framework.code.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
                    files.extend(configmap_files(&shipped.files, code_dir, &files));
                }
                let size: usize = files.iter().map(|f| f.content.len()).sum();
                if size > crate::backend::render::MAX_CONFIG_MAP_BYTES {
                    return Err(CellError::new(
                        "FilesError",
                        format!(
                            "the code, %module and %files come to {size} bytes, more than a ConfigMap holds ({} bytes); \
                             ship them in an image instead (%provider=image, the default) or trim %files",
                            crate::backend::render::MAX_CONFIG_MAP_BYTES
                        ),
                    ));
                }
                let digest = image::sha256_digest(job.code.as_bytes());
                (Shipment::ConfigMap { base_image: plan.base_image.clone(), files }, digest)
            }
            Provider::Image => {
                // One display updated in place: bytes, blobs, time.
                let progress = image::PushDisplay::new(out.clone()).progress_fn();
                let built = self.build_image(config, job, plan, progress, cancel).await?;
                // With the backends' own `[ciao]` lines: stdout carries only
                // what the replicas print.
                out.stderr(format!("[ciao] image {}\n", built.reference));
                let digest = built.cell_digest.clone();
                (Shipment::Image(built), digest)
            }
        };
        let submission = Submission { plan, config, shipment: &shipment, cell_digest: &cell_digest, session: &self.session };
        let backend = self.backend(plan.backend);
        if detach { backend.submit(submission, out, cancel).await } else { backend.run(submission, out, cancel).await }
    }

    /// Phase 2 for a job cell: builds and publishes its image.
    ///
    /// # Errors
    /// The image builder's errors, as a cell error naming the fix.
    pub async fn build_image(
        &self,
        config: &Config,
        job: &JobCell,
        plan: &Plan,
        progress: ProgressFn,
        cancel: &CancellationToken,
    ) -> Result<BuildResult, CellError> {
        let options = BuildOptions::from_env(&crate::config::ProcessEnv)?;
        let modules = self.module_files(plan);
        let mut extra = Vec::new();
        if let Some(shipped) = self.job_files(plan, options.source_date_epoch.unwrap_or(0))? {
            extra.push(shipped.layer.clone());
        }
        if !modules.is_empty() {
            extra.push(
                Layer::from_files(LayerKind::Module, &modules, options.source_date_epoch.unwrap_or(0))
                    .map_err(CellError::from)?,
            );
        }
        Ok(self.image.build_with_layers(plan, &job.code, &extra, config, &options, progress, cancel).await?)
    }
}

/// ConfigMap entries for `%files`: keys made from the paths (`data/a.csv` →
/// `data__a.csv`), made unique against the keys already taken.
fn configmap_files(files: &[LayerFile], code_dir: &str, taken: &[CodeFile]) -> Vec<CodeFile> {
    let mut keys: std::collections::HashSet<String> = taken.iter().map(|f| f.key.clone()).collect();
    let mut out = Vec::new();
    for f in files {
        let rel = f.path.strip_prefix(code_dir).unwrap_or(&f.path).trim_start_matches('/');
        let stem: String = rel
            .replace('/', "__")
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '_' })
            .collect();
        let mut key = stem.clone();
        let mut n = 1;
        while !keys.insert(key.clone()) {
            key = format!("{stem}.{n}");
            n += 1;
        }
        out.push(CodeFile { key, path: f.path.clone(), content: f.data.to_vec() });
    }
    out
}

#[async_trait]
impl Language for Engine {
    async fn execute(&self, code: &str, out: Output, cancel: CancellationToken) -> Result<Option<MimeBundle>, CellError> {
        self.run_cell(code, &out, &cancel).await
    }

    fn is_complete(&self, code: &str) -> IsComplete {
        interpreter::is_complete(code)
    }

    fn complete(&self, code: &str, cursor_pos: usize) -> Completion {
        let frameworks = self.config().and_then(|c| Self::frameworks(&c)).unwrap_or_else(|_| Frameworks::embedded().clone());
        interpreter::complete(code, cursor_pos, &frameworks)
    }

    fn inspect(&self, code: &str, cursor_pos: usize, _detail_level: u8) -> Option<MimeBundle> {
        let frameworks = self.config().and_then(|c| Self::frameworks(&c)).unwrap_or_else(|_| Frameworks::embedded().clone());
        interpreter::inspect(code, cursor_pos, &frameworks)
    }

    /// Answers names of the session's settings: `framework`, `backend`,
    /// `namespace`, `registry`, `target`, `provider`.
    fn user_expression(&self, expr: &str) -> Result<MimeBundle, CellError> {
        let (config, _, plan) = self.plan("")?;
        let plan = plan.expect("an empty cell is a job cell");
        let value = match expr.trim() {
            "framework" => plan.framework.name.clone(),
            "backend" => plan.backend.as_str().to_string(),
            "namespace" => plan.namespace.clone().unwrap_or_default(),
            "registry" => config.registry.clone().unwrap_or_default(),
            "target" => plan.target.describe(),
            "provider" => plan.provider.as_str().to_string(),
            other => {
                return Err(CellError::new(
                    "NameError",
                    format!(
                        "{other:?} is not a ciao setting; ciao runs code in jobs, not in the kernel, so user_expressions \
                         can name only: framework, backend, namespace, registry, target, provider"
                    ),
                ));
            }
        };
        Ok(bundle(value, None))
    }
}
