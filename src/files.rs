//! `%files=PATH[,PATH…]`: files and directories of the kernel's working
//! directory shipped with the job, next to the code (`data.csv` →
//! `/app/data.csv`, directories recursively).
//!
//! Paths stay inside the working directory: absolute paths, `..` and
//! symlinks that resolve outside it are refused; symlinks inside it are
//! followed (their target's content ships under the link's name). Special
//! files are refused. The total is limited ([`DEFAULT_LIMIT`], or
//! `CIAO_FILES_LIMIT`). The files become their own layer; a session keeps
//! the last few, keyed by the files' paths, sizes and modification times,
//! so an unchanged `%files` costs a directory walk and no reading.

use std::collections::{BTreeMap, HashSet};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::image::layer::{EXEC_MODE, FILE_MODE};
use crate::image::{ImageError, Layer, LayerFile, LayerKind};

/// The most `%files` may ship, in bytes (64 MiB).
pub const DEFAULT_LIMIT: u64 = 64 << 20;

/// The environment variable that changes [`DEFAULT_LIMIT`] (`100Mi`, `1G`, `5000000`).
pub const LIMIT_VAR: &str = "CIAO_FILES_LIMIT";

/// Layers kept per session.
const CACHED: usize = 4;

/// What is wrong with a `%files` entry.
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error("%files {path}: there is no such file or directory in the kernel's working directory {dir}")]
    Missing { path: String, dir: String },
    #[error("%files {path}: {why}; %files ships only what is inside the kernel's working directory {dir}")]
    Escapes { path: String, why: String, dir: String },
    #[error("%files {path}: {why}")]
    Unsupported { path: String, why: String },
    #[error(
        "%files come to {size} bytes, more than the limit of {limit} bytes; put large data on a volume (%volume=CLAIM:/data) or raise {var}",
        var = LIMIT_VAR
    )]
    TooLarge { size: u64, limit: u64 },
    #[error("%files {path}: it would be hidden by {what} at the same path in the image; rename it")]
    Clash { path: String, what: String },
    #[error("{var}={value:?} is not a size: write bytes or a size such as 64Mi or 1G", var = LIMIT_VAR)]
    BadLimit { value: String },
    #[error("%files {path}: cannot read it: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Layer(#[from] ImageError),
}

/// One file to ship: where it goes (relative to the code's directory) and
/// where it is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// `data/train.csv`.
    pub rel: String,
    pub source: PathBuf,
    pub size: u64,
    pub mtime_ns: i128,
    /// [`FILE_MODE`] or, for executables, [`EXEC_MODE`].
    pub mode: u32,
}

/// The `%files` limit from the environment.
///
/// # Errors
/// A value that is not a size.
pub fn limit_from_env() -> Result<u64, FilesError> {
    match std::env::var(LIMIT_VAR) {
        Ok(v) if !v.trim().is_empty() => parse_size(&v).ok_or(FilesError::BadLimit { value: v }),
        _ => Ok(DEFAULT_LIMIT),
    }
}

fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().ok()?;
    let m: u64 = match unit.trim() {
        "" => 1,
        "K" | "k" | "KB" | "kB" => 1000,
        "M" | "MB" => 1_000_000,
        "G" | "GB" => 1_000_000_000,
        "Ki" | "KiB" => 1 << 10,
        "Mi" | "MiB" => 1 << 20,
        "Gi" | "GiB" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(m)
}

