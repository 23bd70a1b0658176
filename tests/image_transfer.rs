//! Base layers that must travel: another registry (an air-gapped mirror →
//! the job registry), streamed with bounded memory and checked against their
//! digests, and a proxy that refuses large uploads (413), which gets the blob
//! in chunks.

mod support;

use ciao::image::{self, ImageError};
use support::images::{Bases, Push, big_base, push_layout};
use support::nginx::Nginx;
use support::registry::{Registry, uploaded};
use support::tools::{self, Lines, config, options, plan};
use tokio_util::sync::CancellationToken;

const CODE: &str = "\n\nprint('far away')\n";

fn insecure(hosts: &[&str]) -> String {
    let mut s = String::from("registries:\n");
    for h in hosts {
        s.push_str(&format!("  \"{h}\": {{insecure: true}}\n"));
    }
    s
}

#[test]
fn a_200_mb_base_crosses_registries_in_bounded_memory() {
    let mirror = Registry::plain();
    let target = Registry::plain();
    push_layout(big_base(), "big", &format!("{}/mirror/library/python:3.11-slim", mirror.host), Push::default());
    let dir = support::fresh_dir("big-");
    let prefix = format!("{}/team", target.host);
    std::fs::write(
        dir.join("config.yaml"),
        format!("registry: {prefix}\n{}mirrors:\n  docker.io: {}/mirror\n", insecure(&[&mirror.host, &target.host]), mirror.host),
    )
    .unwrap();
    std::fs::write(dir.join("cell.py"), CODE).unwrap();
    let mut cmd = tools::ciao();
    cmd.arg("build").arg("--config").arg(dir.join("config.yaml")).arg(dir.join("cell.py"));
    let (out, peak_kib) = tools::run_with_peak_rss(&cmd);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    eprintln!("ciao build copied the 200 MB base with a peak RSS of {peak_kib} KiB");
    assert!(peak_kib < 64 * 1024, "peak RSS {peak_kib} KiB is over the 64 MiB guard");
    let reference = String::from_utf8_lossy(&out.stdout).lines().last().unwrap().to_string();
    assert!(reference.starts_with(&format!("{prefix}/python:ciao-")), "{reference}");

    let (m, _) = tools::raw(&reference);
    let big = m["layers"][0]["digest"].as_str().unwrap().to_string();
    assert!(m["layers"][0]["size"].as_u64().unwrap() > 200_000_000);
    // The big layer went in one streamed upload, verified by the target registry.
    assert!(uploaded(&target.access()).contains(&big), "{:#?}", target.access());
    assert!(stderr.contains("ciao: copied"), "{stderr}");
}

#[tokio::test]
async fn a_proxy_refusing_large_uploads_gets_the_blob_in_chunks() {
    let source = Registry::shared();
    let behind = Registry::plain();
    let proxy = Nginx::start(&behind, "1m", false);
    let base = format!("{}/{}:1", source.host, support::repo("chunk-base"));
    Bases::get().push("base", &base, Push::default());
    let target = format!("{}/{}", proxy.host, support::repo("chunked"));
    let c = config(&insecure(&[&source.host, &proxy.host]));
    let lines = Lines::default();
    let built = image::Builder::new()
        .build(&plan(&c, &base, Some(&target), &[]), CODE, &c, &options(), lines.callback(), &CancellationToken::new())
        .await
        .unwrap();
    let access = proxy.access();
    assert!(access.iter().any(|(m, _, s)| (m == "PUT" || m == "PATCH") && *s == 413), "no 413 seen: {access:#?}");
    let patches = access.iter().filter(|(m, _, s)| m == "PATCH" && *s == 202).count();
    assert!(patches >= 3, "the 3 MB layer goes in 1 MiB chunks: {access:#?}");
    let rootfs = tools::unpack(&format!("docker://{}", built.reference));
    assert_eq!(std::fs::read(rootfs.join("app/main.py")).unwrap(), CODE.as_bytes());
    assert_eq!(std::fs::metadata(rootfs.join("opt/random.bin")).unwrap().len() as usize, support::images::RANDOM_SIZE);
}

#[tokio::test]
async fn a_corrupted_base_layer_is_caught_while_copying() {
    let source = Registry::plain();
    let target = Registry::shared();
    let base = format!("{}/{}:1", source.host, support::repo("corrupt"));
    Bases::get().push("base", &base, Push::default());
    let (m, _) = tools::raw(&base);
    let digest = m["layers"][2]["digest"].as_str().unwrap().to_string();
    let hex = &digest[7..];
    let blob = source.dir.join("data/docker/registry/v2/blobs/sha256").join(&hex[..2]).join(hex).join("data");
    let mut data = std::fs::read(&blob).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0xff;
    std::fs::write(&blob, data).unwrap();

    let c = config(&insecure(&[&source.host, &target.host]));
    let app = format!("{}/{}", target.host, support::repo("corrupt-app"));
    let mark = target.access().len();
    let e = support::tools::build(&image::Builder::new(), &c, &plan(&c, &base, Some(&app), &[]), CODE, &options()).await.unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, ImageError::Transfer { .. } | ImageError::Digest { .. }), "{msg}");
    assert!(msg.contains("does not match") && msg.contains(&digest), "{msg}");
    // Nothing was tagged.
    let access = target.access_for(mark, &[&app]);
    assert!(!access.iter().any(|a| a.method == "PUT" && a.path.contains("/manifests/")), "{access:#?}");
}

#[test]
fn http_proxy_from_the_environment_is_used() {
    let r = Registry::shared();
    let proxy = Nginx::forward_proxy();
    let mirror = format!("{}/{}", r.host, support::repo("proxied-mirror"));
    Bases::get().push("base", &format!("{mirror}/library/python:3.11-slim"), Push::default());
    let dir = support::fresh_dir("proxy-");
    let prefix = format!("{}/{}", r.host, support::repo("proxied"));
    std::fs::write(dir.join("config.yaml"), format!("registry: {prefix}\n{}mirrors:\n  docker.io: {mirror}\n", insecure(&[&r.host]))).unwrap();
    std::fs::write(dir.join("cell.py"), CODE).unwrap();
    let out = tools::ciao()
        .env("HTTP_PROXY", format!("http://{}", proxy.host))
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .args(["build", "--config"])
        .arg(dir.join("config.yaml"))
        .arg(dir.join("cell.py"))
        .output()
        .unwrap();
    support::canary::capture_output(&out);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let through: Vec<_> = proxy.access().into_iter().filter(|(_, p, _)| p.contains(&support::registry::repo_of(&prefix))).collect();
    assert!(through.iter().any(|(m, p, s)| m == "PUT" && p.contains("/manifests/") && *s == 201), "{through:#?}");
}
