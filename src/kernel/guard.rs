//! The sockets' front door: refuses ZeroMQ frames that claim absurd sizes.
//!
//! The ZeroMQ library reserves a frame's buffer as soon as it reads the
//! frame's length, before any message signature can be checked. A single
//! frame header claiming, say, 2^61 bytes makes that allocation fail, and a
//! failed allocation aborts the process: anyone able to reach a kernel port
//! could end the kernel with nine bytes.
//!
//! So the kernel's public endpoints are plain listeners owned here. Each
//! accepted connection is relayed to the real ZeroMQ socket, which listens on
//! a Unix socket inside a private (0700) directory, and the bytes from the
//! client are scanned on the way: the 64-byte ZMTP 3 greeting, then frame
//! headers (flags, 1- or 8-byte length) and bodies. A connection announcing
//! a frame above [`MAX_FRAME`] is closed and logged; everything else passes
//! unchanged. Replies flow back untouched.

use std::path::{Path, PathBuf};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener, UnixStream};

/// The largest frame a client may send (far above any real Jupyter message).
pub const MAX_FRAME: u64 = 256 * 1024 * 1024;

const GREETING_LEN: u64 = 64;

/// Why a client's bytes were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a frame of {0} bytes announced; the limit is {MAX_FRAME}")]
pub struct Oversized(pub u64);

/// Follows the ZMTP 3 framing of one direction of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameScanner {
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Greeting { left: u64 },
    Flags,
    ShortLength,
    LongLength { bytes: [u8; 8], have: usize },
    Body { left: u64 },
}

impl Default for FrameScanner {
    fn default() -> Self {
        FrameScanner { state: State::Greeting { left: GREETING_LEN } }
    }
}

impl FrameScanner {
    /// Scans the next bytes of the stream.
    ///
    /// # Errors
    /// A frame header announcing more than [`MAX_FRAME`] bytes.
    pub fn scan(&mut self, mut data: &[u8]) -> Result<(), Oversized> {
        while !data.is_empty() {
            match &mut self.state {
                State::Greeting { left } | State::Body { left } => {
                    let take = usize::try_from(*left).unwrap_or(usize::MAX).min(data.len());
                    *left -= take as u64;
                    data = &data[take..];
                    if *left == 0 {
                        self.state = State::Flags;
                    }
                }
                State::Flags => {
                    let long = data[0] & 0b10 != 0;
                    data = &data[1..];
                    self.state = if long { State::LongLength { bytes: [0; 8], have: 0 } } else { State::ShortLength };
                }
                State::ShortLength => {
                    let len = u64::from(data[0]);
                    data = &data[1..];
                    self.state = if len == 0 { State::Flags } else { State::Body { left: len } };
                }
                State::LongLength { bytes, have } => {
                    let take = (8 - *have).min(data.len());
                    bytes[*have..*have + take].copy_from_slice(&data[..take]);
                    *have += take;
                    data = &data[take..];
                    if *have == 8 {
                        let len = u64::from_be_bytes(*bytes);
                        if len > MAX_FRAME {
                            return Err(Oversized(len));
                        }
                        self.state = if len == 0 { State::Flags } else { State::Body { left: len } };
                    }
                }
            }
        }
        Ok(())
    }
}

/// A private directory for the inner Unix sockets, removed on drop.
#[derive(Debug)]
pub struct PrivateDir {
    path: PathBuf,
}

