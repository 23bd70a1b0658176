//! The image builder against a real registry (Debian's docker-registry over
//! plain HTTP), checked from outside with skopeo, umoci and the OCI schemas.

mod support;

use std::sync::Arc;

use ciao::image::{self, ImageError, Progress, ProgressFn};
use serde_json::{Value, json};
use support::images::{Bases, Push};
use support::registry::{Registry, uploaded};
use support::tools::{self, Lines, build, config, options, plan, raw};
use tokio_util::sync::CancellationToken;

/// The cell as the interpreter hands it over: magic lines blanked.
const CODE: &str = "\n\nimport sys\nprint('hello from ciao', sys.argv)\n";

fn insecure(r: &Registry) -> String {
    format!("registries:\n  \"{}\": {{insecure: true}}\n", r.host)
}

/// Pushes the test base to a fresh repository of the shared registry.
fn base_in(r: &Registry, name: &str, how: Push<'_>) -> String {
    let base = format!("{}/{}:1", r.host, support::repo(name));
    Bases::get().push(if how.multi { "multi" } else { "base" }, &base, how);
    base
}

fn base_layers(image: &str) -> Vec<String> {
    let (m, _) = raw(image);
    m["layers"].as_array().unwrap().iter().map(|l| l["digest"].as_str().unwrap().to_string()).collect()
}

#[tokio::test]
async fn an_oci_base_gets_the_code_layer_and_stays_valid() {
    let r = Registry::shared();
    let base = base_in(r, "oci-base", Push::default());
    let base_digests = base_layers(&base);
    let c = config(&insecure(r));
    let target = format!("{}/{}", r.host, support::repo("oci-app"));
    let mark = r.access().len();
    let built = build(&image::Builder::new(), &c, &plan(&c, &base, Some(&target), &[]), CODE, &options()).await.unwrap();

    assert!(built.reference.starts_with(&format!("{target}:ciao-")), "{}", built.reference);
    assert!(built.reference.ends_with(&format!("@{}", built.digest)));
    let (m, cfg) = raw(&built.reference);
    let s = tools::schemas();
    tools::assert_valid(&s.manifest, &m, "the manifest");
    tools::assert_valid(&s.config, &cfg, "the config");
    assert_eq!(m["mediaType"], json!("application/vnd.oci.image.manifest.v1+json"));
    let layers: Vec<&str> = m["layers"].as_array().unwrap().iter().map(|l| l["digest"].as_str().unwrap()).collect();
    assert_eq!(layers.len(), 4);
    assert_eq!(layers[..3], base_digests.iter().map(String::as_str).collect::<Vec<_>>()[..]);
    assert_eq!(cfg["config"]["Cmd"], json!(["python", "-u", "/app/main.py"]));
    assert_eq!(cfg["config"]["WorkingDir"], json!("/app"));
    let env = cfg["config"]["Env"].as_array().unwrap();
    assert!(env.contains(&json!("PYTHONUNBUFFERED=1")) && !env.contains(&json!("PYTHONUNBUFFERED=0")), "{env:?}");

    let info = tools::inspect(&built.reference, &[]);
    let labels = &info["Labels"];
    assert_eq!(labels["base.label"], json!("kept"));
    assert_eq!(labels["org.opencontainers.image.base.name"], json!(base));
    assert_eq!(labels["org.opencontainers.image.base.digest"], json!(Bases::get().digest("base")));
    assert_eq!(labels["io.kubeflow.ciao.cell.digest"], json!(built.cell_digest));
    assert_eq!(labels["io.kubeflow.ciao.version"], json!(ciao::VERSION));
    assert_eq!(info["Layers"].as_array().unwrap().len(), 4);

    let rootfs = tools::unpack(&format!("docker://{}", built.reference));
    assert_eq!(std::fs::read(rootfs.join("app/main.py")).unwrap(), CODE.as_bytes());
    assert_eq!(std::fs::read_to_string(rootfs.join("etc/ciao-base-release")).unwrap(), support::images::RELEASE);
    assert_eq!(std::fs::metadata(rootfs.join("opt/random.bin")).unwrap().len() as usize, support::images::RANDOM_SIZE);

    // No base layer was uploaded: each was mounted from the base's repository.
    let access = r.access_for(mark, &[&target, &base]);
    let up = uploaded(&access);
    assert!(base_digests.iter().all(|d| !up.contains(d)), "base blobs uploaded: {up:?}");
    for d in &base_digests {
        assert!(
            access.iter().any(|a| a.method == "POST" && a.path.contains("mount=") && a.path.contains(&d[7..]) && a.status == 201),
            "{d} was not mounted: {access:#?}"
        );
    }
}

