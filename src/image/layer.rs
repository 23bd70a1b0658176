//! Reproducible layers made in memory: tar (sorted entries, parent
//! directories, fixed owner, modes and times) + gzip (no timestamp, no name,
//! fixed OS byte) + sha256 of both.
//!
//! The same files always give the same bytes, so the same cell gives the same
//! layer digest and, with the same base, the same manifest digest.

use std::collections::BTreeMap;
use std::io::Write as _;

use bytes::Bytes;
use flate2::{Compression, GzBuilder};
use sha2::{Digest as _, Sha256};

use super::error::ImageError;
use crate::plan::Plan;

/// Mode of regular files in ciao's layers.
pub const FILE_MODE: u32 = 0o644;
/// Mode of directories and scripts in ciao's layers.
pub const EXEC_MODE: u32 = 0o755;

/// The gzip header's OS byte: 255, "unknown", as Go's gzip writes it.
pub const GZIP_OS_UNKNOWN: u8 = 255;

/// `sha256:<hex>` of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// A file as it appears in the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerFile {
    /// Absolute path in the container, e.g. `/app/main.py`.
    pub path: String,
    pub data: Bytes,
    /// Permission bits, e.g. [`FILE_MODE`].
    pub mode: u32,
}

impl LayerFile {
    /// A regular file (0644).
    pub fn file(path: impl Into<String>, data: impl Into<Bytes>) -> Self {
        LayerFile { path: path.into(), data: data.into(), mode: FILE_MODE }
    }

    /// An executable script (0755).
    pub fn script(path: impl Into<String>, data: impl Into<Bytes>) -> Self {
        LayerFile { path: path.into(), data: data.into(), mode: EXEC_MODE }
    }
}

/// What a layer ciao adds holds; written into its history entry so the
/// layer can be recognised later (see [`super::extract`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LayerKind {
    /// The cell's code (and the package launcher).
    Code,
    /// Files shipped with `%files`.
    Files,
    /// Modules kept with `%module`.
    Module,
}

impl LayerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LayerKind::Code => "code",
            LayerKind::Files => "files",
            LayerKind::Module => "module",
        }
    }

    /// The kind named by `s`, as written by [`LayerKind::as_str`].
    pub fn parse(s: &str) -> Option<LayerKind> {
        match s {
            "code" => Some(LayerKind::Code),
            "files" => Some(LayerKind::Files),
            "module" => Some(LayerKind::Module),
            _ => None,
        }
    }
}

/// A gzip-compressed tar layer held in memory with its digests computed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    pub kind: LayerKind,
    /// The compressed bytes (what is uploaded).
    pub blob: Bytes,
    /// `sha256:` of `blob`.
    pub digest: String,
    /// `sha256:` of the uncompressed tar.
    pub diff_id: String,
    /// The files' container paths, sorted.
    pub paths: Vec<String>,
    /// `sha256:` over the files' paths, modes and contents, independent of
    /// their times (what the cell's content digest is made from).
    pub content_digest: String,
}

