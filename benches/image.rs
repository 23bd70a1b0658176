//! The pure parts of the image builder: layer assembly (tar + gzip +
//! sha256) and the manifest/config edit. Registry round trips are measured by
//! `benches/build_vs_buildah.py`.

use std::hint::black_box;

use ciao::image::layer::{Layer, LayerFile, LayerKind, launcher_script};
use ciao::image::manifest::{self, Family};
use ciao::image::mutate::{BaseImage, ConfigEdit, append};
use ciao::image::reference::{ImageRef, Platform};
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;

/// A 4 KB cell, as the benchmark script also uses.
fn cell() -> String {
    let mut s = String::from("import os\n");
    while s.len() < 4096 {
        s.push_str("print('a line of a typical notebook cell', os.getpid())\n");
    }
    s
}

/// A base shaped like python:3.11-slim: 4 layers, a dozen history entries.
fn base(family: Family) -> BaseImage {
    let layers: Vec<_> = (0..4)
        .map(|i| json!({"mediaType": family.layer_gzip(), "digest": format!("sha256:{i:064x}"), "size": 1_000_000 + i}))
        .collect();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": family.manifest(),
        "config": {"mediaType": family.config(), "digest": format!("sha256:{:064x}", 99), "size": 7000},
        "layers": layers,
    });
    let history: Vec<_> = (0..12)
        .map(|i| json!({"created": "2024-05-01T00:00:00Z", "created_by": format!("/bin/sh -c step {i} with a long command line"), "empty_layer": i % 3 != 0}))
        .collect();
    let config = json!({
        "architecture": "amd64",
        "os": "linux",
        "created": "2024-05-01T00:00:00Z",
        "config": {
            "Env": ["PATH=/usr/local/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8", "GPG_KEY=A035C8C19219BA821ECEA86B64E628F8D684696D", "PYTHON_VERSION=3.11.9"],
            "Cmd": ["python3"],
            "Labels": {"maintainer": "someone"},
        },
        "rootfs": {"type": "layers", "diff_ids": (0..4).map(|i| format!("sha256:{:064x}", 100 + i)).collect::<Vec<_>>()},
        "history": history,
    });
    BaseImage::new(
        "docker.io/library/python:3.11-slim".into(),
        ImageRef::parse("registry.local:5000/mirror/library/python:3.11-slim").unwrap(),
        format!("sha256:{:064x}", 7),
        Platform::parse("linux/amd64").unwrap(),
        family,
        manifest,
        &manifest::to_bytes(&config),
    )
    .unwrap()
}

fn layers(c: &mut Criterion) {
    let code = cell();
    c.bench_function("layer/4KB cell", |b| {
        b.iter(|| Layer::from_files(LayerKind::Code, black_box(&[LayerFile::file("/app/main.py", code.clone())]), 0).unwrap())
    });
    let launcher = launcher_script(&["numpy==1.26.4".into(), "pandas".into()], None);
    c.bench_function("layer/4KB cell + launcher", |b| {
        b.iter(|| {
            Layer::from_files(
                LayerKind::Code,
                black_box(&[LayerFile::file("/app/main.py", code.clone()), LayerFile::script("/app/.ciao/launch.sh", launcher.clone())]),
                0,
            )
            .unwrap()
        })
    });
    let big = vec![7u8; 1 << 20];
    c.bench_function("layer/1 MiB file", |b| {
        b.iter(|| Layer::from_files(LayerKind::Files, black_box(&[LayerFile::file("/app/data.bin", big.clone())]), 0).unwrap())
    });
}

fn edits(c: &mut Criterion) {
    let layer = Layer::from_files(LayerKind::Code, &[LayerFile::file("/app/main.py", cell())], 0).unwrap();
    let edit = ConfigEdit {
        cmd: vec!["python".into(), "-u".into(), "/app/main.py".into()],
        workdir: "/app".into(),
        env: vec![("PYTHONUNBUFFERED".into(), "1".into())],
        labels: vec![],
        created: None,
    };
    for family in [Family::Oci, Family::Docker] {
        let b0 = base(family);
        c.bench_function(&format!("append/{}", family.name()), |b| b.iter(|| append(black_box(&b0), black_box(std::slice::from_ref(&layer)), &edit)));
    }
    let b0 = base(Family::Docker);
    c.bench_function("append/to_oci + append", |b| b.iter(|| append(&black_box(&b0).to_oci(), std::slice::from_ref(&layer), &edit)));
}

criterion_group!(benches, layers, edits);
criterion_main!(benches);
