//! A fault-injecting HTTP proxy for registry tests: it sits between ciao and
//! a real registry, forwards every request, and breaks the ones its rules
//! match by request kind (HEAD blob, GET manifest, POST upload, …): an error
//! status (with `Retry-After` or a challenge), a connection cut in the
//! middle of the request or the response body, or an answer slower than the
//! client's timeout. It logs what it saw and what it injected.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use http_body_util::{BodyExt, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

/// What a registry request does, as the rules match it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    HeadBlob,
    GetBlob,
    HeadManifest,
    GetManifest,
    PutManifest,
    /// `POST …/blobs/uploads/` (starting an upload, or a mount).
    PostUpload,
    PatchUpload,
    PutUpload,
    /// Anything else (`GET /v2/`, tag lists).
    Other,
}

impl Kind {
    /// The kinds a push and a base fetch use.
    pub const FAULTABLE: [Kind; 7] =
        [Kind::HeadBlob, Kind::GetManifest, Kind::GetBlob, Kind::PostUpload, Kind::PatchUpload, Kind::PutUpload, Kind::PutManifest];

    /// The kind of `method path`.
    pub fn of(method: &Method, path: &str) -> Kind {
        let path = path.split('?').next().unwrap_or(path);
        let uploads = path.contains("/blobs/uploads/");
        let blobs = !uploads && path.contains("/blobs/");
        let manifests = path.contains("/manifests/");
        let m = method.as_str();
        match (m, blobs, manifests, uploads) {
            ("HEAD", true, _, _) => Kind::HeadBlob,
            ("GET", true, _, _) => Kind::GetBlob,
            ("HEAD", _, true, _) => Kind::HeadManifest,
            ("GET", _, true, _) => Kind::GetManifest,
            ("PUT", _, true, _) => Kind::PutManifest,
            ("POST", _, _, true) => Kind::PostUpload,
            ("PATCH", _, _, true) => Kind::PatchUpload,
            ("PUT", _, _, true) => Kind::PutUpload,
            _ => Kind::Other,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Kind::HeadBlob => "HEAD blob",
            Kind::GetBlob => "GET blob",
            Kind::HeadManifest => "HEAD manifest",
            Kind::GetManifest => "GET manifest",
            Kind::PutManifest => "PUT manifest",
            Kind::PostUpload => "POST upload",
            Kind::PatchUpload => "PATCH upload",
            Kind::PutUpload => "PUT upload",
            Kind::Other => "other",
        }
    }
}

/// What the proxy does to a matched request.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answers `code` without forwarding, with a distribution error body,
    /// `Retry-After` (seconds) and `WWW-Authenticate` when given.
    Status { code: u16, retry_after: Option<u64>, challenge: Option<String> },
    /// Reads `after` bytes of the request body (all of it if shorter), then
    /// drops the connection without an answer. Nothing is forwarded.
    CutRequest { after: usize },
    /// Forwards; sends the answer's headers and `after` bytes of its body,
    /// then drops the connection.
    CutResponse { after: usize },
    /// Waits this long, then forwards.
    Delay(Duration),
    /// Forwards; sends the headers and `after` bytes, waits, sends the rest.
    StallBody { after: usize, pause: Duration },
    /// 413 for a request with a non-empty body (as a proxy with a small body
    /// limit does); requests without a body pass and are not counted.
    RefuseBodies,
}

/// A fault for the requests of one kind: the ones numbered `skip ..
/// skip+times` (0-based, among the requests of that kind).
#[derive(Debug, Clone)]
pub struct Rule {
    pub kind: Kind,
    pub fault: Fault,
    pub skip: usize,
    pub times: usize,
}

impl Rule {
    /// `fault` on the first `times` requests of `kind`.
    pub fn first(kind: Kind, times: usize, fault: Fault) -> Rule {
        Rule { kind, fault, skip: 0, times }
    }

    /// `fault` on every request of `kind`.
    pub fn always(kind: Kind, fault: Fault) -> Rule {
        Rule { kind, fault, skip: 0, times: usize::MAX }
    }

