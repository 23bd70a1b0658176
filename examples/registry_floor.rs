//! The floor of an append: a bare keep-alive HTTP client, already running,
//! sending exactly the requests a ciao build needs, with bodies computed
//! beforehand (untimed). Prints one JSON line with the per-iteration times.
//!
//! ```text
//! registry_floor HOST BASE_REPO:TAG TARGET_REPO cold|warm ITERATIONS [parallel]
//! ```
//! cold: GET manifest, GET config, one mount per base layer, code layer
//! POST+PUT, config POST+PUT, manifest PUT. warm: the last five.
//! `parallel` sends independent requests together, as ciao does.

use std::time::Instant;

use ciao::image::layer::{Layer, LayerFile, LayerKind};
use ciao::image::manifest::{self, Document};
use ciao::image::mutate::{BaseImage, ConfigEdit, append};
use ciao::image::reference::{ImageRef, Platform};
use reqwest::Client;

type Error = Box<dyn std::error::Error + Send + Sync>;

async fn upload(http: &Client, base: &str, repo: &str, digest: &str, body: bytes::Bytes) -> Result<(), Error> {
    let r = http.post(format!("{base}/v2/{repo}/blobs/uploads/")).send().await?;
    let location = r.headers().get("location").ok_or("no Location")?.to_str()?.to_string();
    let url = if location.starts_with("http") { location } else { format!("{base}{location}") };
    let sep = if url.contains('?') { '&' } else { '?' };
    let r = http
        .put(format!("{url}{sep}digest={}", digest.replace(':', "%3A")))
        .header("content-type", "application/octet-stream")
        .body(body)
        .send()
        .await?;
    if r.status() != 201 {
        return Err(format!("blob PUT answered {}", r.status()).into());
    }
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 6 {
        eprintln!("usage: registry_floor HOST BASE_REPO:TAG TARGET_REPO cold|warm ITERATIONS [parallel]");
        std::process::exit(2);
    }
    let (host, base_ref, target, mode, n) = (&args[1], &args[2], &args[3], &args[4], args[5].parse::<usize>()?);
    let parallel = args.get(6).is_some_and(|a| a == "parallel");
    let base_url = format!("http://{host}");
    let (base_repo, base_tag) = base_ref.rsplit_once(':').ok_or("BASE_REPO:TAG")?;
    let http = Client::builder().build()?;
    let accept = manifest::MANIFEST_ACCEPT;

    // Untimed: the base and every iteration's bodies.
    let r = http.get(format!("{base_url}/v2/{base_repo}/manifests/{base_tag}")).header("accept", accept).send().await?;
    let ct = r.headers().get("content-type").and_then(|v| v.to_str().ok()).map(String::from);
    let body = r.bytes().await?;
    let Document::Image { family, manifest } = manifest::classify(&body, ct.as_deref()).map_err(|p| p.0)? else {
        return Err("the floor takes a single-platform base".into());
    };
    let (cd, layers) = manifest::parts(&manifest).map_err(|p| p.0)?;
    let config = http.get(format!("{base_url}/v2/{base_repo}/blobs/{}", cd.digest)).send().await?.bytes().await?;
    let base = BaseImage::new(
        "docker.io/library/python:3.11-slim".into(),
        ImageRef::parse(&format!("{host}/{base_ref}"))?,
        ciao::image::layer::sha256_digest(&body),
        Platform::parse("linux/amd64")?,
        family,
        manifest.clone(),
        &config,
    )
    .map_err(|p| p.0)?;
    let run_id = std::process::id();
    let images: Vec<_> = (0..n)
        .map(|i| {
            let mut code = format!("# floor {run_id} {i}\n");
            while code.len() < 4096 {
                code.push_str("print('a line of a typical notebook cell')\n");
            }
            let layer = Layer::from_files(LayerKind::Code, &[LayerFile::file("/app/main.py", code)], 0).unwrap();
            let edit = ConfigEdit { cmd: vec!["python".into(), "/app/main.py".into()], workdir: "/app".into(), ..ConfigEdit::default() };
            let img = append(&base, std::slice::from_ref(&layer), &edit);
            (layer, img)
        })
        .collect();
    // Warm-up: one connection in the pool; the target repository has the
    // base layers (a warm kernel's repository does).
    http.get(format!("{base_url}/v2/")).send().await?;
    for d in &layers {
        let url = format!("{base_url}/v2/{target}/blobs/uploads/?mount={}&from={base_repo}", d.digest.replace(':', "%3A"));
        http.post(url).send().await?;
    }

    let mut times = Vec::new();
    let mut requests = 0usize;
    for (i, (layer, img)) in images.iter().enumerate() {
        let t = Instant::now();
        let mut count = 0usize;
        if mode == "cold" {
            let r = http.get(format!("{base_url}/v2/{base_repo}/manifests/{base_tag}")).header("accept", accept).send().await?;
            r.bytes().await?;
            http.get(format!("{base_url}/v2/{base_repo}/blobs/{}", cd.digest)).send().await?.bytes().await?;
            count += 2;
        }
        let mounts = if mode == "cold" { layers.as_slice() } else { &[] };
        let mount = |digest: String| {
            let url = format!("{base_url}/v2/{target}/blobs/uploads/?mount={}&from={base_repo}", digest.replace(':', "%3A"));
            let http = http.clone();
            async move {
                let r = http.post(url).send().await?;
                if r.status() != 201 {
                    return Err::<(), Error>(format!("mount answered {}", r.status()).into());
                }
                Ok(())
            }
        };
        let code = upload(&http, &base_url, target, &layer.digest, layer.blob.clone());
        let cfg = upload(&http, &base_url, target, &img.config_descriptor.digest, img.config.clone());
        if parallel {
            let ms = futures::future::try_join_all(mounts.iter().map(|d| mount(d.digest.clone())));
            futures::try_join!(ms, code, cfg)?;
        } else {
            for d in mounts {
                mount(d.digest.clone()).await?;
            }
            code.await?;
            cfg.await?;
        }
        count += mounts.len() + 4;
        let r = http
            .put(format!("{base_url}/v2/{target}/manifests/floor-{i}"))
            .header("content-type", img.manifest_media_type())
            .body(img.manifest.clone())
            .send()
            .await?;
        if r.status() != 201 {
            return Err(format!("manifest PUT answered {}: {}", r.status(), r.text().await?).into());
        }
        count += 1;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        requests = count;
    }
    let mut sorted = times.clone();
    sorted.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "{{\"mode\":\"{mode}\",\"parallel\":{parallel},\"requests\":{requests},\"median_ms\":{:.3},\"times_ms\":{:?}}}",
        sorted[sorted.len() / 2],
        times
    );
    Ok(())
}
