//! The HTTP/1.1 server (plain or rustls): accept loop, authentication, fault injection and
//! routing to the Kubernetes API, discovery and admin handlers.

mod admin;
mod api;
mod logs;
mod route;
mod watch;

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::cluster::Cluster;
use crate::error::ApiError;
use crate::faults::RequestInfo;
use route::Route;

/// Response body type: full or streamed; an error aborts the connection.
pub type Body = BoxBody<Bytes, std::io::Error>;

/// A full body.
pub fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|never: Infallible| match never {}).boxed()
}

/// A JSON response.
pub fn json_response(code: u16, v: &Value) -> Response<Body> {
    let mut body = serde_json::to_vec(v).unwrap_or_default();
    body.push(b'\n');
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("Content-Type", "application/json")
        .header("Cache-Control", "no-cache, private")
        .body(full(body))
        .expect("valid response")
}

/// A Status error response.
pub fn error_response(e: &ApiError) -> Response<Body> {
    json_response(e.code, &e.to_status())
}

/// Serves connections until the listener is dropped.
pub async fn serve(cluster: Arc<Cluster>, listener: TcpListener, tls: Option<Arc<rustls::ServerConfig>>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(_) => continue,
            },
            _ = shutdown.changed() => return,
        };
        let _ = stream.set_nodelay(true);
        let cluster = cluster.clone();
        let acceptor = acceptor.clone();
        let mut sd = shutdown.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let cluster = cluster.clone();
                async move { handle(cluster, req).await }
            });
            let builder = hyper::server::conn::http1::Builder::new();
            match acceptor {
                Some(acc) => {
                    let Ok(tls) = acc.accept(stream).await else { return };
                    let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(tls), svc);
                    tokio::select! { _ = conn => {}, _ = sd.changed() => {} }
                }
                None => {
                    let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
                    tokio::select! { _ = conn => {}, _ = sd.changed() => {} }
                }
            }
        });
    }
}

/// An aborted request (connection dropped without an answer).
#[derive(Debug)]
pub struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by an injected fault")
    }
}

impl std::error::Error for Dropped {}

fn is_public(path: &str) -> bool {
    matches!(path, "/version" | "/version/" | "/healthz" | "/livez" | "/readyz") || path.starts_with("/_fake")
}

async fn handle(cluster: Arc<Cluster>, req: Request<Incoming>) -> Result<Response<Body>, Dropped> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or_default().to_string();
    tracing::debug!(method = %req.method(), %path, %query, "request");
    if !is_public(&path)
        && let Some(required) = cluster.required_token() {
            let given = req.headers().get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).map(str::trim);
            if required.is_empty() || given != Some(required.as_str()) {
                return Ok(error_response(&ApiError::unauthorized()));
            }
        }
    let route = route::parse(&cluster, &path);
    if let Route::Admin(rest) = &route {
        return Ok(admin::handle(&cluster, req, rest).await);
    }
    let mut info = RequestInfo { method: req.method().to_string(), path: path.clone(), query: query.clone(), ..Default::default() };
    route.fill_info(&mut info, req.method().as_str(), &query);
    let fault = cluster.faults.take(&info);
    if let Some(f) = &fault {
        if let Some(ms) = f.delay_ms {
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        }
        let streaming = info.verb == "watch" || info.resource == "pods/log";
        let stream_fault = streaming && (f.after_events.is_some() || f.after_bytes.is_some() || (f.status == Some(410) && info.verb == "watch"));
        if !stream_fault {
            if f.drop {
                return Err(Dropped);
            }
            if f.status.is_some() || f.preset.is_some() {
                if info.name.is_empty() && req.method() == hyper::Method::POST {
                    // the name of a created object is in the body; messages name it
                    let (parts, body) = req.into_parts();
                    let bytes = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                    if let Ok(v) = serde_json::from_slice::<Value>(&bytes) {
                        info.name = crate::store::name_of(&v).to_string();
                    }
                    drop(parts);
                }
                return Ok(error_response(&f.error(&info)));
            }
        }
    }
    let resp = match route {
        Route::Root => json_response(200, &json!({"paths": ["/api", "/api/v1", "/apis", "/healthz", "/livez", "/readyz", "/version"]})),
        Route::Health => Response::builder().header("Content-Type", "text/plain; charset=utf-8").body(full("ok")).expect("response"),
        Route::Version => json_response(200, &version()),
        Route::Api => {
            if wants_aggregated(&req) {
                aggregated_response(crate::resources::aggregated(&cluster.registry, true))
            } else {
                json_response(200, &crate::resources::core_versions(&format!("127.0.0.1:{}", port_of(&cluster))))
            }
        }
        Route::Apis => {
            if wants_aggregated(&req) {
                aggregated_response(crate::resources::aggregated(&cluster.registry, false))
            } else {
                json_response(200, &crate::resources::group_list(&cluster.registry))
            }
        }
        Route::Group(g) => match crate::resources::group_doc(&cluster.registry, &g) {
            Some(d) => json_response(200, &d),
            None => error_response(&ApiError::no_resource()),
        },
        Route::GroupVersion(g, v) => match crate::resources::resource_list(&cluster.registry, &g, &v) {
            Some(d) => json_response(200, &d),
            None => error_response(&ApiError::no_resource()),
        },
        Route::Resource(target) => api::handle(&cluster, req, *target, fault).await?,
        Route::NotFound => error_response(&ApiError::no_resource()),
        Route::Admin(_) => unreachable!("handled above"),
    };
    Ok(resp)
}

fn port_of(cluster: &Cluster) -> String {
    cluster.url().rsplit(':').next().unwrap_or_default().to_string()
}

fn wants_aggregated(req: &Request<Incoming>) -> bool {
    req.headers()
        .get_all("accept")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').next().is_some_and(|first| first.contains("as=APIGroupDiscoveryList") && first.contains("v=v2")))
}

fn aggregated_response(v: Value) -> Response<Body> {
    let mut r = json_response(200, &v);
    r.headers_mut().insert("Content-Type", "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList".parse().expect("header"));
    r
}

/// The `/version` document.
pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "emulationMajor": "1",
        "emulationMinor": "33",
        "minCompatibilityMajor": "1",
        "minCompatibilityMinor": "32",
        "gitVersion": "v1.33.0",
        "gitCommit": "60a317eadfcb839692a68eab88b2096f4d708f4f",
        "gitTreeState": "clean",
        "buildDate": "2025-04-23T13:07:44Z",
        "goVersion": "go1.24.2",
        "compiler": "gc",
        "platform": "linux/amd64"
    })
}
