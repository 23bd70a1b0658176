//! The wire format: multipart frames ⇄ [`Message`].
//!
//! ```text
//! [identity…] <IDS|MSG> signature header parent_header metadata content [buffer…]
//! ```
//!
//! The signature is the hex HMAC-SHA256 of the four JSON frames under the
//! connection file's key. With a non-empty key every incoming message is
//! verified in constant time; an empty key means messages are unsigned.
//! A signed message is accepted once: [`Replays`] remembers the signatures
//! seen, so a captured request cannot be sent again (jupyter_client's
//! `Session` refuses duplicate signatures the same way).

use std::collections::{HashSet, VecDeque};

use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;

use super::message::{Header, Message};

/// The frame between the routing identities and the message.
pub const DELIMITER: &[u8] = b"<IDS|MSG>";

/// Why a multipart message was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("no <IDS|MSG> delimiter among the {0} frames")]
    MissingDelimiter(usize),
    #[error("only {0} frames after the delimiter; a message needs a signature and four JSON frames")]
    Truncated(usize),
    #[error("the message is not signed but the connection has a key")]
    MissingSignature,
    #[error("the signature does not match the message")]
    BadSignature,
    #[error("the {frame} frame is not valid JSON: {source}")]
    Json {
        frame: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("the {0} frame is not a JSON object")]
    NotAnObject(&'static str),
    #[error("the header lacks a string msg_id or msg_type: {0}")]
    Header(#[source] serde_json::Error),
    #[error("the message {0} was replayed: its signature was seen before")]
    Replayed(String),
}

type HmacSha256 = Hmac<Sha256>;

/// Signs and verifies with the connection's key (or not at all when it is empty).
#[derive(Clone)]
pub struct Signer {
    mac: Option<HmacSha256>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").field("signed", &self.mac.is_some()).finish()
    }
}

impl Signer {
    /// A signer for `key` (the connection file's key, as bytes). Empty: unsigned.
    pub fn new(key: &[u8]) -> Signer {
        let mac = if key.is_empty() { None } else { HmacSha256::new_from_slice(key).ok() };
        Signer { mac }
    }

    /// Whether messages are signed.
    pub fn is_signed(&self) -> bool {
        self.mac.is_some()
    }

    fn mac_of(&self, parts: &[&[u8]; 4]) -> Option<HmacSha256> {
        let mut mac = self.mac.clone()?;
        for p in parts {
            mac.update(p);
        }
        Some(mac)
    }

    /// The hex signature of the four JSON frames; empty when unsigned.
    pub fn sign(&self, parts: &[&[u8]; 4]) -> String {
        self.mac_of(parts).map(|m| hex::encode(m.finalize().into_bytes())).unwrap_or_default()
    }

    /// Checks `signature` (hex, as on the wire) in constant time.
    ///
    /// # Errors
    /// [`WireError::MissingSignature`] or [`WireError::BadSignature`]; never
    /// when the connection is unsigned.
    pub fn verify(&self, signature: &[u8], parts: &[&[u8]; 4]) -> Result<(), WireError> {
        let Some(mac) = self.mac_of(parts) else { return Ok(()) };
        if signature.is_empty() {
            return Err(WireError::MissingSignature);
        }
        let expected = hex::decode(signature).map_err(|_| WireError::BadSignature)?;
        mac.verify_slice(&expected).map_err(|_| WireError::BadSignature)
    }
}

fn parse_object(frame: &'static str, bytes: &[u8]) -> Result<Map<String, Value>, WireError> {
    match serde_json::from_slice(bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(WireError::NotAnObject(frame)),
        Err(source) => Err(WireError::Json { frame, source }),
    }
}

/// Frames → message: finds the delimiter, verifies the signature, parses the JSON.
///
/// # Errors
/// Any [`WireError`]; the caller logs and drops the message.
pub fn decode(frames: Vec<Bytes>, signer: &Signer) -> Result<Message, WireError> {
    decode_signed(frames, signer).map(|(msg, _)| msg)
}

