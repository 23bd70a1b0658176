//! The registry fault matrix: a fault-injecting proxy between ciao and a
//! real registry breaks one kind of request at a time (HEAD blob, GET
//! manifest, GET blob, POST/PATCH/PUT upload, PUT manifest) with 500 and
//! 503, connections cut in the middle of a blob, answers slower than the
//! timeout, a 401 in the middle of a push (an expired token, on a
//! token-auth registry) and 429 with `Retry-After`.
//!
//! A transient fault is retried with backoff and the push completes; a
//! lasting one ends in an error naming the registry, the step and the fix.
//! After every case the registry is checked directly (not through the
//! proxy): every tag's manifest has all its blobs. One case runs through the
//! kernel core with the engine, which keeps answering while the build fails.
//!
//! Each case prints one row of the matrix (`cargo test --test
//! registry_faults -- --nocapture` shows them).

mod support;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use ciao::image::{self, BuildOptions, BuildResult, ImageError};
use support::faults::{Fault, FaultProxy, Kind, Rule, assert_no_dangling_tags};
use support::images::{Bases, Push, push_layout};
use support::registry::{Auth, Registry};
use support::token::TokenServer;
use support::tools::{Lines, config, options, plan};
use tokio_util::sync::CancellationToken;

const CODE: &str = "\nprint('through a faulty network')\n";
const USER: &str = "pusher";
/// The timeout the timeout cases use (`CIAO_REGISTRY_TIMEOUT`).
const SHORT: Duration = Duration::from_secs(2);
/// No case may take longer than this: a hang is a failure.
const CASE_LIMIT: Duration = Duration::from_secs(90);

/// The pusher's password at the token endpoint (a canary: see tests/canaries).
fn password() -> &'static str {
    support::canary::get("token-endpoint-password")
}

/// The shared plain registry and a base repository in it.
fn plain() -> &'static (Registry, String) {
    static R: OnceLock<(Registry, String)> = OnceLock::new();
    R.get_or_init(|| {
        let r = Registry::plain();
        let repo = support::repo("faults-base");
        Bases::get().push("base", &format!("{}/{repo}:1", r.host), Push::default());
        (r, repo)
    })
}

/// A token-auth registry, its token endpoint and a base repository in it.
fn token() -> &'static (TokenServer, Registry, String) {
    static R: OnceLock<(TokenServer, Registry, String)> = OnceLock::new();
    R.get_or_init(|| {
        let t = TokenServer::start(&[(USER, password())]);
        let r = Registry::start(false, Auth::Token(&t));
        let repo = support::repo("faults-base");
        Bases::get().push("base", &format!("{}/{repo}:1", r.host), Push { creds: Some((USER, password())), ..Push::default() });
        (t, r, repo)
    })
}

/// A second plain registry holding the 3 MB base, for cases where base
/// layers must be streamed across registries (long request and response bodies).
fn source() -> &'static (Registry, String) {
    static R: OnceLock<(Registry, String)> = OnceLock::new();
    R.get_or_init(|| {
        let r = Registry::plain();
        let repo = support::repo("faults-far");
        push_layout(&Bases::get().layout, "base", &format!("{}/{repo}:1", r.host), Push::default());
        (r, repo)
    })
}

/// What a case should end with.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// The push completes (after retries).
    Pushed,
    /// An error whose message has all these parts (besides the registry's name).
    Fails(&'static [&'static str]),
}

/// One case's result.
struct Outcome {
    result: Result<BuildResult, ImageError>,
    elapsed: Duration,
    proxy: FaultProxy,
    tags: Vec<String>,
}

/// Where the base comes from and where the image goes.
#[derive(Clone, Copy, PartialEq)]
enum Topology {
    /// Base and target in one plain registry, both through the proxy.
    Same,
    /// The same on the token-auth registry.
    Token,
    /// The base in another registry (direct), the target through the proxy.
    CopyTo,
    /// The base in another registry through the proxy, the target direct.
    CopyFrom,
}

