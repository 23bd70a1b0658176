//! The life of one pod on the node: image pulls with back-off, root filesystem, volumes,
//! environment, container processes with restarts, and the status the kubelet reports.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::PodRuntime;
use super::exec::{self, ProcSpec};
use super::image::{PulledImage, credentials_from_dockerconfigs};
use super::logbuf::LogBuf;
use super::rootfs::{self, VolumeSource};
use super::scheduler::set_condition;
use crate::cluster::Cluster;
use crate::store::{name_of, namespace_of, now_rfc3339, uid_of};

#[derive(Clone)]
struct CState {
    name: String,
    image: String,
    image_id: String,
    state: Value,
    last_state: Value,
    restart_count: u32,
    ready: bool,
    started: bool,
    finished: bool,
    exit_code: i32,
}

struct PodCtx {
    cluster: Arc<Cluster>,
    rt: Arc<PodRuntime>,
    pod: Value,
    ip: String,
    start_time: String,
    states: Mutex<Vec<CState>>,
}

fn container_id() -> String {
    format!("containerd://{}", hex::encode(rand::random::<[u8; 32]>()))
}

impl PodCtx {
    fn ns(&self) -> &str {
        namespace_of(&self.pod)
    }
    fn name(&self) -> &str {
        name_of(&self.pod)
    }
    fn deleting(&self) -> bool {
        self.rt.deleting.load(Ordering::SeqCst)
    }

    fn set_state(&self, idx: usize, f: impl FnOnce(&mut CState)) -> bool {
        {
            let mut st = self.states.lock().expect("states lock");
            f(&mut st[idx]);
        }
        self.write_status()
    }

    /// Writes the pod status; false when the pod is gone.
    fn write_status(&self) -> bool {
        if self.rt.done.load(Ordering::SeqCst) && self.deleting() {
            return false;
        }
        let states = self.states.lock().expect("states lock").clone();
        let all_final = states.iter().all(|c| c.finished);
        let phase = if all_final {
            if states.iter().all(|c| c.exit_code == 0) { "Succeeded" } else { "Failed" }
        } else if states.iter().any(|c| c.started || c.restart_count > 0) {
            "Running"
        } else {
            "Pending"
        };
        let unready: Vec<String> = states.iter().filter(|c| !c.ready).map(|c| c.name.clone()).collect();
        let statuses: Vec<Value> = states
            .iter()
            .map(|c| {
                let mut s = json!({
                    "name": c.name,
                    "state": c.state,
                    "lastState": c.last_state,
                    "ready": c.ready,
                    "restartCount": c.restart_count,
                    "image": c.image,
                    "imageID": c.image_id,
                    "started": c.started,
                });
                if let Some(id) = c.state.pointer("/terminated/containerID").or_else(|| c.state.pointer("/running/containerID")) {
                    s["containerID"] = id.clone();
                }
                if let Some(r) = s["state"].pointer_mut("/running") {
                    r.as_object_mut().map(|o| o.remove("containerID"));
                }
                s
            })
            .collect();
        let ip = self.ip.clone();
        let start = self.start_time.clone();
        let res = self.cluster.store.update("pods", self.ns(), self.name(), |o| {
            set_condition(o, "PodReadyToStartContainers", "True", None, None);
            set_condition(o, "Initialized", "True", None, None);
            if phase == "Succeeded" || phase == "Failed" {
                set_condition(o, "Ready", "False", Some("PodCompleted"), None);
                set_condition(o, "ContainersReady", "False", Some("PodCompleted"), None);
            } else if unready.is_empty() {
                set_condition(o, "Ready", "True", None, None);
                set_condition(o, "ContainersReady", "True", None, None);
            } else {
                let m = format!("containers with unready status: [{}]", unready.join(" "));
                set_condition(o, "Ready", "False", Some("ContainersNotReady"), Some(&m));
                set_condition(o, "ContainersReady", "False", Some("ContainersNotReady"), Some(&m));
            }
            set_condition(o, "PodScheduled", "True", None, None);
            let order = ["PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled"];
            if let Some(cs) = o.pointer_mut("/status/conditions").and_then(Value::as_array_mut) {
                cs.sort_by_key(|c| order.iter().position(|t| c["type"] == *t).unwrap_or(99));
            }
            let st = &mut o["status"];
            st["phase"] = json!(phase);
            st["hostIP"] = json!("127.0.0.1");
            st["hostIPs"] = json!([{"ip": "127.0.0.1"}]);
            st["podIP"] = json!(ip);
            st["podIPs"] = json!([{"ip": ip}]);
            st["startTime"] = json!(start);
            st["containerStatuses"] = json!(statuses);
            Ok(())
        });
        res.is_ok()
    }