/// [`decode`], refusing a signed message whose signature `seen` already holds.
///
/// # Errors
/// Any [`WireError`], [`WireError::Replayed`] for a message accepted before.
pub fn decode_once(frames: Vec<Bytes>, signer: &Signer, seen: &std::sync::Mutex<Replays>) -> Result<Message, WireError> {
    let (msg, signature) = decode_signed(frames, signer)?;
    if signer.is_signed() {
        // Hex is case-insensitive: remember the bytes, not the text.
        let key: [u8; 32] = hex::decode(&signature).ok().and_then(|k| k.try_into().ok()).ok_or(WireError::BadSignature)?;
        let mut seen = seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !seen.insert(key) {
            return Err(WireError::Replayed(msg.header.msg_id));
        }
    }
    Ok(msg)
}

/// The signatures of the last [`Replays::CAPACITY`] signed messages accepted.
#[derive(Debug, Default)]
pub struct Replays {
    set: HashSet<[u8; 32]>,
    order: VecDeque<[u8; 32]>,
}

impl Replays {
    /// How many signatures are remembered (jupyter_client keeps 2^16 too).
    pub const CAPACITY: usize = 1 << 16;

    /// Remembers `signature`; false if it was already there.
    pub fn insert(&mut self, signature: [u8; 32]) -> bool {
        if self.set.contains(&signature) {
            return false;
        }
        if self.order.len() == Self::CAPACITY
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        self.set.insert(signature);
        self.order.push_back(signature);
        true
    }
}

fn decode_signed(frames: Vec<Bytes>, signer: &Signer) -> Result<(Message, Bytes), WireError> {
    let total = frames.len();
    let at = frames.iter().position(|f| f.as_ref() == DELIMITER).ok_or(WireError::MissingDelimiter(total))?;
    let mut frames = frames;
    let rest = frames.split_off(at + 1);
    frames.pop(); // the delimiter
    let identities = frames;
    if rest.len() < 5 {
        return Err(WireError::Truncated(rest.len()));
    }
    let mut rest = rest.into_iter();
    let (Some(signature), Some(header), Some(parent), Some(metadata), Some(content)) =
        (rest.next(), rest.next(), rest.next(), rest.next(), rest.next())
    else {
        return Err(WireError::Truncated(0));
    };
    signer.verify(&signature, &[&header, &parent, &metadata, &content])?;

    let header: Header = serde_json::from_value(Value::Object(parse_object("header", &header)?)).map_err(WireError::Header)?;
    let parent_header = parse_object("parent_header", &parent)?;
    let metadata = parse_object("metadata", &metadata)?;
    let content = Value::Object(parse_object("content", &content)?);
    Ok((Message { identities, header, parent_header, metadata, content, buffers: rest.collect() }, signature))
}

/// Message → frames, signed.
pub fn encode(msg: &Message, signer: &Signer) -> Vec<Bytes> {
    let header = json_bytes(&msg.header);
    let parent = json_bytes(&msg.parent_header);
    let metadata = json_bytes(&msg.metadata);
    let content = json_bytes(&msg.content);
    let signature = signer.sign(&[&header, &parent, &metadata, &content]);
    let mut frames = Vec::with_capacity(msg.identities.len() + 6 + msg.buffers.len());
    frames.extend(msg.identities.iter().cloned());
    frames.push(Bytes::from_static(DELIMITER));
    frames.push(Bytes::from(signature));
    frames.extend([header, parent, metadata, content]);
    frames.extend(msg.buffers.iter().cloned());
    frames
}

