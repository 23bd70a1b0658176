//! nginx in front of a test registry: a small `client_max_body_size` (a
//! proxy that refuses large uploads with 413) and/or a rewrite that drops
//! `mount=` (a registry that never mounts across repositories).

use std::time::{Duration, Instant};

use super::registry::{Registry, Supervised};
use super::{free_port, fresh_dir, require};

pub struct Nginx {
    /// `127.0.0.1:PORT`.
    pub host: String,
    pub dir: std::path::PathBuf,
    _proc: Supervised,
}

impl Nginx {
    /// In front of `upstream`.
    pub fn start(upstream: &Registry, max_body: &str, refuse_mounts: bool) -> Nginx {
        Nginx::run(&upstream.host, max_body, refuse_mounts)
    }

    /// A forward proxy for plain HTTP (what `HTTP_PROXY` points at).
    pub fn forward_proxy() -> Nginx {
        Nginx::run("$http_host", "0", false)
    }

    fn run(up: &str, max_body: &str, refuse_mounts: bool) -> Nginx {
        require("nginx", "nginx-light");
        let dir = fresh_dir("nginx-");
        for sub in ["body", "proxy", "fastcgi", "uwsgi", "scgi"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let port = free_port();
        let d = dir.display();
        let mount_rule = if refuse_mounts { "if ($arg_mount) { rewrite ^(.*)$ $1? break; }" } else { "" };
        let conf = format!(
            r#"worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections 64; }}
http {{
  access_log {d}/access.log;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  server {{
    listen 127.0.0.1:{port};
    client_max_body_size {max_body};
    location / {{
      {mount_rule}
      proxy_pass http://{up};
      proxy_set_header Host $http_host;
      proxy_request_buffering off;
      proxy_buffering off;
      proxy_http_version 1.1;
    }}
  }}
}}
"#
        );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let proc = Supervised::spawn(
            "nginx",
            &["-c", conf_path.to_str().unwrap(), "-p", dir.to_str().unwrap()],
            &dir.join("stderr.log"),
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nginx did not start; see {}", dir.display());
            std::thread::sleep(Duration::from_millis(10));
        }
        Nginx { host: format!("127.0.0.1:{port}"), dir, _proc: proc }
    }

    /// nginx's access log: (method, path, status).
    pub fn access(&self) -> Vec<(String, String, u16)> {
        std::fs::read_to_string(self.dir.join("access.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let start = l.find(" \"")? + 2;
                let rest = &l[start..];
                let end = rest.find('"')?;
                let mut r = rest[..end].split(' ');
                let (m, p) = (r.next()?.to_string(), r.next()?.to_string());
                let status = rest[end + 1..].split_whitespace().next()?.parse().ok()?;
                Some((m, p, status))
            })
            .collect()
    }
}
