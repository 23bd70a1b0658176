//! One replica as a process group: started in a group of its own, its
//! stdout and stderr on one pipe (merged in write order, like a pod's log),
//! and ended as a whole: `SIGTERM` to the group, `SIGKILL` after a grace
//! period, so children and grandchildren go with it.

use std::io;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::net::unix::pipe;

/// What to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    pub program: String,
    pub args: Vec<String>,
    /// The whole environment (nothing is inherited).
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
}

/// A started process group.
#[derive(Debug)]
pub struct Started {
    pub child: tokio::process::Child,
    /// Its stdout and stderr, merged.
    pub output: pipe::Receiver,
    pub group: Group,
}

/// A process group, named by its leader's pid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Group(pub i32);

impl Group {
    /// Sends `signal` to every process of the group; `false` when none is left.
    pub fn signal(self, signal: Signal) -> bool {
        killpg(Pid::from_raw(self.0), signal).is_ok()
    }

    /// Whether any process of the group still exists (zombies included).
    pub fn alive(self) -> bool {
        killpg(Pid::from_raw(self.0), None).is_ok()
    }
}

/// Starts `launch` as the leader of a new process group.
///
/// # Errors
/// The program cannot be started (not found, not executable), or no pipe.
pub fn start(launch: &Launch) -> io::Result<Started> {
    let (reader, writer) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(io::Error::from)?;
    let writer2 = writer.try_clone()?;
    let mut cmd = tokio::process::Command::new(&launch.program);
    cmd.args(&launch.args)
        .env_clear()
        .envs(launch.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .current_dir(&launch.cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::from(writer))
        .stderr(Stdio::from(writer2))
        .process_group(0);
    let child = cmd.spawn();
    // The command holds the write ends; without them the pipe ends when the
    // group's last writer exits.
    drop(cmd);
    let child = child?;
    let pid = child.id().ok_or_else(|| io::Error::other("the process exited before its id was read"))?;
    let output = pipe::Receiver::from_owned_fd(reader)?;
    Ok(Started { child, output, group: Group(pid as i32) })
}

/// Ends `groups`: `SIGTERM` to each, then, for those still there after
/// `grace`, `SIGKILL`. `exited` resolves once every group leader has been
/// reaped (the replicas' own tasks wait for them).
pub async fn terminate(groups: &[Group], grace: Duration, exited: impl std::future::Future<Output = ()>) {
    for g in groups {
        g.signal(Signal::SIGTERM);
    }
    let _ = tokio::time::timeout(grace, exited).await;
    for g in groups {
        // Also reaches what is left of a group whose leader exited.
        g.signal(Signal::SIGKILL);
    }
}

/// `exit code 3`, or `killed by SIGKILL (exit code 137)` as a container runtime reports it.
pub fn describe_exit(status: ExitStatus) -> (i32, String) {
    use std::os::unix::process::ExitStatusExt;
    if let Some(code) = status.code() {
        return (code, format!("exit code {code}"));
    }
    let sig = status.signal().unwrap_or(0);
    let name = Signal::try_from(sig).map(|s| s.as_str().to_string()).unwrap_or_else(|_| format!("signal {sig}"));
    (128 + sig, format!("killed by {name} (exit code {})", 128 + sig))
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use tokio::io::AsyncReadExt;

    use super::*;

    fn sh(script: &str) -> Launch {
        Launch {
            program: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
            env: vec![("PATH".into(), std::env::var("PATH").unwrap_or_default())],
            cwd: std::env::temp_dir(),
        }
    }

    /// Pids whose process group is `g`, read from /proc (zombies left out).
    fn members(g: Group) -> Vec<i32> {
        let mut out = Vec::new();
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
            let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else { continue };
            // pid (comm) state ppid pgrp …; comm may hold spaces, so split after the last ')'.
            let rest = &stat[stat.rfind(')').unwrap() + 2..];
            let f: Vec<&str> = rest.split(' ').collect();
            if f[0] != "Z" && f[2].parse::<i32>().ok() == Some(g.0) {
                out.push(pid);
            }
        }
        out
    }

    async fn read_all(mut r: pipe::Receiver) -> String {
        let mut s = Vec::new();
        r.read_to_end(&mut s).await.unwrap();
        String::from_utf8(s).unwrap()
    }

    #[tokio::test]
    async fn stdout_and_stderr_arrive_merged_in_write_order() {
        let s = start(&sh("echo one; echo two >&2; echo three")).unwrap();
        let mut child = s.child;
        let (text, status) = tokio::join!(read_all(s.output), child.wait());
        assert!(status.unwrap().success());
        assert_eq!(text, "one\ntwo\nthree\n");
    }

    #[tokio::test]
    async fn the_environment_is_exactly_the_one_given() {
        let mut l = sh("echo \"$ONLY:${HOME:-unset}\"");
        l.env.push(("ONLY".into(), "given".into()));
        let s = start(&l).unwrap();
        let mut child = s.child;
        let (text, _) = tokio::join!(read_all(s.output), child.wait());
        assert_eq!(text, "given:unset\n");
    }

    #[tokio::test]
    async fn terminating_a_group_ends_its_grandchildren_too() {
        // The leader starts two sleepers (grandchildren of ours) and waits.
        let s = start(&sh("sleep 300 & sleep 300 & echo started; wait")).unwrap();
        let g = s.group;
        let mut child = s.child;
        let mut out = s.output;
        let mut buf = [0u8; 8];
        let n = out.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"started\n");
        assert_eq!(members(g).len(), 3, "leader and two sleepers");
        let started = Instant::now();
        let wait = async {
            child.wait().await.unwrap();
        };
        terminate(&[g], Duration::from_secs(5), wait).await;
        assert!(started.elapsed() < Duration::from_secs(4), "SIGTERM was enough: {:?}", started.elapsed());
        // The sleepers were reparented; give the kernel a moment to deliver.
        let deadline = Instant::now() + Duration::from_secs(2);
        while !members(g).is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(members(g), Vec::<i32>::new());
    }

    #[tokio::test]
    async fn a_group_that_ignores_sigterm_is_killed_after_the_grace_period() {
        let s = start(&sh("trap '' TERM; sleep 300 & echo started; while :; do sleep 1; done")).unwrap();
        let g = s.group;
        let mut child = s.child;
        let mut out = s.output;
        let mut buf = [0u8; 8];
        let _ = out.read(&mut buf).await.unwrap();
        let started = Instant::now();
        let wait = async {
            // Still running after SIGTERM: the grace period runs out.
            let _ = tokio::time::timeout(Duration::from_millis(400), child.wait()).await;
        };
        terminate(&[g], Duration::from_millis(300), wait).await;
        let status = child.wait().await.unwrap();
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_millis(300) && elapsed < Duration::from_secs(3), "{elapsed:?}");
        assert_eq!(describe_exit(status), (137, "killed by SIGKILL (exit code 137)".to_string()));
        let deadline = Instant::now() + Duration::from_secs(2);
        while !members(g).is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(members(g), Vec::<i32>::new());
    }

    #[tokio::test]
    async fn a_missing_program_is_an_error_not_a_panic() {
        let mut l = sh("");
        l.program = "/nonexistent/ciao-test-program".into();
        assert_eq!(start(&l).unwrap_err().kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn exit_codes_read_like_a_container_runtime() {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(describe_exit(ExitStatus::from_raw(3 << 8)), (3, "exit code 3".to_string()));
        assert_eq!(describe_exit(ExitStatus::from_raw(15)).1, "killed by SIGTERM (exit code 143)");
    }
}