#[tokio::test]
async fn a_docker_v2s2_base_gives_a_docker_v2s2_image() {
    let r = Registry::shared();
    let base = base_in(r, "v2s2-base", Push { v2s2: true, ..Push::default() });
    let c = config(&insecure(r));
    let target = format!("{}/{}", r.host, support::repo("v2s2-app"));
    let built = build(&image::Builder::new(), &c, &plan(&c, &base, Some(&target), &[]), CODE, &options()).await.unwrap();
    let (m, cfg) = raw(&built.reference);
    assert_eq!(m["mediaType"], json!("application/vnd.docker.distribution.manifest.v2+json"));
    assert_eq!(m["config"]["mediaType"], json!("application/vnd.docker.container.image.v1+json"));
    for l in m["layers"].as_array().unwrap() {
        assert_eq!(l["mediaType"], json!("application/vnd.docker.image.rootfs.diff.tar.gzip"), "{m:#}");
    }
    tools::assert_valid(&tools::schemas().manifest, &m, "the v2s2 manifest");
    tools::assert_valid(&tools::schemas().config, &cfg, "the v2s2 config");
    let rootfs = tools::unpack(&format!("docker://{}", built.reference));
    assert_eq!(std::fs::read(rootfs.join("app/main.py")).unwrap(), CODE.as_bytes());
}

#[tokio::test]
async fn a_multi_platform_index_resolves_to_the_configured_platform() {
    let r = Registry::shared();
    let base = base_in(r, "multi-base", Push { multi: true, ..Push::default() });
    let target = format!("{}/{}", r.host, support::repo("multi-app"));
    for (platform, tag, arch) in [("linux/amd64", "base", "amd64"), ("linux/arm64", "arm", "arm64")] {
        let c = config(&format!("{}platform: {platform}\n", insecure(r)));
        let built = build(&image::Builder::new(), &c, &plan(&c, &base, Some(&target), &[]), CODE, &options()).await.unwrap();
        assert_eq!(built.base_digest.as_deref(), Some(Bases::get().digest(tag).as_str()));
        let (m, cfg) = raw(&built.reference);
        assert_eq!(m["mediaType"], json!("application/vnd.oci.image.manifest.v1+json"), "a single-platform image");
        assert_eq!(cfg["architecture"], json!(arch));
    }
    let c = config(&format!("{}platform: linux/s390x\n", insecure(r)));
    let e = build(&image::Builder::new(), &c, &plan(&c, &base, Some(&target), &[]), CODE, &options()).await.unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, ImageError::NoPlatform { .. }), "{msg}");
    assert!(msg.contains("linux/s390x") && msg.contains("linux/amd64") && msg.contains("linux/arm64") && msg.contains("CIAO_PLATFORM"), "{msg}");
}

#[tokio::test]
async fn the_base_repository_itself_needs_no_blob_requests_for_base_layers() {
    let r = Registry::shared();
    let base = base_in(r, "same-repo", Push::default());
    let repo = base.rsplit_once(':').unwrap().0.to_string();
    let base_digests = base_layers(&base);
    let c = config(&insecure(r));
    let mark = r.access().len();
    let built = build(&image::Builder::new(), &c, &plan(&c, &base, Some(&repo), &[]), CODE, &options()).await.unwrap();
    assert!(built.reference.starts_with(&repo));
    let access = r.access_for(mark, &[&repo]);
    for d in &base_digests {
        assert!(!access.iter().any(|a| a.path.contains(&d[7..])), "a request about base layer {d}: {access:#?}");
    }
    let rootfs = tools::unpack(&format!("docker://{}", built.reference));
    assert_eq!(std::fs::read(rootfs.join("app/main.py")).unwrap(), CODE.as_bytes());
}

