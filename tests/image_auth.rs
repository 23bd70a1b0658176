//! Credentials, TLS and the errors users see: basic auth (a Harbor-style
//! `robot$ciao` user), the bearer-token flow, credentials from the ciao
//! config, docker's config.json (auths and a credential helper) and a
//! mounted `.dockerconfigjson`; a private CA; refusals and unreachable
//! registries. Real registries throughout.

mod support;

use std::sync::OnceLock;

use ciao::image::{self, ImageError};
use ciao::output::CellError;
use support::certs::Certs;
use support::images::{Bases, Push};
use support::registry::{Auth, Registry, uploaded};
use support::token::TokenServer;
use support::tools::{self, Lines, build, config, options, plan};
use tokio_util::sync::CancellationToken;

const CODE: &str = "\nprint('authenticated')\n";
const ROBOT: &str = "robot$ciao";
const ALICE: &str = "alice";

/// The robot's password (a canary: see tests/canaries).
fn robot_pw() -> &'static str {
    support::canary::get("registry-password")
}

/// Alice's password, at the basic-auth registry and the token endpoint (a canary).
fn alice_pw() -> &'static str {
    support::canary::get("token-endpoint-password")
}

fn basic_registry() -> &'static Registry {
    static R: OnceLock<Registry> = OnceLock::new();
    R.get_or_init(|| Registry::start(false, Auth::Htpasswd(&[(ROBOT, robot_pw()), (ALICE, alice_pw())])))
}

fn token_registry() -> &'static (TokenServer, Registry) {
    static R: OnceLock<(TokenServer, Registry)> = OnceLock::new();
    R.get_or_init(|| {
        let t = TokenServer::start(&[(ALICE, alice_pw())]);
        let r = Registry::start(false, Auth::Token(&t));
        (t, r)
    })
}

/// The test base in a fresh repository of `r`, pushed with `creds`.
fn base_in(r: &Registry, creds: (&str, &str)) -> String {
    let base = format!("{}/{}:1", r.host, support::repo("base"));
    Bases::get().push("base", &base, Push { creds: Some(creds), ..Push::default() });
    base
}

fn registry_entry(host: &str, extra: &str) -> String {
    format!("registries:\n  \"{host}\":\n    insecure: true\n{extra}")
}

#[tokio::test]
async fn basic_auth_with_a_robot_user_from_the_ciao_config() {
    let rpw = robot_pw();
    let r = basic_registry();
    let base = base_in(r, (ROBOT, robot_pw()));
    let pw_file = support::fresh_dir("pw-").join("password");
    std::fs::write(&pw_file, format!("{rpw}\n")).unwrap();
    let c = config(&registry_entry(&r.host, &format!("    username: {ROBOT}\n    passwordFile: {}\n", pw_file.display())));
    let target = format!("{}/{}", r.host, support::repo("robot-app"));
    let lines = Lines::default();
    let mark = r.access().len();
    let built = image::Builder::new()
        .build(&plan(&c, &base, Some(&target), &[]), CODE, &c, &options(), lines.callback(), &CancellationToken::new())
        .await
        .unwrap();
    let access = r.access_for(mark, &[&target, &base]);
    assert!(access.iter().all(|a| a.status != 401), "every request carried the credentials: {access:#?}");
    assert!(uploaded(&access).len() == 2, "only the code layer and the config: {access:#?}");
    assert!(!lines.text().contains(robot_pw()));
    assert!(built.reference.starts_with(&target));
}