async fn run(name: &str, topology: Topology, rules: Vec<Rule>, timeout: Duration, expect: Expect) -> Outcome {
    let pw = password();
    let (upstream, base_repo, creds) = match topology {
        Topology::Same => (&plain().0, plain().1.clone(), false),
        Topology::Token => (&token().1, token().2.clone(), true),
        Topology::CopyTo | Topology::CopyFrom => (&plain().0, String::new(), false),
    };
    let proxied = if topology == Topology::CopyFrom { &source().0 } else { upstream };
    let proxy = FaultProxy::start(&proxied.host, rules);
    let base = match topology {
        Topology::Same | Topology::Token => format!("{}/{base_repo}:1", proxy.host),
        Topology::CopyTo => format!("{}/{}:1", source().0.host, source().1),
        Topology::CopyFrom => format!("{}/{}:1", proxy.host, source().1),
    };
    let target_host = if topology == Topology::CopyFrom { upstream.host.clone() } else { proxy.host.clone() };
    let target_repo = support::repo("faults");
    let target = format!("{target_host}/{target_repo}");
    let mut yaml = String::from("registries:\n");
    for h in [&proxy.host, &upstream.host, &source().0.host] {
        yaml.push_str(&format!("  \"{h}\":\n    insecure: true\n"));
        if creds {
            yaml.push_str(&format!("    username: {USER}\n    password: {pw}\n"));
        }
    }
    let c = config(&yaml);
    let o = BuildOptions { timeout, ..options() };
    let lines = Lines::default();
    let started = Instant::now();
    let result = tokio::time::timeout(
        CASE_LIMIT,
        image::Builder::new().build(&plan(&c, &base, Some(&target), &[]), CODE, &c, &o, lines.callback(), &CancellationToken::new()),
    )
    .await
    .unwrap_or_else(|_| panic!("{name}: the build hung for {CASE_LIMIT:?}; proxy saw {}", proxy.summary()));
    let elapsed = started.elapsed();

    // Straight at the registry: no tag may reference a missing blob.
    let bearer = if creds { Some(pull_token(&target_repo).await) } else { None };
    let tags = assert_no_dangling_tags(&upstream.host, &target_repo, bearer.as_deref()).await;

    let outcome = match &result {
        Ok(b) => format!("pushed {}", &b.digest[..19]),
        Err(e) => format!("error: {}", first_words(&e.to_string(), 14)),
    };
    eprintln!(
        "| {name} | {outcome} | {} injected | {} | {:.2} s |",
        proxy.injected(),
        proxy.summary(),
        elapsed.as_secs_f64()
    );
    let out = Outcome { result, elapsed, proxy, tags };
    check(name, &out, expect, &target_host);
    out
}

fn first_words(s: &str, n: usize) -> String {
    let words: Vec<&str> = s.split_whitespace().collect();
    if words.len() > n { format!("{} …", words[..n].join(" ")) } else { words.join(" ") }
}

fn check(name: &str, out: &Outcome, expect: Expect, registry: &str) {
    assert!(out.proxy.injected() > 0, "{name}: the fault never fired; the proxy saw {}", out.proxy.summary());
    match (expect, &out.result) {
        (Expect::Pushed, Ok(b)) => {
            assert_eq!(out.tags, std::slice::from_ref(&b.tag), "{name}: the tag is in the registry");
        }
        (Expect::Fails(parts), Err(e)) => {
            let text = e.to_string();
            assert!(text.contains(registry), "{name}: the error names the registry {registry}: {text}");
            for p in parts {
                assert!(text.contains(p), "{name}: the error says {p:?}: {text}");
            }
            assert!(!text.contains(password()), "{name}: a secret in the message");
            assert!(!text.contains(": ;"), "{name}: an empty registry message: {text}");
            assert!(out.tags.is_empty(), "{name}: a failed push left tags {:?}", out.tags);
        }
        (Expect::Pushed, Err(e)) => panic!("{name}: expected the push to complete after retries, got: {e}\nproxy saw {}", out.proxy.summary()),
        (Expect::Fails(_), Ok(b)) => panic!("{name}: expected an error, the push completed: {}", b.reference),
    }
}