impl Layer {
    /// Builds a reproducible layer holding `files` with modification time
    /// `mtime` (seconds since the epoch; see [`source_date_epoch`]).
    ///
    /// # Errors
    /// A path that is not absolute, has `..`/empty components or a NUL, or
    /// appears twice.
    pub fn from_files(kind: LayerKind, files: &[LayerFile], mtime: u64) -> Result<Layer, ImageError> {
        // Relative tar path → entry (None: a directory).
        let mut entries: BTreeMap<String, Option<&LayerFile>> = BTreeMap::new();
        for f in files {
            let rel = check_path(&f.path)?;
            let parts: Vec<&str> = rel.split('/').collect();
            for i in 1..parts.len() {
                let dir = format!("{}/", parts[..i].join("/"));
                if let Some(Some(_)) = entries.get(dir.trim_end_matches('/')) {
                    return Err(bad_path(&f.path, "a parent of it is also a file"));
                }
                entries.entry(dir).or_insert(None);
            }
            if entries.contains_key(&format!("{rel}/")) {
                return Err(bad_path(&f.path, "it is also a directory of another file"));
            }
            if entries.insert(rel.to_string(), Some(f)).is_some() {
                return Err(bad_path(&f.path, "it appears twice"));
            }
        }

        let mut tar = tar::Builder::new(Vec::new());
        for (path, entry) in &entries {
            let mut h = tar::Header::new_ustar();
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(mtime);
            let io = |e: std::io::Error| bad_path(path, &e.to_string());
            match entry {
                None => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_mode(EXEC_MODE);
                    h.set_size(0);
                    tar.append_data(&mut h, path, std::io::empty()).map_err(io)?;
                }
                Some(f) => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_mode(f.mode & 0o7777);
                    h.set_size(f.data.len() as u64);
                    tar.append_data(&mut h, path, f.data.as_ref()).map_err(io)?;
                }
            }
        }
        let tar = tar.into_inner().map_err(|e| bad_path("(layer)", &e.to_string()))?;
        let diff_id = sha256_digest(&tar);
        let blob = gzip(&tar);
        let digest = sha256_digest(&blob);
        let mut paths: Vec<String> = files.iter().map(|f| f.path.clone()).collect();
        paths.sort();
        let mut content = String::new();
        for (path, entry) in &entries {
            if let Some(f) = entry {
                content.push_str(&format!("{path}\0{:o}\0{}\n", f.mode & 0o7777, sha256_digest(&f.data)));
            }
        }
        let content_digest = sha256_digest(content.as_bytes());
        Ok(Layer { kind, blob: Bytes::from(blob), digest, diff_id, paths, content_digest })
    }

    /// Compressed size in bytes.
    pub fn size(&self) -> u64 {
        self.blob.len() as u64
    }

    /// The history entry's `created_by`.
    pub fn created_by(&self) -> String {
        format!("ciao {} {} layer: {}", crate::VERSION, self.kind.as_str(), self.paths.join(" "))
    }
}

/// Gzip with no timestamp, no file name and a fixed OS byte.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = GzBuilder::new().mtime(0).operating_system(GZIP_OS_UNKNOWN).write(
        Vec::with_capacity(data.len() / 2 + 64),
        Compression::default(),
    );
    // Writing into a Vec cannot fail.
    gz.write_all(data).expect("gzip into memory");
    gz.finish().expect("gzip into memory")
}

fn bad_path(path: &str, why: &str) -> ImageError {
    ImageError::InvalidSetting { name: "layer file".into(), value: path.to_string(), why: why.to_string() }
}

/// `/app/main.py` → `app/main.py`, refusing what cannot be a clean path.
fn check_path(path: &str) -> Result<&str, ImageError> {
    let rel = path.strip_prefix('/').ok_or_else(|| bad_path(path, "paths in the container must be absolute"))?;
    if rel.is_empty() || rel.ends_with('/') {
        return Err(bad_path(path, "the path must name a file"));
    }
    if rel.contains('\0') || rel.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
        return Err(bad_path(path, "the path must not have empty, '.' or '..' components or NUL bytes"));
    }
    Ok(rel)
}

/// `SOURCE_DATE_EPOCH` as given (`None` when unset or empty).
///
/// # Errors
/// A value that is not a whole number of seconds.
pub fn source_date_epoch(value: Option<&str>) -> Result<Option<u64>, ImageError> {
    match value.map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) => v.parse::<u64>().map(Some).map_err(|_| ImageError::InvalidSetting {
            name: "SOURCE_DATE_EPOCH".into(),
            value: v.to_string(),
            why: "it must be a whole number of seconds since 1970-01-01 (or unset)".into(),
        }),
    }
}

