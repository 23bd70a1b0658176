//! Checks from outside: skopeo, umoci, the OCI JSON schemas; and helpers to
//! build cells in process or through the `ciao` binary.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex, OnceLock};

use ciao::config::Config;
use ciao::frameworks::Frameworks;
use ciao::image::{BuildOptions, BuildResult, Builder, ImageError, Progress, ProgressFn};
use ciao::interpreter::params::JobParams;
use ciao::plan::Plan;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::images::run;
use super::{fresh_dir, require};

/// skopeo does not take references with both a tag and a digest: keep the digest.
pub fn skopeo_name(image: &str) -> String {
    match image.split_once('@') {
        Some((name, digest)) => {
            let (host, path) = name.split_once('/').unwrap_or(("", name));
            let repo = path.rsplit_once(':').map_or(path, |(r, _)| r);
            format!("{host}/{repo}@{digest}")
        }
        None => image.to_string(),
    }
}

/// `skopeo inspect` of `docker://IMAGE` (JSON).
pub fn inspect(image: &str, extra: &[&str]) -> Value {
    let image = skopeo_name(image);
    let mut cmd = Command::new("skopeo");
    cmd.arg("inspect").args(extra);
    if !extra.iter().any(|a| a.starts_with("--cert-dir") || a.starts_with("--tls-verify")) {
        cmd.arg("--tls-verify=false");
    }
    serde_json::from_str(&run(cmd.arg(format!("docker://{image}")))).expect("skopeo inspect prints JSON")
}

/// The raw manifest and config of `docker://IMAGE`, as skopeo reads them.
pub fn raw(image: &str) -> (Value, Value) {
    let image = skopeo_name(image);
    let m = run(Command::new("skopeo").args(["inspect", "--tls-verify=false", "--raw"]).arg(format!("docker://{image}")));
    let c = run(Command::new("skopeo").args(["inspect", "--tls-verify=false", "--config", "--raw"]).arg(format!("docker://{image}")));
    (serde_json::from_str(&m).unwrap(), serde_json::from_str(&c).unwrap())
}

/// Copies `source` (a skopeo transport reference) to an OCI layout and
/// unpacks it with `umoci unpack --rootless`; returns the rootfs.
pub fn unpack(source: &str) -> PathBuf {
    require("umoci", "umoci");
    let source = match source.strip_prefix("docker://") {
        Some(i) => format!("docker://{}", skopeo_name(i)),
        None => source.to_string(),
    };
    let dir = fresh_dir("unpack-");
    let layout = dir.join("layout");
    run(Command::new("skopeo").args(["copy", "--quiet", "--src-tls-verify=false"]).arg(&source).arg(format!("oci:{}:img", layout.display())));
    let bundle = dir.join("bundle");
    run(Command::new("umoci").args(["unpack", "--rootless", "--image"]).arg(format!("{}:img", layout.display())).arg(&bundle));
    bundle.join("rootfs")
}

/// Unpacks an image already in an OCI layout with umoci.
pub fn umoci_unpack(layout: &Path, name: &str) -> PathBuf {
    let bundle = fresh_dir("bundle-").join("b");
    run(Command::new("umoci").args(["unpack", "--rootless", "--image"]).arg(format!("{}:{name}", layout.display())).arg(&bundle));
    bundle.join("rootfs")
}

/// The OCI image-spec schemas, compiled once.
pub struct Schemas {
    pub manifest: jsonschema::Validator,
    pub config: jsonschema::Validator,
    pub index: jsonschema::Validator,
}

pub fn schemas() -> &'static Schemas {
    static S: OnceLock<Schemas> = OnceLock::new();
    S.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/spec/oci-image-spec-v1.1.1");
        let load = |f: &str| -> Value { serde_json::from_slice(&std::fs::read(dir.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"))).unwrap() };
        let files = ["config-schema.json", "content-descriptor.json", "defs-descriptor.json", "defs.json", "image-index-schema.json", "image-manifest-schema.json"];
        let mut resources = Vec::new();
        for f in files {
            for base in ["https://opencontainers.org/schema/", "https://opencontainers.org/schema/image/"] {
                resources.push((format!("{base}{f}"), jsonschema::Resource::from_contents(load(f))));
            }
        }
        let registry = jsonschema::Registry::new().extend(resources).expect("schemas register").prepare().expect("schemas resolve");
        let build = |f: &str| {
            jsonschema::options()
                .with_draft(jsonschema::Draft::Draft4)
                .with_registry(&registry)
                .build(&load(f))
                .unwrap_or_else(|e| panic!("{f}: {e}"))
        };
        Schemas { manifest: build("image-manifest-schema.json"), config: build("config-schema.json"), index: build("image-index-schema.json") }
    })
}

