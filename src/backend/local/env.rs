//! The replicas of a local job and the environment each one gets: what the
//! training operator would inject into its pod, with `localhost` and a free
//! port wherever the operator writes a service name and the container port.
//!
//! The convention is chosen by the descriptor's `clusterEnv`, never by the
//! framework's name, so a framework added as a descriptor file runs locally
//! as it would on the cluster. The values follow the Kubeflow
//! training-operator v1 controllers (`pkg/controller.v1/<kind>/`), and
//! Trainer v2's torch plugin for TrainJobs:
//!
//! | clusterEnv   | variables |
//! |--------------|-----------|
//! | `tensorflow` | `TF_CONFIG` (`cluster` without evaluators, `task`, `environment: cloud`) |
//! | `pytorch`    | `MASTER_ADDR`, `MASTER_PORT`, `PET_MASTER_ADDR`, `PET_MASTER_PORT`, `WORLD_SIZE`, `RANK`, `PET_NPROC_PER_NODE`, `PET_NODE_RANK`, `PET_NNODES` (TrainJob: the `PET_*` ones) |
//! | `xgboost`    | `MASTER_ADDR`, `MASTER_PORT`, `WORLD_SIZE`, `RANK`, and `WORKER_PORT`, `WORKER_ADDRS` with more than one replica |
//! | `paddle`     | `PADDLE_MASTER`, `PADDLE_NNODES`, `PADDLE_JOB_ID`, `POD_IP_DUMMY` (rank 0), `PADDLE_SERVER_NUM` / `PADDLE_TRAINER_NUM` (PS mode) |
//! | `jax`        | `COORDINATOR_ADDRESS`, `COORDINATOR_PORT`, `NUM_PROCESSES`, `PROCESS_ID` |
//! | `mpi`        | the launcher's `mpirun -n N PROGRAM…` becomes N ranks with `OMPI_COMM_WORLD_RANK`, `…_SIZE`, `…_LOCAL_RANK`, `…_LOCAL_SIZE`, `…_NODE_RANK`, `OMPI_UNIVERSE_SIZE`, `PMIX_RANK` |
//! | `none`       | nothing |
//!
//! Every replica also gets `HOSTNAME=<job>-<replica>` (its pod's name) and,
//! where the operator sets it, `PYTHONUNBUFFERED=1`.

use crate::frameworks::{ClusterEnv, JobShape};
use crate::plan::Plan;

/// The host every address in the injected environment names.
pub const LOCALHOST: &str = "localhost";

/// One process of a local job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaSpec {
    /// `worker-0`, `ps-1`, `main-0`: the log prefix and the status row.
    pub name: String,
    /// The operator's replica type (`Worker`), or the container name for
    /// role-less frameworks.
    pub replica_type: String,
    /// Index within its replica type.
    pub index: u32,
    /// The command as the image or the role gives it (image paths, `python`).
    pub command: Vec<String>,
    /// What the operator injects, in its order.
    pub env: Vec<(String, String)>,
    /// A replica that serves until it is stopped (TensorFlow parameter
    /// servers and evaluators): the job does not wait for it to exit, and it
    /// is stopped when the others are done (cleanPodPolicy `Running`).
    pub serves: bool,
}

/// Why a plan cannot run as local processes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    #[error(
        "the MPI launcher command {command:?} has no program after mpirun's options; write it as `mpirun -n N PROGRAM [ARGS…]`"
    )]
    NoMpiProgram { command: String },
    #[error("the MPI launcher command {command:?} gives -n {value:?}, which is not a whole number of ranks")]
    BadRankCount { command: String, value: String },
    #[error(
        "an MPI job needs a role whose command starts with mpirun or mpiexec (the launcher); this descriptor has none"
    )]
    NoLauncher,
}

