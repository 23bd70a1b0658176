//! The job commands: `%jobs`, `%logs NAME [--follow]`, `%attach NAME`,
//! `%delete NAME`, over every job kind the cluster serves.

use std::fmt::Write as _;
use std::ops::Not as _;

use futures::future::join_all;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::client::Cluster;
use super::errors::{api_error, status_code};
use super::follow::{self, Ending, Target};
use super::jobs::{self, JobKind};
use crate::backend::logs::{LineSplitter, LogMux};
use crate::backend::render::{ANNOTATION_IMAGE, LABEL_MANAGED_BY, MANAGED_BY};
use crate::config::Config;
use crate::interpreter::params::{JobCommand, OnInterrupt};
use crate::output::{CellError, MimeBundle, Output, bundle};
use crate::plan::escape;

/// Runs a job command in `namespace`.
///
/// # Errors
/// An unknown job (the message lists the jobs there are), API errors.
pub async fn run(
    cluster: &Cluster,
    command: &JobCommand,
    config: &Config,
    namespace: &str,
    out: &Output,
    cancel: &CancellationToken,
) -> Result<Option<MimeBundle>, CellError> {
    let kinds = served_kinds(cluster, config).await?;
    match command {
        JobCommand::Jobs => Ok(Some(jobs_table(&list_jobs(cluster, &kinds, namespace).await?, namespace))),
        JobCommand::Logs { name, follow } => {
            let (kind, job) = find_job(cluster, &kinds, namespace, name).await?;
            if *follow {
                follow_logs(cluster, &kind, namespace, &job, config.log_colors, out, cancel).await
            } else {
                print_logs(cluster, &kind, namespace, &job, config.log_colors, out).await?;
                Ok(None)
            }
        }
        JobCommand::Attach { name } => {
            let (kind, job) = find_job(cluster, &kinds, namespace, name).await?;
            let expected = jobs::expected_replicas(kind.shape, &job);
            let target = Target { cluster, kind: &kind, namespace, job: &job, expected, status: true, colors: config.log_colors };
            super::follow_to_end(&target, OnInterrupt::Detach, out, cancel).await?.into_cell_result()
        }
        JobCommand::Delete { name } => {
            let (kind, job) = find_job(cluster, &kinds, namespace, name).await?;
            delete(cluster, &kind, namespace, &job, out).await?;
            Ok(None)
        }
        JobCommand::Modules | JobCommand::Help | JobCommand::HelpOn(_) => {
            Err(CellError::new("InternalError", "this command is answered by the kernel, not the backend"))
        }
    }
}

/// Every job kind of the framework descriptors that the cluster serves.
async fn served_kinds(cluster: &Cluster, config: &Config) -> Result<Vec<JobKind>, CellError> {
    let frameworks = crate::engine::Engine::frameworks(config)?;
    let mut kinds: Vec<JobKind> = Vec::new();
    for d in frameworks.iter() {
        let resource = cluster
            .job_resource(&d.job)
            .await
            .map_err(|e| api_error(&e, "discovering the job kinds", &cluster.server))?;
        if let Some(resource) = resource
            && !kinds.iter().any(|k| k.resource.group == resource.group && k.resource.plural == resource.plural)
        {
            kinds.push(JobKind { resource, shape: d.job.shape, container: d.job.container.clone() });
        }
    }
    Ok(kinds)
}

/// One row of `%jobs`.
#[derive(Debug, Clone)]
struct Row {
    name: String,
    kind: String,
    state: String,
    created: Option<Timestamp>,
    image: String,
}

async fn list_jobs(cluster: &Cluster, kinds: &[JobKind], namespace: &str) -> Result<Vec<Row>, CellError> {
    let selector = format!("{LABEL_MANAGED_BY}={MANAGED_BY}");
    let lists = join_all(kinds.iter().map(|k| {
        let api: Api<DynamicObject> = Api::namespaced_with(cluster.client.clone(), namespace, &k.resource);
        let lp = ListParams::default().labels(&selector);
        async move { (k, api.list(&lp).await) }
    }))
    .await;
    let mut rows = Vec::new();
    for (k, list) in lists {
        let list = match list {
            Ok(l) => l,
            Err(e) if status_code(&e) == Some(404) => continue,
            Err(e) => return Err(api_error(&e, &format!("listing {} in {namespace}", k.resource.plural), &cluster.server)),
        };
        for obj in list.items {
            let v = serde_json::to_value(&obj).unwrap_or(Value::Null);
            rows.push(Row {
                name: obj.metadata.name.clone().unwrap_or_default(),
                kind: k.resource.kind.clone(),
                state: jobs::job_state(k.shape, &v).state,
                created: obj.metadata.creation_timestamp.as_ref().map(|t| t.0),
                image: obj.metadata.annotations.as_ref().and_then(|a| a.get(ANNOTATION_IMAGE)).cloned().unwrap_or_default(),
            });
        }
    }
    rows.sort_by(|a, b| (a.created, &a.name).cmp(&(b.created, &b.name)));
    Ok(rows)
}