/// A pull token for `repository` on the token registry, for direct checks.
async fn pull_token(repository: &str) -> String {
    let t = &token().0;
    let r = reqwest::Client::new()
        .get(&t.realm)
        .query(&[("service", t.service.as_str()), ("scope", &format!("repository:{repository}:pull"))])
        .basic_auth(USER, Some(password()))
        .send()
        .await
        .unwrap();
    let v: serde_json::Value = r.json().await.unwrap();
    v["token"].as_str().unwrap().to_string()
}

/// The step named in the error when `kind` keeps failing.
fn step(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::GetManifest => &["fetching the manifest"],
        Kind::GetBlob => &["fetching the blob"],
        Kind::HeadBlob => &["checking for the blob"],
        // Mounts and uploads start with a POST; whichever fails first is named.
        Kind::PostUpload => &[" while "],
        Kind::PatchUpload | Kind::PutUpload => &["uploading the blob"],
        Kind::PutManifest => &["writing the manifest"],
        _ => &[],
    }
}

fn status(code: u16) -> Fault {
    Fault::Status { code, retry_after: None, challenge: None }
}

/// PATCH is used only by chunked uploads: a proxy refusing whole bodies (413) forces them.
fn with_chunking(kind: Kind, mut rules: Vec<Rule>) -> Vec<Rule> {
    if kind == Kind::PatchUpload {
        rules.push(Rule::always(Kind::PutUpload, Fault::RefuseBodies));
    }
    rules
}

#[tokio::test]
async fn a_transient_500_or_503_on_any_request_kind_is_retried_and_the_push_completes() {
    let cases = Kind::FAULTABLE.iter().flat_map(|&kind| [500u16, 503].map(move |code| (kind, code))).map(|(kind, code)| async move {
        let name = format!("{code} once on {}", kind.label());
        let out = run(&name, Topology::Same, with_chunking(kind, vec![Rule::first(kind, 1, status(code))]), options().timeout, Expect::Pushed).await;
        assert!(out.proxy.count(kind) >= 2, "{name}: retried");
    });
    futures::future::join_all(cases).await;
}

#[tokio::test]
async fn a_lasting_500_or_503_on_any_request_kind_fails_naming_the_registry_the_step_and_the_fix() {
    let cases = Kind::FAULTABLE.iter().flat_map(|&kind| [500u16, 503].map(move |code| (kind, code))).map(|(kind, code)| async move {
        let name = format!("{code} always on {}", kind.label());
        let mut parts = vec!["run the cell again later", "answered"];
        parts.extend_from_slice(step(kind));
        let parts: &'static [&'static str] = Box::leak(parts.into_boxed_slice());
        let out = run(&name, Topology::Same, with_chunking(kind, vec![Rule::always(kind, status(code))]), options().timeout, Expect::Fails(parts)).await;
        // At most 3 attempts per operation: a push has one GET manifest, one
        // GET blob (the config), one HEAD blob (the code layer), one PUT
        // manifest, and up to five blobs going up (3 mounted, 2 uploaded).
        let tries = out.proxy.seen().iter().filter(|s| s.kind == kind && s.status == Some(code)).count();
        let operations = match kind {
            Kind::PostUpload => 5,
            Kind::PutUpload | Kind::PatchUpload => 2,
            _ => 1,
        };
        assert!((2..=3 * operations).contains(&tries), "{name}: bounded retries, {tries} tries: {}", out.proxy.summary());
        assert!(out.elapsed >= Duration::from_millis(800), "{name}: retries back off ({:?})", out.elapsed);
    });
    futures::future::join_all(cases).await;
}