/// The replicas of `plan` with their environment. `command` is the command
/// of replicas whose role has none of its own (the image's `Cmd`);
/// `next_port` hands out free local ports.
///
/// # Errors
/// An MPI launcher command that cannot be turned into ranks.
pub fn replicas(
    plan: &Plan,
    job_name: &str,
    command: &[String],
    next_port: &mut dyn FnMut() -> u16,
) -> Result<Vec<ReplicaSpec>, EnvError> {
    let d = &plan.framework;
    let style = d.job.cluster_env;
    if style == ClusterEnv::Mpi {
        return mpi_ranks(plan, job_name);
    }

    let mut out = Vec::new();
    for r in &plan.replicas {
        let own = d.role(&r.role).is_some_and(|role| role.command.is_some());
        let cmd = if own { r.command.clone() } else { command.to_vec() };
        let (replica_type, prefix) = if d.is_roleless() {
            (d.job.container.clone(), d.job.container.clone())
        } else {
            (r.replica_type.clone(), r.replica_type.to_lowercase())
        };
        let serves = matches!(r.replica_type.as_str(), "PS" | "Evaluator") && style == ClusterEnv::Tensorflow;
        for index in 0..r.replicas {
            out.push(ReplicaSpec {
                name: format!("{prefix}-{index}"),
                replica_type: replica_type.clone(),
                index,
                command: cmd.clone(),
                env: Vec::new(),
                serves,
            });
        }
    }

    let total = out.len() as u32;
    let count = |t: &str| out.iter().filter(|r| r.replica_type == t).count() as u32;
    let roleless = d.is_roleless();
    let trainjob = d.job.shape == JobShape::TrainJob;
    let env: Vec<Vec<(String, String)>> = match style {
        ClusterEnv::Tensorflow => tensorflow(&out, next_port),
        ClusterEnv::Pytorch => {
            let masters = if roleless { 0 } else { count("Master") };
            let port = if masters > 0 || roleless { Some(next_port()) } else { None };
            out.iter().map(|r| pytorch(r, masters, total, port, roleless, trainjob)).collect()
        }
        ClusterEnv::Xgboost => {
            let masters = count("Master");
            let master_port = next_port();
            let worker_port = (total > 1).then(&mut *next_port);
            out.iter().map(|r| xgboost(r, masters, total, master_port, worker_port)).collect()
        }
        ClusterEnv::Paddle => {
            let masters = count("Master");
            let port = next_port();
            out.iter().map(|r| paddle(r, masters, total, port, job_name)).collect()
        }
        ClusterEnv::Jax => {
            let port = next_port();
            out.iter().map(|r| jax(r, total, port)).collect()
        }
        ClusterEnv::None | ClusterEnv::Mpi => out.iter().map(|_| Vec::new()).collect(),
    };
    for (r, mut e) in out.iter_mut().zip(env) {
        e.push(("HOSTNAME".into(), format!("{job_name}-{}", r.name)));
        r.env = e;
    }
    Ok(out)
}

fn kv(k: &str, v: impl ToString) -> (String, String) {
    (k.to_string(), v.to_string())
}

/// `TF_CONFIG` as the TFJob controller marshals it: `cluster` (replica types
/// lowercased, sorted, evaluators left out), `task`, `environment`.
fn tensorflow(replicas: &[ReplicaSpec], next_port: &mut dyn FnMut() -> u16) -> Vec<Vec<(String, String)>> {
    let addresses: Vec<String> = replicas.iter().map(|_| format!("{LOCALHOST}:{}", next_port())).collect();
    let mut cluster: std::collections::BTreeMap<String, Vec<String>> = std::collections::BTreeMap::new();
    for (r, a) in replicas.iter().zip(&addresses) {
        if r.replica_type != "Evaluator" {
            cluster.entry(r.replica_type.to_lowercase()).or_default().push(a.clone());
        }
    }
    let cluster = serde_json::to_string(&cluster).expect("a map of strings serialises");
    replicas
        .iter()
        .map(|r| {
            let task = serde_json::json!({"type": r.replica_type.to_lowercase(), "index": r.index});
            let config = format!("{{\"cluster\":{cluster},\"task\":{task},\"environment\":\"cloud\"}}");
            vec![kv("TF_CONFIG", config)]
        })
        .collect()
}

