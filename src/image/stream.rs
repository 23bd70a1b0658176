//! Blob streams: checked against their digest, counted for progress, and
//! regrouped into chunks for chunked uploads. Memory stays bounded by one
//! chunk whatever the blob's size.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use sha2::{Digest as _, Sha256};

use super::manifest::Descriptor;
use super::progress::Counters;

/// Bytes of a blob copy so far, reported to whoever follows the copy.
pub type BytesFn = Arc<dyn Fn(u64) + Send + Sync>;

/// Counts the bytes that pass, into the counters and (every 4 MiB and at
/// the end) through `progress`.
pub(crate) fn counting<S>(stream: S, counters: Arc<Counters>, progress: BytesFn) -> impl Stream<Item = Result<Bytes, io::Error>> + Send + 'static
where
    S: Stream<Item = Result<Bytes, io::Error>> + Send + 'static,
{
    struct State {
        inner: futures::stream::BoxStream<'static, Result<Bytes, io::Error>>,
        counters: Arc<Counters>,
        progress: BytesFn,
        done: u64,
        reported: u64,
        finished: bool,
    }
    let state = State { inner: stream.boxed(), counters, progress, done: 0, reported: 0, finished: false };
    futures::stream::unfold(state, |mut st| async move {
        if st.finished {
            return None;
        }
        match st.inner.next().await {
            Some(Ok(b)) => {
                st.done += b.len() as u64;
                st.counters.sent(b.len() as u64);
                if st.done - st.reported >= 4 << 20 {
                    st.reported = st.done;
                    (st.progress)(st.done);
                }
                Some((Ok(b), st))
            }
            Some(Err(e)) => {
                st.finished = true;
                Some((Err(e), st))
            }
            None => {
                if st.done != st.reported {
                    (st.progress)(st.done);
                }
                None
            }
        }
    })
}

/// Groups a stream's bytes into chunks of exactly `size` (the last may be
/// shorter), so a chunked upload sends few large requests.
pub fn rechunk<S>(stream: S, size: usize) -> impl Stream<Item = Result<Bytes, io::Error>> + Send + 'static
where
    S: Stream<Item = Result<Bytes, io::Error>> + Send + 'static,
{
    futures::stream::unfold((stream.boxed(), BytesMut::new(), false), move |(mut s, mut buf, mut done)| async move {
        loop {
            if buf.len() >= size {
                let out = buf.split_to(size).freeze();
                return Some((Ok(out), (s, buf, done)));
            }
            if done {
                if buf.is_empty() {
                    return None;
                }
                let out = buf.split().freeze();
                return Some((Ok(out), (s, buf, done)));
            }
            match s.next().await {
                Some(Ok(b)) => buf.extend_from_slice(&b),
                Some(Err(e)) => return Some((Err(e), (s, buf, true))),
                None => done = true,
            }
        }
    })
}

/// A blob stream checked against its descriptor: the last item is an error
/// if the size or the sha256 differ.
pub struct VerifiedStream {
    inner: futures::stream::BoxStream<'static, Result<Bytes, io::Error>>,
    hasher: Option<Sha256>,
    expected: String,
    size: u64,
    seen: u64,
}

impl VerifiedStream {
    pub(crate) fn new(inner: futures::stream::BoxStream<'static, Result<Bytes, io::Error>>, d: &Descriptor) -> Self {
        VerifiedStream { inner, hasher: Some(Sha256::new()), expected: d.digest.clone(), size: d.size, seen: 0 }
    }
}

impl VerifiedStream {
    /// The error for content that is not the blob (`None`: it is).
    fn check(&mut self) -> Option<io::Error> {
        let h = self.hasher.take()?;
        let actual = format!("sha256:{}", hex::encode(h.finalize()));
        (actual != self.expected || self.seen != self.size).then(|| {
            io::Error::other(format!(
                "blob content does not match its digest: expected {} ({} bytes), got {actual} ({} bytes)",
                self.expected, self.size, self.seen
            ))
        })
    }
}

impl Stream for VerifiedStream {
    type Item = Result<Bytes, io::Error>;

    /// The last chunk is held back until the digest is checked, so a
    /// receiver never gets the whole of a wrong blob.
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.hasher.is_none() {
            return Poll::Ready(None);
        }
        match this.inner.poll_next_unpin(cx) {
            Poll::Ready(Some(Ok(b))) => {
                this.seen += b.len() as u64;
                if let Some(h) = this.hasher.as_mut() {
                    h.update(&b);
                }
                if this.seen >= this.size {
                    if let Some(e) = this.check() {
                        return Poll::Ready(Some(Err(e)));
                    }
                }
                Poll::Ready(Some(Ok(b)))
            }
            Poll::Ready(None) => Poll::Ready(this.check().map(Err)),
            Poll::Ready(Some(Err(e))) => {
                this.hasher = None;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::TryStreamExt;

    use super::*;

    fn source(parts: &[&'static [u8]]) -> futures::stream::BoxStream<'static, Result<Bytes, io::Error>> {
        futures::stream::iter(parts.iter().map(|p| Ok(Bytes::from_static(p))).collect::<Vec<_>>()).boxed()
    }

    fn descriptor(data: &[u8]) -> Descriptor {
        Descriptor {
            media_type: String::new(),
            digest: super::super::layer::sha256_digest(data),
            size: data.len() as u64,
            urls: None,
            annotations: None,
            platform: None,
        }
    }

    #[tokio::test]
    async fn rechunk_gives_exact_sizes_and_a_short_tail() {
        let chunks: Vec<Bytes> = rechunk(source(&[b"abc", b"defgh", b"ij"]), 4).try_collect().await.unwrap();
        assert_eq!(chunks, [Bytes::from_static(b"abcd"), Bytes::from_static(b"efgh"), Bytes::from_static(b"ij")]);
    }

    #[tokio::test]
    async fn a_verified_stream_passes_the_right_blob() {
        let d = descriptor(b"hello world");
        let got: Vec<Bytes> = VerifiedStream::new(source(&[b"hello ", b"world"]), &d).try_collect().await.unwrap();
        assert_eq!(got.concat(), b"hello world");
    }

    #[tokio::test]
    async fn a_wrong_blob_fails_before_its_last_chunk() {
        let d = descriptor(b"hello world");
        let mut s = VerifiedStream::new(source(&[b"hello ", b"WORLD"]), &d);
        assert_eq!(s.next().await.unwrap().unwrap(), Bytes::from_static(b"hello "));
        let e = s.next().await.unwrap().unwrap_err().to_string();
        assert!(e.contains("does not match") && e.contains(&d.digest), "{e}");
        assert!(s.next().await.is_none());
        let short: Result<Vec<Bytes>, _> = VerifiedStream::new(source(&[b"hello"]), &d).try_collect().await;
        assert!(short.unwrap_err().to_string().contains("5 bytes"));
    }

    #[tokio::test]
    async fn counting_reports_every_byte() {
        let counters = Arc::new(Counters::default());
        let seen = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let s2 = seen.clone();
        let cb: BytesFn = Arc::new(move |n| s2.store(n, std::sync::atomic::Ordering::SeqCst));
        let _: Vec<Bytes> = counting(source(&[b"ab", b"cde"]), counters.clone(), cb).try_collect().await.unwrap();
        assert_eq!(counters.snapshot().1, 5);
        assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 5, "the end is always reported");
    }
}