/// A message part as JSON. Serializing these types cannot fail (string keys,
/// no custom serializers); `{}` stands in should it ever.
fn json_bytes<T: serde::Serialize>(part: &T) -> Bytes {
    Bytes::from(serde_json::to_vec(part).unwrap_or_else(|_| b"{}".to_vec()))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::kernel::message::KernelSession;

    fn sample(signer: &Signer) -> Vec<Bytes> {
        let mut msg = KernelSession::new().message("execute_request", json!({"code": "%help"}));
        msg.identities = vec![Bytes::from_static(b"id-a"), Bytes::from_static(b"id-b")];
        msg.buffers = vec![Bytes::from_static(b"\x00\x01")];
        encode(&msg, signer)
    }

    #[test]
    fn a_signed_message_round_trips_with_identities_and_buffers() {
        let signer = Signer::new(b"secret-key");
        let frames = sample(&signer);
        assert_eq!(frames[2].as_ref(), DELIMITER);
        assert_eq!(frames[3].len(), 64, "hex sha256");
        let msg = decode(frames, &signer).unwrap();
        assert_eq!(msg.identities, vec![Bytes::from_static(b"id-a"), Bytes::from_static(b"id-b")]);
        assert_eq!(msg.msg_type(), "execute_request");
        assert_eq!(msg.content["code"], "%help");
        assert_eq!(msg.buffers, vec![Bytes::from_static(b"\x00\x01")]);
    }

    #[test]
    fn the_signature_is_hmac_sha256_over_the_four_json_frames_in_hex() {
        // Reference value computed with Python: hmac.new(b"key", b"{}" * 3 + b'{"a":1}', hashlib.sha256).hexdigest()
        let signer = Signer::new(b"key");
        let sig = signer.sign(&[b"{}", b"{}", b"{}", br#"{"a":1}"#]);
        let mut mac = HmacSha256::new_from_slice(b"key").unwrap();
        mac.update(br#"{}{}{}{"a":1}"#);
        assert_eq!(sig, hex::encode(mac.finalize().into_bytes()));
        assert!(signer.verify(sig.as_bytes(), &[b"{}", b"{}", b"{}", br#"{"a":1}"#]).is_ok());
        assert!(signer.verify(sig.to_uppercase().as_bytes(), &[b"{}", b"{}", b"{}", br#"{"a":1}"#]).is_ok(), "hex is case-insensitive");
    }

    #[test]
    fn a_wrong_or_missing_or_malformed_signature_is_refused() {
        let signer = Signer::new(b"secret-key");
        let mut frames = sample(&signer);
        let mut bad = frames[3].to_vec();
        bad[0] = if bad[0] == b'0' { b'1' } else { b'0' };
        frames[3] = Bytes::from(bad);
        assert!(matches!(decode(frames.clone(), &signer), Err(WireError::BadSignature)));
        frames[3] = Bytes::new();
        assert!(matches!(decode(frames.clone(), &signer), Err(WireError::MissingSignature)));
        frames[3] = Bytes::from_static(b"not hex at all");
        assert!(matches!(decode(frames.clone(), &signer), Err(WireError::BadSignature)));
        frames[3] = Bytes::from_static(b"abcd");
        assert!(matches!(decode(frames, &signer), Err(WireError::BadSignature)), "a truncated signature");
    }

    #[test]
    fn a_message_signed_with_another_key_is_refused() {
        let frames = sample(&Signer::new(b"other-key"));
        assert!(matches!(decode(frames, &Signer::new(b"secret-key")), Err(WireError::BadSignature)));
    }

    #[test]
    fn tampering_with_any_json_frame_breaks_the_signature() {
        let signer = Signer::new(b"k");
        for i in 4..8 {
            let mut frames = sample(&signer);
            let mut part = frames[i].to_vec();
            part.insert(1, b' ');
            frames[i] = Bytes::from(part);
            assert!(matches!(decode(frames, &signer), Err(WireError::BadSignature)), "frame {i}");
        }
    }

    #[test]
    fn an_empty_key_sends_an_empty_signature_and_accepts_any() {
        let signer = Signer::new(b"");
        assert!(!signer.is_signed());
        let mut frames = sample(&signer);
        assert!(frames[3].is_empty());
        frames[3] = Bytes::from_static(b"whatever");
        assert!(decode(frames, &signer).is_ok());
    }

    #[test]
    fn frames_without_a_delimiter_or_with_too_few_parts_are_refused() {
        let signer = Signer::new(b"");
        assert!(matches!(decode(vec![], &signer), Err(WireError::MissingDelimiter(0))));
        assert!(matches!(decode(vec![Bytes::from_static(b"{}"); 6], &signer), Err(WireError::MissingDelimiter(6))));
        let mut frames = sample(&signer);
        frames.truncate(6);
        assert!(matches!(decode(frames, &signer), Err(WireError::Truncated(3))));
        assert!(matches!(decode(vec![Bytes::from_static(DELIMITER)], &signer), Err(WireError::Truncated(0))));
    }

    #[test]
    fn bad_json_and_wrong_types_are_refused_with_the_frame_named() {
        let signer = Signer::new(b"");
        let frame = |h: &'static [u8], c: &'static [u8]| {
            vec![Bytes::from_static(DELIMITER), Bytes::new(), Bytes::from_static(h), Bytes::from_static(b"{}"), Bytes::from_static(b"{}"), Bytes::from_static(c)]
        };
        let hdr: &[u8] = br#"{"msg_id":"1","msg_type":"kernel_info_request"}"#;
        assert!(decode(frame(hdr, b"{}"), &signer).is_ok());
        assert!(matches!(decode(frame(b"{not json", b"{}"), &signer), Err(WireError::Json { frame: "header", .. })));
        assert!(matches!(decode(frame(hdr, b"[1,2]"), &signer), Err(WireError::NotAnObject("content"))));
        assert!(matches!(decode(frame(hdr, b"\xff\xfe"), &signer), Err(WireError::Json { frame: "content", .. })));
        assert!(matches!(decode(frame(br#"{"msg_id":1,"msg_type":"x"}"#, b"{}"), &signer), Err(WireError::Header(_))));
        assert!(matches!(decode(frame(br#"{"msg_id":"1"}"#, b"{}"), &signer), Err(WireError::Header(_))));
        let deep = Bytes::from(format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)));
        let mut f = frame(hdr, b"{}");
        f[5] = deep;
        assert!(matches!(decode(f, &signer), Err(WireError::Json { frame: "content", .. })), "deep nesting is an error, not a stack overflow");
    }

    #[test]
    fn a_signed_message_is_accepted_once_whatever_the_case_of_its_signature() {
        let signer = Signer::new(b"secret-key");
        let seen = std::sync::Mutex::new(Replays::default());
        let frames = sample(&signer);
        assert!(decode_once(frames.clone(), &signer, &seen).is_ok());
        assert!(matches!(decode_once(frames.clone(), &signer, &seen), Err(WireError::Replayed(_))));
        let mut upper = frames;
        upper[3] = Bytes::from(upper[3].to_ascii_uppercase());
        assert!(matches!(decode_once(upper, &signer, &seen), Err(WireError::Replayed(_))));
        assert!(decode_once(sample(&signer), &signer, &seen).is_ok(), "another message (new msg_id) passes");
    }

    #[test]
    fn unsigned_connections_keep_no_replay_memory() {
        let signer = Signer::new(b"");
        let seen = std::sync::Mutex::new(Replays::default());
        let frames = sample(&signer);
        assert!(decode_once(frames.clone(), &signer, &seen).is_ok());
        assert!(decode_once(frames, &signer, &seen).is_ok());
    }

    #[test]
    fn the_replay_memory_is_bounded_and_forgets_the_oldest() {
        let mut r = Replays::default();
        let sig = |i: usize| {
            let mut s = [0u8; 32];
            s[..8].copy_from_slice(&(i as u64).to_be_bytes());
            s
        };
        for i in 0..Replays::CAPACITY + 10 {
            assert!(r.insert(sig(i)));
        }
        assert_eq!(r.set.len(), Replays::CAPACITY);
        assert!(r.insert(sig(0)), "the oldest was forgotten");
        assert!(!r.insert(sig(Replays::CAPACITY + 9)), "the newest is remembered");
    }

    #[test]
    fn numbers_survive_decoding_and_encoding_unchanged() {
        // Found by fuzzing: without exact float parsing 5.9e44 came back as
        // 5.9000000000000004e44, so a reply's parent header differed from
        // the request's header.
        let signer = Signer::new(b"k");
        let header: &[u8] = br#"{"msg_id":"1","msg_type":"kernel_info_request","x":5.9e+44,"y":0.1,"z":1e-300}"#;
        let parts: [&[u8]; 4] = [header, b"{}", b"{}", br#"{"n":123456789.123456789}"#];
        let mut frames = vec![Bytes::from_static(DELIMITER), Bytes::from(signer.sign(&parts))];
        frames.extend(parts.iter().map(|p| Bytes::copy_from_slice(p)));
        let once = decode(frames, &signer).unwrap();
        let twice = decode(encode(&once, &signer), &signer).unwrap();
        assert_eq!(once.header, twice.header);
        assert_eq!(once.content, twice.content);
        assert_eq!(once.header.extra["x"].as_f64(), Some(5.9e44));
    }

    #[test]
    fn the_first_delimiter_ends_the_identities() {
        let signer = Signer::new(b"");
        let mut frames = sample(&signer);
        frames.insert(0, Bytes::from_static(b"x"));
        let msg = decode(frames, &signer).unwrap();
        assert_eq!(msg.identities.len(), 3);
    }
}
