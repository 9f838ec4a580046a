//! The guest's stderr: the last few KiB it wrote, cleared at the start of each turn, so a
//! trap can be explained with what the guest said last. Writing never fails and never
//! grows past the tail, however much a long-lived (pooled) instance writes over its turns.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// Bytes kept.
const TAIL: usize = 4096;

#[derive(Clone, Default)]
pub struct TailPipe {
    buf: Arc<Mutex<VecDeque<u8>>>,
}

impl TailPipe {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<u8>> {
        self.buf.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn push(&self, bytes: &[u8]) {
        let mut buf = self.lock();
        let bytes = &bytes[bytes.len().saturating_sub(TAIL)..];
        let over = (buf.len() + bytes.len()).saturating_sub(TAIL);
        buf.drain(..over);
        buf.extend(bytes);
    }

    /// Forget what earlier turns wrote.
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// What was written since the last [`TailPipe::clear`] (its last 4 KiB).
    pub fn contents(&self) -> Vec<u8> {
        self.lock().iter().copied().collect()
    }
}

impl IsTerminal for TailPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for TailPipe {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for TailPipe {
    async fn ready(&mut self) {}
}

impl OutputStream for TailPipe {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(TAIL)
    }
}

impl tokio::io::AsyncWrite for TailPipe {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_the_tail_and_clears() {
        let p = TailPipe::default();
        p.push(&[b'a'; 3000]);
        p.push(&[b'b'; 3000]);
        let c = p.contents();
        assert_eq!(c.len(), TAIL);
        assert!(c.ends_with(&[b'b'; 3000]));
        assert!(c.starts_with(&[b'a'; TAIL - 3000]));
        p.push(&[b'c'; 10_000]);
        assert_eq!(p.contents(), vec![b'c'; TAIL]);
        p.clear();
        assert!(p.contents().is_empty());
    }
}
