//! Running a container's command on the host: argv/env/cwd mapped into the pod root,
//! `python` mapped to the host interpreter, stdout and stderr merged in order into the log,
//! `mpirun -n N prog` emulated with N ranks, and the process groups killable.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::sync::watch;

use super::logbuf::LogBuf;
use super::rootfs::safe_join;

/// Host tools the runtime maps container commands onto.
#[derive(Debug, Clone)]
pub struct HostTools {
    /// The real host Python interpreter.
    pub python: PathBuf,
    /// Directory with `python`, `python3`, ... links to it, put first on PATH.
    pub shim_dir: PathBuf,
    /// The host PATH.
    pub host_path: String,
}

impl HostTools {
    /// Finds the interpreter (resolving pyenv-style shims) and writes the shim directory.
    pub fn discover(configured: Option<&Path>, work_dir: &Path) -> Result<Self, String> {
        let candidate = configured.map(|p| p.to_path_buf()).unwrap_or_else(|| PathBuf::from("python3"));
        let out = std::process::Command::new(&candidate)
            .args(["-c", "import sys; print(sys.executable)"])
            .output()
            .map_err(|e| format!("cannot run {}: {e}", candidate.display()))?;
        let exe = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !out.status.success() || exe.is_empty() {
            return Err(format!("{} did not report its executable", candidate.display()));
        }
        let python = PathBuf::from(exe);
        let shim_dir = work_dir.join("bin");
        std::fs::create_dir_all(&shim_dir).map_err(|e| e.to_string())?;
        for name in ["python", "python3"] {
            let link = shim_dir.join(name);
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink(&python, &link).map_err(|e| e.to_string())?;
        }
        Ok(HostTools { python, shim_dir, host_path: std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()) })
    }
}

/// A command ready to run.
#[derive(Debug, Clone)]
pub struct ProcSpec {
    /// argv as the container states it.
    pub argv: Vec<String>,
    /// Environment (already expanded).
    pub env: Vec<(String, String)>,
    /// Container working directory (absolute, inside the root).
    pub working_dir: String,
    /// Pod root filesystem.
    pub root: PathBuf,
}

/// A live process (one per mpirun rank).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProcInfo {
    /// Process id (also its process-group id).
    pub pid: i32,
    /// argv actually executed.
    pub argv: Vec<String>,
}

fn is_python(name: &str) -> bool {
    let base = name.rsplit('/').next().unwrap_or(name);
    base == "python" || base == "python3" || (base.starts_with("python3.") && base[8..].chars().all(|c| c.is_ascii_digit()))
}

fn host_binary(name: &str, tools: &HostTools) -> Option<PathBuf> {
    let base = name.rsplit('/').next().unwrap_or(name);
    tools.host_path.split(':').map(|d| Path::new(d).join(base)).find(|p| p.is_file())
}

fn map_path_arg(root: &Path, arg: &str) -> String {
    if arg.starts_with('/')
        && let Some(p) = safe_join(root, arg)
            && std::fs::symlink_metadata(&p).is_ok() {
                return p.to_string_lossy().to_string();
            }
    arg.to_string()
}

fn map_script(root: &Path, script: &str) -> String {
    script.split(' ').map(|tok| map_path_arg(root, tok)).collect::<Vec<_>>().join(" ")
}

/// Maps argv onto host executables and root paths.
pub fn map_argv(argv: &[String], root: &Path, tools: &HostTools) -> Vec<String> {
    let mut out = Vec::with_capacity(argv.len());
    let Some(first) = argv.first() else { return out };
    let base = first.rsplit('/').next().unwrap_or(first);
    let shell = matches!(base, "sh" | "bash" | "dash" | "env");
    if is_python(first) {
        out.push(tools.python.to_string_lossy().to_string());
    } else if shell {
        out.push(host_binary(first, tools).map(|p| p.to_string_lossy().to_string()).unwrap_or_else(|| first.clone()));
    } else {
        out.push(map_path_arg(root, first));
    }
    let mut after_c = false;
    for a in &argv[1..] {
        if shell && after_c {
            out.push(map_script(root, a));
            after_c = false;
            continue;
        }
        if shell && a == "-c" {
            after_c = true;
        }
        out.push(map_path_arg(root, a));
    }
    out
}

/// Maps env values made of absolute paths (e.g. PYTHONPATH) into the root; PATH gets the
/// shim directory and host PATH.
pub fn map_env(env: &[(String, String)], root: &Path, tools: &HostTools) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (k, v) in env {
        let mapped = if k == "PATH" {
            format!("{}:{}", tools.shim_dir.display(), tools.host_path)
        } else if !v.is_empty() && v.split(':').all(|p| p.starts_with('/')) {
            v.split(':').map(|p| map_path_arg(root, p)).collect::<Vec<_>>().join(":")
        } else {
            v.clone()
        };
        out.retain(|(ek, _)| ek != k);
        out.push((k.clone(), mapped));
    }
    if !out.iter().any(|(k, _)| k == "PATH") {
        out.push(("PATH".into(), format!("{}:{}", tools.shim_dir.display(), tools.host_path)));
    }
    out
}