#[tokio::test]
async fn the_same_cell_twice_uploads_nothing_and_gives_one_digest() {
    let r = Registry::shared();
    let base = base_in(r, "twice", Push::default());
    let c = config(&insecure(r));
    let target = format!("{}/{}", r.host, support::repo("twice-app"));
    let p = plan(&c, &base, Some(&target), &[]);
    let first = build(&image::Builder::new(), &c, &p, CODE, &options()).await.unwrap();

    // A new process (cold builder): checks, mounts, but uploads no blob.
    let mark = r.access().len();
    let second = build(&image::Builder::new(), &c, &p, CODE, &options()).await.unwrap();
    assert_eq!(first.reference, second.reference);
    let up = uploaded(&r.access_for(mark, &[&target]));
    assert!(up.is_empty(), "blobs uploaded the second time: {up:?}");

    // The same kernel (warm builder): the tag check and the manifest only.
    let builder = image::Builder::new();
    build(&builder, &c, &p, CODE, &options()).await.unwrap();
    let mark = r.access().len();
    let third = build(&builder, &c, &p, CODE, &options()).await.unwrap();
    assert_eq!(third.digest, first.digest);
    let access = r.access_for(mark, &[&target, &base]);
    let methods: Vec<_> = access.iter().map(|a| a.method.as_str()).collect();
    assert_eq!(methods, ["HEAD", "PUT"], "{access:#?}");
    assert_eq!(third.summary.requests, 2);
}

#[tokio::test]
async fn a_warm_cell_takes_six_requests() {
    let r = Registry::shared();
    let base = base_in(r, "warm", Push::default());
    let c = config(&insecure(r));
    let target = format!("{}/{}", r.host, support::repo("warm-app"));
    let p = plan(&c, &base, Some(&target), &[]);
    let builder = image::Builder::new();
    build(&builder, &c, &p, "print(1)\n", &options()).await.unwrap();
    let mark = r.access().len();
    let built = build(&builder, &c, &p, "print(2)\n", &options()).await.unwrap();
    let access = r.access_for(mark, &[&target, &base]);
    let mut methods: Vec<_> = access.iter().map(|a| (a.method.as_str(), a.path.split('?').next().unwrap().contains("/manifests/"))).collect();
    methods.sort();
    assert_eq!(methods, [("HEAD", true), ("POST", false), ("POST", false), ("PUT", false), ("PUT", false), ("PUT", true)], "{access:#?}");
    assert_eq!(built.summary.requests, 6);
    assert_eq!(built.summary.uploaded, 2);
}

#[tokio::test]
async fn source_date_epoch_sets_created_and_keeps_builds_reproducible() {
    let r = Registry::shared();
    let base = base_in(r, "sde", Push::default());
    let c = config(&insecure(r));
    let target = format!("{}/{}", r.host, support::repo("sde-app"));
    let p = plan(&c, &base, Some(&target), &[]);
    let o = image::BuildOptions { source_date_epoch: Some(1_700_000_000), ..options() };
    let a = build(&image::Builder::new(), &c, &p, CODE, &o).await.unwrap();
    let b = build(&image::Builder::new(), &c, &p, CODE, &o).await.unwrap();
    assert_eq!(a.digest, b.digest);
    let (_, cfg) = raw(&a.reference);
    assert_eq!(cfg["created"], json!("2023-11-14T22:13:20Z"));
    let plain = build(&image::Builder::new(), &c, &p, CODE, &options()).await.unwrap();
    assert_ne!(plain.digest, a.digest);
    assert_eq!(plain.tag, a.tag, "the tag follows the cell, not the time");
}

