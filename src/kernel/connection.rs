//! Plumbing between the ZeroMQ sockets and the kernel core: the connection
//! file, socket binding, and one task per socket direction.
//!
//! Readers decode and verify frames and hand [`Message`]s to the core over
//! channels; writers sign and send what the core produces. Nothing here knows
//! what a message means. A message that fails to decode or verify is logged
//! and dropped; a send to a client that went away is logged and forgotten.
//! Clients reach the sockets through [`guard`], which refuses frames that
//! claim absurd sizes before the ZeroMQ library allocates for them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::mpsc;
use zeromq::{PubSocket, RepSocket, RouterSocket, Socket, SocketRecv, SocketSend, ZmqMessage};

use super::guard;
use super::message::Message;
use super::wire::{self, Signer};

/// A send that cannot get through this long (a client that stopped reading)
/// is dropped rather than holding up the kernel.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Channel capacities. The iopub one is small on purpose: when the socket
/// falls behind, output waits in the cell's channel and is coalesced.
const INBOUND_CAPACITY: usize = 1024;
const OUTBOUND_CAPACITY: usize = 64;

/// The connection file a Jupyter client writes.
#[derive(Debug, Clone, Deserialize)]
pub struct ConnectionInfo {
    #[serde(default = "default_ip")]
    pub ip: String,
    #[serde(default = "default_transport")]
    pub transport: String,
    pub shell_port: u16,
    pub iopub_port: u16,
    pub stdin_port: u16,
    pub control_port: u16,
    pub hb_port: u16,
    #[serde(default)]
    pub key: String,
    #[serde(default = "default_scheme")]
    pub signature_scheme: String,
    #[serde(default)]
    pub kernel_name: String,
}

fn default_ip() -> String {
    "127.0.0.1".into()
}
fn default_transport() -> String {
    "tcp".into()
}
fn default_scheme() -> String {
    "hmac-sha256".into()
}

/// Why the kernel could not start.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error("cannot read the connection file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the connection file {path} is not valid: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "unsupported signature_scheme {0:?} in the connection file: ciao signs messages with hmac-sha256 only; \
         start the kernel with signature_scheme \"hmac-sha256\" (jupyter_client's default)"
    )]
    Scheme(String),
    #[error("unsupported transport {0:?} in the connection file: use \"tcp\" or \"ipc\"")]
    Transport(String),
    #[error("cannot listen on {endpoint} for the {channel} channel: {source}; is another kernel using the port?")]
    Listen {
        channel: &'static str,
        endpoint: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot create a private directory for the kernel's sockets: {0}; check TMPDIR or XDG_RUNTIME_DIR")]
    Private(#[source] std::io::Error),
    #[error("cannot bind the {channel} socket to {endpoint}: {source}")]
    Bind {
        channel: &'static str,
        endpoint: String,
        #[source]
        source: zeromq::ZmqError,
    },
}

impl ConnectionInfo {
    /// Reads and validates a connection file.
    ///
    /// # Errors
    /// An unreadable or invalid file, a signature scheme other than
    /// hmac-sha256, or a transport other than tcp/ipc.
    pub fn from_file(path: &Path) -> Result<ConnectionInfo, ConnectionError> {
        let text = std::fs::read(path).map_err(|source| ConnectionError::Read { path: path.into(), source })?;
        let info: ConnectionInfo =
            serde_json::from_slice(&text).map_err(|source| ConnectionError::Parse { path: path.into(), source })?;
        info.validate()?;
        Ok(info)
    }

    fn validate(&self) -> Result<(), ConnectionError> {
        if self.signature_scheme != "hmac-sha256" {
            return Err(ConnectionError::Scheme(self.signature_scheme.clone()));
        }
        if self.transport != "tcp" && self.transport != "ipc" {
            return Err(ConnectionError::Transport(self.transport.clone()));
        }
        Ok(())
    }

    /// The endpoint of `port`: `tcp://IP:PORT`, or `ipc://IP-PORT` as jupyter_client names IPC sockets.
    pub fn endpoint(&self, port: u16) -> String {
        match self.transport.as_str() {
            "ipc" => format!("ipc://{}-{port}", self.ip),
            _ => {
                match self.ip.as_str() {
                    "*" => format!("tcp://0.0.0.0:{port}"),
                    ip if ip.contains(':') && !ip.starts_with('[') => format!("tcp://[{ip}]:{port}"),
                    ip => format!("tcp://{ip}:{port}"),
                }
            }
        }
    }

    /// The signer for this connection's key.
    pub fn signer(&self) -> Signer {
        Signer::new(self.key.as_bytes())
    }
}

/// Which ROUTER channel a request came in on (and its reply goes out on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Shell,
    Control,
}

