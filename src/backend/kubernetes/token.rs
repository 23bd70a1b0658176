//! A bearer token read from a file (a mounted service-account token, a
//! kubeconfig `tokenFile`) and re-read whenever the file changes, so a
//! rotated token is used from the next request on. The token never leaves
//! the `Authorization` header, which is marked sensitive.

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::SystemTime;

use http::HeaderValue;

/// What identifies one version of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    inode: u64,
    len: u64,
    modified: Option<SystemTime>,
}

struct Cached {
    stamp: Stamp,
    header: HeaderValue,
}

/// The token file and the header made from its current content.
pub struct TokenFile {
    path: PathBuf,
    cached: Mutex<Option<Cached>>,
}

impl std::fmt::Debug for TokenFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenFile").field("path", &self.path).finish_non_exhaustive()
    }
}

impl TokenFile {
    /// Reads the token now.
    ///
    /// # Errors
    /// The file cannot be read or holds no token.
    pub fn open(path: &Path) -> Result<TokenFile, String> {
        let file = TokenFile { path: path.to_path_buf(), cached: Mutex::new(None) };
        match file.header() {
            Some(_) => Ok(file),
            None => {
                let why = match std::fs::read_to_string(path) {
                    Ok(_) => "it is empty".to_string(),
                    Err(e) => e.to_string(),
                };
                Err(format!("cannot read the token file {}: {why}", path.display()))
            }
        }
    }

    /// The `Authorization` header for the file's current token. When the
    /// file cannot be read (e.g. while it is being replaced), the last
    /// token read is used, as client-go does.
    pub fn header(&self) -> Option<HeaderValue> {
        let mut cached = self.cached.lock().expect("token lock");
        if let Ok(meta) = std::fs::metadata(&self.path) {
            let stamp = Stamp { inode: meta.ino(), len: meta.len(), modified: meta.modified().ok() };
            if cached.as_ref().is_none_or(|c| c.stamp != stamp)
                && let Ok(text) = std::fs::read_to_string(&self.path)
                && !text.trim().is_empty()
                && let Ok(mut header) = HeaderValue::from_str(&format!("Bearer {}", text.trim()))
            {
                header.set_sensitive(true);
                *cached = Some(Cached { stamp, header });
            }
        }
        cached.as_ref().map(|c| c.header.clone())
    }
}

/// Adds the file's token to every request.
#[derive(Clone, Debug)]
pub struct TokenFileLayer {
    file: Arc<TokenFile>,
}

impl TokenFileLayer {
    pub fn new(file: TokenFile) -> Self {
        TokenFileLayer { file: Arc::new(file) }
    }
}

impl<S> tower::Layer<S> for TokenFileLayer {
    type Service = TokenFileService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TokenFileService { inner, file: self.file.clone() }
    }
}

/// The service [`TokenFileLayer`] makes.
#[derive(Clone, Debug)]
pub struct TokenFileService<S> {
    inner: S,
    file: Arc<TokenFile>,
}

impl<S, B> tower::Service<http::Request<B>> for TokenFileService<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        if let Some(header) = self.file.header() {
            req.headers_mut().insert(http::header::AUTHORIZATION, header);
        }
        self.inner.call(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_file_is_read_again_and_a_vanished_one_keeps_the_last_token() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "first\n").unwrap();
        let file = TokenFile::open(&path).unwrap();
        assert_eq!(file.header().unwrap(), "Bearer first");
        assert!(file.header().unwrap().is_sensitive());
        // Replaced the way kubelet does it: a new file renamed over the old one.
        let next = dir.path().join("token.new");
        std::fs::write(&next, "second").unwrap();
        std::fs::rename(&next, &path).unwrap();
        assert_eq!(file.header().unwrap(), "Bearer second");
        std::fs::remove_file(&path).unwrap();
        assert_eq!(file.header().unwrap(), "Bearer second");
    }

    #[test]
    fn a_missing_or_empty_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let e = TokenFile::open(&dir.path().join("nope")).unwrap_err();
        assert!(e.contains("nope"), "{e}");
        std::fs::write(dir.path().join("empty"), "  \n").unwrap();
        let e = TokenFile::open(&dir.path().join("empty")).unwrap_err();
        assert!(e.contains("empty"), "{e}");
    }

    #[test]
    fn debug_output_has_no_token() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "s3cr3t-canary").unwrap();
        let file = TokenFile::open(&path).unwrap();
        let layer = TokenFileLayer::new(file);
        assert!(!format!("{layer:?}").contains("s3cr3t-canary"));
    }
}