#[tokio::test]
async fn a_connection_cut_in_the_middle_of_a_blob_is_retried_and_a_lasting_cut_is_an_error() {
    // The 3 MB base layer crosses registries: its upload is cut after 1 MB,
    // or its download is; the config download is cut after 16 bytes.
    let cut_up = Fault::CutRequest { after: 1 << 20 };
    let cut_down = Fault::CutResponse { after: 1 << 20 };
    let cut_config = Fault::CutResponse { after: 16 };
    let transfer: &'static [&'static str] = &["run the cell again"];
    let cases = vec![
        ("request body cut once (PUT upload, 3 MB)", Topology::CopyTo, vec![Rule::first(Kind::PutUpload, 1, cut_up.clone())], Expect::Pushed),
        ("response body cut once (GET blob, 3 MB)", Topology::CopyFrom, vec![Rule::first(Kind::GetBlob, 1, cut_down.clone())], Expect::Pushed),
        ("response body cut once (GET config)", Topology::Same, vec![Rule::first(Kind::GetBlob, 1, cut_config.clone())], Expect::Pushed),
        ("request body cut always (PUT upload, 3 MB)", Topology::CopyTo, vec![Rule::always(Kind::PutUpload, cut_up)], Expect::Fails(transfer)),
        ("response body cut always (GET blob, 3 MB)", Topology::CopyFrom, vec![Rule::always(Kind::GetBlob, cut_down)], Expect::Fails(transfer)),
        ("response body cut always (GET config)", Topology::Same, vec![Rule::always(Kind::GetBlob, cut_config)], Expect::Fails(transfer)),
    ];
    let runs = cases.into_iter().map(|(name, topology, rules, expect)| run(name, topology, rules, options().timeout, expect));
    futures::future::join_all(runs).await;
}

#[tokio::test]
async fn an_answer_slower_than_the_timeout_is_retried_and_a_lasting_one_names_the_timeout_setting() {
    let slow = Fault::Delay(SHORT + Duration::from_secs(2));
    let stall = Fault::StallBody { after: 16, pause: SHORT + Duration::from_secs(2) };
    let named: &'static [&'static str] = &["did not answer within 2 s", "CIAO_REGISTRY_TIMEOUT"];
    let cases = vec![
        ("slow once: GET manifest (read)", Topology::Same, vec![Rule::first(Kind::GetManifest, 1, slow.clone())], Expect::Pushed),
        ("slow once: PUT manifest (write)", Topology::Same, vec![Rule::first(Kind::PutManifest, 1, slow.clone())], Expect::Pushed),
        ("slow once: PUT upload (write)", Topology::Same, vec![Rule::first(Kind::PutUpload, 1, slow.clone())], Expect::Pushed),
        ("stalled body once: GET config", Topology::Same, vec![Rule::first(Kind::GetBlob, 1, stall.clone())], Expect::Pushed),
        ("slow always: GET manifest (read)", Topology::Same, vec![Rule::always(Kind::GetManifest, slow.clone())], Expect::Fails(named)),
        ("slow always: PUT manifest (write)", Topology::Same, vec![Rule::always(Kind::PutManifest, slow.clone())], Expect::Fails(named)),
        ("slow always: PUT upload (write)", Topology::Same, vec![Rule::always(Kind::PutUpload, slow.clone())], Expect::Fails(named)),
        ("unread always: PUT upload, 3 MB (write stall)", Topology::CopyTo, vec![Rule::always(Kind::PutUpload, Fault::Delay(Duration::from_secs(40)))], Expect::Fails(named)),
        ("stalled body always: GET config", Topology::Same, vec![Rule::always(Kind::GetBlob, stall)], Expect::Fails(named)),
    ];
    let runs = cases.into_iter().map(|(name, topology, rules, expect)| async move {
        let out = run(name, topology, rules, SHORT, expect).await;
        if let Expect::Fails(_) = expect {
            // Three attempts of at most about the timeout each, plus backoff.
            assert!(out.elapsed < Duration::from_secs(20), "{name}: the timeout bounded the wait ({:?})", out.elapsed);
        }
    });
    futures::future::join_all(runs).await;
}