#[tokio::test]
async fn credentials_from_docker_config_auths() {
    let apw = alice_pw();
    let r = basic_registry();
    let base = base_in(r, (ALICE, alice_pw()));
    let home = support::fresh_dir("home-");
    std::fs::create_dir_all(home.join(".docker")).unwrap();
    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{ALICE}:{apw}"));
    std::fs::write(home.join(".docker/config.json"), format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#, r.host)).unwrap();
    let c = config(&registry_entry(&r.host, ""));
    let o = image::BuildOptions { env: [("HOME".to_string(), home.display().to_string())].into(), ..options() };
    let target = format!("{}/{}", r.host, support::repo("docker-auths"));
    let built = build(&image::Builder::new(), &c, &plan(&c, &base, Some(&target), &[]), CODE, &o).await.unwrap();
    assert!(built.reference.starts_with(&target));
}

#[tokio::test]
async fn credentials_from_a_mounted_dockerconfigjson() {
    let apw = alice_pw();
    let r = basic_registry();
    let base = base_in(r, (ALICE, alice_pw()));
    let secret = support::fresh_dir("secret-");
    std::fs::write(
        secret.join(".dockerconfigjson"),
        format!(r#"{{"auths":{{"{}":{{"username":"{ALICE}","password":"{apw}"}}}}}}"#, r.host),
    )
    .unwrap();
    let c = config(&format!("{}dockerConfig: {}\n", registry_entry(&r.host, ""), secret.display()));
    let target = format!("{}/{}", r.host, support::repo("dockerconfigjson"));
    build(&image::Builder::new(), &c, &plan(&c, &base, Some(&target), &[]), CODE, &options()).await.unwrap();
}

#[test]
fn credentials_from_a_docker_credential_helper() {
    let apw = alice_pw();
    let r = basic_registry();
    let mirror = format!("{}/mirror-{}", r.host, support::repo("helper"));
    Bases::get().push("base", &format!("{mirror}/library/python:3.11-slim"), Push { creds: Some((ALICE, alice_pw())), ..Push::default() });
    let dir = support::fresh_dir("helper-");
    let bin = dir.join("bin");
    std::fs::create_dir(&bin).unwrap();
    let helper = bin.join("docker-credential-test");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\n[ \"$1\" = get ] || exit 1\nread server\n[ \"$server\" = \"{}\" ] || {{ echo \"credentials not found in native keychain\"; exit 1; }}\nprintf '{{\"ServerURL\":\"%s\",\"Username\":\"{ALICE}\",\"Secret\":\"{apw}\"}}' \"$server\"\n",
            r.host
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let docker = dir.join("docker");
    std::fs::create_dir(&docker).unwrap();
    std::fs::write(docker.join("config.json"), format!(r#"{{"credHelpers":{{"{}":"test"}}}}"#, r.host)).unwrap();
    let prefix = format!("{}/{}", r.host, support::repo("helper-app"));
    std::fs::write(dir.join("config.yaml"), format!("registry: {prefix}\n{}mirrors:\n  docker.io: {mirror}\n", registry_entry(&r.host, ""))).unwrap();
    std::fs::write(dir.join("cell.py"), CODE).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let out = tools::ciao()
        .env("PATH", path)
        .env("DOCKER_CONFIG", &docker)
        .args(["build", "--config"])
        .arg(dir.join("config.yaml"))
        .arg(dir.join("cell.py"))
        .output()
        .unwrap();
    support::canary::capture_output(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).trim_end().lines().last().unwrap().starts_with(&prefix));
    assert!(!stderr.contains(alice_pw()));
}

#[tokio::test]
async fn missing_credentials_name_every_source_tried() {
    let r = basic_registry();
    let base = base_in(r, (ALICE, alice_pw()));
    let c = config(&registry_entry(&r.host, ""));
    let target = format!("{}/{}", r.host, support::repo("nocreds"));
    let e = build(&image::Builder::new(), &c, &plan(&c, &base, Some(&target), &[]), CODE, &options()).await.unwrap_err();
    assert!(matches!(e, ImageError::Unauthorized { .. }), "{e}");
    let msg = e.to_string();
    for needle in ["401", &r.host, "ciao config registries", "no username/password/token", "CIAO_DOCKER_CONFIG", "docker config", "docker login"] {
        assert!(msg.contains(needle), "{needle:?} missing in: {msg}");
    }
    assert_eq!(CellError::from(e).ename, "RegistryError");
}

#[tokio::test]
async fn wrong_credentials_are_refused_without_showing_the_password() {
    let r = basic_registry();
    let base = base_in(r, (ALICE, alice_pw()));
    let wrong = support::canary::get("wrong-password");
    let c = config(&registry_entry(&r.host, &format!("    username: {ALICE}\n    password: {wrong}\n")));
    let target = format!("{}/{}", r.host, support::repo("wrong"));
    let e = build(&image::Builder::new(), &c, &plan(&c, &base, Some(&target), &[]), CODE, &options()).await.unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, ImageError::Unauthorized { .. }), "{msg}");
    assert!(msg.contains("user alice") && msg.contains("ciao config registries"), "{msg}");
    assert!(!msg.contains(wrong) && !format!("{e:?}").contains(wrong), "{msg}");
}

#[test]
fn ciao_build_never_prints_the_password() {
    let r = basic_registry();
    let base = base_in(r, (ALICE, alice_pw()));
    let dir = support::fresh_dir("cli-wrong-");
    let wrong = support::canary::get("wrong-password");
    let prefix = format!("{}/{}", r.host, support::repo("cli-wrong"));
    std::fs::write(
        dir.join("config.yaml"),
        format!("registry: {prefix}\n{}", registry_entry(&r.host, &format!("    username: {ALICE}\n    password: {wrong}\n"))),
    )
    .unwrap();
    // Plain code: the base comes from a framework directory naming the test base.
    let fw = dir.join("frameworks");
    std::fs::create_dir(&fw).unwrap();
    let python = ciao::frameworks::Frameworks::embedded().get("python").unwrap();
    std::fs::write(
        fw.join("testfw.yaml"),
        format!(
            "name: testfw\nsummary: test\nimage: {base}\nworkdir: /app\ncode: /app/main.py\ncommand: [python, /app/main.py]\njob:\n  shape: batchJob\n  apiVersions: [batch/v1]\n  kind: Job\n  plural: jobs\n  installedBy: Kubernetes\n  container: {}\n  clusterEnv: none\n",
            python.job.container
        ),
    )
    .unwrap();
    std::fs::write(dir.join("cell.py"), CODE).unwrap();
    let out = tools::ciao()
        .env("CIAO_FRAMEWORKS_DIR", &fw)
        .env("CIAO_FRAMEWORK", "testfw")
        .args(["build", "--config"])
        .arg(dir.join("config.yaml"))
        .arg(dir.join("cell.py"))
        .output()
        .unwrap();
    support::canary::capture_output(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("401 Unauthorized") && stderr.contains("user alice"), "{stderr}");
    assert!(!stderr.contains(wrong) && !String::from_utf8_lossy(&out.stdout).contains(wrong), "{stderr}");
}

#[tokio::test]
async fn token_auth_mounts_across_repositories_with_one_token() {
    let apw = alice_pw();
    let (t, r) = token_registry();
    let base = base_in(r, (ALICE, alice_pw()));
    let base_repo = support::registry::repo_of(&base);
    let c = config(&registry_entry(&r.host, &format!("    username: {ALICE}\n    password: {apw}\n")));
    let app = support::repo("token-app");
    let target = format!("{}/{app}", r.host);
    let builder = image::Builder::new();
    let o = options();
    let before = t.scopes().len();
    let mark = r.access().len();
    let built = build(&builder, &c, &plan(&c, &base, Some(&target), &[]), CODE, &o).await.unwrap();
    // Token requests of this build (skopeo in other tests asks for its own repositories).
    let ours = |from: usize| -> Vec<String> { t.scopes()[from..].iter().filter(|s| s.contains(&app)).cloned().collect() };
    let scopes = ours(before);
    assert_eq!(scopes.len(), 1, "one token for the build: {scopes:?}");
    let scope = &scopes[0];
    assert!(scope.contains(&format!("repository:{app}:pull,push")) && scope.contains(&format!("repository:{base_repo}:pull")), "{scope}");
    let access = r.access_for(mark, &[&target, &base]);
    let mounts = access.iter().filter(|a| a.path.contains("mount=") && a.status == 201).count();
    assert_eq!(mounts, 3, "{access:#?}");
    assert_eq!(uploaded(&access).len(), 2);

    // A warm cell reuses the token.
    let before = t.scopes().len();
    let again = build(&builder, &c, &plan(&c, &base, Some(&target), &[]), "print('warm')\n", &o).await.unwrap();
    assert!(ours(before).is_empty());
    assert_eq!(again.summary.requests, 6);
    assert_ne!(again.digest, built.digest);
}

#[tokio::test]
async fn token_auth_with_a_wrong_password_names_the_sources() {
    let (_, r) = token_registry();
    let base = base_in(r, (ALICE, alice_pw()));
    let wrong = support::canary::get("wrong-password");
    let c = config(&registry_entry(&r.host, &format!("    username: {ALICE}\n    password: {wrong}\n")));
    let target = format!("{}/{}", r.host, support::repo("token-wrong"));
    let e = build(&image::Builder::new(), &c, &plan(&c, &base, Some(&target), &[]), CODE, &options()).await.unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, ImageError::Unauthorized { .. }), "{msg}");
    assert!(msg.contains("user alice") && !msg.contains(wrong), "{msg}");
}

