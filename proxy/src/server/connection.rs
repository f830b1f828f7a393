//! One client connection after its handshake, served to its end.
//!
//! An HTTP/1 connection that goes idle is *parked*: when no request follows a response within
//! [`PARK_DELAY`], hyper's connection (its read buffer of 8 to 16 KiB, its 8 KiB write buffer,
//! the slot of the request in flight) is dropped, and only the socket and its TLS state wait for
//! the next bytes; a new hyper connection is built when they arrive, and is handed the bytes
//! the old one had read but not used. An idle keep-alive connection then costs about 10 KiB
//! instead of about 28.
//! HTTP/2 connections are served by hyper-util's connection to their end.

use std::convert::Infallible;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::Interval;

use super::activity::Activity;
use super::stream::Stream;
use super::{GaugeGuard, Shared};
use crate::auth::PeerCertificate;
use crate::body::ProxyBody;
use crate::config::Limits;
use crate::forward::Lane;
use crate::identity::Peer;
use crate::request;

/// How long an HTTP/1 connection waits for its next request before it parks. Short, so that a
/// burst of connections that then idle never holds many hyper buffers at once; long enough
/// that a client sending requests back to back never parks.
const PARK_DELAY: Duration = Duration::from_millis(10);

/// How long closing a connection may wait for the TLS close_notify and the FIN to be written.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// The HTTP/2 connection preface: a client that did not negotiate a protocol with ALPN and
/// starts with it speaks HTTP/2.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What the client can speak, from ALPN.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Protocol {
    Http1,
    Http2,
    /// No ALPN (a client without it, or plain TCP): HTTP/2 if the first bytes are its preface.
    Unknown,
}

/// Whether the first bytes of a connection could begin the HTTP/2 preface (hyper-util's
/// connection then reads on and decides).
fn may_be_h2(head: &[u8]) -> bool {
    let n = head.len().min(H2_PREFACE.len());
    n > 0 && head[..n] == H2_PREFACE[..n]
}

/// The request handler of one connection.
#[derive(Clone)]
pub(crate) struct Handler {
    pub(crate) shared: Arc<Shared>,
    pub(crate) activity: Arc<Activity>,
    pub(crate) peer: Peer,
    pub(crate) proto: &'static str,
    pub(crate) certificate: Arc<PeerCertificate>,
    /// The connection's own upstream connection (HTTP/1 clients).
    pub(crate) lane: Option<Arc<Lane>>,
}

type Answer = Pin<Box<dyn Future<Output = Result<Response<ProxyBody>, Infallible>> + Send>>;

impl hyper::service::Service<Request<Incoming>> for Handler {
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    // Boxed so that hyper's connection is `Unpin` and can be taken apart when it parks.
    type Future = Answer;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { Ok(request::handle(&this, request).await) })
    }
}

fn http1_builder(limits: &Limits) -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(hard_cap(limits))
        .keep_alive(true);
    builder
}

fn auto_builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(hard_cap(limits))
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(hard_cap(limits)).unwrap_or(u32::MAX))
        .max_concurrent_streams(256)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20));
    builder
}

/// hyper's own caps sit above ours, so the proxy usually answers an oversized header block
/// itself with a JSON 431; beyond the cap hyper answers 431 (HTTP/1.1) or resets.
fn hard_cap(limits: &Limits) -> usize {
    limits.max_header_size.saturating_mul(2).max(16 * 1024)
}

/// How a parked connection's wait ended.
enum Wake {
    /// The client sent bytes (now at the head of the stream).
    Bytes,
    /// The client closed the connection or it failed.
    Gone,
    /// The proxy closes it: idle timeout, no first request in time, or shutdown.
    Close,
}

/// One connection and its timers.
pub(crate) struct Driver {
    shutdown: watch::Receiver<bool>,
    handler: Handler,
    ticker: Interval,
    closing: bool,
}