#[tokio::test]
async fn the_timeout_setting_reaches_the_registry_client_from_the_environment() {
    let (upstream, base_repo) = plain();
    let proxy = FaultProxy::start(&upstream.host, vec![Rule::always(Kind::GetManifest, Fault::Delay(Duration::from_secs(5)))]);
    let dir = support::fresh_dir("timeout-env-");
    std::fs::write(
        dir.join("config.yaml"),
        format!("registry: {}/{}\nregistries:\n  \"{}\": {{insecure: true}}\n", proxy.host, support::repo("env"), proxy.host),
    )
    .unwrap();
    std::fs::write(dir.join("cell.py"), format!("%base={}/{base_repo}:1\nprint(1)\n", proxy.host)).unwrap();
    let started = Instant::now();
    let out = support::tools::ciao()
        .env("CIAO_REGISTRY_TIMEOUT", "1")
        .arg("build")
        .arg("--config")
        .arg(dir.join("config.yaml"))
        .arg(dir.join("cell.py"))
        .output()
        .unwrap();
    support::canary::capture_output(&out);
    let elapsed = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("| CIAO_REGISTRY_TIMEOUT=1, slow GET manifest, `ciao build` | exit {:?} | {} injected | {} | {:.2} s |", out.status.code(), proxy.injected(), proxy.summary(), elapsed.as_secs_f64());
    assert!(!out.status.success());
    assert!(stderr.contains("did not answer within 1 s") && stderr.contains("CIAO_REGISTRY_TIMEOUT"), "{stderr}");
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
}

