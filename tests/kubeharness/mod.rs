//! The Kubernetes backend's end-to-end harness: a real docker-registry with
//! the test base image under the framework images' names (through a mirror
//! map, as an air-gapped site would have it), the Kubernetes API stand-in
//! (`fake-cluster` — a stand-in for tests, not a Kubernetes API server) with
//! the Kubeflow CRDs, and a ciao config pointing at both. Cells run through
//! the real [`Engine`], as the kernel runs them.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use ciao::engine::{ConfigSource, Engine};
use ciao::frameworks::Frameworks;
use ciao::image::reference::ImageRef;
use ciao::output::{CellError, MimeBundle, Output, OutputEvent, Stream};
use fake_cluster::{FakeCluster, Options};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::support::images::{Bases, Push};
use crate::support::registry::Registry;
use crate::support::{fresh_dir, repo};

/// The Kubeflow CRDs, outside the repository.
pub const CRDS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/spec/kubeflow");

pub fn crd_dir(sub: &str) -> PathBuf {
    PathBuf::from(CRDS).join(sub)
}

/// The registry of this test process, with the test base pushed as every
/// framework's base image under `HOST/mirror/…`.
pub fn registry() -> &'static Registry {
    static PUSHED: OnceLock<()> = OnceLock::new();
    let registry = Registry::shared();
    PUSHED.get_or_init(|| {
        let bases = Bases::get();
        let mut images: Vec<String> = Frameworks::embedded().iter().map(|d| d.image.clone()).collect();
        images.sort();
        images.dedup();
        for image in images {
            let r = ImageRef::parse(&image).expect("framework image parses");
            let dest = format!("{}/mirror/{}:{}", registry.host, r.repository, r.tag.as_deref().unwrap_or("latest"));
            bases.push("base", &dest, Push::default());
        }
    });
    registry
}

/// Stand-in options with the training operator and Trainer CRDs, fast back-offs.
pub fn options(registry: &Registry) -> Options {
    Options {
        crd_dirs: vec![crd_dir("training-operator-v1.9.0"), crd_dir("trainer-v2")],
        insecure_registries: vec![registry.host.clone()],
        backoff_base: Duration::from_millis(200),
        bookmark_interval: Duration::from_millis(500),
        // The stand-in checks a bearer token (a canary: see tests/canaries).
        token: Some(crate::support::canary::get("kube-token").into()),
        ..Options::default()
    }
}

/// A stand-in cluster, a registry and a ciao config for both.
pub struct Harness {
    pub registry: &'static Registry,
    pub cluster: FakeCluster,
    pub dir: PathBuf,
    pub config: PathBuf,
}

impl Harness {
    pub async fn start() -> Harness {
        Self::start_with(|_| {}, "").await
    }

    /// With changed stand-in options and extra config lines.
    pub async fn start_with(change: impl FnOnce(&mut Options), extra_config: &str) -> Harness {
        let registry = tokio::task::spawn_blocking(registry).await.unwrap();
        let mut opts = options(registry);
        change(&mut opts);
        let cluster = FakeCluster::start(opts).await.expect("the stand-in starts");
        let dir = fresh_dir("kube-");
        let config = dir.join("config.yaml");
        let host = &registry.host;
        let text = format!(
            "kubeconfig: {kc}\nbackend: kubernetes\nregistry: {host}/{jobs}\nregistries:\n  {host}:\n    insecure: true\n\
             mirrors:\n  docker.io: {host}/mirror\n{extra_config}",
            kc = cluster.kubeconfig_path().display(),
            jobs = repo("jobs"),
        );
        std::fs::write(&config, text).unwrap();
        Harness { registry, cluster, dir, config }
    }

    pub fn engine(&self) -> Engine {
        Engine::new(ConfigSource::File(self.config.clone()))
    }

    /// An engine whose config has `extra` lines added (e.g. `namespace: x`).
    pub fn engine_with(&self, extra: &str) -> Engine {
        let path = self.dir.join(format!("config-{}.yaml", uuid::Uuid::new_v4().simple()));
        let text = std::fs::read_to_string(&self.config).unwrap();
        std::fs::write(&path, format!("{text}{extra}\n")).unwrap();
        Engine::new(ConfigSource::File(path))
    }

    /// A kube client for the stand-in.
    pub async fn client(&self) -> kube::Client {
        let kc = kube::config::Kubeconfig::read_from(self.cluster.kubeconfig_path()).unwrap();
        let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await.unwrap();
        kube::Client::try_from(cfg).unwrap()
    }