/// PyTorchJob: master-related variables only when there is a master; a
/// worker's rank comes after the masters'. TrainJob (torch plugin): the
/// `PET_*` variables torchrun reads, node 0 as the master.
fn pytorch(
    r: &ReplicaSpec,
    masters: u32,
    total: u32,
    port: Option<u16>,
    roleless: bool,
    trainjob: bool,
) -> Vec<(String, String)> {
    let mut e = vec![kv("PYTHONUNBUFFERED", "1")];
    let rank = if r.replica_type == "Worker" { r.index + masters } else { r.index };
    match port {
        Some(port) if trainjob => {
            e.extend([
                kv("PET_NNODES", total),
                kv("PET_NPROC_PER_NODE", "auto"),
                kv("PET_NODE_RANK", rank),
                kv("PET_MASTER_ADDR", LOCALHOST),
                kv("PET_MASTER_PORT", port),
            ]);
            return e;
        }
        Some(port) if masters > 0 || roleless => e.extend([
            kv("MASTER_PORT", port),
            kv("PET_MASTER_PORT", port),
            kv("MASTER_ADDR", LOCALHOST),
            kv("PET_MASTER_ADDR", LOCALHOST),
            kv("WORLD_SIZE", total),
            kv("RANK", rank),
            kv("PET_NPROC_PER_NODE", "auto"),
            kv("PET_NODE_RANK", rank),
        ]),
        _ => {}
    }
    e.push(kv("PET_NNODES", total));
    e
}

fn xgboost(
    r: &ReplicaSpec,
    masters: u32,
    total: u32,
    master_port: u16,
    worker_port: Option<u16>,
) -> Vec<(String, String)> {
    let rank = if r.replica_type == "Worker" { r.index + masters } else { r.index };
    let mut e = vec![
        kv("MASTER_PORT", master_port),
        kv("MASTER_ADDR", LOCALHOST),
        kv("WORLD_SIZE", total),
        kv("RANK", rank),
        kv("PYTHONUNBUFFERED", "1"),
    ];
    if let Some(p) = worker_port {
        e.push(kv("WORKER_PORT", p));
        e.push(kv("WORKER_ADDRS", vec![LOCALHOST; (total - 1) as usize].join(",")));
    }
    e
}

/// PaddleJob: collective mode (no master) rendezvous at worker 0, PS mode at
/// master 0; the rendezvous replica itself names its own (pod) address.
fn paddle(r: &ReplicaSpec, masters: u32, total: u32, port: u16, job_name: &str) -> Vec<(String, String)> {
    let mut e = vec![kv("PYTHONUNBUFFERED", "1"), kv("PADDLE_JOB_ID", job_name), kv("PADDLE_NNODES", total)];
    let rendezvous_type = if masters == 0 { "Worker" } else { "Master" };
    if r.index == 0 && r.replica_type == rendezvous_type {
        e.push(kv("POD_IP_DUMMY", "127.0.0.1"));
        e.push(kv("PADDLE_MASTER", format!("127.0.0.1:{port}")));
    } else {
        e.push(kv("PADDLE_MASTER", format!("{LOCALHOST}:{port}")));
    }
    if masters > 0 {
        if r.replica_type == "Master" {
            e.push(kv("PADDLE_SERVER_NUM", 1));
        } else {
            e.push(kv("PADDLE_TRAINER_NUM", 1));
        }
    }
    e
}

fn jax(r: &ReplicaSpec, total: u32, port: u16) -> Vec<(String, String)> {
    vec![
        kv("PYTHONUNBUFFERED", "1"),
        kv("COORDINATOR_PORT", port),
        kv("COORDINATOR_ADDRESS", LOCALHOST),
        kv("NUM_PROCESSES", total),
        kv("PROCESS_ID", r.index),
    ]
}

/// mpirun options that take a value (two for `--mca`).
const MPIRUN_VALUE_OPTIONS: &[&str] = &[
    "-n",
    "-np",
    "--np",
    "-c",
    "-N",
    "--npernode",
    "-npernode",
    "-x",
    "--hostfile",
    "-hostfile",
    "--machinefile",
    "-machinefile",
    "-H",
    "--host",
    "-host",
    "--map-by",
    "-map-by",
    "--bind-to",
    "-bind-to",
    "--rank-by",
    "-rank-by",
    "-wdir",
    "--wdir",
    "-wd",
    "--prefix",
    "--output-filename",
    "--report-bindings-file",
    "--rankfile",
    "-rf",
];

