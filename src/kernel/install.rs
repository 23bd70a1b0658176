//! `ciao install`: writes the kernelspec (kernel.json and the logos) where
//! Jupyter looks for it.
//!
//! kernel.json comes from the template at the repository's top level, with
//! argv[0] replaced by the absolute path of the running binary so the kernel
//! starts without ciao on `PATH`.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::cli::InstallArgs;

const TEMPLATE: &str = include_str!("../../kernel.json");
const LOGO_32: &[u8] = include_bytes!("../../assets/logo-32x32.png");
const LOGO_64: &[u8] = include_bytes!("../../assets/logo-64x64.png");

/// Why the kernelspec was not installed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("invalid kernelspec name {0:?}: use letters, digits, '.', '_' and '-' only (e.g. --name ciao)")]
    Name(String),
    #[error("cannot find the user's home directory for --user; set JUPYTER_DATA_DIR or use --prefix DIR")]
    NoHome,
    #[error(
        "cannot find the Python environment for --sys-prefix: {0}; activate the environment (VIRTUAL_ENV or \
         CONDA_PREFIX) or use --prefix DIR"
    )]
    SysPrefix(String),
    #[error("cannot find the path of the running ciao binary: {0}")]
    CurrentExe(#[source] std::io::Error),
    #[error("the kernel.json template is invalid: {0}")]
    Template(String),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Jupyter's data directory, as jupyter_core finds it on Linux and macOS:
/// `$JUPYTER_DATA_DIR`, else `$XDG_DATA_HOME/jupyter`, else `~/.local/share/jupyter`.
pub fn jupyter_data_dir() -> Option<PathBuf> {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(d) = var("JUPYTER_DATA_DIR") {
        return Some(d);
    }
    if let Some(x) = var("XDG_DATA_HOME") {
        return Some(x.join("jupyter"));
    }
    var("HOME").or_else(dirs::home_dir).map(|h| h.join(".local/share/jupyter"))
}

/// Writes the kernelspec and returns its directory.
///
/// # Errors
/// An invalid name, an undeterminable install location, or a write failure.
pub fn install(args: &InstallArgs) -> Result<PathBuf, Box<dyn std::error::Error>> {
    Ok(install_spec(args)?)
}

fn install_spec(args: &InstallArgs) -> Result<PathBuf, InstallError> {
    let name = &args.name;
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')) {
        return Err(InstallError::Name(name.clone()));
    }
    let share = if let Some(prefix) = &args.prefix {
        absolute(prefix).join("share/jupyter")
    } else if args.sys_prefix {
        sys_prefix()?.join("share/jupyter")
    } else {
        jupyter_data_dir().ok_or(InstallError::NoHome)?
    };
    let dir = share.join("kernels").join(name);
    let exe = std::env::current_exe().map_err(InstallError::CurrentExe)?;
    let spec = kernel_json(&exe, &args.display_name)?;

    std::fs::create_dir_all(&dir).map_err(|source| InstallError::Write { path: dir.clone(), source })?;
    write_atomically(&dir.join("logo-32x32.png"), LOGO_32)?;
    write_atomically(&dir.join("logo-64x64.png"), LOGO_64)?;
    write_atomically(&dir.join("kernel.json"), spec.as_bytes())?;
    Ok(dir)
}

/// The template with `exe` as argv[0] and `display_name`.
fn kernel_json(exe: &Path, display_name: &str) -> Result<String, InstallError> {
    let mut spec: Value = serde_json::from_str(TEMPLATE).map_err(|e| InstallError::Template(e.to_string()))?;
    let argv = spec
        .get_mut("argv")
        .and_then(Value::as_array_mut)
        .filter(|a| !a.is_empty())
        .ok_or_else(|| InstallError::Template("argv is missing or empty".into()))?;
    argv[0] = Value::String(exe.to_string_lossy().into_owned());
    spec["display_name"] = Value::String(display_name.to_string());
    serde_json::to_string_pretty(&spec).map(|s| s + "\n").map_err(|e| InstallError::Template(e.to_string()))
}

fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().map(|d| d.join(p)).unwrap_or_else(|_| p.to_path_buf())
    }
}