#[tokio::test]
async fn a_private_ca_from_ciao_ca_file_or_the_registry_entry() {
    let r = Registry::start(true, Auth::None);
    let base = format!("{}/{}:1", r.host, support::repo("tls-base"));
    Bases::get().push("base", &base, Push::default());
    let target = format!("{}/{}", r.host, support::repo("tls-app"));

    let mut c = config("");
    c.ca_file = Some(Certs::get().ca_crt.clone());
    let built = build(&image::Builder::new(), &c, &plan(&c, &base, Some(&target), &[]), CODE, &options()).await.unwrap();
    let info = tools::inspect(&built.reference, &[&format!("--cert-dir={}", Certs::get().ca_dir.display())]);
    assert_eq!(info["Layers"].as_array().unwrap().len(), 4);

    let c = config(&format!("registries:\n  \"{}\":\n    ca: {}\n", r.host, Certs::get().ca_crt.display()));
    build(&image::Builder::new(), &c, &plan(&c, &base, Some(&target), &[]), "print('per registry')\n", &options()).await.unwrap();

    // Without the CA: a TLS error that says where to put it.
    let c = config("");
    let e = build(&image::Builder::new(), &c, &plan(&c, &base, Some(&target), &[]), CODE, &options()).await.unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, ImageError::Tls { .. }), "{msg}");
    assert!(msg.contains(&r.host) && msg.contains("CIAO_CA_FILE") && msg.contains("certificate"), "{msg}");
}