    /// `fault` on the `n`-th (0-based) request of `kind` only.
    pub fn nth(kind: Kind, n: usize, fault: Fault) -> Rule {
        Rule { kind, fault, skip: n, times: 1 }
    }
}

/// One request as the proxy saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub kind: Kind,
    pub method: String,
    pub path: String,
    /// The status sent back, or `None` when the connection was cut or the
    /// client left first.
    pub status: Option<u16>,
    /// The fault injected, if any.
    pub fault: Option<String>,
}

struct State {
    upstream: String,
    own: String,
    rules: Vec<(Rule, AtomicUsize)>,
    seen: Mutex<Vec<Seen>>,
    http: reqwest::Client,
}

/// A running proxy; stops with the test process.
pub struct FaultProxy {
    /// `127.0.0.1:PORT`, to be used as the registry's name.
    pub host: String,
    state: Arc<State>,
}

impl FaultProxy {
    /// A proxy for the registry at `upstream` (`127.0.0.1:PORT`, plain HTTP)
    /// applying `rules` (the first rule whose window a request falls in wins).
    pub fn start(upstream: &str, rules: Vec<Rule>) -> FaultProxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).unwrap();
        let host = format!("127.0.0.1:{}", listener.local_addr().unwrap().port());
        let state = Arc::new(State {
            upstream: upstream.to_string(),
            own: host.clone(),
            rules: rules.into_iter().map(|r| (r, AtomicUsize::new(0))).collect(),
            seen: Mutex::new(Vec::new()),
            http: reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap(),
        });
        let st = state.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    let Ok((stream, _)) = listener.accept().await else { continue };
                    let st = st.clone();
                    tokio::spawn(async move {
                        let svc = hyper::service::service_fn(move |req| {
                            let st = st.clone();
                            handle(st, req)
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                            .await;
                    });
                }
            });
        });
        FaultProxy { host, state }
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    /// Requests of `kind` so far.
    pub fn count(&self, kind: Kind) -> usize {
        self.seen().iter().filter(|s| s.kind == kind).count()
    }

    /// Faults injected so far.
    pub fn injected(&self) -> usize {
        self.seen().iter().filter(|s| s.fault.is_some()).count()
    }

    /// `KIND×N` for every kind seen, in a stable order, for reports.
    pub fn summary(&self) -> String {
        let seen = self.seen();
        let mut out = Vec::new();
        for k in [Kind::Other, Kind::GetManifest, Kind::HeadManifest, Kind::GetBlob, Kind::HeadBlob, Kind::PostUpload, Kind::PatchUpload, Kind::PutUpload, Kind::PutManifest] {
            let n = seen.iter().filter(|s| s.kind == k).count();
            if n > 0 {
                out.push(format!("{}×{n}", k.label()));
            }
        }
        out.join(", ")
    }
}

/// Logs a request as it arrives; its status is filled in once known.
fn record(st: &State, kind: Kind, method: &Method, path: &str, fault: Option<String>) -> usize {
    let mut seen = st.seen.lock().unwrap();
    seen.push(Seen { kind, method: method.to_string(), path: path.to_string(), status: None, fault });
    seen.len() - 1
}

fn answered(st: &State, at: usize, status: u16) {
    st.seen.lock().unwrap()[at].status = Some(status);
}

fn cut(why: &'static str) -> BoxError {
    Box::new(std::io::Error::new(std::io::ErrorKind::ConnectionAborted, why))
}

fn full(body: impl Into<Bytes>) -> ProxyBody {
    http_body_util::Full::new(body.into()).map_err(|e: Infallible| match e {}).boxed_unsync()
}

fn pick(st: &State, kind: Kind, has_body: bool) -> Option<Fault> {
    let mut chosen = None;
    for (rule, count) in &st.rules {
        if rule.kind != kind || (matches!(rule.fault, Fault::RefuseBodies) && !has_body) {
            continue;
        }
        let n = count.fetch_add(1, Ordering::SeqCst);
        if chosen.is_none() && n >= rule.skip && n - rule.skip < rule.times {
            chosen = Some(rule.fault.clone());
        }
    }
    chosen
}