    fn event(&self, type_: &str, reason: &str, message: &str) {
        if let Some(p) = self.cluster.store.get("pods", self.ns(), self.name()) {
            self.cluster.record_event(&p, type_, reason, message, "kubelet");
        }
    }

    /// Sleeps unless the pod is terminated first; false when terminated.
    async fn sleep(&self, d: Duration) -> bool {
        let mut rx = self.rt.term.subscribe();
        if rx.borrow().is_some() {
            return false;
        }
        tokio::select! {
            _ = tokio::time::sleep(d) => true,
            _ = rx.changed() => false,
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let base = self.cluster.opts.backoff_base;
        base.saturating_mul(1u32 << attempt.min(3)).min(base.saturating_mul(10))
    }
}

pub(super) async fn run_pod(cluster: Arc<Cluster>, rt: Arc<PodRuntime>, pod: Value) {
    let containers = pod.pointer("/spec/containers").and_then(Value::as_array).cloned().unwrap_or_default();
    let states = containers
        .iter()
        .map(|c| CState {
            name: c.get("name").and_then(Value::as_str).unwrap_or_default().to_string(),
            image: c.get("image").and_then(Value::as_str).unwrap_or_default().to_string(),
            image_id: String::new(),
            state: json!({"waiting": {"reason": "ContainerCreating"}}),
            last_state: json!({}),
            restart_count: 0,
            ready: false,
            started: false,
            finished: false,
            exit_code: 0,
        })
        .collect();
    let ip = cluster.kubelet.next_pod_ip();
    let ctx = Arc::new(PodCtx { cluster: cluster.clone(), rt: rt.clone(), pod: pod.clone(), ip, start_time: now_rfc3339(), states: Mutex::new(states) });
    if !ctx.write_status() {
        rt.done.store(true, Ordering::SeqCst);
        return;
    }
    let mut tasks = Vec::new();
    for (idx, c) in containers.into_iter().enumerate() {
        let ctx = ctx.clone();
        tasks.push(tokio::spawn(async move { run_container(ctx, idx, c).await }));
    }
    futures::future::join_all(tasks).await;
    let deleting = ctx.deleting();
    let immediate = rt.done.load(Ordering::SeqCst);
    rt.done.store(true, Ordering::SeqCst);
    if deleting && !immediate {
        let _ = cluster.store.delete("pods", ctx.ns(), ctx.name());
    }
    let _ = uid_of(&pod);
}

fn is_mpi_worker(pod: &Value) -> bool {
    let owned_by_mpijob = pod
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .is_some_and(|refs| refs.iter().any(|r| r["kind"] == "MPIJob"));
    let role = pod.pointer("/metadata/labels/training.kubeflow.org~1replica-type").and_then(Value::as_str).or_else(|| pod.pointer("/metadata/labels/training.kubeflow.org~1job-role").and_then(Value::as_str));
    owned_by_mpijob && role == Some("worker")
}

async fn pull(ctx: &PodCtx, idx: usize, c: &Value) -> Option<PulledImage> {
    let image = c.get("image").and_then(Value::as_str).unwrap_or_default().to_string();
    let policy = c.get("imagePullPolicy").and_then(Value::as_str).unwrap_or("IfNotPresent").to_string();
    let puller = &ctx.cluster.kubelet.puller;
    if policy != "Always" {
        if let Some(p) = puller.cached(&image) {
            ctx.event("Normal", "Pulled", &format!("Container image \"{image}\" already present on machine"));
            return Some(p);
        }
        if policy == "Never" {
            let msg = format!("Container image \"{image}\" is not present with pull policy of Never");
            ctx.set_state(idx, |s| s.state = json!({"waiting": {"reason": "ErrImageNeverPull", "message": msg}}));
            ctx.event("Warning", "ErrImageNeverPull", &msg);
            let _ = ctx.sleep(Duration::from_secs(u64::MAX / 4)).await;
            return None;
        }
    }
    let mut attempt = 0;
    loop {
        if ctx.deleting() {
            return None;
        }
        ctx.event("Normal", "Pulling", &format!("Pulling image \"{image}\""));
        let creds = pull_credentials(ctx, &image);
        let t0 = Instant::now();
        match puller.pull(&image, creds.as_ref()).await {
            Ok(p) => {
                let el = t0.elapsed().as_secs_f64();
                ctx.event("Normal", "Pulled", &format!("Successfully pulled image \"{image}\" in {el:.3}s ({el:.3}s including waiting)"));
                return Some(p);
            }
            Err(e) => {
                let msg = e.0.clone();
                ctx.set_state(idx, |s| s.state = json!({"waiting": {"reason": "ErrImagePull", "message": msg}}));
                ctx.event("Warning", "Failed", &format!("Failed to pull image \"{image}\": {msg}"));
                ctx.event("Warning", "Failed", "Error: ErrImagePull");
                if !ctx.sleep(ctx.cluster.opts.backoff_base).await {
                    return None;
                }
                let bo = format!("Back-off pulling image \"{image}\": ErrImagePull: {msg}");
                ctx.set_state(idx, |s| s.state = json!({"waiting": {"reason": "ImagePullBackOff", "message": bo}}));
                ctx.event("Normal", "BackOff", &format!("Back-off pulling image \"{image}\""));
                ctx.event("Warning", "Failed", "Error: ImagePullBackOff");
                if !ctx.sleep(ctx.backoff(attempt)).await {
                    return None;
                }
                attempt += 1;
            }
        }
    }
}

fn pull_credentials(ctx: &PodCtx, image: &str) -> Option<super::image::Credentials> {
    let registry = super::image::ImageRef::parse(image)?.registry;
    let secrets = ctx.pod.pointer("/spec/imagePullSecrets").and_then(Value::as_array).cloned().unwrap_or_default();
    let mut configs = Vec::new();
    for s in secrets {
        let Some(name) = s.get("name").and_then(Value::as_str) else { continue };
        let Some(sec) = ctx.cluster.store.get("secrets", ctx.ns(), name) else { continue };
        let key = if sec["type"] == "kubernetes.io/dockercfg" { ".dockercfg" } else { ".dockerconfigjson" };
        let Some(b64) = sec.pointer(&format!("/data/{key}")).and_then(Value::as_str) else { continue };
        let Ok(raw) = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b64) else { continue };
        if let Ok(v) = serde_json::from_slice::<Value>(&raw) {
            configs.push(if key == ".dockercfg" { json!({"auths": v}) } else { v });
        }
    }
    credentials_from_dockerconfigs(&registry, &configs)
}

