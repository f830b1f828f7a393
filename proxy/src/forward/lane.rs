//! A client connection's own upstream connection.
//!
//! An HTTP/1 client sends one request at a time, so each HTTP/1 client connection gets one
//! upstream connection of its own (its *lane*), driven by the client connection's task: the
//! client connection polls it each time it runs. A request and its answer then cross no task
//! and no thread inside the proxy (a pooled client drives each upstream connection in a task of
//! its own, and hands requests and answers between tasks). When the client connection parks or
//! ends, an idle upstream connection goes to a shared pool, where the next lane to open finds it.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::Context;
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;

use super::upstream::{ConnectError, UpstreamConnector, UpstreamStream};
use crate::body::ProxyBody;

type Connection = http1::Connection<TokioIo<UpstreamStream>, ProxyBody>;

/// Why an exchange on a lane failed.
#[derive(Debug, thiserror::Error)]
pub enum LaneError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error(transparent)]
    Http(#[from] hyper::Error),
}

/// Idle upstream connections, shared by all lanes: at most `max`, each for at most `timeout`.
pub struct IdlePool {
    streams: Mutex<VecDeque<(UpstreamStream, Instant)>>,
    max: usize,
    timeout: Duration,
}

impl IdlePool {
    pub fn new(max: usize, timeout: Duration) -> Self {
        Self {
            streams: Mutex::new(VecDeque::new()),
            max,
            timeout,
        }
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<(UpstreamStream, Instant)>> {
        self.streams.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether a connection idle since `since` may still carry a request.
    fn usable(&self, stream: &UpstreamStream, since: Instant) -> bool {
        since.elapsed() < self.timeout && stream.is_open()
    }

    /// The connection most recently put back that is still open, if any.
    fn take(&self) -> Option<UpstreamStream> {
        let mut streams = self.lock();
        while let Some((stream, since)) = streams.pop_back() {
            if self.usable(&stream, since) {
                return Some(stream);
            }
        }
        None
    }

    /// Closes the connections idle beyond the timeout or closed by the upstream (run now and
    /// then, so that none lingers when no lane comes for it).
    pub fn sweep(&self) {
        self.lock()
            .retain(|(stream, since)| self.usable(stream, *since));
    }

    fn put(&self, stream: UpstreamStream) {
        let mut streams = self.lock();
        while streams
            .front()
            .is_some_and(|(_, since)| since.elapsed() >= self.timeout)
        {
            streams.pop_front();
        }
        if streams.len() >= self.max {
            streams.pop_front();
        }
        streams.push_back((stream, Instant::now()));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

/// One client connection's upstream connection, if it has one.
pub struct Lane {
    pool: Arc<IdlePool>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    sender: Option<http1::SendRequest<ProxyBody>>,
    connection: Option<Box<Connection>>,
}

impl Lane {
    pub fn new(pool: Arc<IdlePool>) -> Self {
        Self {
            pool,
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Drives the upstream connection (writes the request, reads the answer); called by the
    /// client connection's task each time it runs. A connection that ended is forgotten.
    pub fn poll(&self, cx: &mut Context<'_>) {
        let mut state = self.lock();
        if let Some(connection) = state.connection.as_mut()
            && std::pin::Pin::new(&mut **connection).poll(cx).is_ready()
        {
            *state = State::default();
        }
    }

    /// Gives the upstream connection to the shared pool if it is idle (its last answer read to
    /// the end, nothing unread), or closes it.
    pub fn release(&self) {
        let State { sender, connection } = std::mem::take(&mut *self.lock());
        if let (Some(sender), Some(connection)) = (sender, connection)
            && sender.is_ready()
        {
            let parts = connection.into_parts();
            if parts.read_buf.is_empty() {
                self.pool.put(parts.io.into_inner());
            }
        }
    }

    /// Sends a request on this lane's connection, opening one (or taking an idle one) first
    /// if it has none. A request the connection could not take (it closed meanwhile) is sent
    /// once more on a new connection; one it took is never sent twice.
    pub async fn send(
        &self,
        connector: &UpstreamConnector,
        request: Request<ProxyBody>,
    ) -> Result<Response<Incoming>, LaneError> {
        let mut request = request;
        let mut retried = false;
        loop {
            let mut sender = self.sender(connector).await?;
            let ready = poll_fn(|cx| sender.poll_ready(cx)).await;
            if let Err(e) = ready {
                *self.lock() = State::default();
                if retried {
                    return Err(e.into());
                }
                retried = true;
                continue;
            }
            let answer = sender.try_send_request(request);
            self.lock().sender = Some(sender);
            match answer.await {
                Ok(response) => return Ok(response),
                Err(mut e) => match e.take_message() {
                    Some(unsent) if !retried => {
                        *self.lock() = State::default();
                        request = unsent;
                        retried = true;
                    }
                    _ => return Err(e.into_error().into()),
                },
            }
        }
    }

    /// This lane's sender, or one on a connection taken from the pool or opened now. The new
    /// connection is driven from the next time the client connection's task polls the lane.
    async fn sender(
        &self,
        connector: &UpstreamConnector,
    ) -> Result<http1::SendRequest<ProxyBody>, LaneError> {
        if let Some(sender) = self.lock().sender.take()
            && !sender.is_closed()
        {
            return Ok(sender);
        }
        let stream = match self.pool.take() {
            Some(stream) => stream,
            None => connector.open().await?,
        };
        let (sender, connection) = http1::Builder::new()
            .max_buf_size(super::UPSTREAM_MAX_BUF)
            .handshake(TokioIo::new(stream))
            .await?;
        self.lock().connection = Some(Box::new(connection));
        Ok(sender)
    }
}

impl Drop for Lane {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn pair() -> (UpstreamStream, tokio::net::UnixStream) {
        let (a, b) = tokio::net::UnixStream::pair().expect("socket pair");
        (UpstreamStream::Unix(a), b)
    }

    #[tokio::test]
    async fn the_pool_hands_out_only_open_recent_connections_and_keeps_at_most_max() {
        let pool = IdlePool::new(2, Duration::from_secs(60));
        let (closed, peer) = pair().await;
        drop(peer);
        pool.put(closed);
        assert!(
            pool.take().is_none(),
            "a connection whose peer closed is dropped"
        );

        let (chatty, mut peer) = pair().await;
        tokio::io::AsyncWriteExt::write_all(&mut peer, b"x")
            .await
            .expect("write");
        pool.put(chatty);
        assert!(
            pool.take().is_none(),
            "a connection with unread bytes is dropped"
        );

        let mut peers = Vec::new();
        for _ in 0..3 {
            let (stream, peer) = pair().await;
            pool.put(stream);
            peers.push(peer);
        }
        assert_eq!(pool.len(), 2, "the oldest goes beyond max");
        assert!(pool.take().is_some());
        assert!(pool.take().is_some());
        assert!(pool.take().is_none());

        let stale = IdlePool::new(2, Duration::ZERO);
        let (stream, _peer) = pair().await;
        stale.put(stream);
        assert!(
            stale.take().is_none(),
            "a connection idle beyond the timeout is dropped"
        );
    }
}
