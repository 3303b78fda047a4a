//! Connections to the upstream: one pool per worker of HTTP/1.1 keep-alive connections, made with
//! hyper's connection API and reused last in, first out. A connection goes back to its pool when
//! its response body has been read to the end; one dropped half-read is closed, never reused.
//!
//! hyper-util's pool did the same job at a fifth of an authenticated request's instructions
//! (callgrind): it hashes its key with SipHash several times per request and spawns a task per
//! request to learn that a connection is free again. A worker's pool needs neither.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use hyper::body::{Body as _, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::body::Body;

/// Idle connections kept per worker, at most.
const MAX_IDLE: usize = 256;

/// A connection idle for this long may be closed by the app just as a request goes out on it
/// (its keep-alive timeout, often 2 to 5 s); a request that can safely be sent twice is then kept
/// until an answer starts, and sent again on a new connection if none does. Connections busier
/// than that are trusted, so a loaded gate never pays for the copy.
const REPLAY_AFTER_IDLE: Duration = Duration::from_secs(1);

/// Why a request could not be sent to the upstream or its answer not read.
#[derive(Debug)]
pub enum UpstreamError {
    Connect(std::io::Error),
    ConnectTimeout,
    Http(hyper::Error),
}

impl std::fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpstreamError::Connect(e) => write!(f, "connecting to the upstream: {e}"),
            UpstreamError::ConnectTimeout => f.write_str("connecting to the upstream timed out"),
            UpstreamError::Http(e) => write!(f, "{e}"),
        }
    }
}

/// The upstream as one worker sees it: where it is, and the connections open to it.
pub struct Upstream {
    /// `host:port`, as given to the resolver.
    address: String,
    connect_timeout: Duration,
    idle: Arc<Idle>,
}

/// Connections with no request on them, the most recently used last.
struct Idle {
    connections: Mutex<Vec<(SendRequest<Body>, Instant)>>,
    timeout: Duration,
}

impl Idle {
    /// The most recently used connection that is still open, and how long it has been idle;
    /// those idle for too long are closed.
    fn take(&self) -> Option<(SendRequest<Body>, Duration)> {
        let mut connections = self.connections.lock().unwrap_or_else(|e| e.into_inner());
        while let Some((sender, since)) = connections.pop() {
            let idle_for = since.elapsed();
            if idle_for > self.timeout {
                // The rest are older still.
                connections.clear();
                return None;
            }
            if !sender.is_closed() {
                return Some((sender, idle_for));
            }
        }
        None
    }

    fn put(&self, sender: SendRequest<Body>) {
        let mut connections = self.connections.lock().unwrap_or_else(|e| e.into_inner());
        if connections.len() < MAX_IDLE {
            connections.push((sender, Instant::now()));
        }
    }
}

impl Upstream {
    pub fn new(address: String, connect_timeout: Duration, idle_timeout: Duration) -> Upstream {
        Upstream {
            address,
            connect_timeout,
            idle: Arc::new(Idle {
                connections: Mutex::new(Vec::new()),
                timeout: idle_timeout,
            }),
        }
    }

    /// Sends `request` (origin-form target, `Host` set) on an idle connection, or a new one when
    /// none is left. A request that an idle connection could not take, because the upstream had
    /// closed it, is never half-sent: it goes out again on the next connection. So does a
    /// bodiless idempotent request on a connection that was idle for a while and that the app
    /// closed as the request went out (see `REPLAY_AFTER_IDLE`).
    pub async fn send(
        &self,
        mut request: Request<Body>,
    ) -> Result<Response<PooledBody>, UpstreamError> {
        while let Some((mut sender, idle_for)) = self.idle.take() {
            // Ready once the connection has finished with its previous exchange.
            if sender.ready().await.is_err() {
                continue;
            }
            let replay = (idle_for >= REPLAY_AFTER_IDLE)
                .then(|| replayable_copy(&request))
                .flatten();
            match sender.try_send_request(request).await {
                Ok(response) => return Ok(self.pooled(response, sender)),
                Err(mut e) => match (e.take_message(), replay) {
                    (Some(unsent), _) => request = unsent,
                    (None, Some(copy)) if broke_before_answer(e.error()) => request = copy,
                    (None, _) => return Err(UpstreamError::Http(e.into_error())),
                },
            }
        }
        // Boxed: connecting is rare, and its state would otherwise weigh on every request's future.
        let mut sender = Box::pin(self.connect()).await?;
        let response = sender
            .send_request(request)
            .await
            .map_err(UpstreamError::Http)?;
        Ok(self.pooled(response, sender))
    }

    async fn connect(&self) -> Result<SendRequest<Body>, UpstreamError> {
        let stream = tokio::time::timeout(
            self.connect_timeout,
            TcpStream::connect(self.address.as_str()),
        )
        .await
        .map_err(|_| UpstreamError::ConnectTimeout)?
        .map_err(UpstreamError::Connect)?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) = http1::Builder::new()
            // Small requests go out in one write of one buffer rather than a vectored write.
            .writev(false)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(UpstreamError::Http)?;
        tokio::spawn(async move {
            if let Err(e) = connection.with_upgrades().await {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }

    /// The answer, with its connection attached to the body, to come back to the pool at its end.
    /// A `101` hands its connection over to the upgrade, so that one never comes back.
    fn pooled(
        &self,
        response: Response<Incoming>,
        sender: SendRequest<Body>,
    ) -> Response<PooledBody> {
        let back = (response.status() != StatusCode::SWITCHING_PROTOCOLS)
            .then(|| (sender, self.idle.clone()));
        response.map(|inner| PooledBody { inner, back })
    }
}

/// Whether the connection ended before an answer was complete: closed (FIN) or reset (RST, as
/// when the app closes a socket with our request still unread in it).
fn broke_before_answer(error: &hyper::Error) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset};
    error.is_incomplete_message()
        || std::error::Error::source(error)
            .and_then(|source| source.downcast_ref::<std::io::Error>())
            .is_some_and(|io| matches!(io.kind(), ConnectionReset | BrokenPipe | ConnectionAborted))
}

/// A copy of `request` to send again if the connection fails before any answer: only for methods
/// that are idempotent (RFC 9110 §9.2.2) and a body known to be empty, as nginx does.
fn replayable_copy(request: &Request<Body>) -> Option<Request<Body>> {
    let idempotent = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    );
    if !idempotent || !request.body().is_end_stream() {
        return None;
    }
    let mut copy = Request::new(crate::body::full(Bytes::new()));
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.version_mut() = request.version();
    *copy.headers_mut() = request.headers().clone();
    Some(copy)
}

/// An upstream response body that returns its connection to the pool once read to the end.
pub struct PooledBody {
    inner: Incoming,
    back: Option<(SendRequest<Body>, Arc<Idle>)>,
}

impl PooledBody {
    fn release(&mut self) {
        if let Some((sender, idle)) = self.back.take() {
            idle.put(sender);
        }
    }
}

impl hyper::body::Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let frame = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        match &frame {
            None => this.release(),
            // A broken body leaves its connection in no state to be reused.
            Some(Err(_)) => this.back = None,
            Some(Ok(_)) => {}
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for PooledBody {
    /// hyper stops polling a body once its length is reached; read to the end or empty, the
    /// connection is reusable. Dropped before that, the connection closes with it.
    fn drop(&mut self) {
        if self.inner.is_end_stream() {
            self.release();
        }
    }
}
