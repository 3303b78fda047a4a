//! Connections to the app, and the idle ones kept for the next request, last in, first out.

use std::io::{self, ErrorKind};
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker, ready};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::net::TcpStream;
use tokio::time::Sleep;

/// Idle connections kept per worker, at most.
const MAX_IDLE: usize = 256;
/// Room made in a connection's read buffer before each read.
pub(super) const READ_SIZE: usize = 16 * 1024;

/// One open connection, and what the upstream sent on it that has not been consumed yet.
pub(super) struct Connection {
    pub(super) stream: TcpStream,
    pub(super) read: BytesMut,
    /// Wakes an exchange when its deadline may have passed. Set for some earlier request's
    /// deadline, it is moved on only when it fires: no timer is registered and removed for each
    /// request (what that cost: BENCHMARKS.md, round 3).
    pub(super) timer: Pin<Box<Sleep>>,
}

impl Connection {
    /// Reads what is there into the buffer; `Ok(0)` at the end of the stream.
    ///
    /// Through `AsyncRead`, not `try_read_buf`: a read that leaves room in the buffer tells tokio
    /// the socket is drained, so the check in `fit_for_reuse` costs no `recvfrom` (one in three
    /// of a request's reads from the upstream, before).
    pub(super) fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.read.capacity() - self.read.len() < READ_SIZE / 4 {
            self.read.reserve(READ_SIZE);
        }
        tokio_util::io::poll_read_buf(Pin::new(&mut self.stream), cx, &mut self.read)
    }

    /// Ready once `deadline` has passed.
    pub(super) fn poll_deadline(&mut self, deadline: Instant, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            ready!(self.timer.as_mut().poll(cx));
            if Instant::now() >= deadline {
                return Poll::Ready(());
            }
            self.timer.as_mut().reset(deadline.into());
        }
    }

    /// Whether an idle connection can take a request: the app has neither closed it nor sent
    /// anything unasked. Costs a read only when the reactor has seen the socket readable.
    pub(super) fn fit_for_reuse(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        match self.stream.poll_read_ready(&mut cx) {
            Poll::Pending => true,
            Poll::Ready(Err(_)) => false,
            // Readiness can be left over from the last answer; a read tells which it is.
            Poll::Ready(Ok(())) => matches!(
                self.stream.try_read(&mut [0; 1]),
                Err(e) if e.kind() == ErrorKind::WouldBlock
            ),
        }
    }
}

/// Connections with no request on them, the most recently used last.
pub(super) struct Idle {
    pub(super) connections: Mutex<Vec<(Connection, Instant)>>,
    pub(super) timeout: Duration,
}

impl Idle {
    /// The most recently used connection that is still fit for a request at `now`; those idle for
    /// too long are closed.
    pub(super) fn take(&self, now: Instant) -> Option<Connection> {
        let mut connections = self.connections.lock().unwrap_or_else(|e| e.into_inner());
        while let Some((mut connection, since)) = connections.pop() {
            if self.expired(since, now) {
                // The rest are older still.
                connections.clear();
                return None;
            }
            if connection.fit_for_reuse() {
                return Some(connection);
            }
        }
        None
    }

    /// Closes the connections idle for longer than the timeout at `now`, and those the app has
    /// closed or written to meanwhile, rather than keeping their sockets until the next checkout.
    pub(super) fn prune(&self, now: Instant) {
        let mut connections = self.connections.lock().unwrap_or_else(|e| e.into_inner());
        connections.retain_mut(|(connection, since)| {
            !self.expired(*since, now) && connection.fit_for_reuse()
        });
    }

    /// Whether a connection idle since `since` has been idle too long at `now`.
    pub(super) fn expired(&self, since: Instant, now: Instant) -> bool {
        now.saturating_duration_since(since) > self.timeout
    }

    pub(super) fn put(&self, connection: Connection) {
        // Bytes after the end of an answer mean the two sides no longer agree where messages end.
        if !connection.read.is_empty() {
            return;
        }
        let mut connections = self.connections.lock().unwrap_or_else(|e| e.into_inner());
        if connections.len() < MAX_IDLE {
            connections.push((connection, Instant::now()));
        }
    }
}

/// What decides whether a connection may carry another user's request, on real loopback sockets.
#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    /// A connection to a loopback peer, and the peer's end, to write to it as the app would.
    async fn pair() -> (Connection, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let stream = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (app, _) = listener.accept().await.unwrap();
        let connection = Connection {
            stream,
            read: BytesMut::new(),
            timer: Box::pin(tokio::time::sleep(Duration::from_secs(60))),
        };
        (connection, app)
    }

    fn pool() -> Idle {
        Idle {
            connections: Mutex::new(Vec::new()),
            timeout: Duration::from_secs(60),
        }
    }

    /// Bytes read past an answer's end would be the start of the next user's answer.
    #[tokio::test]
    async fn a_connection_with_unread_bytes_never_returns_to_the_pool() {
        let idle = pool();
        let (mut connection, _app) = pair().await;
        connection.read.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
        idle.put(connection);
        assert!(idle.take(Instant::now()).is_none());

        let (clean, _app) = pair().await;
        idle.put(clean);
        assert!(idle.take(Instant::now()).is_some());
    }

    /// Bytes the app sends to an idle connection, or its closing it, make the connection unfit:
    /// it is dropped when taken, and the next one (or a new one) serves.
    #[tokio::test]
    async fn an_idle_connection_the_app_wrote_to_or_closed_is_not_taken() {
        let idle = pool();
        let (fine, _fine_app) = pair().await;
        let (written, mut written_app) = pair().await;
        let (closed, closed_app) = pair().await;
        idle.put(fine);
        idle.put(written);
        idle.put(closed);
        written_app
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nforged")
            .await
            .unwrap();
        drop(closed_app);
        tokio::time::sleep(Duration::from_millis(50)).await;
        // Most recently used first: `closed`, then `written`, are passed over for `fine`.
        let taken = idle.take(Instant::now()).expect("the fit connection");
        let mut probe = [0u8; 1];
        assert!(
            matches!(taken.stream.try_read(&mut probe), Err(e) if e.kind() == ErrorKind::WouldBlock),
            "the connection taken has nothing unasked in it"
        );
        assert!(
            idle.take(Instant::now()).is_none(),
            "the unfit ones are gone"
        );
    }

    #[tokio::test]
    async fn connections_idle_past_the_timeout_are_not_taken() {
        let idle = pool();
        let (connection, _app) = pair().await;
        idle.put(connection);
        assert!(
            idle.take(Instant::now() + Duration::from_secs(61))
                .is_none()
        );
    }
}
