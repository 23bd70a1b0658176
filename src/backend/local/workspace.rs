//! A local job's directory: the files of the built image (ciao's layers
//! only: code, `%files`, `%module`) unpacked under `root/`, so `/app/main.py`
//! is `root/app/main.py`, and, with `%packages`, a virtual environment
//! `venv/` of its own. The directory goes when the job ends.
//!
//! Commands are mapped onto it: `python`/`python3` become the host's Python
//! (or the job's virtual environment's), and image paths that exist in
//! `root/` become paths there.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::backend::{CodeFile, Shipment};
use crate::config::Config;
use crate::image::{self, BuildOptions};
use crate::plan::Plan;

use super::LocalError;
use super::process::Launch;

/// The environment variable naming the Python interpreter local jobs use.
pub const PYTHON_VAR: &str = "CIAO_PYTHON";

/// A job's directory.
#[derive(Debug)]
pub struct Workspace {
    dir: tempfile::TempDir,
    /// Where `/` of the image is.
    pub root: PathBuf,
    /// The image's working directory, mapped.
    pub workdir: PathBuf,
}

impl Workspace {
    /// Unpacks what `shipment` ships into a new directory.
    ///
    /// # Errors
    /// The image cannot be read (registry, layout, I/O).
    pub async fn create(
        shipment: &Shipment,
        plan: &Plan,
        config: &Config,
        builder: &image::Builder,
        job_name: &str,
    ) -> Result<Workspace, LocalError> {
        let dir = tempfile::Builder::new().prefix(&format!("ciao-{job_name}-")).tempdir().map_err(|e| {
            LocalError::Io { what: "cannot create the job's directory in the temporary directory".into(), source: e }
        })?;
        let root = dir.path().join("root");
        match shipment {
            Shipment::Image(built) => {
                let options = BuildOptions::from_env(&crate::config::ProcessEnv).map_err(LocalError::Image)?;
                image::extract_added_layers(builder, config, &options, &built.reference, &root)
                    .await
                    .map_err(LocalError::Image)?;
            }
            Shipment::ConfigMap { files, .. } => write_files(&root, files)?,
        }
        let workdir = map_path(&root, &plan.framework.workdir);
        std::fs::create_dir_all(&workdir).map_err(|e| LocalError::Io {
            what: format!("cannot create the working directory {}", workdir.display()),
            source: e,
        })?;
        Ok(Workspace { dir, root, workdir })
    }

    /// The job's directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Where the job's virtual environment goes.
    pub fn venv(&self) -> PathBuf {
        self.dir.path().join("venv")
    }

    /// `command` with image paths mapped under [`Workspace::root`] and
    /// `python`/`python3` replaced by `python`.
    pub fn launch(&self, command: &[String], python: Option<&Path>, env: Vec<(String, String)>) -> Launch {
        let mut it = command.iter();
        let first = it.next().cloned().unwrap_or_default();
        let program = match python {
            Some(p) if is_python(&first) => p.display().to_string(),
            _ => self.map_arg(&first),
        };
        Launch { program, args: it.map(|a| self.map_arg(a)).collect(), env, cwd: self.workdir.clone() }
    }

    /// An absolute path that names a file or directory of the image's
    /// (ciao's layers) becomes its path in the workspace.
    fn map_arg(&self, arg: &str) -> String {
        if arg.starts_with('/') && arg.len() > 1 {
            let mapped = map_path(&self.root, arg);
            if mapped.exists() {
                return mapped.display().to_string();
            }
        }
        arg.to_string()
    }
}

/// Whether `program` names a Python interpreter the way images do.
pub fn is_python(program: &str) -> bool {
    let base = program.rsplit('/').next().unwrap_or(program);
    base == "python" || base == "python3"
}

/// `/app/main.py` → `root/app/main.py`.
pub fn map_path(root: &Path, image_path: &str) -> PathBuf {
    let rel = image_path.trim_start_matches('/');
    if rel.is_empty() { root.to_path_buf() } else { root.join(rel) }
}

fn write_files(root: &Path, files: &[CodeFile]) -> Result<(), LocalError> {
    for f in files {
        let rel = Path::new(f.path.trim_start_matches('/'));
        if rel.components().any(|c| !matches!(c, std::path::Component::Normal(_))) {
            return Err(LocalError::Io {
                what: format!("the file path {:?} is not a plain absolute path", f.path),
                source: std::io::Error::from(std::io::ErrorKind::InvalidInput),
            });
        }
        let path = root.join(rel);
        let io = |e| LocalError::Io { what: format!("cannot write {}", path.display()), source: e };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        std::fs::write(&path, &f.content).map_err(io)?;
    }
    Ok(())
}