/// What the core reads: verified requests, per channel.
pub struct Inbound {
    pub shell: mpsc::Receiver<Message>,
    pub control: mpsc::Receiver<Message>,
}

/// What the core writes to: one queue per outgoing socket.
#[derive(Clone)]
pub struct Outbound {
    pub shell: mpsc::Sender<Message>,
    pub control: mpsc::Sender<Message>,
    pub iopub: mpsc::Sender<Message>,
}

impl Outbound {
    /// Sends a reply on `channel`; a closed queue (shutting down) is ignored.
    pub async fn reply(&self, channel: Channel, msg: Message) {
        let queue = match channel {
            Channel::Shell => &self.shell,
            Channel::Control => &self.control,
        };
        let _ = queue.send(msg).await;
    }

    /// Publishes on iopub; a closed queue (shutting down) is ignored.
    pub async fn publish(&self, msg: Message) {
        let _ = self.iopub.send(msg).await;
    }
}

/// The receiving ends of [`Outbound`], as a test or a transport drains them.
pub struct OutboundQueues {
    pub shell: mpsc::Receiver<Message>,
    pub control: mpsc::Receiver<Message>,
    pub iopub: mpsc::Receiver<Message>,
}

/// In-memory queues connecting a core to a transport (or to a test).
pub fn queues() -> (mpsc::Sender<Message>, mpsc::Sender<Message>, Inbound, Outbound, OutboundQueues) {
    let (shell_in_tx, shell_in) = mpsc::channel(INBOUND_CAPACITY);
    let (control_in_tx, control_in) = mpsc::channel(INBOUND_CAPACITY);
    let (shell_tx, shell_rx) = mpsc::channel(OUTBOUND_CAPACITY);
    let (control_tx, control_rx) = mpsc::channel(OUTBOUND_CAPACITY);
    let (iopub_tx, iopub_rx) = mpsc::channel(OUTBOUND_CAPACITY);
    (
        shell_in_tx,
        control_in_tx,
        Inbound { shell: shell_in, control: control_in },
        Outbound { shell: shell_tx, control: control_tx, iopub: iopub_tx },
        OutboundQueues { shell: shell_rx, control: control_rx, iopub: iopub_rx },
    )
}

/// The running transport: its tasks end when the core's queues close.
pub struct Transport {
    writers: Vec<tokio::task::JoinHandle<()>>,
    others: Vec<tokio::task::JoinHandle<()>>,
    /// Public IPC socket files, removed when the kernel stops.
    public_files: Vec<PathBuf>,
    /// Holds the inner sockets; removed on drop.
    _private: guard::PrivateDir,
}

impl Transport {
    /// Waits (up to `within`) until everything the core queued has been handed
    /// to the sockets, then stops the readers and the heartbeat.
    pub async fn finish(self, within: Duration) {
        let writers = futures::future::join_all(self.writers);
        let _ = tokio::time::timeout(within, writers).await;
        for t in self.others {
            t.abort();
        }
        for f in &self.public_files {
            let _ = std::fs::remove_file(f);
        }
    }
}

