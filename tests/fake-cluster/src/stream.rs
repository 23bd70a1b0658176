//! A minimal `Stream` over a tokio mpsc receiver (for streamed response bodies).

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::mpsc;

/// Wraps an mpsc receiver as a `futures::Stream`.
pub struct ReceiverStream<T> {
    rx: mpsc::Receiver<T>,
}

impl<T> ReceiverStream<T> {
    /// Wraps `rx`.
    pub fn new(rx: mpsc::Receiver<T>) -> Self {
        ReceiverStream { rx }
    }
}

impl<T> futures::Stream for ReceiverStream<T> {
    type Item = T;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        self.rx.poll_recv(cx)
    }
}
