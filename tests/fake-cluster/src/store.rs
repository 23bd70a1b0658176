//! The object store: every object of every kind, one global resourceVersion counter, a
//! bounded event history for watches (older resourceVersions answer 410 Expired), a
//! broadcast channel for HTTP watchers and lossless queues for the in-process controllers.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use crate::error::{ApiError, ApiResult};

/// Watch event types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// Object created.
    Added,
    /// Object changed.
    Modified,
    /// Object removed.
    Deleted,
}

impl EventType {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change of one object.
#[derive(Debug, Clone)]
pub struct Event {
    /// resourceVersion of the change.
    pub rv: u64,
    /// What happened.
    pub kind: EventType,
    /// `plural.group` of the object.
    pub gr: String,
    /// Namespace (empty for cluster-scoped).
    pub namespace: String,
    /// The object after the change (before removal for DELETED).
    pub object: Value,
}

struct Inner {
    rv: u64,
    objects: HashMap<String, BTreeMap<(String, String), Value>>,
    history: VecDeque<Arc<Event>>,
    compacted_rv: u64,
}

/// The shared object store.
pub struct Store {
    inner: Mutex<Inner>,
    tx: broadcast::Sender<Arc<Event>>,
    internal: Mutex<Vec<mpsc::UnboundedSender<Arc<Event>>>>,
    window: Mutex<usize>,
}

/// Backlog of events, live receiver, and the resourceVersion the receiver starts after.
pub type WatchStart = (Vec<Arc<Event>>, broadcast::Receiver<Arc<Event>>, u64);

/// Current time as the API server writes timestamps.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// `metadata.name` of an object.
pub fn name_of(v: &Value) -> &str {
    v.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("")
}

/// `metadata.namespace` of an object.
pub fn namespace_of(v: &Value) -> &str {
    v.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("")
}

/// `metadata.uid` of an object.
pub fn uid_of(v: &Value) -> &str {
    v.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("")
}

fn split_gr(gr: &str) -> (&str, &str) {
    match gr.split_once('.') {
        Some((p, g)) => (g, p),
        None => ("", gr),
    }
}

impl Store {
    /// A store keeping the last `window` events for watch resumption.
    pub fn new(window: usize) -> Self {
        let (tx, _) = broadcast::channel(16384);
        Store {
            inner: Mutex::new(Inner { rv: 1, objects: HashMap::new(), history: VecDeque::new(), compacted_rv: 1 }),
            tx,
            internal: Mutex::new(Vec::new()),
            window: Mutex::new(window.max(1)),
        }
    }

    /// Current resourceVersion.
    pub fn current_rv(&self) -> u64 {
        self.inner.lock().expect("store lock").rv
    }

    /// A lossless, ordered queue of every event, for in-process controllers.
    pub fn subscribe_internal(&self) -> mpsc::UnboundedReceiver<Arc<Event>> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.internal.lock().expect("subscribers lock").push(tx);
        rx
    }

    fn emit(&self, inner: &mut Inner, ev: Event) {
        let ev = Arc::new(ev);
        inner.history.push_back(ev.clone());
        let window = *self.window.lock().expect("window lock");
        while inner.history.len() > window {
            if let Some(old) = inner.history.pop_front() {
                inner.compacted_rv = old.rv;
            }
        }
        let _ = self.tx.send(ev.clone());
        self.internal.lock().expect("subscribers lock").retain(|s| s.send(ev.clone()).is_ok());
    }

    /// Drops all history: any watch resumed from an older resourceVersion gets 410.
    pub fn compact(&self) {
        let mut inner = self.inner.lock().expect("store lock");
        inner.history.clear();
        inner.compacted_rv = inner.rv;
    }

    /// Changes how many events are kept for watch resumption.
    pub fn set_window(&self, window: usize) {
        *self.window.lock().expect("window lock") = window.max(1);
    }

    /// Stores a new object, filling server-set metadata. Fails with AlreadyExists.
    pub fn create(&self, gr: &str, namespace: &str, mut obj: Value) -> ApiResult<Value> {
        let mut inner = self.inner.lock().expect("store lock");
        let name = name_of(&obj).to_string();
        let (group, plural) = split_gr(gr);
        if inner.objects.get(gr).is_some_and(|m| m.contains_key(&(namespace.to_string(), name.clone()))) {
            return Err(ApiError::already_exists(group, plural, &name));
        }
        inner.rv += 1;
        let rv = inner.rv;
        let meta = obj.as_object_mut().expect("object").entry("metadata").or_insert_with(|| json!({}));
        if !namespace.is_empty() {
            meta["namespace"] = json!(namespace);
        }
        if meta.get("uid").and_then(Value::as_str).is_none_or(str::is_empty) {
            meta["uid"] = json!(uuid::Uuid::new_v4().to_string());
        }
        meta["resourceVersion"] = json!(rv.to_string());
        meta["creationTimestamp"] = json!(now_rfc3339());
        if meta.get("generation").is_none() {
            meta["generation"] = json!(1);
        }
        inner.objects.entry(gr.to_string()).or_default().insert((namespace.to_string(), name), obj.clone());
        self.emit(&mut inner, Event { rv, kind: EventType::Added, gr: gr.into(), namespace: namespace.into(), object: obj.clone() });
        Ok(obj)
    }

