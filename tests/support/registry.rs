//! Debian's `docker-registry serve CONFIG` on a free loopback port: plain
//! HTTP, TLS with the test CA, htpasswd basic auth or token auth. Its log
//! (with the access log lines) is kept for assertions; the process is
//! stopped when the value is dropped or the test process exits.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::certs::Certs;
use super::token::TokenServer;
use super::{free_port, fresh_dir, require};

/// A process that dies with its owner: it runs under a shell that kills it
/// when its stdin (held by this value) closes.
pub struct Supervised {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Supervised {
    /// Runs `program args`, output to `log`.
    pub fn spawn(program: &str, args: &[&str], log: &Path) -> Supervised {
        let script = r#"log="$1"; shift; "$@" >"$log" 2>&1 & pid=$!; cat >/dev/null; kill $pid 2>/dev/null; wait $pid"#;
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("sh")
            .arg(log)
            .arg(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
        let stdin = child.stdin.take();
        Supervised { child, stdin }
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

/// How a test registry authenticates.
pub enum Auth<'a> {
    None,
    /// Basic auth with these users (bcrypt htpasswd).
    Htpasswd(&'a [(&'a str, &'a str)]),
    /// Bearer tokens from this endpoint.
    Token(&'a TokenServer),
}

/// One access log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    pub method: String,
    pub path: String,
    pub status: u16,
    /// The client's User-Agent.
    pub agent: String,
}

/// A running registry.
pub struct Registry {
    /// `127.0.0.1:PORT`.
    pub host: String,
    pub tls: bool,
    pub dir: PathBuf,
    log: PathBuf,
    _proc: Supervised,
}

impl Registry {
    /// Plain HTTP, no auth.
    pub fn plain() -> Registry {
        Registry::start(false, Auth::None)
    }

    /// A registry shared by the tests of one binary (use distinct repositories).
    pub fn shared() -> &'static Registry {
        static SHARED: OnceLock<Registry> = OnceLock::new();
        SHARED.get_or_init(Registry::plain)
    }

    /// Starts a registry; retries on another port if the one picked was taken.
    pub fn start(tls: bool, auth: Auth<'_>) -> Registry {
        require("docker-registry", "docker-registry");
        let dir = fresh_dir("registry-");
        let mut auth_yaml = String::new();
        match auth {
            Auth::None => {}
            Auth::Htpasswd(users) => {
                require("htpasswd", "apache2-utils");
                let file = dir.join("htpasswd");
                let mut text = String::new();
                for (u, p) in users {
                    let out = Command::new("htpasswd").args(["-Bbn", u, p]).output().expect("htpasswd runs");
                    assert!(out.status.success(), "htpasswd failed: {}", String::from_utf8_lossy(&out.stderr));
                    text.push_str(String::from_utf8_lossy(&out.stdout).trim());
                    text.push('\n');
                }
                std::fs::write(&file, text).unwrap();
                auth_yaml = format!("auth:\n  htpasswd:\n    realm: ciao-test\n    path: {}\n", file.display());
            }
            Auth::Token(t) => {
                auth_yaml = format!(
                    "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
                    t.realm,
                    t.service,
                    t.issuer,
                    t.bundle.display()
                );
            }
        }
        for attempt in 0..5 {
            let port = free_port();
            let tls_yaml = if tls {
                let c = Certs::get();
                format!("  tls:\n    certificate: {}\n    key: {}\n", c.server_crt.display(), c.server_key.display())
            } else {
                String::new()
            };
            let config = format!(
                "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{tls_yaml}health:\n  storagedriver:\n    enabled: false\n{auth_yaml}",
                dir.join("data").display()
            );
            let config_path = dir.join(format!("config-{attempt}.yml"));
            std::fs::write(&config_path, config).unwrap();
            let log = dir.join(format!("registry-{attempt}.log"));
            let proc = Supervised::spawn("docker-registry", &["serve", config_path.to_str().unwrap()], &log);
            if wait_listening(port, &log) {
                return Registry { host: format!("127.0.0.1:{port}"), tls, dir, log, _proc: proc };
            }
        }
        panic!("docker-registry did not start; see the logs in {}", dir.display());
    }

    /// `http://HOST` or `https://HOST`.
    pub fn url(&self) -> String {
        format!("{}://{}", if self.tls { "https" } else { "http" }, self.host)
    }

    /// Everything the registry logged so far.
    pub fn log_text(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// The access log lines so far, in order.
    pub fn access(&self) -> Vec<Access> {
        self.log_text().lines().filter_map(parse_access).collect()
    }

    /// Access lines after the first `from` (a count taken earlier).
    pub fn access_since(&self, from: usize) -> Vec<Access> {
        self.access().into_iter().skip(from).collect()
    }

    /// ciao's requests after `from` about the repositories of `images`
    /// (`HOST/REPO[:TAG]`), so tests sharing the registry (and skopeo, which
    /// probes repositories where it saw the same blobs) do not interfere.
    pub fn access_for(&self, from: usize, images: &[&str]) -> Vec<Access> {
        let prefixes: Vec<String> = images.iter().map(|i| format!("/v2/{}/", repo_of(i))).collect();
        self.access_since(from)
            .into_iter()
            .filter(|a| a.agent.starts_with("ciao/") && prefixes.iter().any(|p| a.path.starts_with(p)))
            .collect()
    }
}

/// `REPO` of `HOST/REPO[:TAG][@DIGEST]`.
pub fn repo_of(image: &str) -> String {
    let no_digest = image.split('@').next().unwrap();
    let path = no_digest.split_once('/').map_or(no_digest, |(_, p)| p);
    match path.rsplit_once(':') {
        Some((r, _)) => r.to_string(),
        None => path.to_string(),
    }
}

/// Waits until the registry accepts connections (or its log says it failed).
fn wait_listening(port: u16, log: &Path) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains("address already in use") || text.contains("level=fatal") {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// `127.0.0.1 - - [date] "PUT /v2/x HTTP/1.1" 201 0 "" "ua"`.
fn parse_access(line: &str) -> Option<Access> {
    let start = line.find(" \"")? + 2;
    let rest = &line[start..];
    let end = rest.find('"')?;
    let mut req = rest[..end].split(' ');
    let method = req.next()?.to_string();
    let path = req.next()?.to_string();
    let status = rest[end + 1..].split_whitespace().next()?.parse().ok()?;
    if !path.starts_with('/') {
        return None;
    }
    let agent = line.rsplit('"').nth(1).unwrap_or_default().to_string();
    Some(Access { method, path, status, agent })
}

/// Digests whose upload was completed (a `PUT …/blobs/uploads/…?digest=`).
pub fn uploaded(access: &[Access]) -> Vec<String> {
    access
        .iter()
        .filter(|a| a.method == "PUT" && a.path.contains("/blobs/uploads/") && a.status == 201)
        .filter_map(|a| {
            let q = a.path.split_once('?')?.1;
            q.split('&').find_map(|kv| kv.strip_prefix("digest=")).map(|d| d.replace("%3A", ":").replace("%3a", ":"))
        })
        .collect()
}
