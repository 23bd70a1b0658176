//! Jupyter messages as the kernel sees them: a typed header, the JSON parts,
//! and builders that give every reply or iopub message the right parent.
//!
//! The wire format (frames, delimiter, signature) lives in [`super::wire`].

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// The protocol version ciao speaks and writes into every header.
pub const PROTOCOL_VERSION: &str = "5.3";

/// A message header. Unknown fields (e.g. a subshell id) are kept so a reply's
/// parent header echoes the request's header exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    pub msg_id: String,
    pub msg_type: String,
    #[serde(default)]
    pub session: String,
    #[serde(default)]
    pub username: String,
    /// ISO 8601, as the sender wrote it.
    #[serde(default)]
    pub date: String,
    #[serde(default)]
    pub version: String,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A parsed message: routing identities, the four JSON parts, and binary buffers.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// ROUTER identities on shell/control; the topic on iopub.
    pub identities: Vec<Bytes>,
    pub header: Header,
    /// The request's header, or an empty object.
    pub parent_header: Map<String, Value>,
    pub metadata: Map<String, Value>,
    pub content: Value,
    pub buffers: Vec<Bytes>,
}

impl Message {
    /// The header's msg_type.
    pub fn msg_type(&self) -> &str {
        &self.header.msg_type
    }

    /// The parent header's msg_id, if there is one.
    pub fn parent_msg_id(&self) -> Option<&str> {
        self.parent_header.get("msg_id").and_then(Value::as_str)
    }
}

/// The reply type of a request type: `kernel_info_request` → `kernel_info_reply`.
pub fn reply_type(request_type: &str) -> Option<String> {
    request_type.strip_suffix("_request").filter(|s| !s.is_empty()).map(|s| format!("{s}_reply"))
}

/// The current time in the ISO 8601 form Jupyter clients parse.
pub fn now_iso8601() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// The kernel's side of the conversation: its own session id and user name,
/// stamped on every message it sends.
#[derive(Debug, Clone)]
pub struct KernelSession {
    pub session: String,
    pub username: String,
}

impl Default for KernelSession {
    fn default() -> Self {
        Self::new()
    }
}

impl KernelSession {
    /// A fresh session id; the user name from `$USER` (ipykernel does the same).
    pub fn new() -> Self {
        KernelSession {
            session: uuid::Uuid::new_v4().to_string(),
            username: std::env::var("USER").ok().filter(|u| !u.is_empty()).unwrap_or_else(|| "ciao".into()),
        }
    }

    /// A new header of `msg_type`.
    pub fn header(&self, msg_type: &str) -> Header {
        Header {
            msg_id: uuid::Uuid::new_v4().to_string(),
            msg_type: msg_type.into(),
            session: self.session.clone(),
            username: self.username.clone(),
            date: now_iso8601(),
            version: PROTOCOL_VERSION.into(),
            extra: Map::new(),
        }
    }

    /// A message with no parent (e.g. the `starting` status).
    pub fn message(&self, msg_type: &str, content: Value) -> Message {
        Message {
            identities: vec![self.topic(msg_type)],
            header: self.header(msg_type),
            parent_header: Map::new(),
            metadata: Map::new(),
            content,
            buffers: Vec::new(),
        }
    }

    /// The reply to `request` on the channel it came from: same identities,
    /// `request`'s header as parent, `*_request` → `*_reply`.
    ///
    /// Returns `None` when the request's type does not end in `_request`.
    pub fn reply(&self, request: &Message, content: Value) -> Option<Message> {
        let msg_type = reply_type(&request.header.msg_type)?;
        Some(Message {
            identities: request.identities.clone(),
            header: self.header(&msg_type),
            parent_header: header_object(&request.header),
            metadata: Map::new(),
            content,
            buffers: Vec::new(),
        })
    }

    /// An iopub message caused by `parent`.
    pub fn child(&self, parent: &Message, msg_type: &str, content: Value) -> Message {
        Message {
            identities: vec![self.topic(msg_type)],
            header: self.header(msg_type),
            parent_header: header_object(&parent.header),
            metadata: Map::new(),
            content,
            buffers: Vec::new(),
        }
    }

    /// An iopub `status` message with `parent` (or none).
    pub fn status(&self, parent: Option<&Message>, state: &str) -> Message {
        let content = json!({ "execution_state": state });
        match parent {
            Some(p) => self.child(p, "status", content),
            None => self.message("status", content),
        }
    }