/// An mpirun invocation: rank count and the program.
#[derive(Debug, PartialEq)]
pub struct MpiRun {
    /// Number of ranks (`-n`/`-np`), if given.
    pub ranks: Option<usize>,
    /// Program argv.
    pub program: Vec<String>,
    /// `-x VAR[=VALUE]` exports.
    pub exports: Vec<String>,
}

/// Parses `mpirun [options] prog args...`; None when argv is not an mpirun.
pub fn parse_mpirun(argv: &[String]) -> Option<MpiRun> {
    let base = argv.first()?.rsplit('/').next()?;
    if !matches!(base, "mpirun" | "mpiexec" | "orterun") {
        return None;
    }
    let with_value = ["-n", "-np", "-c", "--np", "-H", "--host", "-hostfile", "--hostfile", "-machinefile", "--machinefile", "-bind-to", "--bind-to", "-map-by", "--map-by", "-npernode", "--npernode", "-wdir", "--wdir", "-ppn", "--prefix", "-rf", "--rankfile", "--report-bindings-file"];
    let two_values = ["-mca", "--mca", "-gmca", "--gmca"];
    let mut i = 1;
    let mut ranks = None;
    let mut exports = Vec::new();
    while i < argv.len() {
        let a = argv[i].as_str();
        if !a.starts_with('-') {
            break;
        }
        if two_values.contains(&a) {
            i += 3;
            continue;
        }
        if a == "-x" {
            if let Some(v) = argv.get(i + 1) {
                exports.push(v.clone());
            }
            i += 2;
            continue;
        }
        if let Some((k, v)) = a.split_once('=') {
            if matches!(k, "-n" | "-np" | "--np") {
                ranks = v.parse().ok();
            }
            i += 1;
            continue;
        }
        if with_value.contains(&a) {
            if matches!(a, "-n" | "-np" | "--np" | "-c") {
                ranks = argv.get(i + 1).and_then(|v| v.parse().ok());
            }
            i += 2;
            continue;
        }
        i += 1;
    }
    Some(MpiRun { ranks, program: argv[i..].to_vec(), exports })
}

/// Counts `slots=` in a hostfile (a line without slots counts 1).
pub fn hostfile_slots(text: &str) -> usize {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.split_whitespace().find_map(|w| w.strip_prefix("slots=").and_then(|n| n.parse().ok())).unwrap_or(1))
        .sum()
}

/// argv and environment of one process to start.
type Invocation = (Vec<String>, Vec<(String, String)>);

/// Outcome of one container run.
pub struct RunOutcome {
    /// Exit code (128+signal when killed).
    pub exit_code: i32,
    /// Set when the process could not be started.
    pub start_error: Option<String>,
}

