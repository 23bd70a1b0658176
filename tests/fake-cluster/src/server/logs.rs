//! `GET pods/<name>/log`: snapshot or follow, previous instance, tail, timestamps, since,
//! byte limit; the kubelet's error messages for containers that have not started.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::Response;
use hyper::body::Frame;
use serde_json::Value;
use tokio::sync::mpsc;

use super::api::Query;
use super::route::Target;
use super::{Body, Dropped, error_response, full};
use crate::cluster::Cluster;
use crate::error::ApiError;
use crate::faults::Fault;
use crate::stream::ReceiverStream;

fn text(body: Body) -> Response<Body> {
    Response::builder().status(200).header("Content-Type", "text/plain").header("Cache-Control", "no-cache, private").body(body).expect("response")
}

/// Serves a pod log request.
pub async fn handle(cluster: &Arc<Cluster>, t: &Target, q: &Query, fault: Option<Fault>) -> Result<Response<Body>, Dropped> {
    let ns = t.namespace.clone().unwrap_or_default();
    let name = t.name.clone().unwrap_or_default();
    let Some(pod) = cluster.store.get("pods", &ns, &name) else {
        return Ok(error_response(&ApiError::not_found("", "pods", &name)));
    };
    let containers: Vec<String> = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|c| c.get("name").and_then(Value::as_str).map(str::to_string)).collect())
        .unwrap_or_default();
    let container = match q.get("container").filter(|c| !c.is_empty()) {
        Some(c) => c.clone(),
        None if containers.len() == 1 => containers[0].clone(),
        None => {
            return Ok(error_response(&ApiError::bad_request(format!("a container name must be specified for pod {name}, choose one of: [{}]", containers.join(" ")))));
        }
    };
    if !containers.contains(&container) {
        return Ok(error_response(&ApiError::bad_request(format!("container {container} is not valid for pod {name}"))));
    }
    if pod.pointer("/spec/nodeName").and_then(Value::as_str).is_none_or(str::is_empty) {
        return Ok(text(full(Bytes::new())));
    }
    let uid = crate::store::uid_of(&pod).to_string();
    let instances = cluster.kubelet.logs(&uid, &container);
    let previous = q.get("previous").is_some_and(|v| v == "true");
    let status = pod
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .and_then(|a| a.iter().find(|s| s["name"] == container.as_str()))
        .cloned()
        .unwrap_or(Value::Null);
    let buf = if previous {
        if instances.len() < 2 {
            return Ok(error_response(&ApiError::bad_request(format!("previous terminated container \"{container}\" in pod \"{name}\" not found"))));
        }
        instances[instances.len() - 2].clone()
    } else {
        match instances.last() {
            Some(b) => b.clone(),
            None => {
                if let Some(reason) = status.pointer("/state/waiting/reason").and_then(Value::as_str) {
                    let what = if matches!(reason, "ErrImagePull" | "ImagePullBackOff" | "ErrImageNeverPull" | "InvalidImageName") {
                        "trying and failing to pull image".to_string()
                    } else {
                        reason.to_string()
                    };
                    return Ok(error_response(&ApiError::bad_request(format!("container \"{container}\" in pod \"{name}\" is waiting to start: {what}"))));
                }
                return Ok(text(full(Bytes::new())));
            }
        }
    };
    let follow = q.get("follow").is_some_and(|v| v == "true") && !previous;
    let timestamps = q.get("timestamps").is_some_and(|v| v == "true");
    let tail: Option<usize> = q.get("tailLines").and_then(|v| v.parse::<i64>().ok()).filter(|n| *n >= 0).map(|n| n as usize);
    let since = q
        .get("sinceSeconds")
        .and_then(|s| s.parse::<i64>().ok())
        .map(|s| chrono::Utc::now() - chrono::Duration::seconds(s))
        .or_else(|| q.get("sinceTime").and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok()).map(|d| d.with_timezone(&chrono::Utc)));
    let mut limit: Option<usize> = q.get("limitBytes").and_then(|v| v.parse().ok());
    let mut cut_after: Option<usize> = fault.as_ref().and_then(|f| f.after_bytes).map(|b| b as usize);
    let start = buf.start_offset(tail, since);
    if !follow && cut_after.is_none() {
        let (mut bytes, _, _) = buf.read_from(start, timestamps);
        if let Some(l) = limit {
            bytes.truncate(l);
        }
        return Ok(text(full(bytes)));
    }
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(64);
    tokio::spawn(async move {
        let mut off = start;
        loop {
            let (mut chunk, new_off, closed) = buf.read_from(off, timestamps);
            off = new_off;
            if !chunk.is_empty() {
                if let Some(l) = limit.as_mut() {
                    if chunk.len() >= *l {
                        chunk.truncate(*l);
                        let _ = tx.send(Ok(Frame::data(chunk))).await;
                        return;
                    }
                    *l -= chunk.len();
                }
                if let Some(c) = cut_after.as_mut() {
                    if chunk.len() >= *c {
                        let part = chunk.slice(..*c);
                        if !part.is_empty() {
                            let _ = tx.send(Ok(Frame::data(part))).await;
                        }
                        let _ = tx.send(Err(std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "log stream dropped"))).await;
                        return;
                    }
                    *c -= chunk.len();
                }
                if tx.send(Ok(Frame::data(chunk))).await.is_err() {
                    return;
                }
            }
            if closed || !follow {
                if cut_after.is_some() {
                    let _ = tx.send(Err(std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "log stream dropped"))).await;
                }
                return;
            }
            tokio::select! {
                _ = buf.wait_beyond(off) => {}
                _ = tx.closed() => return,
            }
        }
    });
    Ok(text(StreamBody::new(ReceiverStream::new(rx)).boxed()))
}
