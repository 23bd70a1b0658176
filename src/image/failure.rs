//! Why a registry request failed, classified for retries and messages,
//! before a session turns it into an [`ImageError`].

use std::time::Duration;

use oci_client::errors::OciDistributionError;
use reqwest::header::{RETRY_AFTER, WWW_AUTHENTICATE};

use super::error::ImageError;

/// Why one request failed, before it becomes an [`ImageError`].
#[derive(Debug)]
pub enum Failure {
    /// The registry answered with an error status.
    Status { code: u16, message: String, retry_after: Option<Duration>, challenge: Option<String> },
    /// No answer: connection, TLS, timeout, a body that broke off.
    Transport(reqwest::Error),
    /// Content that does not match its digest.
    Digest { expected: String, actual: String },
    /// An error already explained (from the other end of a copy).
    Explained(ImageError),
    /// A registry that does not follow the protocol.
    Protocol(String),
}

impl Failure {
    pub(crate) fn retryable(&self) -> bool {
        match self {
            Failure::Status { code, .. } => matches!(code, 408 | 429 | 500 | 502 | 503 | 504),
            Failure::Transport(e) => transport_retryable(e),
            _ => false,
        }
    }

    pub(crate) fn retry_after(&self) -> Option<Duration> {
        match self {
            Failure::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    pub(crate) fn status(&self) -> Option<u16> {
        match self {
            Failure::Status { code, .. } => Some(*code),
            _ => None,
        }
    }
}

impl From<OciDistributionError> for Failure {
    fn from(e: OciDistributionError) -> Failure {
        match e {
            OciDistributionError::ServerError { code, message, .. } => {
                Failure::Status { code, message: registry_message(&message), retry_after: None, challenge: None }
            }
            OciDistributionError::UnauthorizedError { .. } => {
                Failure::Status { code: 401, message: "unauthorized".into(), retry_after: None, challenge: None }
            }
            OciDistributionError::RegistryError { envelope, .. } => {
                let code = envelope.errors.first().map_or(400, |e| status_of(&format!("{:?}", e.code)));
                let message = envelope.errors.iter().map(|e| e.message.clone()).collect::<Vec<_>>().join("; ");
                Failure::Status { code, message, retry_after: None, challenge: None }
            }
            OciDistributionError::RequestError(e) => match e.status() {
                Some(s) => Failure::Status { code: s.as_u16(), message: s.to_string(), retry_after: None, challenge: None },
                None => Failure::Transport(e),
            },
            OciDistributionError::DigestError(d) => Failure::Protocol(d.to_string()),
            other => Failure::Protocol(other.to_string()),
        }
    }
}

/// An HTTP status for a distribution error code.
pub(crate) fn status_of(code: &str) -> u16 {
    let c = code.to_ascii_uppercase();
    if c.contains("UNAUTHORIZED") {
        401
    } else if c.contains("DENIED") {
        403
    } else if c.contains("UNKNOWN") {
        404
    } else if c.contains("TOOMANYREQUESTS") {
        429
    } else {
        400
    }
}

/// The messages of a distribution error body, or the body itself (shortened).
pub(crate) fn registry_message(body: &str) -> String {
    #[derive(serde::Deserialize)]
    struct Envelope {
        errors: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        code: Option<String>,
        message: Option<String>,
    }
    if let Ok(e) = serde_json::from_str::<Envelope>(body) {
        let parts: Vec<String> = e
            .errors
            .iter()
            .map(|x| match (&x.code, &x.message) {
                (Some(c), Some(m)) => format!("{c}: {m}"),
                (Some(c), None) => c.clone(),
                (None, Some(m)) => m.clone(),
                (None, None) => String::new(),
            })
            .collect();
        return parts.join("; ");
    }
    let t = body.trim();
    if t.len() > 200 { format!("{}…", &t[..t.char_indices().nth(200).map_or(t.len(), |(i, _)| i)]) } else { t.to_string() }
}

/// Every message in an error's source chain, without request URLs (upload
/// URLs carry long session states; the registry is named separately).
pub fn chain(e: &dyn std::error::Error) -> String {
    fn no_url(s: String) -> String {
        match s.find(" for url (") {
            Some(i) => match s[i..].find(')') {
                Some(j) => format!("{}{}", &s[..i], &s[i + j + 1..]),
                None => s,
            },
            None => s,
        }
    }
    let mut parts = vec![no_url(e.to_string())];
    let mut cur = e.source();
    while let Some(s) = cur {
        let t = no_url(s.to_string());
        if !parts.iter().any(|p| p.contains(&t)) {
            parts.push(t);
        }
        cur = s.source();
    }
    parts.join(": ")
}

pub(crate) fn is_tls_text(t: &str) -> bool {
    t.contains("certificate") || t.contains("UnknownIssuer") || t.contains("InvalidContentType") || t.contains("corrupt message")
}

/// A non-success answer as a [`Failure`] (with `Retry-After` and the
/// challenge kept), or the answer itself.
pub(crate) async fn check(resp: reqwest::Response) -> Result<reqwest::Response, Failure> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let retry_after = resp
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let challenge = resp.headers().get(WWW_AUTHENTICATE).and_then(|v| v.to_str().ok()).map(String::from);
    let body = resp.text().await.unwrap_or_default();
    Err(Failure::Status { code: status.as_u16(), message: status_message(status, &body), retry_after, challenge })
}

/// What an error answer says: its body's messages, else (a `HEAD`, an
/// empty body) the status itself.
fn status_message(status: reqwest::StatusCode, body: &str) -> String {
    match registry_message(body) {
        m if m.is_empty() => status.to_string(),
        m => m,
    }
}

/// Whether a transport error may go away on its own (not TLS, not DNS).
/// A body that broke off while being read counts, also when reqwest reports
/// it as a decoding error (`Response::bytes` does).
pub(crate) fn transport_retryable(e: &reqwest::Error) -> bool {
    let text = chain(e);
    let permanent = is_tls_text(&text) || text.contains("dns error") || text.contains("does not match") || text.contains("is longer than");
    !permanent && (e.is_connect() || e.is_timeout() || e.is_request() || e.is_body() || broke_off(e))
}

/// A decoding error caused by a body that could not be read to its end.
fn broke_off(e: &reqwest::Error) -> bool {
    let mut cur = std::error::Error::source(e);
    while let Some(s) = cur {
        if let Some(inner) = s.downcast_ref::<reqwest::Error>()
            && (inner.is_body() || inner.is_timeout())
        {
            return true;
        }
        if s.downcast_ref::<std::io::Error>().is_some() {
            return true;
        }
        cur = s.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distribution_error_bodies_become_short_messages() {
        let body = r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"x"}}]}"#;
        assert_eq!(registry_message(body), "MANIFEST_UNKNOWN: manifest unknown");
        assert_eq!(registry_message("  plain text\n"), "plain text");
        assert!(registry_message(&"x".repeat(500)).ends_with('…'));
    }

    #[test]
    fn an_answer_without_a_body_is_described_by_its_status() {
        assert_eq!(status_message(reqwest::StatusCode::SERVICE_UNAVAILABLE, ""), "503 Service Unavailable");
        assert_eq!(status_message(reqwest::StatusCode::INTERNAL_SERVER_ERROR, "  \n"), "500 Internal Server Error");
        assert_eq!(status_message(reqwest::StatusCode::INTERNAL_SERVER_ERROR, "disk full"), "disk full");
    }

    #[test]
    fn error_codes_map_to_statuses() {
        assert_eq!(status_of("Unauthorized"), 401);
        assert_eq!(status_of("DENIED"), 403);
        assert_eq!(status_of("BlobUnknown"), 404);
        assert_eq!(status_of("TOOMANYREQUESTS"), 429);
        assert_eq!(status_of("SIZE_INVALID"), 400);
    }

    #[test]
    fn only_transient_statuses_are_retried() {
        let s = |code| Failure::Status { code, message: String::new(), retry_after: None, challenge: None };
        for code in [429, 500, 502, 503, 504] {
            assert!(s(code).retryable(), "{code}");
        }
        for code in [400, 401, 403, 404, 413] {
            assert!(!s(code).retryable(), "{code}");
        }
        assert!(!Failure::Protocol("x".into()).retryable());
    }

    #[test]
    fn oci_client_errors_keep_their_status() {
        let f = Failure::from(OciDistributionError::ServerError { code: 413, url: "u".into(), message: "<html>413</html>".into() });
        assert_eq!(f.status(), Some(413));
        let f = Failure::from(OciDistributionError::UnauthorizedError { url: "u".into() });
        assert_eq!(f.status(), Some(401));
    }

    #[tokio::test]
    async fn a_body_that_breaks_off_is_retryable_even_as_a_decoding_error() {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = tokio::io::AsyncReadExt::read(&mut s, &mut buf).await;
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly ten b").await;
        });
        let resp = reqwest::get(format!("http://{addr}/blob")).await.unwrap();
        let e = resp.bytes().await.unwrap_err();
        assert!(e.is_decode() || e.is_body(), "{e:?}");
        assert!(transport_retryable(&e), "{}", chain(&e));
        assert!(Failure::Transport(e).retryable());
    }

    #[test]
    fn chains_drop_request_urls() {
        #[derive(Debug)]
        struct E;
        impl std::fmt::Display for E {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("error sending request for url (http://h/v2/x?_state=long): refused")
            }
        }
        impl std::error::Error for E {}
        assert_eq!(chain(&E), "error sending request: refused");
    }
}
