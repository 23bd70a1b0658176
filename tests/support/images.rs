//! Base images made with umoci (unpack, add files, `repack
//! --refresh-bundle`; never `umoci insert`) in an OCI layout, once per test
//! process, and pushed to test registries with skopeo.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::{fresh_dir, require};

/// The 3-layer test base: tag `base` (linux/amd64), `arm` (the same layers
/// as linux/arm64) and `multi` (an OCI index of both).
pub struct Bases {
    pub layout: PathBuf,
}

/// Contents of the base's files, for checks after unpacking.
pub const RELEASE: &str = "ciao test base\n";
pub const RANDOM_SIZE: usize = 3_000_000;

pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn umoci(args: &[&str]) -> String {
    run(Command::new("umoci").args(args))
}

/// Adds one layer to `layout:tag` holding `files` (path in the rootfs, bytes).
fn add_layer(layout: &Path, tag: &str, bundle: &Path, files: &[(&str, Vec<u8>)]) {
    let image = format!("{}:{tag}", layout.display());
    if !bundle.exists() {
        umoci(&["unpack", "--rootless", "--image", &image, bundle.to_str().unwrap()]);
    }
    for (path, data) in files {
        let p = bundle.join("rootfs").join(path.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, data).unwrap();
    }
    umoci(&["repack", "--refresh-bundle", "--image", &image, bundle.to_str().unwrap()]);
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n);
    let mut f = std::fs::File::open("/dev/urandom").unwrap();
    use std::io::Read as _;
    (&mut f).take(n as u64).read_to_end(&mut out).unwrap();
    out
}

/// Reads `index.json` of a layout.
fn index(layout: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap()
}

/// The manifest descriptor named `tag` in a layout.
pub fn descriptor(layout: &Path, tag: &str) -> Value {
    index(layout)["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == json!(tag))
        .unwrap_or_else(|| panic!("no {tag} in {}", layout.display()))
        .clone()
}

impl Bases {
    pub fn get() -> &'static Bases {
        static BASES: OnceLock<Bases> = OnceLock::new();
        BASES.get_or_init(|| {
            require("umoci", "umoci");
            require("skopeo", "skopeo");
            let dir = fresh_dir("bases-");
            let layout = dir.join("layout");
            let l = layout.to_str().unwrap();
            umoci(&["init", "--layout", l]);
            umoci(&["new", "--image", &format!("{l}:base")]);
            let bundle = dir.join("bundle");
            add_layer(&layout, "base", &bundle, &[("/etc/ciao-base-release", RELEASE.as_bytes().to_vec()), ("/usr/local/bin/hello", b"#!/bin/sh\necho hello\n".to_vec())]);
            add_layer(&layout, "base", &bundle, &[("/usr/share/ciao/data.txt", b"second layer\n".to_vec())]);
            add_layer(&layout, "base", &bundle, &[("/opt/random.bin", random_bytes(RANDOM_SIZE))]);
            umoci(&[
                "config",
                "--image",
                &format!("{l}:base"),
                "--config.env",
                "PATH=/usr/local/bin:/usr/bin:/bin",
                "--config.env",
                "PYTHONUNBUFFERED=0",
                "--config.cmd",
                "sh",
                "--config.label",
                "base.label=kept",
            ]);
            umoci(&["config", "--image", &format!("{l}:base"), "--tag", "arm", "--architecture", "arm64"]);
            // The multi-platform index, written by hand.
            let amd = descriptor(&layout, "base");
            let arm = descriptor(&layout, "arm");
            let entry = |d: &Value, arch: &str| {
                json!({"mediaType": d["mediaType"], "digest": d["digest"], "size": d["size"], "platform": {"os": "linux", "architecture": arch}})
            };
            let idx = json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "manifests": [entry(&arm, "arm64"), entry(&amd, "amd64")],
            });
            let bytes = serde_json::to_vec(&idx).unwrap();
            let hex = hex::encode(Sha256::digest(&bytes));
            std::fs::write(layout.join("blobs/sha256").join(&hex), &bytes).unwrap();
            let mut top = index(&layout);
            top["manifests"].as_array_mut().unwrap().push(json!({
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "digest": format!("sha256:{hex}"),
                "size": bytes.len(),
                "annotations": {"org.opencontainers.image.ref.name": "multi"},
            }));
            std::fs::write(layout.join("index.json"), serde_json::to_vec(&top).unwrap()).unwrap();
            Bases { layout }
        })
    }

    /// Pushes `tag` of the layout to `dest` (`HOST/REPO:TAG`).
    pub fn push(&self, tag: &str, dest: &str, how: Push<'_>) {
        push_layout(&self.layout, tag, dest, how);
    }

    /// The digest of the manifest `tag` in the layout.
    pub fn digest(&self, tag: &str) -> String {
        descriptor(&self.layout, tag)["digest"].as_str().unwrap().to_string()
    }
}

/// How skopeo pushes a base.
#[derive(Clone, Copy, Default)]
pub struct Push<'a> {
    /// Convert to Docker v2 schema 2.
    pub v2s2: bool,
    /// Push an index with all its images.
    pub multi: bool,
    pub creds: Option<(&'a str, &'a str)>,
}

pub fn push_layout(layout: &Path, tag: &str, dest: &str, how: Push<'_>) {
    let mut cmd = Command::new("skopeo");
    cmd.args(["copy", "--quiet", "--dest-tls-verify=false"]);
    if how.v2s2 {
        cmd.args(["--format", "v2s2"]);
    }
    if how.multi {
        cmd.args(["--multi-arch", "all"]);
    }
    if let Some((u, p)) = how.creds {
        cmd.arg(format!("--dest-creds={u}:{p}"));
    }
    cmd.arg(format!("oci:{}:{tag}", layout.display())).arg(format!("docker://{dest}"));
    run(&mut cmd);
}

/// A base with one ~200 MB incompressible layer (tag `big`).
pub fn big_base() -> &'static Path {
    static BIG: OnceLock<PathBuf> = OnceLock::new();
    BIG.get_or_init(|| {
        require("umoci", "umoci");
        let dir = fresh_dir("big-");
        let layout = dir.join("layout");
        let l = layout.to_str().unwrap();
        umoci(&["init", "--layout", l]);
        umoci(&["new", "--image", &format!("{l}:big")]);
        let bundle = dir.join("bundle");
        add_layer(&layout, "big", &bundle, &[("/etc/ciao-base-release", RELEASE.as_bytes().to_vec()), ("/data/big.bin", random_bytes(200 << 20))]);
        std::fs::remove_dir_all(&bundle).unwrap();
        layout
    })
    .as_path()
}