#[tokio::test]
async fn plain_http_to_a_registry_not_listed_insecure_is_refused() {
    let r = Registry::shared();
    let base = format!("{}/{}:1", r.host, support::repo("plain"));
    Bases::get().push("base", &base, Push::default());
    let target = format!("{}/{}", r.host, support::repo("plain-app"));
    let c = config("");
    let e = build(&image::Builder::new(), &c, &plan(&c, &base, Some(&target), &[]), CODE, &options()).await.unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, ImageError::InsecureRefused { .. }), "{msg}");
    assert!(msg.contains(&r.host) && msg.contains("plain HTTP") && msg.contains("CIAO_INSECURE_REGISTRIES"), "{msg}");
    // An explicit http:// is refused just the same.
    let e = build(&image::Builder::new(), &c, &plan(&c, &format!("http://{base}"), Some(&target), &[]), CODE, &options()).await.unwrap_err();
    assert!(e.to_string().contains("CIAO_INSECURE_REGISTRIES"), "{e}");
}

#[tokio::test]
async fn a_registry_that_is_down_is_named() {
    let host = format!("127.0.0.1:{}", support::free_port());
    let c = config(&registry_entry(&host, ""));
    let o = image::BuildOptions { timeout: std::time::Duration::from_secs(2), ..options() };
    let p = plan(&c, &format!("{host}/base:1"), Some(&format!("{host}/app")), &[]);
    let e = build(&image::Builder::new(), &c, &p, CODE, &o).await.unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, ImageError::Unreachable { .. }), "{msg}");
    assert!(msg.contains(&host) && msg.contains("cannot reach"), "{msg}");
}