/// Binds the five sockets and starts the tasks that move messages between
/// them and the core. Each public endpoint is a [`guard`] listener relaying
/// to the ZeroMQ socket on a private Unix socket.
///
/// # Errors
/// A socket that cannot be bound (port in use, bad address).
pub async fn start(info: &ConnectionInfo) -> Result<(Inbound, Outbound, Transport), ConnectionError> {
    let private = guard::PrivateDir::create().map_err(ConnectionError::Private)?;
    let mut guards = Vec::new();
    let mut public_files = Vec::new();
    let shell = bind(RouterSocket::new(), "shell", info, info.shell_port, &private, &mut guards, &mut public_files).await?;
    let control = bind(RouterSocket::new(), "control", info, info.control_port, &private, &mut guards, &mut public_files).await?;
    let stdin = bind(RouterSocket::new(), "stdin", info, info.stdin_port, &private, &mut guards, &mut public_files).await?;
    let iopub = bind(PubSocket::new(), "iopub", info, info.iopub_port, &private, &mut guards, &mut public_files).await?;
    let hb = bind(RepSocket::new(), "heartbeat", info, info.hb_port, &private, &mut guards, &mut public_files).await?;

    let signer = info.signer();
    // One memory of accepted signatures for both request channels.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(wire::Replays::default()));
    let (shell_in, control_in, inbound, outbound, queues) = queues();
    let (shell_send, shell_recv) = shell.split();
    let (control_send, control_recv) = control.split();
    let writers = vec![
        tokio::spawn(router_writer("shell", shell_send, signer.clone(), queues.shell)),
        tokio::spawn(router_writer("control", control_send, signer.clone(), queues.control)),
        tokio::spawn(iopub_writer(iopub, signer.clone(), queues.iopub)),
    ];
    let mut others = vec![
        tokio::spawn(router_reader("shell", shell_recv, signer.clone(), seen.clone(), shell_in)),
        tokio::spawn(router_reader("control", control_recv, signer.clone(), seen, control_in)),
        tokio::spawn(stdin_reader(stdin)),
        tokio::spawn(heartbeat(hb)),
    ];
    others.extend(guards);
    Ok((inbound, outbound, Transport { writers, others, public_files, _private: private }))
}

/// Binds `socket` behind a guarded public listener for `port`.
async fn bind<S: Socket>(
    mut socket: S,
    channel: &'static str,
    info: &ConnectionInfo,
    port: u16,
    private: &guard::PrivateDir,
    guards: &mut Vec<tokio::task::JoinHandle<()>>,
    public_files: &mut Vec<PathBuf>,
) -> Result<S, ConnectionError> {
    let endpoint = info.endpoint(port);
    let public = guard::Public::bind(&endpoint)
        .await
        .map_err(|source| ConnectionError::Listen { channel, endpoint: endpoint.clone(), source })?;
    if let Some(path) = endpoint.strip_prefix("ipc://") {
        public_files.push(PathBuf::from(path));
    }
    let inner = private.path().join(channel);
    let inner_endpoint = format!("ipc://{}", inner.display());
    socket
        .bind(&inner_endpoint)
        .await
        .map_err(|source| ConnectionError::Bind { channel, endpoint: inner_endpoint, source })?;
    guards.push(tokio::spawn(guard::serve(channel, public, inner)));
    Ok(socket)
}

/// Socket receive errors that repeat (a socket with no peers) back off briefly.
async fn back_off(channel: &str, e: &zeromq::ZmqError) {
    tracing::debug!("{channel}: receive failed: {e}");
    tokio::time::sleep(Duration::from_millis(10)).await;
}

async fn router_reader(
    channel: &'static str,
    mut socket: impl SocketRecv,
    signer: Signer,
    seen: std::sync::Arc<std::sync::Mutex<wire::Replays>>,
    tx: mpsc::Sender<Message>,
) {
    loop {
        let frames = match socket.recv().await {
            Ok(m) => m.into_vec(),
            Err(e) => {
                back_off(channel, &e).await;
                continue;
            }
        };
        match wire::decode_once(frames, &signer, &seen) {
            Ok(msg) => {
                if tx.send(msg).await.is_err() {
                    return;
                }
            }
            Err(e) => tracing::warn!("{channel}: dropped a message: {e}"),
        }
    }
}