#[tokio::test]
async fn a_refused_mount_falls_back_to_a_streamed_copy() {
    let r = Registry::shared();
    let proxy = support::nginx::Nginx::start(r, "100m", true);
    let repo = support::repo("refused");
    Bases::get().push("base", &format!("{}/{repo}:1", r.host), Push::default());
    let base = format!("{}/{repo}:1", proxy.host);
    let target = format!("{}/{}", proxy.host, support::repo("refused-app"));
    let c = config(&format!("registries:\n  \"{}\": {{insecure: true}}\n", proxy.host));
    let lines = Lines::default();
    let built = ciao::image::Builder::new()
        .build(&plan(&c, &base, Some(&target), &[]), CODE, &c, &options(), lines.callback(), &CancellationToken::new())
        .await
        .unwrap();
    let mounts: Vec<_> = proxy.access().into_iter().filter(|(m, p, _)| m == "POST" && p.contains("mount=")).collect();
    assert_eq!(mounts.len(), 3, "{mounts:?}");
    assert!(mounts.iter().all(|(_, _, s)| *s == 202), "{mounts:?}");
    assert_eq!(built.summary.copied, 3, "{}", lines.text());
    assert!(lines.text().contains("ciao: copied"), "{}", lines.text());
    let rootfs = tools::unpack(&format!("docker://{}", built.reference));
    assert_eq!(std::fs::read(rootfs.join("app/main.py")).unwrap(), CODE.as_bytes());
    assert_eq!(std::fs::metadata(rootfs.join("opt/random.bin")).unwrap().len() as usize, support::images::RANDOM_SIZE);
}

#[tokio::test]
async fn an_unknown_base_tag_is_named_with_the_fix() {
    let r = Registry::shared();
    let base = base_in(r, "unknown", Push::default());
    let missing = base.replace(":1", ":does-not-exist");
    let c = config(&insecure(r));
    let target = format!("{}/{}", r.host, support::repo("unknown-app"));
    let e = build(&image::Builder::new(), &c, &plan(&c, &missing, Some(&target), &[]), CODE, &options()).await.unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, ImageError::NotFound { .. }), "{msg}");
    assert!(msg.contains(&missing) && msg.contains("does-not-exist") && msg.contains("%base="), "{msg}");
    let cell = ciao::output::CellError::from(e);
    assert_eq!(cell.ename, "RegistryError");
}

#[tokio::test]
async fn packages_are_installed_by_a_launcher_that_runs_the_cell() {
    let r = Registry::shared();
    let base = base_in(r, "pkgs", Push::default());
    let mut c = config(&insecure(r));
    c.registries.get_mut(&r.host).unwrap().pull_prefix = Some("registry.svc.cluster.local:5000".into());
    let target = format!("{}/{}", r.host, support::repo("pkgs-app"));
    let mut p = plan(&c, &base, Some(&target), &["numpy==1.26.4", "requests"]);
    p.pip_index_url = Some("http://pypi.local/simple".into());
    let built = build(&image::Builder::new(), &c, &p, CODE, &options()).await.unwrap();
    assert_eq!(built.command, ["/bin/sh", "/app/.ciao/launch.sh", "python", "-u", "/app/main.py"]);
    let (_, cfg) = raw(&built.reference);
    assert_eq!(cfg["config"]["Cmd"], json!(built.command));
    let rootfs = tools::unpack(&format!("docker://{}", built.reference));
    let launcher = std::fs::read_to_string(rootfs.join("app/.ciao/launch.sh")).unwrap();
    assert!(launcher.contains("--index-url 'http://pypi.local/simple' 'numpy==1.26.4' 'requests'"), "{launcher}");
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(std::fs::metadata(rootfs.join("app/.ciao/launch.sh")).unwrap().permissions().mode() & 0o777, 0o755);
    assert_eq!(std::fs::read(rootfs.join("app/main.py")).unwrap(), CODE.as_bytes());
    // pullPrefix rewrites only the reference jobs use.
    assert!(built.reference.starts_with(&r.host));
    let rest = built.reference.strip_prefix(&r.host).unwrap();
    assert_eq!(built.pull_reference, format!("registry.svc.cluster.local:5000{rest}"));
}

