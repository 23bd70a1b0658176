//! The simulated node: a scheduler with resource accounting, and a kubelet that pulls
//! images, builds root filesystems, runs containers as host processes and reports realistic
//! pod status.

pub mod exec;
pub mod image;
pub mod logbuf;
mod pod;
pub mod rootfs;
pub mod scheduler;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::watch;

use crate::cluster::Cluster;
use exec::{HostTools, ProcInfo};
use image::Puller;
use logbuf::LogBuf;

/// Name of the single simulated node.
pub const NODE_NAME: &str = "fake-node";

/// Runtime state of one pod on the node.
pub struct PodRuntime {
    /// Namespace.
    pub namespace: String,
    /// Pod name.
    pub name: String,
    logs: Mutex<HashMap<String, Vec<Arc<LogBuf>>>>,
    procs: Mutex<HashMap<String, Vec<ProcInfo>>>,
    term: watch::Sender<Option<i64>>,
    done: AtomicBool,
    deleting: AtomicBool,
}

/// A process listing entry for the admin API.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessEntry {
    /// Namespace.
    pub namespace: String,
    /// Pod.
    pub pod: String,
    /// Container.
    pub container: String,
    /// Process id.
    pub pid: i32,
    /// argv as executed on the host.
    pub argv: Vec<String>,
}

/// The kubelet of the simulated node.
pub struct Kubelet {
    pods: Mutex<HashMap<String, Arc<PodRuntime>>>,
    /// Image puller.
    pub puller: Puller,
    /// Host interpreter mapping (None when no python is available).
    pub tools: Result<HostTools, String>,
    /// Where pod roots live.
    pub pods_dir: PathBuf,
    next_ip: AtomicU32,
}

impl Kubelet {
    /// A kubelet working under `work_dir`.
    pub fn new(work_dir: &std::path::Path, puller: Puller, tools: Result<HostTools, String>) -> Self {
        Kubelet { pods: Mutex::new(HashMap::new()), puller, tools, pods_dir: work_dir.join("pods"), next_ip: AtomicU32::new(10) }
    }

    fn register(&self, namespace: &str, name: &str, uid: &str) -> Option<Arc<PodRuntime>> {
        let mut pods = self.pods.lock().expect("pods lock");
        if pods.contains_key(uid) {
            return None;
        }
        let (term, _) = watch::channel(None);
        let rt = Arc::new(PodRuntime {
            namespace: namespace.into(),
            name: name.into(),
            logs: Mutex::new(HashMap::new()),
            procs: Mutex::new(HashMap::new()),
            term,
            done: AtomicBool::new(false),
            deleting: AtomicBool::new(false),
        });
        pods.insert(uid.to_string(), rt.clone());
        Some(rt)
    }

    /// Whether the pod has a live runtime (containers being prepared or running).
    pub fn is_running(&self, uid: &str) -> bool {
        self.pods.lock().expect("pods lock").get(uid).is_some_and(|p| !p.done.load(Ordering::SeqCst))
    }

    /// Whether the kubelet knows the pod at all.
    pub fn knows(&self, uid: &str) -> bool {
        self.pods.lock().expect("pods lock").contains_key(uid)
    }

    /// Stops a pod's containers: SIGTERM then SIGKILL after `grace` seconds (0: at once,
    /// and the pod object is not touched again).
    pub fn terminate(&self, uid: &str, grace: i64) {
        let rt = self.pods.lock().expect("pods lock").get(uid).cloned();
        if let Some(rt) = rt {
            rt.deleting.store(true, Ordering::SeqCst);
            if grace <= 0 {
                rt.done.store(true, Ordering::SeqCst);
            }
            let _ = rt.term.send(Some(grace.max(0)));
        }
    }

    /// Log instances (oldest first) of a container of a pod.
    pub fn logs(&self, uid: &str, container: &str) -> Vec<Arc<LogBuf>> {
        let rt = self.pods.lock().expect("pods lock").get(uid).cloned();
        rt.map(|rt| rt.logs.lock().expect("logs lock").get(container).cloned().unwrap_or_default()).unwrap_or_default()
    }

    /// Live processes of every pod.
    pub fn processes(&self) -> Vec<ProcessEntry> {
        let pods: Vec<Arc<PodRuntime>> = self.pods.lock().expect("pods lock").values().cloned().collect();
        let mut out = Vec::new();
        for p in pods {
            if p.done.load(Ordering::SeqCst) {
                continue;
            }
            for (c, infos) in p.procs.lock().expect("procs lock").iter() {
                for i in infos {
                    out.push(ProcessEntry { namespace: p.namespace.clone(), pod: p.name.clone(), container: c.clone(), pid: i.pid, argv: i.argv.clone() });
                }
            }
        }
        out
    }

    fn next_pod_ip(&self) -> String {
        let n = self.next_ip.fetch_add(1, Ordering::SeqCst);
        format!("127.0.{}.{}", 1 + (n / 250) % 250, 1 + n % 250)
    }

    /// Starts running a bound pod.
    pub fn start(cluster: &Arc<Cluster>, pod: serde_json::Value) {
        let ns = crate::store::namespace_of(&pod).to_string();
        let name = crate::store::name_of(&pod).to_string();
        let uid = crate::store::uid_of(&pod).to_string();
        let Some(rt) = cluster.kubelet.register(&ns, &name, &uid) else { return };
        let cluster = cluster.clone();
        tokio::spawn(async move {
            pod::run_pod(cluster, rt, pod).await;
        });
    }

    /// Stops every pod (at shutdown).
    pub fn shutdown(&self) {
        let pods: Vec<Arc<PodRuntime>> = self.pods.lock().expect("pods lock").values().cloned().collect();
        for p in pods {
            p.done.store(true, Ordering::SeqCst);
            let _ = p.term.send(Some(0));
        }
    }
}