/// The host's Python: its real executable and whether it has pip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPython {
    pub executable: PathBuf,
    pub has_pip: bool,
}

/// Finds the host's Python once per (`CIAO_PYTHON`, `PATH`): the
/// interpreter's own `sys.executable`, so launchers such as pyenv shims are
/// not paid for on every replica.
#[derive(Debug, Default)]
pub struct PythonFinder {
    found: Mutex<HashMap<(String, String), HostPython>>,
}

impl PythonFinder {
    /// The interpreter for `env` (the environment replicas get).
    ///
    /// # Errors
    /// No Python found, or it does not run.
    pub async fn find(&self, env: &[(String, String)]) -> Result<HostPython, LocalError> {
        let get = |k: &str| env.iter().rev().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let path = get("PATH").unwrap_or_default();
        let wanted = std::env::var(PYTHON_VAR).ok().filter(|v| !v.is_empty());
        let key = (wanted.clone().unwrap_or_default(), path.clone());
        if let Some(p) = self.found.lock().expect("python lock").get(&key) {
            return Ok(p.clone());
        }
        let candidate = match &wanted {
            Some(p) => PathBuf::from(p),
            None => which("python3", &path)
                .ok_or_else(|| LocalError::NoPython { why: "there is no python3 on PATH".into() })?,
        };
        let probe =
            "import sys, importlib.util\nprint(sys.executable)\nprint(importlib.util.find_spec('pip') is not None)";
        let out = tokio::process::Command::new(&candidate)
            .args(["-c", probe])
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .map_err(|e| LocalError::NoPython { why: format!("{} does not run: {e}", candidate.display()) })?;
        let text = String::from_utf8_lossy(&out.stdout);
        let mut lines = text.lines();
        let (Some(exe), Some(pip)) = (lines.next(), lines.next()) else {
            return Err(LocalError::NoPython {
                why: format!(
                    "{} did not say where it is ({}): {}",
                    candidate.display(),
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            });
        };
        let found = HostPython {
            executable: if exe.is_empty() { candidate.clone() } else { PathBuf::from(exe) },
            has_pip: pip == "True",
        };
        self.found.lock().expect("python lock").insert(key, found.clone());
        Ok(found)
    }
}

/// `name` on `path` (a `PATH` value), if executable.
pub fn which(name: &str, path: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::env::split_paths(path)
        .map(|d| d.join(name))
        .find(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_paths_map_into_the_workspace_and_python_to_the_host() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("app")).unwrap();
        std::fs::write(root.join("app/main.py"), "").unwrap();
        let ws = Workspace { root: root.clone(), workdir: root.join("app"), dir };
        let cmd: Vec<String> =
            ["python", "-u", "/app/main.py", "/etc/passwd", "-"].iter().map(|s| s.to_string()).collect();
        let l = ws.launch(&cmd, Some(Path::new("/usr/bin/python3.11")), vec![]);
        assert_eq!(l.program, "/usr/bin/python3.11");
        assert_eq!(l.args, ["-u", &root.join("app/main.py").display().to_string(), "/etc/passwd", "-"]);
        assert_eq!(l.cwd, root.join("app"));
        let l = ws.launch(&["/bin/sh".to_string(), "-c".into(), "true".into()], Some(Path::new("/p")), vec![]);
        assert_eq!(l.program, "/bin/sh");
        assert!(is_python("/usr/bin/python3") && is_python("python") && !is_python("python3-config"));
    }

    #[test]
    fn which_finds_executables_only() {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("tool");
        std::fs::write(&exe, "#!/bin/sh\n").unwrap();
        assert_eq!(which("tool", &dir.path().display().to_string()), None);
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(which("tool", &format!("/nonexistent:{}", dir.path().display())), Some(exe));
    }

    #[tokio::test]
    async fn the_host_python_is_resolved_once_to_its_real_executable() {
        let finder = PythonFinder::default();
        let env = vec![("PATH".to_string(), std::env::var("PATH").unwrap())];
        let p = finder.find(&env).await.unwrap();
        assert!(p.executable.is_absolute() && p.executable.exists(), "{p:?}");
        assert_eq!(finder.find(&env).await.unwrap(), p);
        let e = finder.find(&[("PATH".to_string(), "/nonexistent".to_string())]).await.unwrap_err();
        assert!(e.to_string().contains("no python3 on PATH") && e.to_string().contains(PYTHON_VAR), "{e}");
    }
}
