//! Body wrappers: a size limit and a timeout between chunks on streamed bodies, without buffering.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::BoxBody;
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body type the proxy serves and forwards.
pub type ProxyBody = BoxBody<Bytes, BoxError>;

/// Why a guarded body stopped early.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BodyFault {
    #[error("body larger than the configured limit")]
    TooLarge = 1,
    #[error("no body data within the configured timeout")]
    Timeout = 2,
    /// The body could not be read as sent (e.g. a chunk size that is not hexadecimal).
    #[error("malformed body")]
    Malformed = 3,
}

/// Records the fault of a request body, so the forwarder can tell a client fault (413/408/400)
/// from an upstream fault when the upstream call fails.
#[derive(Debug, Clone, Default)]
pub struct FaultCell(Arc<AtomicU8>);

impl FaultCell {
    fn set(&self, fault: BodyFault) {
        self.0.store(fault as u8, Ordering::Relaxed);
    }

    pub fn get(&self) -> Option<BodyFault> {
        match self.0.load(Ordering::Relaxed) {
            1 => Some(BodyFault::TooLarge),
            2 => Some(BodyFault::Timeout),
            3 => Some(BodyFault::Malformed),
            _ => None,
        }
    }
}

pin_project! {
    /// Streams `inner` frame by frame, failing when more than `limit` bytes pass or when no
    /// frame arrives within `idle` while one is awaited. Holds `guard` until the body ends.
    pub struct GuardedBody<B, G> {
        #[pin]
        inner: B,
        #[pin]
        timer: Sleep,
        idle: Duration,
        waiting: bool,
        limit: u64,
        seen: u64,
        fault: FaultCell,
        guard: Option<G>,
    }
}

impl<B, G> GuardedBody<B, G> {
    pub fn new(inner: B, limit: Option<u64>, idle: Duration, fault: FaultCell, guard: G) -> Self {
        Self {
            inner,
            timer: tokio::time::sleep(idle),
            idle,
            waiting: false,
            limit: limit.unwrap_or(u64::MAX),
            seen: 0,
            fault,
            guard: Some(guard),
        }
    }
}

impl<B, G> Body for GuardedBody<B, G>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                *this.waiting = false;
                if let Some(data) = frame.data_ref() {
                    *this.seen = this.seen.saturating_add(data.len() as u64);
                    if *this.seen > *this.limit {
                        this.fault.set(BodyFault::TooLarge);
                        return Poll::Ready(Some(Err(BodyFault::TooLarge.into())));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                *this.waiting = false;
                this.fault.set(BodyFault::Malformed);
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(None) => {
                *this.waiting = false;
                this.guard.take();
                Poll::Ready(None)
            }
            Poll::Pending => {
                if !*this.waiting {
                    // A new wait starts now. The timer is armed only when data is not ready
                    // at once, and time spent while nobody polled us (a slow reader on the
                    // other side) does not count against this side.
                    this.timer.as_mut().reset(Instant::now() + *this.idle);
                    *this.waiting = true;
                }
                match this.timer.poll(cx) {
                    Poll::Ready(()) => {
                        this.fault.set(BodyFault::Timeout);
                        Poll::Ready(Some(Err(BodyFault::Timeout.into())))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