impl Driver {
    pub(crate) fn new(handler: Handler, shutdown: watch::Receiver<bool>) -> Self {
        let limits = &handler.shared.limits;
        let period = (limits.idle_timeout.min(limits.header_read_timeout) / 4)
            .clamp(Duration::from_millis(100), Duration::from_secs(5));
        Self {
            shutdown,
            handler,
            ticker: tokio::time::interval(period),
            closing: false,
        }
    }

    /// Serves the connection until it closes.
    pub(crate) async fn run<T>(mut self, io: T, protocol: Protocol)
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let mut io = Stream::new(io, self.handler.activity.clone());
        // The futures of the two ways to serve are boxed: only the one in use takes memory,
        // and a parked connection keeps neither.
        if protocol == Protocol::Http2 {
            return Box::pin(self.serve_auto(io)).await;
        }
        let builder = http1_builder(&self.handler.shared.limits);
        let mut first = true;
        loop {
            if io.head.is_empty() {
                match self.wait_for_bytes(&mut io).await {
                    Wake::Bytes => {}
                    Wake::Gone => return,
                    Wake::Close => return close(io).await,
                }
            }
            if std::mem::take(&mut first) && protocol == Protocol::Unknown && may_be_h2(&io.head) {
                return Box::pin(self.serve_auto(io)).await;
            }
            match Box::pin(self.serve_http1(&builder, io)).await {
                Some(parked) => io = parked,
                None => return,
            }
        }
    }

    /// The proxy's own timeouts: idle keep-alive, or a connection that never completed a first
    /// request (HTTP/2 clients, or clients that send nothing, escape hyper's header timer).
    fn expired(&self) -> bool {
        let limits = &self.handler.shared.limits;
        let activity = &self.handler.activity;
        let idle = activity.requests.load(Ordering::Relaxed) == 0
            && activity.idle_for() >= limits.idle_timeout;
        let never_asked = activity.served.load(Ordering::Relaxed) == 0
            && activity.epoch.elapsed() >= limits.header_read_timeout;
        idle || never_asked
    }

    /// Parked: waits for the client's next bytes, holding no HTTP buffer.
    async fn wait_for_bytes<T: AsyncRead + Unpin>(&mut self, io: &mut Stream<T>) -> Wake {
        let _parked = GaugeGuard::new(self.handler.shared.metrics.parked_connections.clone());
        let mut first = [0u8; 64];
        loop {
            tokio::select! {
                read = io.read(&mut first) => return match read {
                    Ok(0) | Err(_) => Wake::Gone,
                    Ok(n) => {
                        io.head = Bytes::copy_from_slice(&first[..n]);
                        Wake::Bytes
                    }
                },
                _ = self.shutdown.changed() => return Wake::Close,
                _ = self.ticker.tick() => if self.expired() {
                    return Wake::Close;
                },
            }
        }
    }

    /// Serves HTTP/1 requests until the connection closes (`None`) or parks (its stream back,
    /// with any bytes hyper had read but not used at its head).
    async fn serve_http1<T>(&mut self, builder: &http1::Builder, io: Stream<T>) -> Option<Stream<T>>
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let served_before = self.handler.activity.served.load(Ordering::Relaxed);
        let mut connection =
            Box::new(builder.serve_connection(TokioIo::new(io), self.handler.clone()));
        let mut parking = false;
        // Parks PARK_DELAY after a response if no request followed: a client that sends its
        // requests back to back keeps its hyper connection (and its buffers and header cache).
        let mut park_timer = Box::pin(tokio::time::sleep(PARK_DELAY));
        let mut armed_for = None;
        loop {
            tokio::select! {
                result = poll_fn(|cx| loop {
                    if parking {
                        return connection.poll_without_shutdown(cx).map_ok(|()| true);
                    }
                    // The lane's upstream connection runs in this task, before the client's
                    // (an answer that arrived reaches the handler this turn) and after it (a
                    // request the handler sent is written this turn).
                    let lane = self.handler.lane.as_deref();
                    if let Some(lane) = lane {
                        lane.poll(cx);
                    }
                    // Until it parks, hyper's connection ends the usual way: what it buffered
                    // is flushed, then the stream shut down.
                    let polled = Pin::new(&mut *connection).poll(cx).map_ok(|()| false);
                    if let Some(lane) = lane {
                        lane.poll(cx);
                    }
                    if polled.is_ready() || self.closing {
                        return polled;
                    }
                    let served = self.handler.activity.served.load(Ordering::Relaxed);
                    if self.handler.activity.requests.load(Ordering::Relaxed) != 0
                        || served == served_before
                        || self.handler.activity.write_blocked.load(Ordering::Relaxed)
                    {
                        return polled;
                    }
                    // The response is written (hyper writes its head as soon as the handler
                    // answers) and sent (nothing waits for the client's window). Moving a
                    // timer's deadline later is an atomic store.
                    if armed_for != Some(served) {
                        armed_for = Some(served);
                        park_timer.as_mut().reset(tokio::time::Instant::now() + PARK_DELAY);
                    }
                    if park_timer.as_mut().poll(cx).is_pending() {
                        return polled;
                    }
                    // Idle since: shutting hyper's connection down gracefully ends it at once
                    // without a byte sent.
                    parking = true;
                    Pin::new(&mut *connection).graceful_shutdown();
                }) => match result {
                    Err(e) => {
                        tracing::debug!(peer = %self.handler.peer.addr, error = %e, "connection ended with an error");
                        return None;
                    }
                    // Ended (the client closed or asked to, or the proxy closes it).
                    Ok(false) => return None,
                    Ok(true) => break,
                },
                _ = self.shutdown.changed(), if !self.closing => {
                    self.closing = true;
                    Pin::new(&mut *connection).graceful_shutdown();
                }
                _ = self.ticker.tick(), if !self.closing => if self.expired() {
                    self.closing = true;
                    Pin::new(&mut *connection).graceful_shutdown();
                },
            }
        }
        let parts = connection.into_parts();
        let mut io = parts.io.into_inner();
        if let Some(lane) = &self.handler.lane {
            lane.release();
        }
        if self.closing {
            close(io).await;
            return None;
        }
        io.unread(&parts.read_buf);
        Some(io)
    }

    /// Serves a connection that may speak HTTP/2 to its end.
    async fn serve_auto<T>(mut self, io: Stream<T>)
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        // Its requests run concurrently: they go through the forwarder's pooled client.
        self.handler.lane = None;
        let builder = auto_builder(&self.handler.shared.limits);
        let connection = builder.serve_connection(TokioIo::new(io), self.handler.clone());
        let mut connection = Box::pin(connection);
        loop {
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(peer = %self.handler.peer.addr, error = %e, "connection ended with an error");
                    }
                    return;
                }
                _ = self.shutdown.changed(), if !self.closing => {
                    self.closing = true;
                    connection.as_mut().graceful_shutdown();
                }
                _ = self.ticker.tick(), if !self.closing => if self.expired() {
                    self.closing = true;
                    connection.as_mut().graceful_shutdown();
                },
            }
        }
    }
}

/// Closes a connection: TLS close_notify and FIN, bounded in time.
async fn close<T: AsyncWrite + Unpin>(mut io: Stream<T>) {
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, io.shutdown()).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_h2_preface_is_recognised_from_its_first_byte() {
        assert!(may_be_h2(b"P"));
        assert!(may_be_h2(b"PRI * HTTP/2.0\r\n"));
        assert!(may_be_h2(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\x12\x04"));
        assert!(!may_be_h2(b""));
        assert!(!may_be_h2(b"POST / HTTP/1.1\r\n"));
        assert!(!may_be_h2(b"PRI * HTTP/1.1\r\n"));
    }
}
