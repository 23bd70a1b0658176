//! Manifests, configs and indexes from a registry or a layout, as arbitrary
//! JSON: `classify`, `resolve_index`, `parts`, a base made from them with
//! ciao's layer appended (`append`, which edits the config as JSON), and
//! `added_layers` on the result and on the raw input. Also image references
//! and platforms. Nothing may panic; an appended image's manifest and config
//! parse back and name the new layer.
#![no_main]

use ciao::image::extract::added_layers;
use ciao::image::layer::{Layer, LayerFile, LayerKind};
use ciao::image::manifest::{self, Document};
use ciao::image::mutate::{BaseImage, ConfigEdit, append};
use ciao::image::reference::{ImageRef, Platform};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use std::sync::OnceLock;

fn layer() -> &'static Layer {
    static L: OnceLock<Layer> = OnceLock::new();
    L.get_or_init(|| {
        let files = [LayerFile::file("/app/main.py", &b"print('fuzz')\n"[..])];
        Layer::from_files(LayerKind::Code, &files, 0).expect("a small layer")
    })
}

fn check_appended(manifest: Value, config: &[u8]) {
    let name = ImageRef::parse("r.example/base:1").expect("a valid reference");
    let platform = Platform::parse("linux/amd64").expect("a valid platform");
    let family = match manifest.get("mediaType").and_then(Value::as_str) {
        Some(manifest::DOCKER_MANIFEST) => manifest::Family::Docker,
        _ => manifest::Family::Oci,
    };
    let Ok(base) = BaseImage::new(name.to_string(), name, format!("sha256:{:064}", 0), platform, family, manifest, config) else {
        return;
    };
    let edit = ConfigEdit { cmd: vec!["python".into(), "main.py".into()], workdir: "/app".into(), ..ConfigEdit::default() };
    let image = append(&base, std::slice::from_ref(layer()), &edit);
    let m: Value = serde_json::from_slice(&image.manifest).expect("the new manifest is JSON");
    let c: Value = serde_json::from_slice(&image.config).expect("the new config is JSON");
    let (_, layers) = manifest::parts(&m).expect("the new manifest has parts");
    assert_eq!(layers.last().map(|d| d.digest.as_str()), Some(layer().digest.as_str()));
    let added = added_layers(&m, &c).expect("the new image's layers");
    assert!(added.iter().any(|(d, k)| d.digest == layer().digest && *k == LayerKind::Code), "the code layer is found again");
    let _ = base.to_oci();
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    match mode % 4 {
        0 => {
            let text = String::from_utf8_lossy(rest);
            if let Ok(r) = ImageRef::parse(&text) {
                let _ = (r.name(), r.to_string(), r.api_host().to_string(), r.with_tag("t"), r.with_digest("sha256:0"));
            }
            if let Ok(p) = Platform::parse(&text) {
                assert_eq!(Platform::parse(&p.to_string()).ok(), Some(p), "a platform prints as it parses");
            }
        }
        1 => {
            let ct = [None, Some(manifest::OCI_INDEX), Some(manifest::DOCKER_MANIFEST)][usize::from(mode >> 2) % 3];
            match manifest::classify(rest, ct) {
                Ok(Document::Index { index, .. }) => {
                    for p in ["linux/amd64", "linux/arm64", "linux/arm/v7"] {
                        let _ = manifest::resolve_index(&index, &Platform::parse(p).expect("a valid platform"));
                    }
                }
                Ok(Document::Image { manifest, .. }) => {
                    if manifest::parts(&manifest).is_ok() {
                        check_appended(manifest, br#"{"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":[]}}"#);
                    }
                }
                Err(_) => {}
            }
        }
        _ => {
            // Two documents: a manifest and a config, split at the first NUL.
            let (m, c) = match rest.iter().position(|&b| b == 0) {
                Some(i) => (&rest[..i], &rest[i + 1..]),
                None => (rest, &b"{}"[..]),
            };
            let Ok(manifest) = serde_json::from_slice::<Value>(m) else { return };
            if let Ok(config) = serde_json::from_slice::<Value>(c) {
                let _ = added_layers(&manifest, &config);
            }
            check_appended(manifest, c);
        }
    }
});