/// What a launcher command asks mpirun for: the rank count (`None`: not
/// given) and the program with its arguments.
pub fn parse_mpirun(command: &[String]) -> Result<(Option<u32>, Vec<String>), EnvError> {
    let whole = || command.join(" ");
    let mut ranks = None;
    let mut i = 1;
    while i < command.len() {
        let a = command[i].as_str();
        if a == "--" {
            i += 1;
            break;
        }
        if !a.starts_with('-') {
            break;
        }
        let (name, inline) = match a.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n, Some(v.to_string())),
            _ => (a, None),
        };
        if name == "--mca" || name == "-mca" || name == "--gmca" || name == "-gmca" {
            i += 3;
            continue;
        }
        if MPIRUN_VALUE_OPTIONS.contains(&name) {
            let value = match inline {
                Some(v) => v,
                None => {
                    i += 1;
                    command.get(i).cloned().unwrap_or_default()
                }
            };
            if matches!(name, "-n" | "-np" | "--np" | "-c") {
                ranks = Some(value.parse::<u32>().map_err(|_| EnvError::BadRankCount { command: whole(), value })?);
            }
        }
        i += 1;
    }
    let program: Vec<String> = command.get(i..).map(<[String]>::to_vec).unwrap_or_default();
    if program.is_empty() {
        return Err(EnvError::NoMpiProgram { command: whole() });
    }
    Ok((ranks, program))
}

fn is_mpirun(command: &[String]) -> bool {
    command.first().is_some_and(|c| {
        let base = c.rsplit('/').next().unwrap_or(c);
        base == "mpirun" || base == "mpiexec"
    })
}