/// Resolves the volumes mounted by a container; Err carries a FailedMount message.
fn volume_sources(ctx: &PodCtx, c: &Value) -> Result<Vec<(String, Option<String>, VolumeSource)>, String> {
    let volumes = ctx.pod.pointer("/spec/volumes").and_then(Value::as_array).cloned().unwrap_or_default();
    let mut out = Vec::new();
    for m in c.get("volumeMounts").and_then(Value::as_array).cloned().unwrap_or_default() {
        let vname = m.get("name").and_then(Value::as_str).unwrap_or_default();
        let path = m.get("mountPath").and_then(Value::as_str).unwrap_or_default().to_string();
        let sub = m.get("subPath").and_then(Value::as_str).map(str::to_string);
        let Some(v) = volumes.iter().find(|v| v["name"] == vname) else { continue };
        let src = if let Some(cm) = v.get("configMap") {
            let name = cm.get("name").and_then(Value::as_str).unwrap_or_default();
            match ctx.cluster.store.get("configmaps", ctx.ns(), name) {
                Some(obj) => VolumeSource::Files(rootfs::object_files(&obj, false, cm.get("items"))),
                None if cm.get("optional").and_then(Value::as_bool) == Some(true) => VolumeSource::Files(Vec::new()),
                None => return Err(format!("MountVolume.SetUp failed for volume \"{vname}\" : configmap \"{name}\" not found")),
            }
        } else if let Some(sec) = v.get("secret") {
            let name = sec.get("secretName").and_then(Value::as_str).unwrap_or_default();
            match ctx.cluster.store.get("secrets", ctx.ns(), name) {
                Some(obj) => VolumeSource::Files(rootfs::object_files(&obj, true, sec.get("items"))),
                None if sec.get("optional").and_then(Value::as_bool) == Some(true) => VolumeSource::Files(Vec::new()),
                None => return Err(format!("MountVolume.SetUp failed for volume \"{vname}\" : secret \"{name}\" not found")),
            }
        } else if let Some(pvc) = v.get("persistentVolumeClaim") {
            let claim = pvc.get("claimName").and_then(Value::as_str).unwrap_or_default();
            VolumeSource::HostDir(ctx.cluster.work_dir.join("pvc").join(ctx.ns()).join(claim))
        } else if v.get("emptyDir").is_some() {
            VolumeSource::HostDir(ctx.cluster.kubelet.pods_dir.join(uid_of(&ctx.pod)).join("volumes").join(vname))
        } else {
            VolumeSource::EmptyDir
        };
        out.push((path, sub, src));
    }
    Ok(out)
}