/// `5s`, `12m`, `3h`, `4d`, as kubectl shows ages.
fn age(created: Option<Timestamp>, now: Timestamp) -> String {
    let Some(c) = created else { return "?".into() };
    let s = (now.as_second() - c.as_second()).max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

fn jobs_table(rows: &[Row], namespace: &str) -> MimeBundle {
    if rows.is_empty() {
        return bundle(format!("no ciao jobs in namespace {namespace}"), None);
    }
    let now = Timestamp::now();
    let cols: Vec<[String; 5]> = rows
        .iter()
        .map(|r| [r.name.clone(), r.kind.clone(), r.state.clone(), age(r.created, now), r.image.clone()])
        .collect();
    let head = ["NAME", "KIND", "STATE", "AGE", "IMAGE"];
    let widths: Vec<usize> = (0..5).map(|i| cols.iter().map(|c| c[i].len()).chain([head[i].len()]).max().unwrap_or(0)).collect();
    let line = |cells: [&str; 5]| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i == 4 {
                s.push_str(c);
            } else {
                let _ = write!(s, "{c:<w$}  ", w = widths[i]);
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut text = line(head);
    let mut html = String::from("<table class=\"ciao-jobs\"><thead><tr>");
    for h in head {
        let _ = write!(html, "<th>{}</th>", h.to_lowercase());
    }
    html.push_str("</tr></thead><tbody>");
    for c in &cols {
        text.push_str(&line([&c[0], &c[1], &c[2], &c[3], &c[4]]));
        html.push_str("<tr>");
        for cell in c {
            let _ = write!(html, "<td>{}</td>", escape(cell));
        }
        html.push_str("</tr>");
    }
    html.push_str("</tbody></table>");
    bundle(text, Some(html))
}

/// The job `name` among the served kinds.
async fn find_job(cluster: &Cluster, kinds: &[JobKind], namespace: &str, name: &str) -> Result<(JobKind, Value), CellError> {
    let found = join_all(kinds.iter().map(|k| {
        let api: Api<DynamicObject> = Api::namespaced_with(cluster.client.clone(), namespace, &k.resource);
        async move { (k, api.get_opt(name).await) }
    }))
    .await;
    for (k, r) in found {
        match r {
            Ok(Some(obj)) => return Ok((k.clone(), serde_json::to_value(&obj).unwrap_or(Value::Null))),
            Ok(None) => {}
            Err(e) if status_code(&e) == Some(404) => {}
            Err(e) => return Err(api_error(&e, &format!("looking for {name} in {namespace}"), &cluster.server)),
        }
    }
    let rows = list_jobs(cluster, kinds, namespace).await?;
    let there = if rows.is_empty() {
        format!("there are no ciao jobs in namespace {namespace}")
    } else {
        format!("ciao jobs there: {}", rows.iter().map(|r| format!("{} ({})", r.name, r.kind)).collect::<Vec<_>>().join(", "))
    };
    Err(CellError::new("JobNotFound", format!("no job named {name:?} in namespace {namespace}; {there}")))
}

async fn job_pods(cluster: &Cluster, kind: &JobKind, namespace: &str, job: &Value) -> Result<Vec<Pod>, CellError> {
    let api: Api<Pod> = Api::namespaced(cluster.client.clone(), namespace);
    let selector = jobs::pod_selector(kind.shape, job);
    let list = api
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|e| api_error(&e, &format!("listing the pods of {namespace}"), &cluster.server))?;
    let mut pods = list.items;
    pods.sort_by_key(|p| natural(&jobs::replica_name(p, &kind.container)));
    Ok(pods)
}

fn natural(name: &str) -> (String, u64) {
    match name.rsplit_once('-') {
        Some((role, n)) if n.bytes().all(|b| b.is_ascii_digit()) => (role.to_string(), n.parse().unwrap_or(0)),
        _ => (name.to_string(), 0),
    }
}

fn job_name(job: &Value) -> &str {
    job.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default()
}

/// `%logs NAME`: every replica's log so far, prefixed.
async fn print_logs(cluster: &Cluster, kind: &JobKind, namespace: &str, job: &Value, colors: bool, out: &Output) -> Result<(), CellError> {
    let pods = job_pods(cluster, kind, namespace, job).await?;
    let name = job_name(job);
    if pods.is_empty() {
        out.stderr(format!("[ciao] {} {namespace}/{name} has no pods (not started yet, or cleaned up)\n", kind.resource.kind));
        return Ok(());
    }
    let api: Api<Pod> = Api::namespaced(cluster.client.clone(), namespace);
    let mut mux = LogMux::new(out.clone(), colors);
    for pod in &pods {
        let (Some(pod_name), Some(container)) = (pod.metadata.name.clone(), jobs::main_container(pod, &kind.container)) else {
            continue;
        };
        let replica = jobs::replica_name(pod, &kind.container);
        let lp = kube::api::LogParams { container: Some(container), ..Default::default() };
        match api.logs(&pod_name, &lp).await {
            Ok(text) => {
                let i = mux.replica(&replica);
                let mut splitter = LineSplitter::new();
                let mut pieces = splitter.feed(text.as_bytes());
                pieces.extend(splitter.finish());
                mux.write(i, pieces);
            }
            Err(kube::Error::Api(s)) if s.code == 400 => out.stderr(format!("[ciao] {replica}: {}\n", s.message)),
            Err(e) => return Err(api_error(&e, &format!("reading the log of pod {pod_name}"), &cluster.server)),
        }
    }
    mux.close_line();
    Ok(())
}

/// `%logs NAME --follow`: the logs until the job ends; an interrupt stops
/// following and leaves the job alone.
async fn follow_logs(
    cluster: &Cluster,
    kind: &JobKind,
    namespace: &str,
    job: &Value,
    colors: bool,
    out: &Output,
    cancel: &CancellationToken,
) -> Result<Option<MimeBundle>, CellError> {
    let target = Target { cluster, kind, namespace, job, expected: 0, status: false, colors };
    let followed = follow::follow(&target, out, cancel).await?;
    let name = job_name(job);
    let what = format!("{} {namespace}/{name}", kind.resource.kind);
    match followed.ending {
        Ending::Finished(s) => {
            out.stderr(format!("[ciao] {what} {}\n", s.state));
            Ok(None)
        }
        Ending::Gone => {
            out.stderr(format!("[ciao] {what} was deleted\n"));
            Ok(None)
        }
        Ending::Interrupted => {
            Err(CellError::new("KeyboardInterrupt", format!("stopped following the logs; {what} keeps running")))
        }
    }
}

/// `%delete NAME`: the job, its pods and its ConfigMap.
async fn delete(cluster: &Cluster, kind: &JobKind, namespace: &str, job: &Value, out: &Output) -> Result<(), CellError> {
    let name = job_name(job);
    let pods = job_pods(cluster, kind, namespace, job).await.unwrap_or_default();
    let config_map = own_config_map(cluster, namespace, name).await;
    let api: Api<DynamicObject> = Api::namespaced_with(cluster.client.clone(), namespace, &kind.resource);
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => {}
        Err(e) if status_code(&e) == Some(404) => {}
        Err(e) => return Err(api_error(&e, &format!("deleting {} {namespace}/{name}", kind.resource.kind), &cluster.server)),
    }
    // Owned by the job, it goes with it; deleted here too in case the owner reference is missing.
    let cm = config_map && (delete_config_map(cluster, namespace, name).await || own_config_map(cluster, namespace, name).await.not());
    let mut what = format!("deleted {} {namespace}/{name}", kind.resource.kind);
    let names: Vec<String> = pods.iter().filter_map(|p| p.metadata.name.clone()).collect();
    match names.len() {
        0 => what.push_str(" (it had no pods left)"),
        n => {
            let _ = write!(what, " and its {n} pod{} ({})", if n == 1 { "" } else { "s" }, names.join(", "));
        }
    }
    if cm {
        let _ = write!(what, " and ConfigMap {name}");
    }
    out.stdout(format!("{what}\n"));
    Ok(())
}