async fn handle(st: Arc<State>, req: Request<Incoming>) -> Result<Response<ProxyBody>, BoxError> {
    let st = &*st;
    let method = req.method().clone();
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str()).to_string();
    let kind = Kind::of(&method, &path);
    let length: u64 = req.headers().get("content-length").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()).unwrap_or(0);
    let chunked = req.headers().get("transfer-encoding").is_some();
    let fault = pick(st, kind, length > 0 || chunked);
    let at = record(st, kind, &method, &path, fault.as_ref().map(|f| format!("{f:?}")));
    match fault {
        Some(Fault::Status { code, retry_after, challenge }) => {
            // The client's body is read, as a registry does before answering.
            let _ = req.into_body().collect().await;
            let mut r = Response::builder().status(code).header("content-type", "application/json");
            if let Some(s) = retry_after {
                r = r.header("retry-after", s.to_string());
            }
            if let Some(c) = challenge {
                r = r.header("www-authenticate", c);
            }
            let code_name = match code {
                401 => "UNAUTHORIZED",
                429 => "TOOMANYREQUESTS",
                _ => "UNKNOWN",
            };
            let body = format!(r#"{{"errors":[{{"code":"{code_name}","message":"injected {code} by the test proxy"}}]}}"#);
            answered(st, at, code);
            Ok(r.body(full(body)).unwrap())
        }
        Some(Fault::RefuseBodies) => {
            let _ = req.into_body().collect().await;
            answered(st, at, 413);
            Ok(Response::builder().status(StatusCode::PAYLOAD_TOO_LARGE).body(full("<html>413 Request Entity Too Large</html>")).unwrap())
        }
        Some(Fault::CutRequest { after }) => {
            let mut body = req.into_body();
            let mut got = 0;
            while got < after.max(1) {
                match body.frame().await {
                    Some(Ok(f)) => got += f.data_ref().map_or(0, Bytes::len),
                    _ => break,
                }
            }
            Err(cut("the test proxy cut the connection in the request body"))
        }
        Some(Fault::Delay(d)) => {
            tokio::time::sleep(d).await;
            forward(st, at, req, None).await
        }
        Some(f @ (Fault::CutResponse { .. } | Fault::StallBody { .. })) => forward(st, at, req, Some(f)).await,
        None => forward(st, at, req, None).await,
    }
}

async fn forward(st: &State, at: usize, req: Request<Incoming>, fault: Option<Fault>) -> Result<Response<ProxyBody>, BoxError> {
    let method = req.method().clone();
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str()).to_string();
    let url = format!("http://{}{}", st.upstream, path);
    let mut out = st.http.request(reqwest::Method::from_bytes(method.as_str().as_bytes()).unwrap(), &url);
    for (name, value) in req.headers() {
        if !matches!(name.as_str(), "host" | "connection" | "transfer-encoding") {
            out = out.header(name.as_str(), value.as_bytes());
        }
    }
    let body = req.into_body().into_data_stream();
    let upstream = match out.body(reqwest::Body::wrap_stream(body)).send().await {
        Ok(r) => r,
        Err(e) => {
            answered(st, at, 502);
            return Ok(Response::builder().status(502).body(full(format!("upstream: {e}"))).unwrap());
        }
    };
    let status = upstream.status().as_u16();
    let mut resp = Response::builder().status(status);
    for (name, value) in upstream.headers() {
        if matches!(name.as_str(), "connection" | "transfer-encoding") {
            continue;
        }
        if name.as_str() == "location" {
            let v = value.to_str().unwrap_or_default().replace(&st.upstream, &st.own);
            resp = resp.header("location", v);
        } else {
            resp = resp.header(name.as_str(), value.as_bytes());
        }
    }
    let stream: Pin<Box<dyn Stream<Item = Result<Bytes, BoxError>> + Send>> = upstream.bytes_stream().map(|r| r.map_err(|e| Box::new(e) as BoxError)).boxed();
    let stream = match fault {
        Some(Fault::CutResponse { after }) => limit(stream, after, None),
        Some(Fault::StallBody { after, pause }) => limit(stream, after, Some(pause)),
        _ => stream,
    };
    answered(st, at, status);
    let body = BodyExt::boxed_unsync(StreamBody::new(stream.map(|r| r.map(Frame::data))));
    Ok(resp.body(body).unwrap())
}

