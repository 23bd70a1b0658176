//! Test support shared by the image integration tests: real registries
//! (Debian's docker-registry) on free loopback ports, a token endpoint,
//! certificates, base images made with umoci + skopeo, and checks with
//! third-party tools.
#![allow(dead_code)]

pub mod canary;
pub mod certs;
pub mod faults;
pub mod images;
pub mod nginx;
pub mod registry;
pub mod token;
pub mod tools;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// A temporary directory for this test process. Statics are never dropped,
/// so each process removes the directories of test processes that ended.
pub fn tmp_root() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let tmp = std::env::temp_dir();
        if let Ok(entries) = std::fs::read_dir(&tmp) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                let Some(pid) = name.strip_prefix("ciao-test-").and_then(|r| r.split('-').next()).and_then(|p| p.parse::<u32>().ok()) else {
                    continue;
                };
                if !Path::new(&format!("/proc/{pid}")).exists() {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        tempfile::Builder::new()
            .prefix(&format!("ciao-test-{}-", std::process::id()))
            .tempdir()
            .expect("temp dir")
            .keep()
    })
}

/// A fresh directory under [`tmp_root`].
pub fn fresh_dir(prefix: &str) -> PathBuf {
    tempfile::Builder::new().prefix(prefix).tempdir_in(tmp_root()).expect("temp dir").keep()
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// Fails the test with the package to install when `tool` is missing (CI
/// installs them; tests never skip).
pub fn require(tool: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    assert!(found, "{tool} is not installed; install the Debian package {package} (apt-get install -y {package})");
}

/// A unique, lower-case repository name for one test.
pub fn repo(name: &str) -> String {
    format!("{name}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
}
