//! The OCI image layout target (the default without a registry): readable by
//! skopeo and umoci, self-contained (base layers copied in), the empty-base
//! fallback when the base cannot be fetched, and extraction of ciao's layers.

mod support;

use std::process::Command;

use ciao::image;
use ciao::plan::ImageTarget;
use serde_json::{Value, json};
use support::images::{Bases, Push, run};
use support::registry::Registry;
use support::tools::{self, Lines, config, options, plan};
use tokio_util::sync::CancellationToken;

const CODE: &str = "\n\nprint('from the layout')\n";

fn layout_config(layout: &std::path::Path, registry: &str) -> ciao::config::Config {
    config(&format!("layout: {}\nregistries:\n  \"{registry}\": {{insecure: true}}\n", layout.display()))
}

/// `oci:DIR:REF@sha256:…` → (DIR, REF, digest).
fn split(reference: &str) -> (String, String, String) {
    let rest = reference.strip_prefix("oci:").unwrap();
    let (dir, r) = rest.split_once(':').unwrap();
    let (name, digest) = r.split_once('@').unwrap();
    (dir.to_string(), name.to_string(), digest.to_string())
}

#[tokio::test]
async fn a_layout_holds_a_self_contained_image_skopeo_and_umoci_read() {
    let r = Registry::shared();
    let base = format!("{}/{}:1", r.host, support::repo("layout-base"));
    Bases::get().push("base", &base, Push { v2s2: true, ..Push::default() });
    let layout = support::fresh_dir("layout-").join("oci");
    let c = layout_config(&layout, &r.host);
    let p = plan(&c, &base, None, &[]);
    assert!(matches!(&p.target, ImageTarget::Layout { .. }));
    let lines = Lines::default();
    let builder = image::Builder::new();
    let built = builder.build(&p, CODE, &c, &options(), lines.callback(), &CancellationToken::new()).await.unwrap();
    let (dir, name, digest) = split(&built.reference);
    assert_eq!(dir, layout.display().to_string());
    assert_eq!(name, format!("ciao/python:{}", built.tag));
    assert_eq!(digest, built.digest);
    assert_eq!(lines.text().matches("ciao: copied").count(), 3, "{}", lines.text());

    // OCI media types even for a v2s2 base; schemas hold.
    let index: Value = serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let s = tools::schemas();
    tools::assert_valid(&s.index, &index, "index.json");
    let blob = |d: &str| -> Value { serde_json::from_slice(&std::fs::read(layout.join("blobs/sha256").join(&d[7..])).unwrap()).unwrap() };
    let m = blob(&digest);
    tools::assert_valid(&s.manifest, &m, "the manifest");
    tools::assert_valid(&s.config, &blob(m["config"]["digest"].as_str().unwrap()), "the config");
    assert_eq!(m["mediaType"], json!("application/vnd.oci.image.manifest.v1+json"));
    assert_eq!(index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"], json!(name));
    assert_eq!(std::fs::read_to_string(layout.join("oci-layout")).unwrap(), r#"{"imageLayoutVersion":"1.0.0"}"#);

    let copy = support::fresh_dir("copy-").join("dir");
    run(Command::new("skopeo").args(["copy", "--quiet"]).arg(format!("oci:{}:{name}", layout.display())).arg(format!("dir:{}", copy.display())));
    assert!(copy.join("manifest.json").is_file());
    let rootfs = tools::umoci_unpack(&layout, &name);
    assert_eq!(std::fs::read(rootfs.join("app/main.py")).unwrap(), CODE.as_bytes());
    assert_eq!(std::fs::read_to_string(rootfs.join("etc/ciao-base-release")).unwrap(), support::images::RELEASE);

    // Another cell reuses the base layers already in the layout; both are named.
    let lines = Lines::default();
    let other = builder.build(&p, "print('second')\n", &c, &options(), lines.callback(), &CancellationToken::new()).await.unwrap();
    assert!(!lines.text().contains("ciao: copied"), "{}", lines.text());
    let index: Value = serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 2);
    assert_ne!(other.digest, built.digest);
    assert!(std::fs::read_dir(layout.join("blobs/sha256")).unwrap().all(|e| !e.unwrap().file_name().to_string_lossy().starts_with(".tmp")));

    // ciao's layers come back out for the local backend.
    let dest = support::fresh_dir("extract-");
    let files = image::extract_added_layers(&builder, &c, &options(), &built.reference, &dest).await.unwrap();
    assert_eq!(files, [dest.join("app/main.py")]);
    assert_eq!(std::fs::read(dest.join("app/main.py")).unwrap(), CODE.as_bytes());
}

#[tokio::test]
async fn an_unreachable_base_gives_an_empty_base_and_a_warning() {
    let dead = format!("127.0.0.1:{}", support::free_port());
    let layout = support::fresh_dir("empty-").join("oci");
    let c = layout_config(&layout, &dead);
    let lines = Lines::default();
    let o = image::BuildOptions { timeout: std::time::Duration::from_secs(2), ..options() };
    let built = image::Builder::new()
        .build(&plan(&c, &format!("{dead}/python:3.11-slim"), None, &[]), CODE, &c, &o, lines.callback(), &CancellationToken::new())
        .await
        .unwrap();
    let text = lines.text();
    assert!(text.contains("warning") && text.contains("empty base") && text.contains(&dead), "{text}");
    assert_eq!(built.base_digest, None);
    let (_, name, _) = split(&built.reference);
    let rootfs = tools::umoci_unpack(&layout, &name);
    let entries: Vec<_> = walk(&rootfs);
    assert_eq!(entries, ["app", "app/main.py"]);
    let info: Value = serde_json::from_str(&run(Command::new("skopeo").args(["inspect"]).arg(format!("oci:{}:{name}", layout.display())))).unwrap();
    assert_eq!(info["Labels"]["io.kubeflow.ciao.base.unavailable"], json!(format!("{dead}/python:3.11-slim")));
}

#[test]
fn ciao_build_without_a_registry_writes_the_layout() {
    let r = Registry::shared();
    let mirror = format!("{}/{}", r.host, support::repo("layout-mirror"));
    Bases::get().push("base", &format!("{mirror}/library/python:3.11-slim"), Push::default());
    let dir = support::fresh_dir("cli-layout-");
    let layout = dir.join("oci");
    std::fs::write(
        dir.join("config.yaml"),
        format!("layout: {}\nregistries:\n  \"{}\": {{insecure: true}}\nmirrors:\n  docker.io: {mirror}\n", layout.display(), r.host),
    )
    .unwrap();
    std::fs::write(dir.join("cell.py"), CODE).unwrap();
    let out = tools::ciao().arg("build").arg("--config").arg(dir.join("config.yaml")).arg(dir.join("cell.py")).output().unwrap();
    support::canary::capture_output(&out);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let last = String::from_utf8_lossy(&out.stdout).lines().last().unwrap().to_string();
    assert!(last.starts_with(&format!("oci:{}:ciao/python:ciao-", layout.display())) && last.contains("@sha256:"), "{last}");
    let (_, name, _) = split(&last);
    let rootfs = tools::umoci_unpack(&layout, &name);
    assert_eq!(std::fs::read(rootfs.join("app/main.py")).unwrap(), CODE.as_bytes());
}

/// Paths under `root`, sorted, relative.
fn walk(root: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            out.push(p.strip_prefix(root).unwrap().display().to_string());
            if p.is_dir() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}