/// The active Python environment: `VIRTUAL_ENV`, `CONDA_PREFIX`, else what
/// `python3` reports as `sys.prefix`.
fn sys_prefix() -> Result<PathBuf, InstallError> {
    for var in ["VIRTUAL_ENV", "CONDA_PREFIX"] {
        if let Some(v) = std::env::var_os(var).filter(|v| !v.is_empty()) {
            return Ok(PathBuf::from(v));
        }
    }
    let out = std::process::Command::new("python3")
        .args(["-c", "import sys; print(sys.prefix)"])
        .output()
        .map_err(|e| InstallError::SysPrefix(format!("running python3 failed: {e}")))?;
    let prefix = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || prefix.is_empty() {
        return Err(InstallError::SysPrefix(format!(
            "python3 exited with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(PathBuf::from(prefix))
}

/// Writes through a temporary file and a rename, so a kernelspec is never half-written.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), InstallError> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let wrap = |source| InstallError::Write { path: path.to_path_buf(), source };
    std::fs::write(&tmp, bytes).map_err(wrap)?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        wrap(e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(prefix: &Path) -> InstallArgs {
        InstallArgs {
            user: false,
            sys_prefix: false,
            prefix: Some(prefix.to_path_buf()),
            name: "ciao-test".into(),
            display_name: "ciao (test)".into(),
        }
    }

    #[test]
    fn install_with_a_prefix_writes_kernel_json_with_the_absolute_binary_and_both_logos() {
        let dir = tempfile::tempdir().unwrap();
        let spec_dir = install_spec(&args(dir.path())).unwrap();
        assert_eq!(spec_dir, dir.path().join("share/jupyter/kernels/ciao-test"));
        let spec: Value = serde_json::from_slice(&std::fs::read(spec_dir.join("kernel.json")).unwrap()).unwrap();
        let argv: Vec<&str> = spec["argv"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        assert!(Path::new(argv[0]).is_absolute(), "{argv:?}");
        assert_eq!(argv[1..], ["kernel", "--connection-file", "{connection_file}"]);
        assert_eq!(spec["display_name"], "ciao (test)");
        assert_eq!(spec["language"], "python");
        assert_eq!(spec["interrupt_mode"], "message");
        for (file, size) in [("logo-32x32.png", 32u32), ("logo-64x64.png", 64)] {
            let png = std::fs::read(spec_dir.join(file)).unwrap();
            assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
            assert_eq!(&png[12..16], b"IHDR");
            assert_eq!(u32::from_be_bytes(png[16..20].try_into().unwrap()), size);
            assert_eq!(u32::from_be_bytes(png[20..24].try_into().unwrap()), size);
        }
        assert!(std::fs::read_dir(&spec_dir).unwrap().all(|e| !e.unwrap().file_name().to_string_lossy().contains("tmp")));
    }

    #[test]
    fn installing_twice_replaces_the_spec() {
        let dir = tempfile::tempdir().unwrap();
        install_spec(&args(dir.path())).unwrap();
        let mut a = args(dir.path());
        a.display_name = "second".into();
        let spec_dir = install_spec(&a).unwrap();
        let spec: Value = serde_json::from_slice(&std::fs::read(spec_dir.join("kernel.json")).unwrap()).unwrap();
        assert_eq!(spec["display_name"], "second");
    }

    #[test]
    fn names_jupyter_would_refuse_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["", "a/b", "a b", "..\u{e9}"] {
            let mut a = args(dir.path());
            a.name = bad.into();
            let err = install_spec(&a).unwrap_err();
            assert!(matches!(err, InstallError::Name(_)), "{bad:?}: {err}");
        }
    }

    #[test]
    fn the_template_is_the_repository_kernel_json() {
        let spec = kernel_json(Path::new("/opt/ciao/bin/ciao"), "x").unwrap();
        let v: Value = serde_json::from_str(&spec).unwrap();
        let template: Value = serde_json::from_str(TEMPLATE).unwrap();
        assert_eq!(v["argv"][0], "/opt/ciao/bin/ciao");
        assert_eq!(v["argv"].as_array().unwrap()[1..], template["argv"].as_array().unwrap()[1..]);
        assert_eq!(v["metadata"], template["metadata"]);
    }
}
