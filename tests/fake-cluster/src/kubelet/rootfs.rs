//! Pod root filesystems: image layers extracted in order (whiteouts honoured, nothing
//! written outside the root), then volumes placed at their mount paths.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use serde_json::Value;

use super::image::is_gzip;

/// Joins an absolute container path onto `root`, refusing `..` and following no symlink
/// that leaves the root.
pub fn safe_join(root: &Path, p: &str) -> Option<PathBuf> {
    let mut out = root.to_path_buf();
    for c in Path::new(p).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    // any existing prefix must resolve inside the root
    let mut probe = out.clone();
    while !probe.exists() {
        if !probe.pop() {
            break;
        }
    }
    let croot = root.canonicalize().ok()?;
    let cprobe = probe.canonicalize().ok()?;
    if cprobe.starts_with(&croot) { Some(out) } else { None }
}

/// Extracts layers in order into `root`.
pub fn extract_layers(root: &Path, layers: &[(PathBuf, String)]) -> Result<(), String> {
    std::fs::create_dir_all(root).map_err(|e| format!("cannot create rootfs: {e}"))?;
    for (path, media_type) in layers {
        if media_type.contains("zstd") {
            return Err(format!("unsupported layer media type {media_type}"));
        }
        let file = std::fs::File::open(path).map_err(|e| format!("cannot open layer: {e}"))?;
        let reader: Box<dyn Read> = if is_gzip(path) { Box::new(flate2::read::GzDecoder::new(file)) } else { Box::new(file) };
        extract_one(root, reader).map_err(|e| format!("cannot extract layer {}: {e}", path.display()))?;
    }
    Ok(())
}

fn extract_one(root: &Path, reader: Box<dyn Read>) -> std::io::Result<()> {
    let mut ar = tar::Archive::new(reader);
    ar.set_preserve_permissions(true);
    ar.set_overwrite(true);
    ar.set_unpack_xattrs(false);
    ar.set_preserve_mtime(true);
    for entry in ar.entries()? {
        let mut entry = entry?;
        let et = entry.header().entry_type();
        if matches!(et, tar::EntryType::Block | tar::EntryType::Char | tar::EntryType::Fifo) {
            continue;
        }
        let path = entry.path()?.into_owned();
        let Some(file_name) = path.file_name().and_then(|n| n.to_str()).map(str::to_string) else {
            entry.unpack_in(root)?;
            continue;
        };
        if let Some(target) = file_name.strip_prefix(".wh.") {
            let parent = path.parent().map(|p| p.to_string_lossy().to_string()).unwrap_or_default();
            let Some(dir) = safe_join(root, &parent) else { continue };
            if target == ".wh..opq" {
                if let Ok(rd) = std::fs::read_dir(&dir) {
                    for e in rd.flatten() {
                        remove_any(&e.path());
                    }
                }
            } else {
                remove_any(&dir.join(target));
            }
            continue;
        }
        // a directory replacing a non-directory (or the reverse) must not follow symlinks
        if let Some(dst) = safe_join(root, &path.to_string_lossy()) {
            if let Ok(md) = std::fs::symlink_metadata(&dst) {
                let replacing_dir_with_other = md.is_dir() && et != tar::EntryType::Directory;
                let replacing_link = md.file_type().is_symlink();
                if replacing_dir_with_other || replacing_link {
                    remove_any(&dst);
                }
            }
        } else {
            continue;
        }
        entry.unpack_in(root)?;
    }
    Ok(())
}

fn remove_any(p: &Path) {
    match std::fs::symlink_metadata(p) {
        Ok(md) if md.is_dir() => {
            let _ = std::fs::remove_dir_all(p);
        }
        Ok(_) => {
            let _ = std::fs::remove_file(p);
        }
        Err(_) => {}
    }
}

/// What a volume provides.
pub enum VolumeSource {
    /// Files from a ConfigMap or Secret (key → bytes), with optional `items` mapping.
    Files(Vec<(String, Vec<u8>)>),
    /// An empty directory.
    EmptyDir,
    /// A host directory (PVC backing).
    HostDir(PathBuf),
}

/// Places a volume at `mount_path` inside `root` (optionally only `sub_path`).
pub fn mount(root: &Path, mount_path: &str, sub_path: Option<&str>, src: &VolumeSource) -> Result<(), String> {
    let target = safe_join(root, mount_path).ok_or_else(|| format!("mount path {mount_path} escapes the root"))?;
    match src {
        VolumeSource::Files(files) => {
            if let Some(sp) = sub_path.filter(|s| !s.is_empty()) {
                let (_, content) = files.iter().find(|(k, _)| k == sp).ok_or_else(|| format!("subPath {sp} not found in volume"))?;
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
                }
                remove_any(&target);
                std::fs::write(&target, content).map_err(|e| e.to_string())?;
            } else {
                std::fs::create_dir_all(&target).map_err(|e| e.to_string())?;
                for (k, content) in files {
                    let p = safe_join(&target, k).ok_or_else(|| format!("volume key {k} escapes the mount"))?;
                    if let Some(parent) = p.parent() {
                        std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
                    }
                    std::fs::write(&p, content).map_err(|e| e.to_string())?;
                }
            }
        }
        VolumeSource::EmptyDir => std::fs::create_dir_all(&target).map_err(|e| e.to_string())?,
        VolumeSource::HostDir(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
            let dir = match sub_path.filter(|s| !s.is_empty()) {
                Some(sp) => {
                    let d = safe_join(dir, sp).ok_or("subPath escapes the volume")?;
                    std::fs::create_dir_all(&d).map_err(|e| e.to_string())?;
                    d
                }
                None => dir.clone(),
            };
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
            }
            remove_any(&target);
            std::os::unix::fs::symlink(&dir, &target).map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

/// Files of a ConfigMap (`data` as text, `binaryData` base64) or Secret (`data` base64),
/// honouring the volume's `items`.
pub fn object_files(obj: &Value, secret: bool, items: Option<&Value>) -> Vec<(String, Vec<u8>)> {
    let b64 = |s: &str| base64::Engine::decode(&base64::engine::general_purpose::STANDARD, s).unwrap_or_default();
    let mut all: Vec<(String, Vec<u8>)> = Vec::new();
    if let Some(d) = obj.get("data").and_then(Value::as_object) {
        for (k, v) in d {
            let s = v.as_str().unwrap_or_default();
            all.push((k.clone(), if secret { b64(s) } else { s.as_bytes().to_vec() }));
        }
    }
    if let Some(d) = obj.get("binaryData").and_then(Value::as_object) {
        for (k, v) in d {
            all.push((k.clone(), b64(v.as_str().unwrap_or_default())));
        }
    }
    match items.and_then(Value::as_array) {
        Some(items) if !items.is_empty() => items
            .iter()
            .filter_map(|it| {
                let key = it.get("key").and_then(Value::as_str)?;
                let path = it.get("path").and_then(Value::as_str).unwrap_or(key);
                all.iter().find(|(k, _)| k == key).map(|(_, c)| (path.to_string(), c.clone()))
            })
            .collect(),
        _ => all,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_join_refuses_parent_components_and_escaping_links() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        std::fs::create_dir_all(&root).unwrap();
        assert!(safe_join(&root, "/../etc").is_none());
        std::os::unix::fs::symlink("/etc", root.join("link")).unwrap();
        assert!(safe_join(&root, "/link/passwd").is_none());
        assert_eq!(safe_join(&root, "/a/b").unwrap(), root.join("a/b"));
    }
}