impl PrivateDir {
    /// Creates `ciao-<random>` (mode 0700) under `$XDG_RUNTIME_DIR` or the temp dir.
    ///
    /// # Errors
    /// The directory cannot be created.
    pub fn create() -> std::io::Result<PrivateDir> {
        use std::os::unix::fs::DirBuilderExt;
        let base = std::env::var_os("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .filter(|p| p.is_dir())
            .unwrap_or_else(std::env::temp_dir);
        let path = base.join(format!("ciao-{}", uuid::Uuid::new_v4().simple()));
        std::fs::DirBuilder::new().mode(0o700).create(&path)?;
        Ok(PrivateDir { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A public listener, as the connection file names it.
pub enum Public {
    Tcp(TcpListener),
    Ipc(UnixListener),
}

impl Public {
    /// Binds `endpoint` (`tcp://HOST:PORT` or `ipc://PATH`).
    ///
    /// # Errors
    /// The address is invalid or in use.
    pub async fn bind(endpoint: &str) -> std::io::Result<Public> {
        if let Some(addr) = endpoint.strip_prefix("tcp://") {
            Ok(Public::Tcp(TcpListener::bind(addr).await?))
        } else if let Some(path) = endpoint.strip_prefix("ipc://") {
            Ok(Public::Ipc(UnixListener::bind(path)?))
        } else {
            Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("unsupported endpoint {endpoint}")))
        }
    }
}

/// Accepts connections on `public` forever, relaying each to the Unix socket `inner`.
pub async fn serve(channel: &'static str, public: Public, inner: PathBuf) {
    loop {
        let accepted = match &public {
            Public::Tcp(l) => l.accept().await.map(|(s, _)| Client::Tcp(s)),
            Public::Ipc(l) => l.accept().await.map(|(s, _)| Client::Ipc(s)),
        };
        match accepted {
            Ok(client) => {
                let inner = inner.clone();
                tokio::spawn(async move {
                    match client {
                        Client::Tcp(s) => relay(channel, s, &inner).await,
                        Client::Ipc(s) => relay(channel, s, &inner).await,
                    }
                });
            }
            Err(e) => {
                tracing::warn!("{channel}: accepting a connection failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}

enum Client {
    Tcp(tokio::net::TcpStream),
    Ipc(UnixStream),
}

async fn relay<S: AsyncRead + AsyncWrite + Unpin>(channel: &'static str, client: S, inner: &Path) {
    let upstream = match UnixStream::connect(inner).await {
        Ok(u) => u,
        Err(e) => {
            tracing::warn!("{channel}: cannot reach the socket behind the listener: {e}");
            return;
        }
    };
    let (mut client_read, mut client_write) = tokio::io::split(client);
    let (mut up_read, mut up_write) = upstream.into_split();
    let inbound = async {
        let mut scanner = FrameScanner::default();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match client_read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if let Err(e) = scanner.scan(&buf[..n]) {
                tracing::warn!("{channel}: closed a connection: {e}");
                return;
            }
            if up_write.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    let outbound = async {
        let _ = tokio::io::copy(&mut up_read, &mut client_write).await;
    };
    // Either side ending ends the relay; dropping both halves closes both connections.
    tokio::select! {
        () = inbound => {}
        () = outbound => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn greeting() -> Vec<u8> {
        let mut g = vec![0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0x7f, 3, 1];
        g.extend_from_slice(b"NULL");
        g.resize(64, 0);
        g
    }

    fn frame(flags: u8, body: &[u8]) -> Vec<u8> {
        let mut f = Vec::new();
        if body.len() > 255 {
            f.push(flags | 0b10);
            f.extend_from_slice(&(body.len() as u64).to_be_bytes());
        } else {
            f.push(flags);
            f.push(body.len() as u8);
        }
        f.extend_from_slice(body);
        f
    }

    fn scan_in_pieces(bytes: &[u8], piece: usize) -> Result<(), Oversized> {
        let mut s = FrameScanner::default();
        for chunk in bytes.chunks(piece) {
            s.scan(chunk)?;
        }
        Ok(())
    }

    #[test]
    fn ordinary_traffic_passes_however_it_is_split() {
        let mut stream = greeting();
        stream.extend(frame(0b100, b"\x05READY\x0bSocket-Type\x00\x00\x00\x06DEALER"));
        stream.extend(frame(1, b""));
        stream.extend(frame(1, b"<IDS|MSG>"));
        stream.extend(frame(0, &vec![b'x'; 70_000]));
        for piece in [1, 2, 3, 7, 64, 65, 1000, stream.len()] {
            assert_eq!(scan_in_pieces(&stream, piece), Ok(()), "pieces of {piece}");
        }
    }

    #[test]
    fn a_frame_announcing_more_than_the_limit_is_refused_before_its_body() {
        let mut stream = greeting();
        stream.push(0b10);
        stream.extend_from_slice(&(1u64 << 61).to_be_bytes());
        for piece in [1, 3, 64, stream.len()] {
            assert_eq!(scan_in_pieces(&stream, piece), Err(Oversized(1 << 61)), "pieces of {piece}");
        }
        let mut at_limit = greeting();
        at_limit.push(0b10);
        at_limit.extend_from_slice(&MAX_FRAME.to_be_bytes());
        assert_eq!(scan_in_pieces(&at_limit, 5), Ok(()));
    }

    #[test]
    fn the_private_directory_is_owner_only_and_removed_on_drop() {
        use std::os::unix::fs::PermissionsExt;
        let dir = PrivateDir::create().unwrap();
        let path = dir.path().to_path_buf();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o700);
        drop(dir);
        assert!(!path.exists());
    }

    #[tokio::test]
    async fn the_relay_forwards_both_ways_and_cuts_an_oversized_claim() {
        let dir = PrivateDir::create().unwrap();
        let inner = dir.path().join("inner");
        let backend = UnixListener::bind(&inner).unwrap();
        let public = Public::bind("tcp://127.0.0.1:0").await.unwrap();
        let Public::Tcp(l) = &public else { unreachable!() };
        let addr = l.local_addr().unwrap();
        tokio::spawn(serve("test", public, inner));

        // An echo behind the relay.
        tokio::spawn(async move {
            loop {
                let (mut s, _) = backend.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });

        let mut ok = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut sent = greeting();
        sent.extend(frame(0, b"hello"));
        ok.write_all(&sent).await.unwrap();
        let mut back = vec![0u8; sent.len()];
        ok.read_exact(&mut back).await.unwrap();
        assert_eq!(back, sent);

        let mut bad = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut evil = greeting();
        evil.push(0b10);
        evil.extend_from_slice(&(1u64 << 61).to_be_bytes());
        bad.write_all(&evil).await.unwrap();
        let mut sink = Vec::new();
        let closed = tokio::time::timeout(std::time::Duration::from_secs(5), bad.read_to_end(&mut sink)).await;
        assert!(closed.is_ok(), "the connection is closed");
        assert!(sink.len() <= 64, "at most the greeting was echoed before the cut");
    }
}