    /// Creates a namespace.
    pub async fn namespace(&self, name: &str) {
        let api: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(self.client().await);
        api.create(&Default::default(), &serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).unwrap())
            .await
            .unwrap();
    }

    /// Objects of `plural.group` in `namespace`.
    pub fn objects(&self, resource: &str, namespace: &str) -> Vec<Value> {
        self.cluster.objects(resource, namespace)
    }

    pub fn names(&self, resource: &str, namespace: &str) -> Vec<String> {
        let mut v: Vec<String> =
            self.objects(resource, namespace).iter().filter_map(|o| o["metadata"]["name"].as_str().map(String::from)).collect();
        v.sort();
        v
    }
}

/// What a cell did.
pub struct CellRun {
    pub result: Result<Option<MimeBundle>, CellError>,
    pub events: Vec<OutputEvent>,
    pub elapsed: Duration,
}

impl CellRun {
    fn text(&self, stream: Stream) -> String {
        self.events
            .iter()
            .filter_map(|e| match e {
                OutputEvent::Text(s, t) if *s == stream => Some(t.as_str()),
                _ => None,
            })
            .collect()
    }

    pub fn stdout(&self) -> String {
        self.text(Stream::Stdout)
    }

    pub fn stderr(&self) -> String {
        self.text(Stream::Stderr)
    }

    /// stdout as a terminal shows it: `\r` redraws the line.
    pub fn screen(&self) -> Vec<String> {
        screen(&self.stdout())
    }

    /// The lines replica `name` printed, without the prefix.
    pub fn replica(&self, name: &str) -> Vec<String> {
        let prefix = format!("[{name}] ");
        self.screen().iter().filter_map(|l| l.strip_prefix(&prefix).map(String::from)).collect()
    }

    /// The error, or a panic showing the output.
    pub fn error(&self) -> &CellError {
        match &self.result {
            Err(e) => e,
            Ok(_) => panic!("the cell succeeded:\n{}\n{}", self.stdout(), self.stderr()),
        }
    }

    /// Panics with the output unless the cell succeeded.
    pub fn ok(&self) -> &Self {
        if let Err(e) = &self.result {
            panic!("the cell failed: {e}\n--- stdout\n{}\n--- stderr\n{}", self.stdout(), self.stderr());
        }
        self
    }

    /// The job's name from the `[ciao] Kind ns/name created` line.
    pub fn job_name(&self) -> String {
        job_name(&self.stderr()).unwrap_or_else(|| panic!("no job was created:\n{}", self.stderr()))
    }
}

/// The job name in a `[ciao] Kind ns/name created: …` line.
pub fn job_name(stderr: &str) -> Option<String> {
    stderr.lines().find_map(|l| {
        let rest = l.strip_prefix("[ciao] ")?;
        let (head, _) = rest.split_once(" created: ")?;
        Some(head.rsplit('/').next()?.to_string())
    })
}

/// Text as a terminal shows it, line by line.
pub fn screen(text: &str) -> Vec<String> {
    text.split_terminator('\n').map(|l| l.rsplit('\r').next().unwrap_or("").to_string()).collect()
}

/// Runs a cell to the end.
pub async fn run(engine: &Engine, code: &str) -> CellRun {
    run_until(engine, code, |_| false).await
}

/// Runs a cell and interrupts it once `interrupt(output so far)` holds.
pub async fn run_until(engine: &Engine, code: &str, interrupt: impl Fn(&[OutputEvent]) -> bool + Send + 'static) -> CellRun {
    let (out, mut rx) = Output::channel();
    let cancel = CancellationToken::new();
    let events = Arc::new(Mutex::new(Vec::new()));
    let collector = {
        let events = events.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move {
            while let Some(e) = rx.recv().await {
                let mut ev = events.lock().unwrap();
                ev.push(e);
                if !cancel.is_cancelled() && interrupt(&ev) {
                    cancel.cancel();
                }
            }
        })
    };
    let started = Instant::now();
    let result = engine.run_cell(code, &out, &cancel).await;
    let elapsed = started.elapsed();
    drop(out);
    collector.await.unwrap();
    let events = std::mem::take(&mut *events.lock().unwrap());
    let run = CellRun { result, events, elapsed };
    let error = run.result.as_ref().err().map(|e| format!("{e}\n{e:?}")).unwrap_or_default();
    crate::support::canary::capture("rust-engine", &format!("{}\n{}\n{error}", run.stdout(), run.stderr()));
    run
}

/// Whether the text of `events` (both streams) contains `needle`.
pub fn said(events: &[OutputEvent], needle: &str) -> bool {
    events.iter().any(|e| matches!(e, OutputEvent::Text(_, t) if t.contains(needle)))
}

/// Waits until `f` returns `Some`, up to `secs`.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