async fn router_writer(channel: &'static str, mut socket: impl SocketSend, signer: Signer, mut rx: mpsc::Receiver<Message>) {
    while let Some(msg) = rx.recv().await {
        let Ok(frames) = ZmqMessage::try_from(wire::encode(&msg, &signer)) else { continue };
        match tokio::time::timeout(SEND_TIMEOUT, socket.send(frames)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("{channel}: could not send {} (the client may have gone away): {e}", msg.msg_type()),
            Err(_) => tracing::warn!("{channel}: dropped {}: the client has not read for {SEND_TIMEOUT:?}", msg.msg_type()),
        }
    }
}

async fn iopub_writer(mut socket: PubSocket, signer: Signer, mut rx: mpsc::Receiver<Message>) {
    while let Some(msg) = rx.recv().await {
        let Ok(frames) = ZmqMessage::try_from(wire::encode(&msg, &signer)) else { continue };
        if let Err(e) = socket.send(frames).await {
            tracing::warn!("iopub: could not publish {}: {e}", msg.msg_type());
        }
    }
}

/// ciao never asks for input; whatever arrives on stdin is read and dropped.
async fn stdin_reader(mut socket: RouterSocket) {
    loop {
        match socket.recv().await {
            Ok(m) => tracing::debug!("stdin: ignored a {}-frame message (ciao does not request input)", m.len()),
            Err(e) => back_off("stdin", &e).await,
        }
    }
}

/// Echoes every heartbeat.
async fn heartbeat(mut socket: RepSocket) {
    loop {
        match socket.recv().await {
            Ok(ping) => {
                if let Err(e) = socket.send(ping).await {
                    tracing::debug!("heartbeat: echo failed: {e}");
                }
            }
            Err(e) => back_off("heartbeat", &e).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(json: &str) -> Result<ConnectionInfo, ConnectionError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kernel.json");
        std::fs::write(&path, json).unwrap();
        ConnectionInfo::from_file(&path)
    }

    const FILE: &str = r#"{"shell_port": 5001, "iopub_port": 5002, "stdin_port": 5003, "control_port": 5004,
        "hb_port": 5005, "ip": "127.0.0.1", "key": "abc", "transport": "tcp",
        "signature_scheme": "hmac-sha256", "kernel_name": "ciao"}"#;

    #[test]
    fn a_jupyter_client_connection_file_is_read() {
        let i = info(FILE).unwrap();
        assert_eq!(i.endpoint(i.shell_port), "tcp://127.0.0.1:5001");
        assert!(i.signer().is_signed());
        let v6 = info(&FILE.replace("127.0.0.1", "::1")).unwrap();
        assert_eq!(v6.endpoint(v6.shell_port), "tcp://[::1]:5001");
    }

    #[test]
    fn ipc_endpoints_are_named_like_jupyter_client_names_them() {
        let i = info(&FILE.replace("\"tcp\"", "\"ipc\"").replace("127.0.0.1", "/tmp/kernel-x")).unwrap();
        assert_eq!(i.endpoint(i.hb_port), "ipc:///tmp/kernel-x-5005");
    }

    #[test]
    fn a_signature_scheme_other_than_hmac_sha256_is_refused_with_the_fix() {
        let err = info(&FILE.replace("hmac-sha256", "hmac-md5")).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("hmac-md5") && text.contains("hmac-sha256"), "{text}");
    }

    #[test]
    fn a_missing_or_broken_file_names_the_file() {
        let err = ConnectionInfo::from_file(Path::new("/nonexistent/kernel-1.json")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/kernel-1.json"));
        let err = info("{\"shell_port\": \"x\"}").unwrap_err();
        assert!(matches!(err, ConnectionError::Parse { .. }), "{err}");
        let err = info(&FILE.replace("\"tcp\"", "\"udp\"")).unwrap_err();
        assert!(matches!(err, ConnectionError::Transport(_)), "{err}");
    }

    #[test]
    fn an_empty_key_means_unsigned() {
        let i = info(&FILE.replace("\"abc\"", "\"\"")).unwrap();
        assert!(!i.signer().is_signed());
    }
}