/// Finds the files `specs` name under `dir`, sorted by path, duplicates
/// once.
///
/// # Errors
/// Missing paths, paths or symlinks leading outside `dir`, special files,
/// a total over `limit`.
pub fn collect(dir: &Path, specs: &[String], limit: u64) -> Result<Vec<Found>, FilesError> {
    let shown = dir.display().to_string();
    let root = dir.canonicalize().map_err(|source| FilesError::Io { path: shown.clone(), source })?;
    let mut found: BTreeMap<String, Found> = BTreeMap::new();
    for spec in specs {
        let escapes = |why: String| FilesError::Escapes { path: spec.clone(), why, dir: shown.clone() };
        let p = Path::new(spec);
        if p.is_absolute() {
            return Err(escapes("it is an absolute path; give it relative to the working directory".into()));
        }
        if p.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
            return Err(escapes("it goes up with '..'".into()));
        }
        let rel: Vec<String> = p
            .components()
            .filter_map(|c| match c {
                std::path::Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
                _ => None,
            })
            .collect();
        let path = root.join(p);
        if std::fs::symlink_metadata(&path).is_err() {
            return Err(FilesError::Missing { path: spec.clone(), dir: shown.clone() });
        }
        let real = path.canonicalize().map_err(|source| FilesError::Io { path: spec.clone(), source })?;
        if !real.starts_with(&root) {
            return Err(escapes(format!("it resolves to {}", real.display())));
        }
        let mut visited = HashSet::new();
        walk(&root, &real, &rel.join("/"), spec, &shown, &mut visited, &mut found)?;
    }
    let size: u64 = found.values().map(|f| f.size).sum();
    if size > limit {
        return Err(FilesError::TooLarge { size, limit });
    }
    Ok(found.into_values().collect())
}

/// Adds `real` (a resolved path inside `root`) under the name `rel`.
fn walk(
    root: &Path,
    real: &Path,
    rel: &str,
    spec: &str,
    shown: &str,
    visited: &mut HashSet<PathBuf>,
    found: &mut BTreeMap<String, Found>,
) -> Result<(), FilesError> {
    let io = |source| FilesError::Io { path: spec.to_string(), source };
    let meta = std::fs::metadata(real).map_err(io)?;
    if meta.is_file() {
        if rel.is_empty() {
            return Err(FilesError::Unsupported { path: spec.into(), why: "it names no file".into() });
        }
        let mode = if meta.permissions().mode() & 0o111 != 0 { EXEC_MODE } else { FILE_MODE };
        let mtime_ns = i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec());
        found.entry(rel.to_string()).or_insert(Found {
            rel: rel.to_string(),
            source: real.to_path_buf(),
            size: meta.len(),
            mtime_ns,
            mode,
        });
        return Ok(());
    }
    if !meta.is_dir() {
        return Err(FilesError::Unsupported {
            path: spec.into(),
            why: format!("{} is neither a file nor a directory (a socket, pipe or device)", real.display()),
        });
    }
    if !visited.insert(real.to_path_buf()) {
        return Err(FilesError::Unsupported {
            path: spec.into(),
            why: format!("a symlink loops back to {}", real.display()),
        });
    }
    let mut entries: Vec<_> = std::fs::read_dir(real).map_err(io)?.collect::<Result<_, _>>().map_err(io)?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name().to_string_lossy().into_owned();
        let child = e.path();
        let child_real = child
            .canonicalize()
            .map_err(|source| FilesError::Io { path: format!("{spec} ({})", child.display()), source })?;
        if !child_real.starts_with(root) {
            return Err(FilesError::Escapes {
                path: spec.into(),
                why: format!("{} is a symlink to {}", child.display(), child_real.display()),
                dir: shown.into(),
            });
        }
        let child_rel = if rel.is_empty() { name } else { format!("{rel}/{name}") };
        walk(root, &child_real, &child_rel, spec, shown, visited, found)?;
    }
    visited.remove(real);
    Ok(())
}

/// Refuses files that a later layer would hide: `taken` are the image
/// paths of the code and the modules.
///
/// # Errors
/// The first clash.
pub fn check_clashes(files: &[Found], code_dir: &str, taken: &[(String, String)]) -> Result<(), FilesError> {
    for f in files {
        let path = format!("{code_dir}/{}", f.rel);
        for (t, what) in taken {
            if &path == t || t.starts_with(&format!("{path}/")) || path.starts_with(&format!("{t}/")) {
                return Err(FilesError::Clash { path: f.rel.clone(), what: format!("{what} ({t})") });
            }
        }
    }
    Ok(())
}

/// What `%files` ships: the files with their image paths, and the layer.
#[derive(Debug)]
pub struct Shipped {
    pub files: Vec<LayerFile>,
    pub layer: Layer,
}