#[tokio::test]
async fn an_interrupt_leaves_no_tag() {
    let r = Registry::shared();
    let base = base_in(r, "cancel", Push::default());
    let c = config(&insecure(r));
    let repo = support::repo("cancel-app");
    let target = format!("{}/{repo}", r.host);
    let cancel = CancellationToken::new();
    let on_blob = cancel.clone();
    let progress: ProgressFn = Arc::new(move |p: &Progress| {
        if matches!(p, Progress::Blob { .. }) {
            on_blob.cancel();
        }
    });
    let mark = r.access().len();
    let e = image::Builder::new()
        .build(&plan(&c, &base, Some(&target), &[]), CODE, &c, &options(), progress, &cancel)
        .await
        .unwrap_err();
    assert!(matches!(e, ImageError::Cancelled), "{e}");
    assert!(e.to_string().contains("nothing was tagged"));
    let access = r.access_for(mark, &[&target]);
    assert!(!access.iter().any(|a| a.path.starts_with(&format!("/v2/{repo}/manifests/")) && a.method == "PUT"), "{access:#?}");
}

#[tokio::test]
async fn ciaos_own_layers_extract_from_a_pushed_image() {
    let r = Registry::shared();
    let base = base_in(r, "extract", Push::default());
    let c = config(&insecure(r));
    let target = format!("{}/{}", r.host, support::repo("extract-app"));
    let builder = image::Builder::new();
    let built = build(&builder, &c, &plan(&c, &base, Some(&target), &["six"]), CODE, &options()).await.unwrap();
    let dest = support::fresh_dir("extract-");
    let files = image::extract_added_layers(&builder, &c, &options(), &built.reference, &dest).await.unwrap();
    assert_eq!(std::fs::read(dest.join("app/main.py")).unwrap(), CODE.as_bytes());
    assert!(dest.join("app/.ciao/launch.sh").is_file());
    assert!(!dest.join("etc/ciao-base-release").exists(), "base layers are not extracted");
    assert_eq!(files.len(), 2, "{files:?}");
}