/// `mpirun -n N PROGRAM…` run as N ranks (named `worker-<rank>`: on the
/// cluster each rank runs in a worker pod, started by the launcher).
fn mpi_ranks(plan: &Plan, job_name: &str) -> Result<Vec<ReplicaSpec>, EnvError> {
    let launcher = plan.replicas.iter().find(|r| is_mpirun(&r.command)).ok_or(EnvError::NoLauncher)?;
    let (ranks, program) = parse_mpirun(&launcher.command)?;
    let workers: u32 = plan.replicas.iter().filter(|r| !is_mpirun(&r.command)).map(|r| r.replicas).sum();
    let n = ranks.unwrap_or(workers.max(1));
    Ok((0..n)
        .map(|rank| {
            let name = format!("worker-{rank}");
            ReplicaSpec {
                env: vec![
                    kv("OMPI_COMM_WORLD_SIZE", n),
                    kv("OMPI_COMM_WORLD_RANK", rank),
                    kv("OMPI_COMM_WORLD_LOCAL_RANK", rank),
                    kv("OMPI_COMM_WORLD_LOCAL_SIZE", n),
                    kv("OMPI_COMM_WORLD_NODE_RANK", rank),
                    kv("OMPI_UNIVERSE_SIZE", n),
                    kv("PMIX_RANK", rank),
                    kv("HOSTNAME", format!("{job_name}-{name}")),
                ],
                name,
                replica_type: "Worker".into(),
                index: rank,
                command: program.clone(),
                serves: false,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::config::Config;
    use crate::frameworks::Frameworks;
    use crate::interpreter::params::{JobParams, RoleParams};

    fn plan(framework: &str, roles: &[(&str, u32)], nodes: Option<u32>) -> Plan {
        let params = JobParams {
            framework: Some(framework.into()),
            roles: roles
                .iter()
                .map(|(r, n)| RoleParams { role: r.to_string(), replicas: *n, resources: Default::default(), line: 1 })
                .collect(),
            nodes,
            ..Default::default()
        };
        let config = Config::from_yaml("", None, &BTreeMap::new()).unwrap();
        Plan::resolve_with(&params, &config, Frameworks::embedded(), false).unwrap()
    }

    fn ports(start: u16) -> impl FnMut() -> u16 {
        let mut p = start;
        move || {
            p += 1;
            p
        }
    }

    fn env_of(r: &ReplicaSpec) -> BTreeMap<&str, &str> {
        r.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
    }

    fn cmd() -> Vec<String> {
        vec!["python".into(), "-u".into(), "/app/main.py".into()]
    }

    #[test]
    fn tensorflow_gets_tf_config_with_localhost_ports_per_replica() {
        let p = plan("tensorflow", &[("ps", 1), ("worker", 2)], None);
        let rs = replicas(&p, "tf-1", &cmd(), &mut ports(40000)).unwrap();
        let names: Vec<_> = rs.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["ps-0", "worker-0", "worker-1"]);
        assert_eq!(
            env_of(&rs[1])["TF_CONFIG"],
            r#"{"cluster":{"ps":["localhost:40001"],"worker":["localhost:40002","localhost:40003"]},"task":{"type":"worker","index":0},"environment":"cloud"}"#
        );
        assert_eq!(
            env_of(&rs[0])["TF_CONFIG"],
            r#"{"cluster":{"ps":["localhost:40001"],"worker":["localhost:40002","localhost:40003"]},"task":{"type":"ps","index":0},"environment":"cloud"}"#
        );
        assert_eq!(env_of(&rs[2])["HOSTNAME"], "tf-1-worker-1");
        assert!(rs[0].serves && !rs[1].serves);
        assert_eq!(rs[1].command, cmd());
    }

    #[test]
    fn tensorflow_leaves_evaluators_out_of_the_cluster_and_sorts_types() {
        let p = plan("tensorflow", &[("chief", 1), ("worker", 1), ("evaluator", 1)], None);
        let rs = replicas(&p, "tf", &cmd(), &mut ports(100)).unwrap();
        let names: Vec<_> = rs.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["chief-0", "worker-0", "evaluator-0"]);
        assert_eq!(
            env_of(&rs[2])["TF_CONFIG"],
            r#"{"cluster":{"chief":["localhost:101"],"worker":["localhost:102"]},"task":{"type":"evaluator","index":0},"environment":"cloud"}"#
        );
        assert!(rs[2].serves && !rs[0].serves);
    }

    #[test]
    fn pytorch_master_and_workers_share_one_master_port_and_rank_after_the_master() {
        let p = plan("pytorch", &[("master", 1), ("worker", 2)], None);
        let rs = replicas(&p, "pt", &cmd(), &mut ports(29500)).unwrap();
        let w1 = env_of(&rs[2]);
        assert_eq!(rs[2].name, "worker-1");
        for (k, v) in [
            ("MASTER_ADDR", "localhost"),
            ("MASTER_PORT", "29501"),
            ("PET_MASTER_ADDR", "localhost"),
            ("PET_MASTER_PORT", "29501"),
            ("WORLD_SIZE", "3"),
            ("RANK", "2"),
            ("PET_NODE_RANK", "2"),
            ("PET_NNODES", "3"),
            ("PET_NPROC_PER_NODE", "auto"),
            ("PYTHONUNBUFFERED", "1"),
        ] {
            assert_eq!(w1[k], v, "{k}");
        }
        assert_eq!(env_of(&rs[0])["RANK"], "0");
        assert_eq!(env_of(&rs[0])["MASTER_PORT"], "29501");
    }

    #[test]
    fn pytorch_without_a_master_gets_only_the_node_count() {
        let p = plan("pytorch", &[("master", 0), ("worker", 2)], None);
        let rs = replicas(&p, "pt", &cmd(), &mut ports(1)).unwrap();
        let e = env_of(&rs[0]);
        assert_eq!(e.get("MASTER_ADDR"), None);
        assert_eq!(e.get("RANK"), None);
        assert_eq!(e["PET_NNODES"], "2");
    }

    #[test]
    fn trainjob_nodes_get_the_torchrun_variables() {
        let p = plan("trainjob", &[], Some(2));
        let rs = replicas(&p, "tj", &cmd(), &mut ports(29400)).unwrap();
        let names: Vec<_> = rs.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["node-0", "node-1"]);
        let e = env_of(&rs[1]);
        assert_eq!(e["PET_NNODES"], "2");
        assert_eq!(e["PET_NODE_RANK"], "1");
        assert_eq!(e["PET_MASTER_ADDR"], "localhost");
        assert_eq!(e["PET_MASTER_PORT"], "29401");
        assert_eq!(e.get("RANK"), None);
    }

    #[test]
    fn xgboost_ranks_workers_after_the_master_and_lists_worker_addresses() {
        let p = plan("xgboost", &[("master", 1), ("worker", 2)], None);
        let rs = replicas(&p, "xg", &cmd(), &mut ports(9000)).unwrap();
        let e = env_of(&rs[1]);
        assert_eq!((e["MASTER_ADDR"], e["MASTER_PORT"], e["WORLD_SIZE"], e["RANK"]), ("localhost", "9001", "3", "1"));
        assert_eq!((e["WORKER_PORT"], e["WORKER_ADDRS"]), ("9002", "localhost,localhost"));
        let single = plan("xgboost", &[("master", 1)], None);
        let rs = replicas(&single, "xg", &cmd(), &mut ports(9000)).unwrap();
        assert_eq!(env_of(&rs[0]).get("WORKER_PORT"), None);
    }

    #[test]
    fn paddle_collective_mode_meets_at_worker_zero_and_ps_mode_at_the_master() {
        let p = plan("paddle", &[("worker", 2)], None);
        let rs = replicas(&p, "pd", &cmd(), &mut ports(37000)).unwrap();
        let (w0, w1) = (env_of(&rs[0]), env_of(&rs[1]));
        assert_eq!((w0["PADDLE_MASTER"], w0["POD_IP_DUMMY"]), ("127.0.0.1:37001", "127.0.0.1"));
        assert_eq!(w1["PADDLE_MASTER"], "localhost:37001");
        assert_eq!((w1["PADDLE_NNODES"], w1["PADDLE_JOB_ID"]), ("2", "pd"));
        assert_eq!(w1.get("PADDLE_TRAINER_NUM"), None);
        let p = plan("paddle", &[("master", 1), ("worker", 1)], None);
        let rs = replicas(&p, "pd", &cmd(), &mut ports(37000)).unwrap();
        let (m, w) = (env_of(&rs[0]), env_of(&rs[1]));
        assert_eq!((m["PADDLE_MASTER"], m["PADDLE_SERVER_NUM"]), ("127.0.0.1:37001", "1"));
        assert_eq!((w["PADDLE_MASTER"], w["PADDLE_TRAINER_NUM"]), ("localhost:37001", "1"));
        assert_eq!(w.get("POD_IP_DUMMY"), None);
    }

    #[test]
    fn jax_processes_share_the_coordinator() {
        let p = plan("jax", &[("worker", 3)], None);
        let rs = replicas(&p, "jx", &cmd(), &mut ports(6000)).unwrap();
        let e = env_of(&rs[2]);
        assert_eq!(
            (e["COORDINATOR_ADDRESS"], e["COORDINATOR_PORT"], e["NUM_PROCESSES"], e["PROCESS_ID"]),
            ("localhost", "6001", "3", "2")
        );
    }

    #[test]
    fn mpi_launcher_becomes_n_ranks_of_its_program() {
        let p = plan("mpi", &[("worker", 3)], None);
        let rs = replicas(&p, "mp", &cmd(), &mut ports(1)).unwrap();
        let names: Vec<_> = rs.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["worker-0", "worker-1", "worker-2"]);
        assert_eq!(rs[0].command, ["python3", "-u", "/app/main.py"]);
        let e = env_of(&rs[1]);
        assert_eq!((e["OMPI_COMM_WORLD_RANK"], e["OMPI_COMM_WORLD_SIZE"], e["PMIX_RANK"]), ("1", "3", "1"));
    }

    #[test]
    fn mpirun_options_are_skipped_and_bad_counts_named() {
        let v = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        assert_eq!(
            parse_mpirun(&v("mpirun --allow-run-as-root -np 4 -x FOO --mca btl tcp,self --bind-to=none python x.py"))
                .unwrap(),
            (Some(4), v("python x.py"))
        );
        assert_eq!(parse_mpirun(&v("mpiexec prog")).unwrap(), (None, v("prog")));
        assert!(matches!(parse_mpirun(&v("mpirun -n 2")), Err(EnvError::NoMpiProgram { .. })));
        let e = parse_mpirun(&v("mpirun -n two prog")).unwrap_err();
        assert!(e.to_string().contains("\"two\""), "{e}");
    }

    #[test]
    fn python_jobs_get_no_operator_variables_and_role_less_names() {
        let p = plan("python", &[], None);
        let rs = replicas(&p, "py", &cmd(), &mut ports(1)).unwrap();
        assert_eq!(rs.len(), 1);
        assert_eq!(rs[0].name, "main-0");
        assert_eq!(rs[0].env, [("HOSTNAME".to_string(), "py-main-0".to_string())]);
    }
}