/// The `%files` of a session: the last few layers by what they were made of.
#[derive(Debug, Default)]
pub struct FilesCache {
    entries: Mutex<Vec<(String, Arc<Shipped>)>>,
}

impl FilesCache {
    /// The files and layer for `found`, placed under `code_dir`, made with
    /// file times `mtime`; reused while paths, sizes, times and modes stay
    /// the same.
    ///
    /// # Errors
    /// A file that cannot be read, or changed size while read.
    pub fn ship(&self, found: &[Found], code_dir: &str, mtime: u64) -> Result<Arc<Shipped>, FilesError> {
        let mut key = format!("{code_dir}\0{mtime}\n");
        for f in found {
            key.push_str(&format!("{}\0{}\0{}\0{}\0{}\n", f.rel, f.source.display(), f.size, f.mtime_ns, f.mode));
        }
        if let Some((_, s)) = self.entries.lock().expect("files cache lock").iter().find(|(k, _)| *k == key) {
            return Ok(s.clone());
        }
        let mut files = Vec::with_capacity(found.len());
        for f in found {
            let data = std::fs::read(&f.source).map_err(|source| FilesError::Io { path: f.rel.clone(), source })?;
            if data.len() as u64 != f.size {
                return Err(FilesError::Unsupported {
                    path: f.rel.clone(),
                    why: "it changed while it was read; run the cell again".into(),
                });
            }
            files.push(LayerFile { path: format!("{code_dir}/{}", f.rel), data: data.into(), mode: f.mode });
        }
        let layer = Layer::from_files(LayerKind::Files, &files, mtime)?;
        let shipped = Arc::new(Shipped { files, layer });
        let mut entries = self.entries.lock().expect("files cache lock");
        entries.push((key, shipped.clone()));
        if entries.len() > CACHED {
            entries.remove(0);
        }
        Ok(shipped)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    fn tree() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        std::fs::create_dir_all(p.join("data/sub")).unwrap();
        std::fs::write(p.join("data/b.csv"), "b").unwrap();
        std::fs::write(p.join("data/a.csv"), "aa").unwrap();
        std::fs::write(p.join("data/sub/c.txt"), "ccc").unwrap();
        std::fs::write(p.join("run.sh"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(p.join("run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
        d
    }

    fn specs(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn directories_are_walked_sorted_and_files_keep_their_exec_bit() {
        let d = tree();
        let f = collect(d.path(), &specs(&["run.sh", "data", "data/a.csv"]), DEFAULT_LIMIT).unwrap();
        let got: Vec<_> = f.iter().map(|f| (f.rel.as_str(), f.size, f.mode)).collect();
        assert_eq!(
            got,
            [("data/a.csv", 2, 0o644), ("data/b.csv", 1, 0o644), ("data/sub/c.txt", 3, 0o644), ("run.sh", 10, 0o755)]
        );
        let f = collect(d.path(), &specs(&["./data/sub/"]), DEFAULT_LIMIT).unwrap();
        assert_eq!(f[0].rel, "data/sub/c.txt");
    }

    #[test]
    fn missing_absolute_and_upward_paths_are_named() {
        let d = tree();
        let e = collect(d.path(), &specs(&["nope.csv"]), DEFAULT_LIMIT).unwrap_err().to_string();
        assert!(e.contains("nope.csv") && e.contains("no such file"), "{e}");
        let e = collect(d.path(), &specs(&["/etc/passwd"]), DEFAULT_LIMIT).unwrap_err().to_string();
        assert!(e.contains("absolute"), "{e}");
        let e = collect(d.path(), &specs(&["data/../../x"]), DEFAULT_LIMIT).unwrap_err().to_string();
        assert!(e.contains("'..'"), "{e}");
    }

    #[test]
    fn symlinks_inside_are_followed_and_outside_refused() {
        let d = tree();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "s").unwrap();
        symlink(d.path().join("data/a.csv"), d.path().join("alias.csv")).unwrap();
        let f = collect(d.path(), &specs(&["alias.csv"]), DEFAULT_LIMIT).unwrap();
        assert_eq!((f[0].rel.as_str(), f[0].size), ("alias.csv", 2));
        symlink(outside.path().join("secret"), d.path().join("leak")).unwrap();
        let e = collect(d.path(), &specs(&["leak"]), DEFAULT_LIMIT).unwrap_err().to_string();
        assert!(e.contains("resolves to") && e.contains("working directory"), "{e}");
        symlink(outside.path(), d.path().join("data/escape")).unwrap();
        let e = collect(d.path(), &specs(&["data"]), DEFAULT_LIMIT).unwrap_err().to_string();
        assert!(e.contains("is a symlink to"), "{e}");
    }

    #[test]
    fn symlink_loops_and_special_files_are_refused() {
        let d = tree();
        symlink(d.path().join("data"), d.path().join("data/sub/loop")).unwrap();
        let e = collect(d.path(), &specs(&["data"]), DEFAULT_LIMIT).unwrap_err().to_string();
        assert!(e.contains("loops"), "{e}");
        let sock = d.path().join("s.sock");
        let _l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let e = collect(d.path(), &specs(&["s.sock"]), DEFAULT_LIMIT).unwrap_err().to_string();
        assert!(e.contains("neither a file nor a directory"), "{e}");
    }

    #[test]
    fn the_size_limit_counts_every_file() {
        let d = tree();
        assert!(collect(d.path(), &specs(&["data"]), 6).is_ok());
        let e = collect(d.path(), &specs(&["data"]), 5).unwrap_err().to_string();
        assert!(e.contains("6 bytes") && e.contains(LIMIT_VAR), "{e}");
        assert_eq!(parse_size("64Mi"), Some(64 << 20));
        assert_eq!(parse_size("1G"), Some(1_000_000_000));
        assert_eq!(parse_size("12"), Some(12));
        assert_eq!(parse_size("lots"), None);
    }

    #[test]
    fn code_and_modules_are_not_shadowed() {
        let d = tree();
        std::fs::write(d.path().join("main.py"), "x").unwrap();
        let f = collect(d.path(), &specs(&["main.py"]), DEFAULT_LIMIT).unwrap();
        let taken = [("/app/main.py".to_string(), "the cell's code".to_string())];
        let e = check_clashes(&f, "/app", &taken).unwrap_err().to_string();
        assert!(e.contains("main.py") && e.contains("the cell's code"), "{e}");
        let f = collect(d.path(), &specs(&["data"]), DEFAULT_LIMIT).unwrap();
        assert!(check_clashes(&f, "/app", &taken).is_ok());
    }

    #[test]
    fn an_unchanged_set_reuses_its_layer_and_a_change_makes_a_new_one() {
        let d = tree();
        let cache = FilesCache::default();
        let f = collect(d.path(), &specs(&["data"]), DEFAULT_LIMIT).unwrap();
        let a = cache.ship(&f, "/app", 0).unwrap();
        assert_eq!(a.layer.paths, ["/app/data/a.csv", "/app/data/b.csv", "/app/data/sub/c.txt"]);
        assert_eq!(a.layer.kind, LayerKind::Files);
        let b = cache.ship(&collect(d.path(), &specs(&["data"]), DEFAULT_LIMIT).unwrap(), "/app", 0).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        std::fs::write(d.path().join("data/b.csv"), "bb").unwrap();
        let c = cache.ship(&collect(d.path(), &specs(&["data"]), DEFAULT_LIMIT).unwrap(), "/app", 0).unwrap();
        assert!(!Arc::ptr_eq(&a, &c));
        assert_ne!(a.layer.digest, c.layer.digest);
        // The same content again gives the same digest (reproducible).
        std::fs::write(d.path().join("data/b.csv"), "b").unwrap();
        let e = cache.ship(&collect(d.path(), &specs(&["data"]), DEFAULT_LIMIT).unwrap(), "/app", 0).unwrap();
        assert_eq!(e.layer.digest, a.layer.digest);
    }
}