#[tokio::test]
async fn a_401_in_the_middle_of_a_push_gets_a_new_token_and_the_push_completes() {
    let t = &token().0;
    let expired = Fault::Status {
        code: 401,
        retry_after: None,
        challenge: Some(format!(r#"Bearer realm="{}",service="{}",error="invalid_token""#, t.realm, t.service)),
    };
    let cases = [
        ("401 on the 2nd PUT upload (token expired)", Rule::nth(Kind::PutUpload, 1, expired.clone())),
        ("401 on the 1st PUT manifest (token expired)", Rule::nth(Kind::PutManifest, 0, expired.clone())),
        ("401 on the 2nd POST upload (token expired)", Rule::nth(Kind::PostUpload, 1, expired.clone())),
        ("401 on the 1st HEAD blob (token expired)", Rule::nth(Kind::HeadBlob, 0, expired.clone())),
        ("401 on the 1st GET blob (token expired)", Rule::nth(Kind::GetBlob, 0, expired.clone())),
    ];
    let runs = cases.into_iter().map(|(name, rule)| async move {
        let before = t.requests();
        run(name, Topology::Token, vec![rule], options().timeout, Expect::Pushed).await;
        assert!(t.requests() > before, "{name}: a token was fetched");
    });
    futures::future::join_all(runs).await;
    // A token that keeps being refused ends in an error with the fix.
    run(
        "401 on every PUT upload from the 2nd on",
        Topology::Token,
        vec![Rule { kind: Kind::PutUpload, fault: expired, skip: 1, times: usize::MAX }],
        options().timeout,
        Expect::Fails(&["401 Unauthorized", "push", "docker login"]),
    )
    .await;
}

#[tokio::test]
async fn a_429_is_retried_after_retry_after_or_a_rate_limit_pause() {
    let limited = Fault::Status { code: 429, retry_after: Some(2), challenge: None };
    let cases = [Kind::GetManifest, Kind::GetBlob, Kind::HeadBlob, Kind::PostUpload, Kind::PutUpload, Kind::PutManifest];
    let runs = cases.into_iter().map(|kind| {
        let limited = limited.clone();
        async move {
            let name = format!("429 + Retry-After: 2 once on {}", kind.label());
            let out = run(&name, Topology::Same, vec![Rule::first(kind, 1, limited)], options().timeout, Expect::Pushed).await;
            // Pushes go through oci-client, which does not let the header be
            // read: those are retried after ciao's own rate-limit pause (1 s).
            let pushed_by_oci_client = matches!(kind, Kind::PostUpload | Kind::PutUpload | Kind::PutManifest);
            let least = if pushed_by_oci_client { Duration::from_secs(1) } else { Duration::from_secs(2) };
            assert!(out.elapsed >= least, "{name}: waited at least {least:?} ({:?})", out.elapsed);
        }
    });
    futures::future::join_all(runs).await;
    run(
        "429 + Retry-After: 1 always on PUT manifest",
        Topology::Same,
        vec![Rule::always(Kind::PutManifest, Fault::Status { code: 429, retry_after: Some(1), challenge: None })],
        options().timeout,
        Expect::Fails(&["429", "limiting requests", "writing the manifest"]),
    )
    .await;
}

#[tokio::test]
async fn the_kernel_keeps_answering_while_a_500_on_put_manifest_fails_the_cell() {
    use ciao::kernel::connection::queues;
    use ciao::kernel::history::History;
    use ciao::kernel::message::KernelSession;
    use serde_json::json;

    let (upstream, _) = plain();
    let mirror = support::repo("kernel-mirror");
    Bases::get().push("base", &format!("{}/{mirror}/library/python:3.11-slim", upstream.host), Push::default());
    let proxy = FaultProxy::start(&upstream.host, vec![Rule::always(Kind::PutManifest, status(500))]);
    let dir = support::fresh_dir("kernel-faults-");
    let target_repo = support::repo("kernel-faults");
    std::fs::write(
        dir.join("config.yaml"),
        format!(
            "registry: {p}/{target_repo}\nregistries:\n  \"{p}\": {{insecure: true}}\nmirrors:\n  docker.io: {p}/{mirror}\n",
            p = proxy.host
        ),
    )
    .unwrap();
    let engine = std::sync::Arc::new(ciao::engine::Engine::new(ciao::engine::ConfigSource::File(dir.join("config.yaml"))));
    let (shell_tx, control_tx, inbound, outbound, out) = queues();
    let (mut shell_out, mut control_out, mut iopub) = (out.shell, out.control, out.iopub);
    // iopub is drained as a client would (a full queue would hold the kernel up).
    tokio::spawn(async move { while iopub.recv().await.is_some() {} });
    let kernel = ciao::kernel::Kernel::new(engine, outbound, History::new(Some(dir.join("history.jsonl")), 100));
    let running = tokio::spawn(kernel.run(inbound));
    let client = KernelSession::new();

    let cell = client.message("execute_request", json!({"code": CODE, "silent": false}));
    let cell_id = cell.header.msg_id.clone();
    shell_tx.send(cell).await.unwrap();
    // Wait until the build is under way (a PUT manifest failed at least once),
    // then ask on control, as a notebook's kernel-status check does.
    let deadline = Instant::now() + Duration::from_secs(30);
    while proxy.count(Kind::PutManifest) == 0 {
        assert!(Instant::now() < deadline, "the build never reached the manifest: {}", proxy.summary());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let asked = Instant::now();
    let info = client.message("kernel_info_request", json!({}));
    let info_id = info.header.msg_id.clone();
    control_tx.send(info).await.unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(5), control_out.recv()).await.expect("kernel_info answered").unwrap();
    let answered = asked.elapsed();
    assert_eq!(reply.parent_msg_id(), Some(info_id.as_str()));
    assert_eq!(reply.content["status"], "ok");

    let reply = tokio::time::timeout(CASE_LIMIT, shell_out.recv()).await.expect("the cell ended").unwrap();
    assert_eq!(reply.parent_msg_id(), Some(cell_id.as_str()));
    assert!(proxy.count(Kind::PutManifest) >= 2, "the manifest was retried: {}", proxy.summary());
    assert!(answered < Duration::from_millis(500), "kernel_info took {answered:?} while the build was retrying");
    assert_eq!(reply.content["status"], "error");
    let evalue = reply.content["evalue"].as_str().unwrap();
    eprintln!(
        "| 500 always on PUT manifest, through the kernel | error: {} | {} injected | {} | kernel_info answered in {:.1} ms during the retries |",
        first_words(evalue, 14),
        proxy.injected(),
        proxy.summary(),
        answered.as_secs_f64() * 1000.0
    );
    assert!(evalue.contains(&proxy.host) && evalue.contains("writing the manifest") && evalue.contains("run the cell again later"), "{evalue}");
    assert!(assert_no_dangling_tags(&upstream.host, &target_repo, None).await.is_empty());

    // Still serving: another request is answered after the failure.
    let again = client.message("kernel_info_request", json!({}));
    shell_tx.send(again).await.unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(5), shell_out.recv()).await.unwrap().unwrap();
    assert_eq!(reply.content["status"], "ok");
    drop((shell_tx, control_tx));
    let _ = tokio::time::timeout(Duration::from_secs(5), running).await;
}