    /// The iopub topic, as ipykernel writes it: `kernel.<session>.<msg_type>`.
    fn topic(&self, msg_type: &str) -> Bytes {
        Bytes::from(format!("kernel.{}.{msg_type}", self.session))
    }
}

fn header_object(header: &Header) -> Map<String, Value> {
    match serde_json::to_value(header) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    }
}

/// The message types ciao handles; everything else is [`MsgType::Other`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MsgType {
    KernelInfo,
    Execute,
    IsComplete,
    Complete,
    Inspect,
    History,
    CommInfo,
    CommOpen,
    CommMsg,
    CommClose,
    Shutdown,
    Interrupt,
    Other(String),
}

impl MsgType {
    pub fn parse(msg_type: &str) -> MsgType {
        match msg_type {
            "kernel_info_request" => MsgType::KernelInfo,
            "execute_request" => MsgType::Execute,
            "is_complete_request" => MsgType::IsComplete,
            "complete_request" => MsgType::Complete,
            "inspect_request" => MsgType::Inspect,
            "history_request" => MsgType::History,
            "comm_info_request" => MsgType::CommInfo,
            "comm_open" => MsgType::CommOpen,
            "comm_msg" => MsgType::CommMsg,
            "comm_close" => MsgType::CommClose,
            "shutdown_request" => MsgType::Shutdown,
            "interrupt_request" => MsgType::Interrupt,
            other => MsgType::Other(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(msg_type: &str) -> Message {
        let client = KernelSession { session: "client".into(), username: "u".into() };
        let mut m = client.message(msg_type, json!({}));
        m.identities = vec![Bytes::from_static(b"peer-1")];
        m.header.extra.insert("subshell_id".into(), json!("s1"));
        m
    }

    #[test]
    fn a_reply_keeps_the_identities_and_echoes_the_request_header_as_parent() {
        let kernel = KernelSession::new();
        let req = request("kernel_info_request");
        let reply = kernel.reply(&req, json!({"status": "ok"})).unwrap();
        assert_eq!(reply.identities, req.identities);
        assert_eq!(reply.msg_type(), "kernel_info_reply");
        assert_eq!(reply.parent_msg_id(), Some(req.header.msg_id.as_str()));
        assert_eq!(reply.parent_header["subshell_id"], json!("s1"));
        assert_eq!(reply.parent_header["session"], json!("client"));
        assert_eq!(reply.header.session, kernel.session);
        assert_eq!(reply.header.version, "5.3");
        assert_ne!(reply.header.msg_id, req.header.msg_id);
    }

    #[test]
    fn only_request_types_have_a_reply_type() {
        assert_eq!(reply_type("execute_request").as_deref(), Some("execute_reply"));
        assert_eq!(reply_type("comm_open"), None);
        assert_eq!(reply_type("_request"), None);
        let kernel = KernelSession::new();
        assert!(kernel.reply(&request("comm_msg"), json!({})).is_none());
    }

    #[test]
    fn iopub_children_carry_a_topic_and_the_parent_header() {
        let kernel = KernelSession::new();
        let req = request("execute_request");
        let s = kernel.status(Some(&req), "busy");
        assert_eq!(s.content, json!({"execution_state": "busy"}));
        assert_eq!(s.parent_msg_id(), Some(req.header.msg_id.as_str()));
        assert_eq!(s.identities, vec![Bytes::from(format!("kernel.{}.status", kernel.session))]);
        let starting = kernel.status(None, "starting");
        assert!(starting.parent_header.is_empty());
    }

    #[test]
    fn dates_are_iso8601_utc_with_microseconds() {
        let d = now_iso8601();
        assert!(chrono::DateTime::parse_from_rfc3339(&d).is_ok(), "{d}");
        assert!(d.ends_with('Z') && d.len() == "2026-01-01T00:00:00.000000Z".len(), "{d}");
    }

    #[test]
    fn headers_need_msg_id_and_msg_type_but_tolerate_missing_optional_fields() {
        let h: Header = serde_json::from_value(json!({"msg_id": "a", "msg_type": "b"})).unwrap();
        assert_eq!(h.session, "");
        assert!(serde_json::from_value::<Header>(json!({"msg_type": "b"})).is_err());
        assert!(serde_json::from_value::<Header>(json!({"msg_id": 5, "msg_type": "b"})).is_err());
    }

    #[test]
    fn message_types_parse_into_one_enum() {
        assert_eq!(MsgType::parse("execute_request"), MsgType::Execute);
        assert_eq!(MsgType::parse("comm_open"), MsgType::CommOpen);
        assert_eq!(MsgType::parse("debug_request"), MsgType::Other("debug_request".into()));
    }
}
