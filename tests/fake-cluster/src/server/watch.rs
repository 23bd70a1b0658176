//! Watch streams: one JSON event per line over a chunked response, resumable from a
//! resourceVersion (410 Expired as an ERROR event when compacted), with bookmarks and a
//! server-side timeout.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::Response;
use hyper::body::Frame;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};
use crate::stream::ReceiverStream;

use super::api::{Query, present, selectors};
use super::route::Target;
use super::{Body, error_response};
use crate::cluster::Cluster;
use crate::error::ApiError;
use crate::faults::Fault;
use crate::store::Event;

type Tx = mpsc::Sender<Result<Frame<Bytes>, std::io::Error>>;

fn line(ev_type: &str, obj: &Value) -> Bytes {
    let mut b = serde_json::to_vec(&json!({"type": ev_type, "object": obj})).unwrap_or_default();
    b.push(b'\n');
    Bytes::from(b)
}

/// Starts a watch response.
pub fn handle(cluster: &Arc<Cluster>, t: &Target, q: &Query, fault: Option<Fault>) -> Response<Body> {
    let (ls, fs) = match selectors(t, q) {
        Ok(s) => s,
        Err(e) => return error_response(&e),
    };
    let rv_param = q.get("resourceVersion").cloned().unwrap_or_default();
    let from_now = rv_param.is_empty() || rv_param == "0";
    let from: u64 = if from_now {
        0
    } else {
        match rv_param.parse() {
            Ok(n) => n,
            Err(_) => return error_response(&ApiError::bad_request(format!("resourceVersion: Invalid value: \"{rv_param}\": strconv.ParseUint: parsing \"{rv_param}\": invalid syntax"))),
        }
    };
    let timeout = q.get("timeoutSeconds").and_then(|s| s.parse::<u64>().ok()).map(Duration::from_secs).unwrap_or(Duration::from_secs(1800));
    let bookmarks = q.get("allowWatchBookmarks").is_some_and(|v| v == "true");
    let initial_end = q.get("sendInitialEvents").is_some_and(|v| v == "true");
    let gr = t.rt.group_resource();
    let ns = t.namespace.clone();
    let (tx, rx) = mpsc::channel(256);
    let cluster = cluster.clone();
    let rt = t.rt.clone();
    tokio::spawn(async move {
        let matches = |ev_gr: &str, ev_ns: &str, o: &Value| ev_gr == gr && ns.as_deref().is_none_or(|n| n == ev_ns) && ls.matches(o.pointer("/metadata/labels")) && fs.matches(o);
        let mut sent: u32 = 0;
        let send = |tx: &Tx, b: Bytes| {
            let tx = tx.clone();
            async move { tx.send(Ok(Frame::data(b))).await.is_ok() }
        };
        // an injected 410 before anything
        if let Some(f) = &fault
            && f.after_events.is_none() && f.status == Some(410) {
                let e = ApiError::expired(f.message.clone().unwrap_or_else(|| format!("too old resource version: {from} ({})", cluster.store.current_rv())));
                let _ = send(&tx, line("ERROR", &e.to_status())).await;
                return;
            }
        let (backlog, mut live, mut last_rv): (Vec<(String, Value)>, broadcast::Receiver<Arc<Event>>, u64) = if from_now {
            let (items, live, rv) = cluster.store.watch_now(&gr, ns.as_deref());
            let ev = items.into_iter().filter(|o| matches(&gr, crate::store::namespace_of(o), o)).map(|o| ("ADDED".to_string(), o)).collect();
            (ev, live, rv)
        } else {
            match cluster.store.watch_after(from) {
                Ok((events, live, rv)) => {
                    let ev = events.into_iter().filter(|e| matches(&e.gr, &e.namespace, &e.object)).map(|e| (e.kind.as_str().to_string(), e.object.clone())).collect();
                    (ev, live, rv)
                }
                Err(e) => {
                    let _ = send(&tx, line("ERROR", &e.to_status())).await;
                    return;
                }
            }
        };
        let cut = |f: &Option<Fault>, sent: u32| f.as_ref().and_then(|f| f.after_events).is_some_and(|n| sent >= n);
        let finish_fault = |f: &Option<Fault>| {
            let f = f.clone();
            let tx = tx.clone();
            async move {
                if let Some(f) = f {
                    match f.status {
                        Some(code) if !f.drop => {
                            let info = crate::faults::RequestInfo::default();
                            let mut e = f.error(&info);
                            e.code = code;
                            let _ = tx.send(Ok(Frame::data(line("ERROR", &e.to_status())))).await;
                        }
                        _ => {
                            let _ = tx.send(Err(std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "watch dropped"))).await;
                        }
                    }
                }
            }
        };
        for (ty, o) in backlog {
            if cut(&fault, sent) {
                finish_fault(&fault).await;
                return;
            }
            if !send(&tx, line(&ty, &present(&rt, o))).await {
                return;
            }
            sent += 1;
        }
        if initial_end {
            let bm = json!({"kind": rt.kind, "apiVersion": rt.api_version(), "metadata": {"resourceVersion": last_rv.to_string(), "annotations": {"k8s.io/initial-events-end": "true"}}});
            if !send(&tx, line("BOOKMARK", &bm)).await {
                return;
            }
        }
        if cut(&fault, sent) {
            finish_fault(&fault).await;
            return;
        }
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut tick = tokio::time::interval(cluster.opts.bookmark_interval);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = &mut deadline => return,
                _ = tick.tick(), if bookmarks => {
                    let bm = json!({"kind": rt.kind, "apiVersion": rt.api_version(), "metadata": {"resourceVersion": last_rv.max(cluster.store.current_rv()).to_string()}});
                    if !send(&tx, line("BOOKMARK", &bm)).await {
                        return;
                    }
                }
                r = live.recv() => match r {
                    Ok(ev) => {
                        if ev.rv <= last_rv {
                            continue;
                        }
                        last_rv = ev.rv;
                        if !matches(&ev.gr, &ev.namespace, &ev.object) {
                            continue;
                        }
                        if !send(&tx, line(ev.kind.as_str(), &present(&rt, ev.object.clone()))).await {
                            return;
                        }
                        sent += 1;
                        if cut(&fault, sent) {
                            finish_fault(&fault).await;
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        let e = ApiError::expired(format!("too old resource version: {last_rv} ({})", cluster.store.current_rv()));
                        let _ = send(&tx, line("ERROR", &e.to_status())).await;
                        return;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = tx.closed() => return,
            }
        }
    });
    Response::builder()
        .status(200)
        .header("Content-Type", "application/json")
        .header("Cache-Control", "no-cache, private")
        .body(StreamBody::new(ReceiverStream::new(rx)).boxed())
        .expect("response")
}