/// Builds the container environment; Err carries a CreateContainerConfigError message.
fn build_env(ctx: &PodCtx, c: &Value, image: Option<&PulledImage>) -> Result<Vec<(String, String)>, String> {
    let mut env: Vec<(String, String)> = Vec::new();
    let set = |env: &mut Vec<(String, String)>, k: String, v: String| {
        env.retain(|(ek, _)| *ek != k);
        env.push((k, v));
    };
    if let Some(img) = image {
        for kv in &img.config.env {
            if let Some((k, v)) = kv.split_once('=') {
                set(&mut env, k.into(), v.into());
            }
        }
    }
    set(&mut env, "HOSTNAME".into(), ctx.name().into());
    if !env.iter().any(|(k, _)| k == "HOME") {
        set(&mut env, "HOME".into(), "/root".into());
    }
    let ns = ctx.ns().to_string();
    let b64 = |s: &str| String::from_utf8_lossy(&base64::Engine::decode(&base64::engine::general_purpose::STANDARD, s).unwrap_or_default()).to_string();
    for ef in c.get("envFrom").and_then(Value::as_array).cloned().unwrap_or_default() {
        let prefix = ef.get("prefix").and_then(Value::as_str).unwrap_or_default();
        if let Some(r) = ef.get("configMapRef") {
            let name = r.get("name").and_then(Value::as_str).unwrap_or_default();
            match ctx.cluster.store.get("configmaps", &ns, name) {
                Some(cm) => {
                    for (k, v) in cm.get("data").and_then(Value::as_object).cloned().unwrap_or_default() {
                        set(&mut env, format!("{prefix}{k}"), v.as_str().unwrap_or_default().into());
                    }
                }
                None if r.get("optional").and_then(Value::as_bool) == Some(true) => {}
                None => return Err(format!("configmap \"{name}\" not found")),
            }
        }
        if let Some(r) = ef.get("secretRef") {
            let name = r.get("name").and_then(Value::as_str).unwrap_or_default();
            match ctx.cluster.store.get("secrets", &ns, name) {
                Some(s) => {
                    for (k, v) in s.get("data").and_then(Value::as_object).cloned().unwrap_or_default() {
                        set(&mut env, format!("{prefix}{k}"), b64(v.as_str().unwrap_or_default()));
                    }
                }
                None if r.get("optional").and_then(Value::as_bool) == Some(true) => {}
                None => return Err(format!("secret \"{name}\" not found")),
            }
        }
    }
    let current_pod = ctx.cluster.store.get("pods", &ns, ctx.name()).unwrap_or_else(|| ctx.pod.clone());
    for e in c.get("env").and_then(Value::as_array).cloned().unwrap_or_default() {
        let Some(k) = e.get("name").and_then(Value::as_str) else { continue };
        let vars: HashMap<String, String> = env.iter().cloned().collect();
        if let Some(v) = e.get("value").and_then(Value::as_str) {
            set(&mut env, k.into(), exec::expand(v, &vars));
            continue;
        }
        let Some(vf) = e.get("valueFrom") else {
            set(&mut env, k.into(), String::new());
            continue;
        };
        if let Some(fr) = vf.get("fieldRef") {
            let path = fr.get("fieldPath").and_then(Value::as_str).unwrap_or_default();
            let val = field_ref(&current_pod, path, &ctx.ip);
            set(&mut env, k.into(), val);
        } else if let Some(r) = vf.get("secretKeyRef") {
            let name = r.get("name").and_then(Value::as_str).unwrap_or_default();
            let key = r.get("key").and_then(Value::as_str).unwrap_or_default();
            let optional = r.get("optional").and_then(Value::as_bool) == Some(true);
            match ctx.cluster.store.get("secrets", &ns, name) {
                Some(s) => match s.pointer(&format!("/data/{}", key.replace('~', "~0").replace('/', "~1"))).and_then(Value::as_str) {
                    Some(v) => set(&mut env, k.into(), b64(v)),
                    None if optional => {}
                    None => return Err(format!("couldn't find key {key} in Secret {ns}/{name}")),
                },
                None if optional => {}
                None => return Err(format!("secret \"{name}\" not found")),
            }
        } else if let Some(r) = vf.get("configMapKeyRef") {
            let name = r.get("name").and_then(Value::as_str).unwrap_or_default();
            let key = r.get("key").and_then(Value::as_str).unwrap_or_default();
            let optional = r.get("optional").and_then(Value::as_bool) == Some(true);
            match ctx.cluster.store.get("configmaps", &ns, name) {
                Some(cm) => match cm.get("data").and_then(|d| d.get(key)).and_then(Value::as_str) {
                    Some(v) => set(&mut env, k.into(), v.into()),
                    None if optional => {}
                    None => return Err(format!("couldn't find key {key} in ConfigMap {ns}/{name}")),
                },
                None if optional => {}
                None => return Err(format!("configmap \"{name}\" not found")),
            }
        } else if let Some(r) = vf.get("resourceFieldRef") {
            let res = r.get("resource").and_then(Value::as_str).unwrap_or_default();
            let q = c.pointer(&format!("/resources/{}", res.replace('.', "/"))).and_then(Value::as_str).unwrap_or("0");
            let v = if res.ends_with("cpu") {
                crate::options::parse_quantity(q, 1000.0).map(|m| m.div_ceil(1000).max(1).to_string()).unwrap_or_else(|| "1".into())
            } else {
                crate::options::parse_quantity(q, 1.0).map(|b| b.to_string()).unwrap_or_else(|| "0".into())
            };
            set(&mut env, k.into(), v);
        }
    }
    Ok(env)
}