/// What a cell ships: its files and the command that runs them.
///
/// The image builder puts the files into a code layer; a backend that ships
/// code another way (a ConfigMap) can mount the same files over the base.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeBundle {
    pub files: Vec<LayerFile>,
    /// The container command: the descriptor's, or the package launcher
    /// followed by it.
    pub command: Vec<String>,
    /// The launcher script's path when the cell has `%packages`.
    pub launcher: Option<String>,
}

/// The files of a job cell: the code (magic lines already blanked) at the
/// descriptor's `code` path and, with `%packages`, a launcher that
/// pip-installs them (honouring `%pipIndexUrl`) and then runs the command.
pub fn code_bundle(plan: &Plan, code: &str) -> CodeBundle {
    let d = &plan.framework;
    let mut files = vec![LayerFile::file(d.code.clone(), code.as_bytes().to_vec())];
    if plan.packages.is_empty() {
        return CodeBundle { files, command: d.command.clone(), launcher: None };
    }
    let dir = d.code.rsplit_once('/').map(|(dir, _)| dir).filter(|s| !s.is_empty()).unwrap_or("");
    let launcher = format!("{dir}/.ciao/launch.sh");
    files.push(LayerFile::script(launcher.clone(), launcher_script(&plan.packages, plan.pip_index_url.as_deref())));
    let mut command = vec!["/bin/sh".to_string(), launcher.clone()];
    command.extend(d.command.iter().cloned());
    CodeBundle { files, command, launcher: Some(launcher) }
}

/// A POSIX shell script that installs `packages` with pip, then execs its arguments.
pub fn launcher_script(packages: &[String], index_url: Option<&str>) -> String {
    let mut args = String::new();
    if let Some(url) = index_url {
        args.push_str(" --index-url ");
        args.push_str(&shell_quote(url));
    }
    for p in packages {
        args.push(' ');
        args.push_str(&shell_quote(p));
    }
    format!(
        "#!/bin/sh\n\
         # Installs the cell's %packages, then runs the cell.\n\
         set -e\n\
         PY=\"$(command -v python3 || command -v python)\"\n\
         PIP_ROOT_USER_ACTION=ignore \"$PY\" -m pip install --no-cache-dir --disable-pip-version-check --quiet{args}\n\
         exec \"$@\"\n"
    )
}