    /// Reads one object.
    pub fn get(&self, gr: &str, namespace: &str, name: &str) -> Option<Value> {
        let inner = self.inner.lock().expect("store lock");
        inner.objects.get(gr).and_then(|m| m.get(&(namespace.to_string(), name.to_string()))).cloned()
    }

    /// Lists objects of a kind (one namespace or all) that pass `filter`, with the list's resourceVersion.
    pub fn list(&self, gr: &str, namespace: Option<&str>, filter: impl Fn(&Value) -> bool) -> (Vec<Value>, u64) {
        let inner = self.inner.lock().expect("store lock");
        let items = inner
            .objects
            .get(gr)
            .map(|m| m.iter().filter(|((ns, _), v)| namespace.is_none_or(|n| n == ns) && filter(v)).map(|(_, v)| v.clone()).collect())
            .unwrap_or_default();
        (items, inner.rv)
    }

    /// Applies `f` to a copy of the stored object and stores the result under a new
    /// resourceVersion (no-op changes keep the old one and send no event).
    pub fn update(&self, gr: &str, namespace: &str, name: &str, f: impl FnOnce(&mut Value) -> ApiResult<()>) -> ApiResult<Value> {
        let mut inner = self.inner.lock().expect("store lock");
        let (group, plural) = split_gr(gr);
        let key = (namespace.to_string(), name.to_string());
        let current = inner.objects.get(gr).and_then(|m| m.get(&key)).cloned().ok_or_else(|| ApiError::not_found(group, plural, name))?;
        let mut next = current.clone();
        f(&mut next)?;
        // server-owned metadata cannot be changed by writers
        for k in ["uid", "creationTimestamp", "namespace", "name"] {
            if let Some(v) = current.pointer(&format!("/metadata/{k}")) {
                next["metadata"][k] = v.clone();
            }
        }
        next["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"].clone();
        if next == current {
            return Ok(current);
        }
        inner.rv += 1;
        let rv = inner.rv;
        next["metadata"]["resourceVersion"] = json!(rv.to_string());
        inner.objects.entry(gr.to_string()).or_default().insert(key, next.clone());
        self.emit(&mut inner, Event { rv, kind: EventType::Modified, gr: gr.into(), namespace: namespace.into(), object: next.clone() });
        Ok(next)
    }

    /// Removes an object; the DELETED event carries a new resourceVersion.
    pub fn delete(&self, gr: &str, namespace: &str, name: &str) -> ApiResult<Value> {
        let mut inner = self.inner.lock().expect("store lock");
        let (group, plural) = split_gr(gr);
        let key = (namespace.to_string(), name.to_string());
        let mut obj = inner.objects.get_mut(gr).and_then(|m| m.remove(&key)).ok_or_else(|| ApiError::not_found(group, plural, name))?;
        inner.rv += 1;
        let rv = inner.rv;
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        self.emit(&mut inner, Event { rv, kind: EventType::Deleted, gr: gr.into(), namespace: namespace.into(), object: obj.clone() });
        Ok(obj)
    }

    /// Starts a watch of `gr` after resourceVersion `from`: the events already in history
    /// (rv > from) plus a live receiver. 410 when `from` was compacted away.
    pub fn watch_after(&self, from: u64) -> ApiResult<WatchStart> {
        let inner = self.inner.lock().expect("store lock");
        if from < inner.compacted_rv {
            return Err(ApiError::expired(format!("too old resource version: {from} ({})", inner.compacted_rv + 1)));
        }
        let backlog: Vec<Arc<Event>> = inner.history.iter().filter(|e| e.rv > from).cloned().collect();
        Ok((backlog, self.tx.subscribe(), inner.rv))
    }

    /// Starts a watch from "now": the current objects of `gr` (for synthetic ADDED events),
    /// plus a live receiver positioned right after them.
    pub fn watch_now(&self, gr: &str, namespace: Option<&str>) -> (Vec<Value>, broadcast::Receiver<Arc<Event>>, u64) {
        let inner = self.inner.lock().expect("store lock");
        let items = inner
            .objects
            .get(gr)
            .map(|m| m.iter().filter(|((ns, _), _)| namespace.is_none_or(|n| n == ns)).map(|(_, v)| v.clone()).collect())
            .unwrap_or_default();
        (items, self.tx.subscribe(), inner.rv)
    }

    /// Every stored object, grouped by `plural.group`.
    pub fn dump(&self) -> BTreeMap<String, Vec<Value>> {
        let inner = self.inner.lock().expect("store lock");
        inner.objects.iter().map(|(gr, m)| (gr.clone(), m.values().cloned().collect())).collect()
    }

    /// Removes every object of a kind (used when its CRD is uninstalled).
    pub fn drop_kind(&self, gr: &str) {
        let mut inner = self.inner.lock().expect("store lock");
        inner.objects.remove(gr);
    }
}