/// Fails with every schema error of `doc`.
pub fn assert_valid(v: &jsonschema::Validator, doc: &Value, what: &str) {
    let errors: Vec<String> = v.iter_errors(doc).map(|e| format!("{} at {}", e, e.instance_path())).collect();
    assert!(errors.is_empty(), "{what} does not validate against the OCI schema: {errors:#?}\n{doc:#}");
}

/// A ciao config from YAML, with `HOME` pointing at an empty directory (no
/// stray docker credentials).
pub fn config(yaml: &str) -> Config {
    let env: BTreeMap<String, String> = [("HOME".to_string(), fresh_dir("home-").display().to_string())].into();
    Config::from_yaml(yaml, None, &env).expect("test config is valid")
}

/// Build options with an empty `HOME` and a short timeout.
pub fn options() -> BuildOptions {
    BuildOptions {
        timeout: std::time::Duration::from_secs(20),
        env: [("HOME".to_string(), fresh_dir("home-").display().to_string())].into(),
        ..BuildOptions::default()
    }
}

/// A plan for the `python` framework from a base and a target (`None`: the
/// config decides: registry prefix, else the layout).
pub fn plan(config: &Config, base: &str, image: Option<&str>, packages: &[&str]) -> Plan {
    let params = JobParams {
        base: Some(base.to_string()),
        image: image.map(String::from),
        packages: packages.iter().map(|p| p.to_string()).collect(),
        ..JobParams::default()
    };
    Plan::resolve_with(&params, config, Frameworks::embedded(), false).expect("plan resolves")
}

/// Progress lines a build reported.
#[derive(Clone, Default)]
pub struct Lines(pub Arc<Mutex<Vec<String>>>);

impl Lines {
    pub fn callback(&self) -> ProgressFn {
        let l = self.0.clone();
        Arc::new(move |p: &Progress| {
            if let Some(line) = p.line() {
                l.lock().unwrap().push(line);
            }
        })
    }

    pub fn text(&self) -> String {
        self.0.lock().unwrap().join("\n")
    }
}

/// Builds `code` with `builder`.
pub async fn build(builder: &Builder, config: &Config, plan: &Plan, code: &str, options: &BuildOptions) -> Result<BuildResult, ImageError> {
    builder.build(plan, code, config, options, Lines::default().callback(), &CancellationToken::new()).await
}

/// The `ciao` binary with a clean environment: HOME and CIAO_HOME in a temp
/// dir, no CIAO_* or docker settings from the caller.
pub fn ciao() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ciao"));
    for (k, _) in std::env::vars() {
        if k.starts_with("CIAO_") || k == "DOCKER_CONFIG" || k == "SOURCE_DATE_EPOCH" {
            cmd.env_remove(k);
        }
    }
    let home = fresh_dir("home-");
    cmd.env("HOME", &home).env("CIAO_HOME", home.join(".ciao"));
    cmd
}

/// Runs `cmd` and returns its output and peak resident set size in KiB
/// (the child's `ru_maxrss`, read by a python3 wrapper that only waits).
pub fn run_with_peak_rss(cmd: &Command) -> (Output, u64) {
    require("python3", "python3");
    let mut wrapper = Command::new("python3");
    wrapper.arg("-c").arg(
        "import resource, subprocess, sys\n\
         r = subprocess.run(sys.argv[1:])\n\
         sys.stderr.write('PEAK_RSS_KIB %d\\n' % resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n\
         sys.exit(r.returncode)",
    );
    wrapper.arg(cmd.get_program()).args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => wrapper.env(k, v),
            None => wrapper.env_remove(k),
        };
    }
    let out = wrapper.output().expect("python3 runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let rss = stderr
        .lines()
        .find_map(|l| l.strip_prefix("PEAK_RSS_KIB ").and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("no peak RSS reported:\n{stderr}"));
    (out, rss)
}