/// Single-quotes `s` for a POSIX shell.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;

    fn entries(layer: &Layer) -> Vec<(String, u32, u64, u64, u64, tar::EntryType)> {
        let mut tar = Vec::new();
        flate2::read::GzDecoder::new(layer.blob.as_ref()).read_to_end(&mut tar).unwrap();
        assert_eq!(sha256_digest(&tar), layer.diff_id);
        let mut a = tar::Archive::new(tar.as_slice());
        a.entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    String::from_utf8(e.path_bytes().to_vec()).unwrap(),
                    h.mode().unwrap(),
                    h.uid().unwrap(),
                    h.gid().unwrap(),
                    h.mtime().unwrap(),
                    h.entry_type(),
                )
            })
            .collect()
    }

    #[test]
    fn the_same_files_give_the_same_digests() {
        let files = [LayerFile::file("/app/main.py", "print(1)\n")];
        let a = Layer::from_files(LayerKind::Code, &files, 0).unwrap();
        let b = Layer::from_files(LayerKind::Code, &files, 0).unwrap();
        assert_eq!((a.digest.as_str(), a.diff_id.as_str()), (b.digest.as_str(), b.diff_id.as_str()));
        assert_eq!(a.digest, sha256_digest(&a.blob));
        let c = Layer::from_files(LayerKind::Code, &[LayerFile::file("/app/main.py", "print(2)\n")], 0).unwrap();
        assert_ne!(a.digest, c.digest);
    }

    #[test]
    fn the_mtime_is_the_one_given_and_changes_the_digest() {
        let files = [LayerFile::file("/app/main.py", "x")];
        let a = Layer::from_files(LayerKind::Code, &files, 0).unwrap();
        let b = Layer::from_files(LayerKind::Code, &files, 1_700_000_000).unwrap();
        assert_ne!(a.diff_id, b.diff_id);
        assert_eq!(a.content_digest, b.content_digest);
        assert!(entries(&b).iter().all(|e| e.4 == 1_700_000_000));
        assert!(entries(&a).iter().all(|e| e.4 == 0));
    }

    #[test]
    fn entries_are_sorted_with_parents_root_owned_and_fixed_modes() {
        let files = [
            LayerFile::file("/app/main.py", "code"),
            LayerFile::script("/app/.ciao/launch.sh", "#!/bin/sh\n"),
            LayerFile { path: "/app/data/x.bin".into(), data: Bytes::from_static(b"x"), mode: 0o600 },
        ];
        let got = entries(&Layer::from_files(LayerKind::Code, &files, 0).unwrap());
        let names: Vec<_> = got.iter().map(|e| (e.0.as_str(), e.1, e.5)).collect();
        use tar::EntryType::{Directory as D, Regular as R};
        assert_eq!(
            names,
            [
                ("app/", 0o755, D),
                ("app/.ciao/", 0o755, D),
                ("app/.ciao/launch.sh", 0o755, R),
                ("app/data/", 0o755, D),
                ("app/data/x.bin", 0o600, R),
                ("app/main.py", 0o644, R),
            ]
        );
        assert!(got.iter().all(|e| e.2 == 0 && e.3 == 0));
    }

    #[test]
    fn gzip_header_has_no_time_no_name_and_a_fixed_os() {
        let l = Layer::from_files(LayerKind::Code, &[LayerFile::file("/a", "b")], 0).unwrap();
        // ID1 ID2 CM FLG MTIME(4) XFL OS
        assert_eq!(&l.blob[..4], &[0x1f, 0x8b, 8, 0]);
        assert_eq!(&l.blob[4..8], &[0, 0, 0, 0]);
        assert_eq!(l.blob[9], GZIP_OS_UNKNOWN);
    }

    #[test]
    fn bad_paths_are_refused() {
        for p in ["app/main.py", "/", "/app/../etc/passwd", "/app//x", "/app/x/"] {
            assert!(Layer::from_files(LayerKind::Files, &[LayerFile::file(p, "x")], 0).is_err(), "{p}");
        }
        let twice = [LayerFile::file("/a/b", "x"), LayerFile::file("/a/b", "y")];
        assert!(Layer::from_files(LayerKind::Files, &twice, 0).unwrap_err().to_string().contains("twice"));
        let clash = [LayerFile::file("/a", "x"), LayerFile::file("/a/b", "y")];
        assert!(Layer::from_files(LayerKind::Files, &clash, 0).is_err());
    }

    #[test]
    fn long_paths_survive() {
        let p = format!("/app/{}/main.py", "d".repeat(150));
        let got = entries(&Layer::from_files(LayerKind::Files, &[LayerFile::file(p.clone(), "x")], 0).unwrap());
        assert_eq!(got.last().unwrap().0, p[1..]);
    }

    #[test]
    fn source_date_epoch_is_parsed_or_refused() {
        assert_eq!(source_date_epoch(None).unwrap(), None);
        assert_eq!(source_date_epoch(Some("")).unwrap(), None);
        assert_eq!(source_date_epoch(Some("1700000000")).unwrap(), Some(1_700_000_000));
        assert!(source_date_epoch(Some("yesterday")).unwrap_err().to_string().contains("SOURCE_DATE_EPOCH"));
    }

    #[test]
    fn the_launcher_quotes_packages_and_honours_the_index() {
        let s = launcher_script(&["numpy==1.26".into(), "it's".into()], Some("http://pypi.local/simple"));
        assert!(s.contains(" --index-url 'http://pypi.local/simple' 'numpy==1.26' 'it'\\''s'"), "{s}");
        assert!(s.ends_with("exec \"$@\"\n"));
    }
}