/// Whether a ConfigMap named after the job exists and ciao made it.
async fn own_config_map(cluster: &Cluster, namespace: &str, name: &str) -> bool {
    let api: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), namespace);
    let Ok(Some(cm)) = api.get_opt(name).await else { return false };
    cm.metadata.labels.as_ref().and_then(|l| l.get(LABEL_MANAGED_BY)).is_some_and(|v| v == MANAGED_BY)
}

/// Deletes the ConfigMap named after a job if ciao made it; whether it did.
pub(crate) async fn delete_config_map(cluster: &Cluster, namespace: &str, name: &str) -> bool {
    let api: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), namespace);
    own_config_map(cluster, namespace, name).await && api.delete(name, &DeleteParams::background()).await.is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_like_kubectl() {
        let now: Timestamp = "2025-01-02T00:00:00Z".parse().unwrap();
        let at = |s: &str| Some(s.parse::<Timestamp>().unwrap());
        assert_eq!(age(at("2025-01-01T23:59:55Z"), now), "5s");
        assert_eq!(age(at("2025-01-01T23:48:00Z"), now), "12m");
        assert_eq!(age(at("2025-01-01T21:00:00Z"), now), "3h");
        assert_eq!(age(at("2024-12-29T00:00:00Z"), now), "4d");
        assert_eq!(age(None, now), "?");
    }

    #[test]
    fn the_jobs_table_has_text_and_html() {
        let rows = vec![Row {
            name: "tensorflow-1a2b3c4d".into(),
            kind: "TFJob".into(),
            state: "Running".into(),
            created: Some(Timestamp::now()),
            image: "r/t@sha256:x".into(),
        }];
        let b = jobs_table(&rows, "ns");
        let text = b["text/plain"].as_str().unwrap();
        assert!(text.starts_with("NAME"), "{text}");
        assert!(text.contains("tensorflow-1a2b3c4d  TFJob  Running"), "{text}");
        assert!(b["text/html"].as_str().unwrap().contains("<td>TFJob</td>"));
        assert_eq!(jobs_table(&[], "ns")["text/plain"], "no ciao jobs in namespace ns");
    }
}
