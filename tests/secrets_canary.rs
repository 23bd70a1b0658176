//! Canary secrets in every credential source at once, and none of them in
//! anything ciao shows. The sources: the ciao config's `registries.<host>`
//! (`password`, `passwordFile`, `token`) and `s2i.password`, a mounted
//! `.dockerconfigjson` (`CIAO_DOCKER_CONFIG`), docker's `config.json`
//! (`$DOCKER_CONFIG`: `auth` and `identitytoken`), the kubeconfig's bearer
//! token and a service-account token directory. The command line runs at
//! trace level (`CIAO_LOG=trace`): a push to an htpasswd registry and a job
//! on the API stand-in, a push through the token endpoint, and refusals
//! (wrong passwords: a 401 naming the credential's source). Everything it
//! prints is scanned for the canaries, raw and base64, and for the bearer
//! tokens the token endpoint issued.

mod kubeharness;
mod support;

use std::path::{Path, PathBuf};
use std::process::Output;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use fake_cluster::FakeCluster;
use support::canary;
use support::images::{Bases, Push};
use support::registry::{Auth, Registry};
use support::token::TokenServer;

const ROBOT: &str = "robot";
const ALICE: &str = "alice";

/// Everything a run printed, for messages and the scan.
fn text(out: &Output) -> String {
    format!("--- stdout\n{}\n--- stderr\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Fails if a canary or an issued token is in `out`.
fn assert_clean(what: &str, out: &Output, tokens: &TokenServer) {
    let all = text(out);
    canary::capture_output(out);
    let issued = tokens.tokens();
    let issued: Vec<&str> = issued.iter().map(String::as_str).collect();
    let leaks = canary::leaks(&all, &issued);
    assert!(leaks.is_empty(), "{what}: secrets in the output: {leaks:?}");
}

fn auth(user: &str, password: &str) -> String {
    STANDARD.encode(format!("{user}:{password}"))
}

/// `ciao ARGS` at trace level with the docker config, the mounted Secret
/// and a service account all pointing at canaries.
fn ciao(sources: &Sources, args: &[&std::ffi::OsStr]) -> Output {
    let mut cmd = support::tools::ciao();
    for (k, _) in std::env::vars() {
        if k.starts_with("KUBE") || k.ends_with("_PROXY") || k.ends_with("_proxy") {
            cmd.env_remove(k);
        }
    }
    cmd.env("CIAO_LOG", "trace")
        .env("DOCKER_CONFIG", &sources.docker_dir)
        .env("CIAO_DOCKER_CONFIG", &sources.mounted)
        .env("KUBERNETES_SERVICE_HOST", "127.0.0.1")
        .env("KUBERNETES_SERVICE_PORT", "1")
        .env("CIAO_SERVICEACCOUNT_DIR", &sources.serviceaccount)
        .args(args);
    cmd.output().expect("ciao runs")
}

/// The credential files outside the ciao config.
struct Sources {
    dir: PathBuf,
    docker_dir: PathBuf,
    mounted: PathBuf,
    serviceaccount: PathBuf,
    password_file: PathBuf,
    /// The token-auth registry (plain HTTP; its credentials come from docker's config.json).
    token_host: String,
}

impl Sources {
    fn new(htpasswd_host: &str, token_host: &str) -> Sources {
        let dir = support::fresh_dir("canary-");
        // docker's config.json: the token registry's user (its `auth`), and an identity token.
        let docker_dir = dir.join("docker");
        std::fs::create_dir_all(&docker_dir).unwrap();
        let docker = serde_json::json!({"auths": {
            token_host: {"auth": auth(ALICE, canary::get("token-endpoint-password"))},
            "other.registry.invalid:5000": {"auth": auth("someone", canary::get("docker-auth-password"))},
            "idtoken.registry.invalid": {"auth": auth("<token>", ""), "identitytoken": canary::get("docker-identitytoken")},
        }});
        std::fs::write(docker_dir.join("config.json"), docker.to_string()).unwrap();
        // A mounted kubernetes.io/dockerconfigjson Secret (a directory with `.dockerconfigjson`).
        let mounted = dir.join("regcred");
        std::fs::create_dir_all(&mounted).unwrap();
        let secret = serde_json::json!({"auths": {
            htpasswd_host: {"username": ROBOT, "password": canary::get("dockerconfigjson-password"),
                            "auth": auth(ROBOT, canary::get("dockerconfigjson-password"))},
        }});
        std::fs::write(mounted.join(".dockerconfigjson"), secret.to_string()).unwrap();
        // A service account (the kubeconfig wins over it, but it is there).
        let serviceaccount = dir.join("serviceaccount");
        std::fs::create_dir_all(&serviceaccount).unwrap();
        std::fs::write(serviceaccount.join("token"), canary::get("kube-token-rotated")).unwrap();
        std::fs::write(serviceaccount.join("namespace"), "default").unwrap();
        let password_file = dir.join("registry-password");
        std::fs::write(&password_file, format!("{}\n", canary::get("registry-password-file"))).unwrap();
        Sources { dir, docker_dir, mounted, serviceaccount, password_file, token_host: token_host.to_string() }
    }

    /// A ciao config with every in-file source set; `robot_password` is
    /// what the htpasswd registry's entry says.
    fn config(&self, name: &str, cluster: &FakeCluster, htpasswd_host: &str, registry: &str, robot_password: &str) -> PathBuf {
        let path = self.dir.join(format!("{name}.yaml"));
        let text = format!(
            "kubeconfig: {kc}\nbackend: kubernetes\nregistry: {registry}\n\
             s2i:\n  username: {ROBOT}\n  password: {s2i}\n\
             mirrors:\n  docker.io: {htpasswd_host}/mirror\n\
             registries:\n  \"{htpasswd_host}\":\n    insecure: true\n    username: {ROBOT}\n    password: {robot_password}\n\
             \x20   passwordFile: {pwfile}\n    pullSecret: regcred\n\
             \x20 \"{token_host}\":\n    insecure: true\n\
             \x20 \"static.registry.invalid:5000\":\n    token: {token}\n",
            token_host = self.token_host,
            kc = cluster.kubeconfig_path().display(),
            s2i = canary::get("s2i-password"),
            pwfile = self.password_file.display(),
            token = canary::get("registry-token"),
        );
        std::fs::write(&path, text).unwrap();
        path
    }
}

fn cell(dir: &Path, code: &str) -> PathBuf {
    let path = dir.join(format!("cell-{}.py", uuid::Uuid::new_v4().simple()));
    std::fs::write(&path, code).unwrap();
    path
}

/// The pull secret the stand-in's kubelet uses for the htpasswd registry.
async fn pull_secret(cluster: &FakeCluster, host: &str) {
    let kc = kube::config::Kubeconfig::read_from(cluster.kubeconfig_path()).unwrap();
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await.unwrap();
    let client = kube::Client::try_from(cfg).unwrap();
    let api: kube::Api<k8s_openapi::api::core::v1::Secret> = kube::Api::namespaced(client, "default");
    let config = serde_json::json!({"auths": {host: {"auth": auth(ROBOT, canary::get("registry-password"))}}}).to_string();
    let secret = serde_json::json!({
        "metadata": {"name": "regcred"}, "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": STANDARD.encode(config)},
    });
    api.create(&Default::default(), &serde_json::from_value(secret).unwrap()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canaries_in_every_credential_source_never_reach_the_output_logs_or_errors() {
    let (registry, tokens, token_registry) = tokio::task::spawn_blocking(|| {
        let registry = Registry::start(false, Auth::Htpasswd(&[(ROBOT, canary::get("registry-password"))]));
        let tokens = TokenServer::start(&[(ALICE, canary::get("token-endpoint-password")), (ROBOT, canary::get("s2i-password"))]);
        let token_registry = Registry::start(false, Auth::Token(&tokens));
        let bases = Bases::get();
        bases.push("base", &format!("{}/mirror/library/python:3.11-slim", registry.host), Push {
            creds: Some((ROBOT, canary::get("registry-password"))),
            ..Push::default()
        });
        bases.push("base", &format!("{}/base:1", token_registry.host), Push {
            creds: Some((ALICE, canary::get("token-endpoint-password"))),
            ..Push::default()
        });
        (registry, tokens, token_registry)
    })
    .await
    .unwrap();
    // The stand-in checks the canary kube token and pulls from the htpasswd registry.
    let cluster = FakeCluster::start(kubeharness::options(&registry))
    .await
    .expect("the stand-in starts");
    pull_secret(&cluster, &registry.host).await;
    let sources = Sources::new(&registry.host, &token_registry.host);
    let host = registry.host.as_str();

    // A job: pushed to the htpasswd registry with the config's password, run on the stand-in
    // with the kubeconfig's token, pulled by the stand-in with the pull secret.
    let config = sources.config("good", &cluster, host, &format!("{host}/jobs"), canary::get("registry-password"));
    let code = cell(&sources.dir, "print('no secret here', flush=True)\n");
    let out = ciao(&sources, &["run".as_ref(), "--config".as_ref(), config.as_os_str(), code.as_os_str()]);
    assert_clean("a job", &out, &tokens);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().next(), Some("[main-0] no secret here"), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("TRACE") && stderr.contains(&format!("pushed {host}/jobs/")), "{}", text(&out));

    // Pushes through the token endpoint: with the s2i user (the target prefix's registry), then,
    // without the s2i keys, with the user from docker's config.json.
    let config = sources.config("token", &cluster, host, &format!("{}/app", token_registry.host), canary::get("registry-password"));
    let code = cell(&sources.dir, &format!("%base={}/base:1\nprint('pushed with a bearer token')\n", token_registry.host));
    for (what, user) in [("s2i", ROBOT), ("docker config.json", ALICE)] {
        if user == ALICE {
            let without_s2i = std::fs::read_to_string(&config).unwrap().replace(&format!("s2i:\n  username: {ROBOT}\n  password: {}\n", canary::get("s2i-password")), "");
            std::fs::write(&config, without_s2i).unwrap();
        }
        let issued_before = tokens.tokens().len();
        let out = ciao(&sources, &["build".as_ref(), "--config".as_ref(), config.as_os_str(), code.as_os_str()]);
        assert_clean(&format!("a push through the token endpoint with the {what} credentials"), &out, &tokens);
        assert!(out.status.success(), "{what}: {}", text(&out));
        assert!(tokens.tokens().len() > issued_before, "the token endpoint issued a token");
    }

    // A wrong password in the ciao config: a 401 naming the source and the user, not the password.
    let config = sources.config("wrong", &cluster, host, &format!("{host}/jobs"), canary::get("wrong-password"));
    let code = cell(&sources.dir, "print('never runs')\n");
    let out = ciao(&sources, &["run".as_ref(), "--config".as_ref(), config.as_os_str(), code.as_os_str()]);
    assert_clean("a refused push", &out, &tokens);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("401") && stderr.contains(&format!("ciao config registries.\"{host}\"")) && stderr.contains("user robot"),
        "{}",
        text(&out)
    );

    // The mounted Secret's password is wrong for the htpasswd registry: with no config
    // entry, the refusal names the mounted file.
    let path = sources.dir.join("mounted-only.yaml");
    std::fs::write(
        &path,
        format!(
            "kubeconfig: {}\nbackend: kubernetes\nregistry: {host}/jobs\nmirrors:\n  docker.io: {host}/mirror\nregistries:\n  \"{host}\":\n    insecure: true\n",
            cluster.kubeconfig_path().display()
        ),
    )
    .unwrap();
    let out = ciao(&sources, &["run".as_ref(), "--config".as_ref(), path.as_os_str(), code.as_os_str()]);
    assert_clean("a refused mounted Secret", &out, &tokens);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("401") && stderr.contains("dockerConfig") && stderr.contains(".dockerconfigjson"), "{}", text(&out));

    // A kube token the stand-in does not accept: 401 from the API server, no token shown.
    let kubeconfig = sources.dir.join("wrong-kubeconfig.yaml");
    std::fs::write(
        &kubeconfig,
        std::fs::read_to_string(cluster.kubeconfig_path()).unwrap().replace(canary::get("kube-token"), canary::get("wrong-password")),
    )
    .unwrap();
    let config = sources.config("wrong-kube", &cluster, host, &format!("{host}/jobs"), canary::get("registry-password"));
    let text_cfg = std::fs::read_to_string(&config).unwrap().replace(&cluster.kubeconfig_path().display().to_string(), &kubeconfig.display().to_string());
    std::fs::write(&config, text_cfg).unwrap();
    let out = ciao(&sources, &["run".as_ref(), "--config".as_ref(), config.as_os_str(), code.as_os_str()]);
    assert_clean("a refused kube token", &out, &tokens);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"), "{}", text(&out));
}

#[test]
fn the_scan_finds_a_canary_raw_or_in_base64_at_any_offset() {
    let secret = canary::get("registry-password");
    for user in ["", "a", "ab", "robot", "robot$ciao"] {
        let basic = STANDARD.encode(format!("{user}:{secret}"));
        assert!(!canary::leaks(&format!("Authorization: Basic {basic}"), &[]).is_empty(), "{user}: {basic}");
        let url_safe = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{{\"{user}\":\"{secret}\"}}"));
        assert!(!canary::leaks(&url_safe, &[]).is_empty(), "{user}: {url_safe}");
    }
    assert!(!canary::leaks(&format!("password: {secret}\n"), &[]).is_empty());
    assert!(!canary::leaks("a token eyJhbGciOi.xyz", &["eyJhbGciOi.xyz"]).is_empty());
    assert!(canary::leaks("ciao config registries.\"r:5000\" (user robot): 401 Unauthorized", &["eyJhbGciOi.xyz"]).is_empty());
}