fn field_ref(pod: &Value, path: &str, ip: &str) -> String {
    let s = |p: &str| pod.pointer(p).and_then(Value::as_str).unwrap_or_default().to_string();
    if let Some(rest) = path.strip_prefix("metadata.labels['").and_then(|r| r.strip_suffix("']")) {
        return pod.pointer("/metadata/labels").and_then(|l| l.get(rest)).and_then(Value::as_str).unwrap_or_default().to_string();
    }
    if let Some(rest) = path.strip_prefix("metadata.annotations['").and_then(|r| r.strip_suffix("']")) {
        return pod.pointer("/metadata/annotations").and_then(|l| l.get(rest)).and_then(Value::as_str).unwrap_or_default().to_string();
    }
    match path {
        "metadata.name" => s("/metadata/name"),
        "metadata.namespace" => s("/metadata/namespace"),
        "metadata.uid" => s("/metadata/uid"),
        "spec.nodeName" => s("/spec/nodeName"),
        "spec.serviceAccountName" => s("/spec/serviceAccountName"),
        "status.podIP" | "status.podIPs" => ip.to_string(),
        "status.hostIP" | "status.hostIPs" => "127.0.0.1".to_string(),
        _ => String::new(),
    }
}

async fn run_container(ctx: Arc<PodCtx>, idx: usize, c: Value) {
    let cname = c.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
    let Some(image) = pull(&ctx, idx, &c).await else { return };
    let image_ref = crate::kubelet::image::ImageRef::parse(c.get("image").and_then(Value::as_str).unwrap_or_default());
    let image_id = image_ref.map(|r| format!("{}/{}@{}", r.registry, r.repository, image.digest)).unwrap_or_default();
    ctx.set_state(idx, |s| s.image_id = image_id.clone());

    if is_mpi_worker(&ctx.pod) {
        // workers of an MPIJob run sshd: up until the pod is deleted
        let started = now_rfc3339();
        ctx.set_state(idx, |s| {
            s.state = json!({"running": {"startedAt": started, "containerID": container_id()}});
            s.ready = true;
            s.started = true;
        });
        let _ = ctx.sleep(Duration::from_secs(u64::MAX / 4)).await;
        return;
    }

    // root filesystem and volumes
    let root = ctx.cluster.kubelet.pods_dir.join(uid_of(&ctx.pod)).join(&cname).join("rootfs");
    let layers = image.layers.clone();
    let root2 = root.clone();
    let extracted = tokio::task::spawn_blocking(move || rootfs::extract_layers(&root2, &layers)).await.unwrap_or_else(|e| Err(e.to_string()));
    if let Err(e) = extracted {
        ctx.set_state(idx, |s| s.state = json!({"waiting": {"reason": "CreateContainerError", "message": e}}));
        let _ = ctx.sleep(Duration::from_secs(u64::MAX / 4)).await;
        return;
    }
    let mut warned = false;
    loop {
        match volume_sources(&ctx, &c) {
            Ok(vols) => {
                let mut err = None;
                for (path, sub, src) in &vols {
                    if let Err(e) = rootfs::mount(&root, path, sub.as_deref(), src) {
                        err = Some(e);
                    }
                }
                if let Some(e) = err {
                    ctx.set_state(idx, |s| s.state = json!({"waiting": {"reason": "CreateContainerError", "message": e}}));
                    let _ = ctx.sleep(Duration::from_secs(u64::MAX / 4)).await;
                    return;
                }
                break;
            }
            Err(msg) => {
                if !warned {
                    ctx.event("Warning", "FailedMount", &msg);
                    warned = true;
                }
                if !ctx.sleep(ctx.cluster.opts.backoff_base).await {
                    return;
                }
            }
        }
    }
    let _ = std::fs::create_dir_all(root.join("root"));

    let restart_policy = ctx.pod.pointer("/spec/restartPolicy").and_then(Value::as_str).unwrap_or("Always").to_string();
    let mut crash_attempt = 0u32;
    loop {
        if ctx.deleting() {
            return;
        }
        let env = match build_env(&ctx, &c, Some(&image)) {
            Ok(e) => e,
            Err(msg) => {
                ctx.set_state(idx, |s| s.state = json!({"waiting": {"reason": "CreateContainerConfigError", "message": msg}}));
                ctx.event("Warning", "Failed", &format!("Error: {msg}"));
                if !ctx.sleep(ctx.cluster.opts.backoff_base).await {
                    return;
                }
                continue;
            }
        };
        let vars: HashMap<String, String> = env.iter().cloned().collect();
        let strs = |v: Option<&Value>| -> Option<Vec<String>> { v.and_then(Value::as_array).map(|a| a.iter().map(|s| exec::expand(s.as_str().unwrap_or_default(), &vars)).collect()) };
        let command = strs(c.get("command"));
        let args = strs(c.get("args"));
        let argv: Vec<String> = match (command, args) {
            (Some(cmd), Some(a)) => cmd.into_iter().chain(a).collect(),
            (Some(cmd), None) => cmd,
            (None, Some(a)) => image.config.entrypoint.iter().cloned().chain(a).collect(),
            (None, None) => image.config.entrypoint.iter().cloned().chain(image.config.cmd.iter().cloned()).collect(),
        };
        let working_dir = c
            .get("workingDir")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .unwrap_or_else(|| if image.config.working_dir.is_empty() { "/".into() } else { image.config.working_dir.clone() });
        let log = Arc::new(LogBuf::default());
        ctx.rt.logs.lock().expect("logs lock").entry(cname.clone()).or_default().push(log.clone());
        let cid = container_id();
        let started_at = now_rfc3339();
        let outcome = match &ctx.cluster.kubelet.tools {
            Ok(tools) => {
                let spec = ProcSpec { argv, env, working_dir, root: root.clone() };
                let ctx2 = ctx.clone();
                let cname2 = cname.clone();
                let cid2 = cid.clone();
                let started2 = started_at.clone();
                exec::run(&spec, tools, log.clone(), ctx.rt.term.subscribe(), move |infos| {
                    ctx2.rt.procs.lock().expect("procs lock").insert(cname2, infos);
                    ctx2.event("Normal", "Created", &format!("Created container: {}", ctx2.states.lock().expect("states").get(idx).map(|s| s.name.clone()).unwrap_or_default()));
                    ctx2.set_state(idx, |s| {
                        s.state = json!({"running": {"startedAt": started2, "containerID": cid2}});
                        s.ready = true;
                        s.started = true;
                    });
                    ctx2.event("Normal", "Started", "Started container");
                })
                .await
            }
            Err(e) => exec::RunOutcome { exit_code: 128, start_error: Some(format!("no host interpreter: {e}")) },
        };
        log.close();
        ctx.rt.procs.lock().expect("procs lock").remove(&cname);
        let finished_at = now_rfc3339();
        let mut term = json!({"exitCode": outcome.exit_code, "startedAt": started_at, "finishedAt": finished_at, "containerID": cid});
        match &outcome.start_error {
            Some(m) => {
                term["reason"] = json!("StartError");
                term["message"] = json!(m);
                term["startedAt"] = json!("1970-01-01T00:00:00Z");
            }
            None => term["reason"] = json!(if outcome.exit_code == 0 { "Completed" } else { "Error" }),
        }
        if outcome.exit_code == 137 && ctx.deleting() {
            term["reason"] = json!("Error");
        }
        let restart = !ctx.deleting() && (restart_policy == "Always" || (restart_policy == "OnFailure" && outcome.exit_code != 0));
        let code = outcome.exit_code;
        let term2 = term.clone();
        ctx.set_state(idx, |s| {
            s.state = json!({"terminated": term2});
            s.ready = false;
            s.started = false;
            s.exit_code = code;
            s.finished = !restart;
        });
        if !restart {
            return;
        }
        // restart with crash-loop back-off (the first restart is immediate)
        let delay = if crash_attempt == 0 { Duration::ZERO } else { ctx.backoff(crash_attempt - 1) };
        crash_attempt += 1;
        if !delay.is_zero() {
            let pod_id = format!("{}_{}({})", ctx.name(), ctx.ns(), uid_of(&ctx.pod));
            let msg = format!("back-off {}s restarting failed container={cname} pod={pod_id}", delay.as_secs().max(10));
            ctx.set_state(idx, |s| {
                s.last_state = json!({"terminated": term.clone()});
                s.restart_count += 1;
                s.state = json!({"waiting": {"reason": "CrashLoopBackOff", "message": msg}});
            });
            ctx.event("Warning", "BackOff", "Back-off restarting failed container");
            if !ctx.sleep(delay).await {
                return;
            }
        } else {
            // The next instance starts at once: like the kubelet, report the
            // last state and the new restart count together with its running
            // state, never a restart count paired with the old instance's
            // terminated state.
            let mut st = ctx.states.lock().expect("states lock");
            st[idx].last_state = json!({"terminated": term.clone()});
            st[idx].restart_count += 1;
        }
    }
}