/// Runs the command, streaming merged output into `log`. `kill` carries a grace period
/// (seconds) when the pod is being deleted. `on_start` receives the live processes.
pub async fn run(spec: &ProcSpec, tools: &HostTools, log: Arc<LogBuf>, mut kill: watch::Receiver<Option<i64>>, on_start: impl FnOnce(Vec<ProcInfo>)) -> RunOutcome {
    let (reader, writer) = match std::io::pipe() {
        Ok(p) => p,
        Err(e) => return RunOutcome { exit_code: 128, start_error: Some(format!("cannot create pipe: {e}")) },
    };
    let cwd = safe_join(&spec.root, &spec.working_dir).unwrap_or_else(|| spec.root.clone());
    let _ = std::fs::create_dir_all(&cwd);
    let env = map_env(&spec.env, &spec.root, tools);
    let mut invocations: Vec<Invocation> = Vec::new();
    if let Some(mpi) = parse_mpirun(&spec.argv) {
        let slots = env
            .iter()
            .find(|(k, _)| k == "OMPI_MCA_orte_default_hostfile")
            .and_then(|(_, p)| std::fs::read_to_string(p).ok())
            .map(|t| hostfile_slots(&t))
            .or_else(|| safe_join(&spec.root, "/etc/mpi/hostfile").and_then(|p| std::fs::read_to_string(p).ok()).map(|t| hostfile_slots(&t)))
            .unwrap_or(1);
        let n = mpi.ranks.unwrap_or(slots).max(1);
        for rank in 0..n {
            let mut e = env.clone();
            for (k, v) in [
                ("OMPI_COMM_WORLD_RANK", rank.to_string()),
                ("OMPI_COMM_WORLD_SIZE", n.to_string()),
                ("OMPI_COMM_WORLD_LOCAL_RANK", rank.to_string()),
                ("OMPI_COMM_WORLD_LOCAL_SIZE", n.to_string()),
                ("OMPI_COMM_WORLD_NODE_RANK", "0".to_string()),
                ("PMIX_RANK", rank.to_string()),
            ] {
                e.push((k.to_string(), v));
            }
            invocations.push((map_argv(&mpi.program, &spec.root, tools), e));
        }
    } else {
        invocations.push((map_argv(&spec.argv, &spec.root, tools), env));
    }
    let mut children = Vec::new();
    let mut infos = Vec::new();
    for (argv, env) in &invocations {
        let Some(prog) = argv.first() else {
            return RunOutcome { exit_code: 128, start_error: Some("no command specified".into()) };
        };
        let (out, err) = match (writer.try_clone(), writer.try_clone()) {
            (Ok(o), Ok(e)) => (o, e),
            _ => return RunOutcome { exit_code: 128, start_error: Some("cannot duplicate pipe".into()) },
        };
        let mut cmd = tokio::process::Command::new(prog);
        cmd.args(&argv[1..])
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .current_dir(&cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .process_group(0)
            .kill_on_drop(false);
        match cmd.spawn() {
            Ok(child) => {
                infos.push(ProcInfo { pid: child.id().map_or(0, |p| p as i32), argv: argv.clone() });
                children.push(child);
            }
            Err(e) => {
                for c in &children {
                    signal_group(c.id(), nix::sys::signal::Signal::SIGKILL);
                }
                let what = if e.kind() == std::io::ErrorKind::NotFound {
                    format!("exec: \"{}\": executable file not found in $PATH", spec.argv.first().cloned().unwrap_or_default())
                } else {
                    format!("exec: \"{}\": {e}", spec.argv.first().cloned().unwrap_or_default())
                };
                return RunOutcome {
                    exit_code: 128,
                    start_error: Some(format!("failed to create containerd task: failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: {what}: unknown")),
                };
            }
        }
    }
    drop(writer);
    on_start(infos);
    let pids: Vec<Option<u32>> = children.iter().map(|c| c.id()).collect();
    let reader_task = {
        let log = log.clone();
        tokio::spawn(async move {
            let fd: OwnedFd = reader.into();
            let Ok(mut rx) = tokio::net::unix::pipe::Receiver::from_owned_fd(fd) else { return };
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match rx.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => log.append(&buf[..n]),
                }
            }
        })
    };
    let waits = futures::future::join_all(children.iter_mut().map(|c| c.wait()));
    tokio::pin!(waits);
    let statuses = loop {
        tokio::select! {
            st = &mut waits => break st,
            changed = kill.changed() => {
                let grace = if changed.is_ok() { *kill.borrow() } else { Some(0) };
                if let Some(grace) = grace {
                    for p in &pids {
                        signal_group(*p, if grace > 0 { nix::sys::signal::Signal::SIGTERM } else { nix::sys::signal::Signal::SIGKILL });
                    }
                    if grace > 0 {
                        let pids2 = pids.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(Duration::from_secs(grace as u64)).await;
                            for p in &pids2 {
                                signal_group(*p, nix::sys::signal::Signal::SIGKILL);
                            }
                        });
                    }
                }
            }
        }
    };
    // grandchildren may keep the pipe open; give the reader a moment, then stop waiting
    let _ = tokio::time::timeout(Duration::from_secs(2), reader_task).await;
    let mut code = 0;
    for st in statuses {
        let c = match st {
            Ok(s) => {
                use std::os::unix::process::ExitStatusExt;
                s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(9))
            }
            Err(_) => 128,
        };
        if code == 0 && c != 0 {
            code = c;
        }
    }
    RunOutcome { exit_code: code, start_error: None }
}

fn signal_group(pid: Option<u32>, sig: nix::sys::signal::Signal) {
    if let Some(p) = pid {
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(p as i32), sig);
    }
}

/// Expands `$(VAR)` references as the kubelet does (`$$` escapes; unknown stay literal).
pub fn expand(s: &str, vars: &HashMap<String, String>) -> String {
    let mut out = String::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'$' && i + 1 < b.len() {
            if b[i + 1] == b'$' {
                out.push('$');
                i += 2;
                continue;
            }
            if b[i + 1] == b'('
                && let Some(end) = s[i + 2..].find(')') {
                    let name = &s[i + 2..i + 2 + end];
                    match vars.get(name) {
                        Some(v) => out.push_str(v),
                        None => out.push_str(&s[i..i + 3 + end]),
                    }
                    i += 3 + end;
                    continue;
                }
        }
        let ch = s[i..].chars().next().expect("char boundary");
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mpirun_options_are_skipped() {
        let argv: Vec<String> = "mpirun --allow-run-as-root -np 4 -bind-to none -x NCCL_DEBUG=INFO -mca pml ob1 python /code/main.py --x".split(' ').map(String::from).collect();
        let m = parse_mpirun(&argv).unwrap();
        assert_eq!(m.ranks, Some(4));
        assert_eq!(m.program, vec!["python", "/code/main.py", "--x"]);
        assert_eq!(m.exports, vec!["NCCL_DEBUG=INFO"]);
    }

    #[test]
    fn hostfile_slots_are_summed() {
        assert_eq!(hostfile_slots("a-worker-0 slots=2\na-worker-1 slots=2\n"), 4);
    }

    #[test]
    fn dependent_env_vars_expand() {
        let mut v = HashMap::new();
        v.insert("IP".to_string(), "1.2.3.4".to_string());
        assert_eq!(expand("$(IP):80 $$(IP) $(NOPE)", &v), "1.2.3.4:80 $(IP) $(NOPE)");
    }
}
