//! The client's stream as a connection sees it: it records when bytes last moved (the idle
//! timeout) and whether the client's window is full (a connection parks only when it is not),
//! and replays bytes read ahead (the first bytes of a parked connection, or those hyper had read
//! but not used) before the socket's.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::activity::Activity;

/// The client's stream, as the module says.
pub(crate) struct Stream<T> {
    inner: T,
    activity: Arc<Activity>,
    /// Bytes already read, yielded before the inner stream's.
    pub(super) head: Bytes,
}

impl<T> Stream<T> {
    pub(super) fn new(inner: T, activity: Arc<Activity>) -> Self {
        Self {
            inner,
            activity,
            head: Bytes::new(),
        }
    }

    /// Puts bytes read but not used back in front. They are copied, so that the buffer they
    /// were cut from (hyper's read buffer) is freed.
    pub(super) fn unread(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let mut joined = BytesMut::with_capacity(bytes.len() + self.head.len());
        joined.extend_from_slice(bytes);
        joined.extend_from_slice(&self.head);
        self.head = joined.freeze();
    }

    /// Records that bytes moved, or that the client's window is full.
    fn wrote<R>(&self, result: Poll<std::io::Result<R>>, moved: bool) -> Poll<std::io::Result<R>> {
        self.activity
            .write_blocked
            .store(result.is_pending(), Ordering::Relaxed);
        if moved {
            self.activity.touch();
        }
        result
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Stream<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.head.is_empty() {
            let before = buf.filled().len();
            let result = Pin::new(&mut this.inner).poll_read(cx, buf);
            if buf.filled().len() > before {
                this.activity.touch();
            }
            return result;
        }
        let n = this.head.len().min(buf.remaining());
        buf.put_slice(&this.head[..n]);
        this.head.advance(n);
        if this.head.is_empty() {
            this.head = Bytes::new();
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Stream<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write(cx, buf);
        let moved = matches!(result, Poll::Ready(Ok(n)) if n > 0);
        this.wrote(result, moved)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_flush(cx);
        this.wrote(result, false)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        let moved = matches!(result, Poll::Ready(Ok(n)) if n > 0);
        this.wrote(result, moved)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn the_stream_yields_unread_bytes_first_and_frees_them() {
        let (client, mut server) = tokio::io::duplex(64);
        let mut io = Stream::new(client, Arc::new(Activity::new()));
        server.write_all(b" world").await.unwrap();
        io.unread(b"lo");
        io.unread(b"hel");
        let mut got = [0u8; 2];
        io.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"he");
        let mut rest = [0u8; 9];
        io.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b"llo world");
        assert!(io.head.is_empty());
        io.unread(b"");
        assert!(io.head.is_empty());
    }

    #[tokio::test]
    async fn the_stream_records_a_full_window_until_a_write_goes_through() {
        let (client, mut server) = tokio::io::duplex(16);
        let activity = Arc::new(Activity::new());
        let mut io = Stream::new(client, activity.clone());
        let blocked = tokio::time::timeout(
            std::time::Duration::from_millis(100),
            io.write_all(&[b'x'; 64]),
        )
        .await;
        assert!(blocked.is_err(), "a 16-byte pipe took 64 bytes");
        assert!(activity.write_blocked.load(Ordering::Relaxed));
        let mut drained = [0u8; 64];
        let n = server.read(&mut drained).await.unwrap();
        assert!(n > 0);
        io.write_all(b"y").await.unwrap();
        assert!(!activity.write_blocked.load(Ordering::Relaxed));
    }
}