/// The first `after` bytes of `stream`; then an error (the connection is
/// dropped), or — with a pause — a wait and the rest.
fn limit(
    mut stream: Pin<Box<dyn Stream<Item = Result<Bytes, BoxError>> + Send>>,
    after: usize,
    pause: Option<Duration>,
) -> Pin<Box<dyn Stream<Item = Result<Bytes, BoxError>> + Send>> {
    Box::pin(async_stream(move |tx| async move {
        let mut sent = 0usize;
        while let Some(item) = stream.next().await {
            let Ok(mut chunk) = item else { return };
            if sent < after && sent + chunk.len() > after {
                let head = chunk.split_to(after - sent);
                sent += head.len();
                if tx.send(Ok(head)).await.is_err() {
                    return;
                }
            }
            if sent >= after {
                match pause {
                    None => {
                        let _ = tx.send(Err(cut("the test proxy cut the connection in the response body"))).await;
                        return;
                    }
                    Some(p) => {
                        tokio::time::sleep(p).await;
                        let _ = tx.send(Ok(chunk)).await;
                        while let Some(Ok(rest)) = stream.next().await {
                            if tx.send(Ok(rest)).await.is_err() {
                                return;
                            }
                        }
                        return;
                    }
                }
            }
            sent += chunk.len();
            if tx.send(Ok(chunk)).await.is_err() {
                return;
            }
        }
    }))
}

/// A stream fed by a task through a channel.
fn async_stream<F, Fut>(f: F) -> impl Stream<Item = Result<Bytes, BoxError>> + Send
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<Bytes, BoxError>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(f(tx));
    tokio_stream_from(rx)
}

fn tokio_stream_from(mut rx: tokio::sync::mpsc::Receiver<Result<Bytes, BoxError>>) -> impl Stream<Item = Result<Bytes, BoxError>> + Send {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// Checks a repository straight at the registry (not through a proxy):
/// every tag's manifest's blobs exist (`HEAD` each, and each child of an
/// index). Returns the tags. `bearer` authorizes pulls where needed.
pub async fn assert_no_dangling_tags(registry: &str, repository: &str, bearer: Option<&str>) -> Vec<String> {
    let http = reqwest::Client::new();
    let get = |url: String| {
        let mut r = http.get(url).header(
            "accept",
            "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, \
             application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json",
        );
        if let Some(b) = bearer {
            r = r.bearer_auth(b);
        }
        r
    };
    let tags = get(format!("http://{registry}/v2/{repository}/tags/list")).send().await.expect("tag list");
    if tags.status() == 404 {
        return Vec::new();
    }
    assert!(tags.status().is_success(), "tag list of {repository}: {}", tags.status());
    let v: serde_json::Value = tags.json().await.unwrap();
    let tags: Vec<String> = v["tags"].as_array().map(|t| t.iter().filter_map(|x| x.as_str().map(String::from)).collect()).unwrap_or_default();
    let mut manifests: Vec<String> = tags.clone();
    while let Some(reference) = manifests.pop() {
        let m = get(format!("http://{registry}/v2/{repository}/manifests/{reference}")).send().await.unwrap();
        assert!(m.status().is_success(), "{repository}:{reference} is tagged but its manifest is not served: {}", m.status());
        let m: serde_json::Value = m.json().await.unwrap();
        let mut blobs: Vec<String> = m["layers"].as_array().into_iter().flatten().filter_map(|l| l["digest"].as_str().map(String::from)).collect();
        if let Some(c) = m["config"]["digest"].as_str() {
            blobs.push(c.to_string());
        }
        for child in m["manifests"].as_array().into_iter().flatten() {
            manifests.push(child["digest"].as_str().unwrap().to_string());
        }
        for b in blobs {
            let mut h = http.head(format!("http://{registry}/v2/{repository}/blobs/{b}"));
            if let Some(t) = bearer {
                h = h.bearer_auth(t);
            }
            let s = h.send().await.unwrap().status();
            assert_eq!(s, 200, "{repository}:{reference} references the blob {b}, which the registry does not have");
        }
    }
    tags
}
