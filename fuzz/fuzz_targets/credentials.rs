//! Registry credentials from untrusted text: docker `config.json` /
//! `.dockerconfigjson` documents and `WWW-Authenticate` challenges. Nothing
//! may panic, and no message may carry a password from the document.
#![no_main]

use ciao::image::auth::{Challenge, credential_from_docker_config, parse_challenge};
use libfuzzer_sys::fuzz_target;

const REGISTRIES: [&str; 3] = ["r.example:5000", "docker.io", "127.0.0.1:5000"];

fuzz_target!(
    init: {
        // Credential helpers named by a document are looked up on PATH: let
        // none be found, so the fuzzer never runs a program.
        let empty = std::env::temp_dir().join("ciao-fuzz-empty-path");
        let _ = std::fs::create_dir_all(&empty);
        // SAFETY: set before the fuzzer starts any thread.
        unsafe { std::env::set_var("PATH", &empty) };
    },
    |data: &[u8]| {
        let Some((&selector, rest)) = data.split_first() else { return };
        if selector & 1 == 0 {
            let registry = REGISTRIES[usize::from(selector >> 1) % REGISTRIES.len()];
            match credential_from_docker_config(rest, registry, "docker config fuzz.json") {
                Ok(c) => {
                    let _ = c.describe();
                    let _ = format!("{c:?}");
                }
                Err(why) => assert!(why.starts_with("docker config fuzz.json: "), "{why}"),
            }
        } else {
            let header = String::from_utf8_lossy(rest);
            if let Challenge::Bearer { realm, .. } = parse_challenge(&header) {
                assert!(header.to_ascii_lowercase().contains("realm"), "a realm from nowhere ({realm:?}): {header:?}");
            }
        }
    }
);