#[test]
fn ciao_build_prints_the_reference_as_the_last_line() {
    let r = Registry::shared();
    let dir = support::fresh_dir("cli-");
    let prefix = format!("{}/{}", r.host, support::repo("cli"));
    // The default framework's base is rewritten by the mirror map to the test base.
    let mirror = format!("{}/{}", r.host, support::repo("mirror"));
    Bases::get().push("base", &format!("{mirror}/library/python:3.11-slim"), Push::default());
    std::fs::write(dir.join("config.yaml"), format!("registry: {prefix}\n{}mirrors:\n  docker.io: {mirror}\n", insecure(r))).unwrap();
    std::fs::write(dir.join("cell.py"), CODE).unwrap();
    let run = || {
        let out = tools::ciao().arg("build").arg("--config").arg(dir.join("config.yaml")).arg(dir.join("cell.py")).output().unwrap();
        support::canary::capture_output(&out);
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "ciao build failed:\n{stderr}");
        (stdout, stderr)
    };
    let (stdout, stderr) = run();
    let last = stdout.lines().last().unwrap();
    let re_ok = last.starts_with(&format!("{prefix}/python:ciao-")) && last.contains("@sha256:") && last.len() == prefix.len() + "/python:ciao-".len() + 12 + 8 + 64;
    assert!(re_ok, "{last}");
    assert!(stderr.contains("ciao: pushed"), "{stderr}");
    let (again, _) = run();
    assert_eq!(again.lines().last().unwrap(), last);
    let info = tools::inspect(last.split('@').next().unwrap(), &[]);
    assert_eq!(info["Labels"]["org.opencontainers.image.base.name"], json!("docker.io/library/python:3.11-slim"));
    let v: Value = info["Layers"].clone();
    assert_eq!(v.as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn a_kernel_cell_builds_and_shows_the_image_reference() {
    let r = Registry::shared();
    let mirror = format!("{}/{}", r.host, support::repo("engine-mirror"));
    Bases::get().push("base", &format!("{mirror}/library/python:3.11-slim"), Push::default());
    let dir = support::fresh_dir("engine-");
    let prefix = format!("{}/{}", r.host, support::repo("engine"));
    // The job runs on the local backend, from the image it reads back.
    let config = format!("registry: {prefix}\n{}mirrors:\n  docker.io: {mirror}\nbackend: local\n", insecure(r));
    std::fs::write(dir.join("config.yaml"), config).unwrap();
    let engine = ciao::engine::Engine::new(ciao::engine::ConfigSource::File(dir.join("config.yaml")));
    let (out, mut rx) = ciao::output::Output::channel();
    let shown = engine.run_cell(CODE, &out, &CancellationToken::new()).await.unwrap();
    assert_eq!(shown, None);
    let (mut stdout, mut stderr, mut push) = (String::new(), String::new(), None);
    while let Ok(ev) = rx.try_recv() {
        match ev {
            ciao::output::OutputEvent::Text(ciao::output::Stream::Stdout, t) => stdout.push_str(&t),
            ciao::output::OutputEvent::Text(ciao::output::Stream::Stderr, t) => stderr.push_str(&t),
            ciao::output::OutputEvent::UpdateDisplay { data, .. } => {
                let text = data["text/plain"].as_str().unwrap_or_default().to_string();
                if text.starts_with("image ") {
                    push = Some(text);
                }
            }
            _ => {}
        }
    }
    assert!(stderr.contains(&format!("[ciao] image {prefix}/python:ciao-")), "{stderr}");
    assert!(stderr.contains(" Succeeded after "), "{stderr}");
    assert!(stdout.starts_with("[main-0] hello from ciao"), "stdout carries only what the replicas print: {stdout}");
    // The push is one display updated in place; its last state has the totals.
    let push = push.expect("the push display was updated");
    assert!(push.starts_with(&format!("image pushed {prefix}/python:ciao-")) && push.contains(" uploaded · "), "{push}");
    // The builder lives in the engine: the next cell is warm.
    let before = engine.image_builder().requests();
    engine.run_cell("print('next')\n", &out, &CancellationToken::new()).await.unwrap();
    assert_eq!(engine.image_builder().requests() - before, 6);
}

#[tokio::test]
async fn module_and_file_layers_go_before_the_code_and_extract_with_it() {
    use ciao::image::{Layer, LayerFile, LayerKind};
    let r = Registry::shared();
    let base = base_in(r, "extra", Push::default());
    let c = config(&insecure(r));
    let target = format!("{}/{}", r.host, support::repo("extra-app"));
    let module = Layer::from_files(LayerKind::Module, &[LayerFile::file("/app/helpers.py", "def f():\n    return 42\n")], 0).unwrap();
    let files = Layer::from_files(LayerKind::Files, &[LayerFile::file("/app/data/train.csv", "a,b\n1,2\n")], 0).unwrap();
    let builder = image::Builder::new();
    let built = builder
        .build_with_layers(
            &plan(&c, &base, Some(&target), &[]),
            CODE,
            &[module.clone(), files.clone()],
            &c,
            &options(),
            Lines::default().callback(),
            &CancellationToken::new(),
        )
        .await
        .unwrap();
    let (m, cfg) = raw(&built.reference);
    let digests: Vec<&str> = m["layers"].as_array().unwrap().iter().map(|l| l["digest"].as_str().unwrap()).collect();
    assert_eq!(digests.len(), 6);
    assert_eq!(digests[3..5], [module.digest.as_str(), files.digest.as_str()]);
    let comments: Vec<&str> = cfg["history"].as_array().unwrap().iter().filter_map(|h| h["comment"].as_str()).collect();
    assert_eq!(comments[comments.len() - 3..], ["io.kubeflow.ciao.layer=module", "io.kubeflow.ciao.layer=files", "io.kubeflow.ciao.layer=code"]);
    let rootfs = tools::unpack(&format!("docker://{}", built.reference));
    assert_eq!(std::fs::read_to_string(rootfs.join("app/helpers.py")).unwrap(), "def f():\n    return 42\n");
    let dest = support::fresh_dir("extract-extra-");
    let mut got = image::extract_added_layers(&builder, &c, &options(), &built.reference, &dest).await.unwrap();
    got.sort();
    assert_eq!(got, [dest.join("app/data/train.csv"), dest.join("app/helpers.py"), dest.join("app/main.py")]);
}
