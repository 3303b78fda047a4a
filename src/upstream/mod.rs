//! Connections to the upstream: HTTP/1.1 spoken directly on each worker's pool of keep-alive
//! connections, reused last in, first out. A connection goes back to its pool when its answer
//! has been read to the end and nothing about it was out of the ordinary; any other is closed.
//!
//! hyper's client gives each connection a task of its own, and hands requests, answers and body
//! chunks to it through channels (what that cost: BENCHMARKS.md, round 3). Here the request's own
//! task writes the request and reads the answer, and the connection travels with the answer's
//! body until it is read. Heads are parsed by `httparse`, as in hyper.
//!
//! Rules kept for the connection's sake (RFC 9112): an answer's length comes from
//! `Transfer-Encoding`, then `Content-Length` (every value the same), else it runs until the
//! connection closes; a coding other than `chunked` is refused. An answer with both, from
//! HTTP/1.0, with `Connection: close`, announcing a body where none may be, or followed by stray
//! bytes leaves its connection closed after it.
//!
//! The client is split by job: `pool` (connections and the idle ones), `request` (a request
//! encoded once, and written as its body comes), `exchange` (writing the request while the
//! answer's head is awaited), `head` (the answer's head and how its body is framed) and `body`
//! (the answer's body, decoded and passed on, with its connection).

mod body;
mod exchange;
mod head;
mod pool;
mod request;

use std::io::{self, ErrorKind};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::Response;
use tokio::net::TcpStream;

use body::Framing;
pub use body::UpstreamBody;
use exchange::{Answer, exchange};
pub use head::only_chunked;
use pool::{Connection, Idle, READ_SIZE};
pub use request::Outgoing;

/// A request body on its way to the app, boxed: the client's, streamed, as the edge hands it over.
pub type Body = http_body_util::combinators::BoxBody<Bytes, BoxError>;

/// Any error a body can end with: hyper's, for a client's body, or the upstream client's.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a request could not be sent to the upstream or its answer not read.
#[derive(Debug)]
pub enum UpstreamError {
    Connect(io::Error),
    ConnectTimeout,
    /// No answer began within `upstream.timeout`, or its body stalled for as long.
    Timeout,
    Io(io::Error),
    /// The upstream closed the connection before its answer was complete.
    Closed,
    /// The answer broke HTTP/1.1's rules.
    Invalid(&'static str),
    /// The client's request body could not be read.
    Body(BoxError),
}

impl std::fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpstreamError::Connect(e) => write!(f, "connecting to the upstream: {e}"),
            UpstreamError::ConnectTimeout => f.write_str("connecting to the upstream timed out"),
            UpstreamError::Timeout => f.write_str("the upstream did not answer in time"),
            UpstreamError::Io(e) => write!(f, "upstream connection: {e}"),
            UpstreamError::Closed => f.write_str("the upstream closed the connection mid-answer"),
            UpstreamError::Invalid(why) => write!(f, "invalid answer from the upstream: {why}"),
            UpstreamError::Body(e) => write!(f, "reading the request body: {e}"),
        }
    }
}

impl std::error::Error for UpstreamError {}

impl UpstreamError {
    /// The connection ended under the request: closed (FIN) or reset (RST, as when the app closes
    /// a socket with our request still unread in it).
    fn connection_lost(&self) -> bool {
        match self {
            UpstreamError::Closed => true,
            UpstreamError::Io(e) => matches!(
                e.kind(),
                ErrorKind::ConnectionReset | ErrorKind::BrokenPipe | ErrorKind::ConnectionAborted
            ),
            _ => false,
        }
    }
}

/// The upstream as one worker sees it: where it is, and the connections open to it.
pub struct Upstream {
    /// `host:port`, as given to the resolver.
    address: String,
    connect_timeout: Duration,
    /// How long an answer's head may take, from the moment the request is handed over.
    timeout: Duration,
    idle: Arc<Idle>,
}

impl Upstream {
    pub fn new(
        address: String,
        connect_timeout: Duration,
        timeout: Duration,
        idle_timeout: Duration,
    ) -> Upstream {
        Upstream {
            address,
            connect_timeout,
            timeout,
            idle: Arc::new(Idle {
                connections: Mutex::new(Vec::new()),
                timeout: idle_timeout,
            }),
        }
    }

    /// Closes idle connections that are past `pool_idle_timeout` or that the app has closed. Run
    /// every second on the worker that owns them.
    pub fn prune_idle(&self) {
        self.idle.prune(Instant::now());
    }

    /// Sends `outgoing` on an idle connection, or a new one when none is left; `now` is when it is
    /// handed over (the caller's reading of the clock, which is slow to read in some VMs), from
    /// which its answer has `upstream.timeout` to begin.
    ///
    /// When an idle connection turns out to be closed under the request, the request goes out
    /// again on the next one if the app cannot have seen it: nothing of it was written, or it has
    /// no body and an idempotent method (RFC 9110 §9.2.2) and no answer had begun, as nginx does.
    pub async fn send(
        &self,
        mut outgoing: Outgoing,
        now: Instant,
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        let deadline = now + self.timeout;
        while let Some(mut connection) = self.idle.take(now) {
            match exchange(&mut connection, &mut outgoing, deadline).await {
                Ok(answer) => return Ok(self.answer(connection, answer, outgoing)),
                Err(failure) if failure.connection_lost() && outgoing.can_go_again() => {
                    outgoing.rewind();
                }
                Err(failure) => return Err(failure.error),
            }
        }
        // Boxed: connecting is rare, and its state and code would otherwise weigh on every
        // request's future (and on the instruction cache, BENCHMARKS.md, issue 18).
        Box::pin(self.send_on_new(outgoing, deadline)).await
    }

    /// `send` on a new connection, when no idle one is left.
    async fn send_on_new(
        &self,
        mut outgoing: Outgoing,
        deadline: Instant,
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        let mut connection = self.connect().await?;
        let answer = exchange(&mut connection, &mut outgoing, deadline)
            .await
            .map_err(|failure| failure.error)?;
        Ok(self.answer(connection, answer, outgoing))
    }

    async fn connect(&self) -> Result<Connection, UpstreamError> {
        let stream = tokio::time::timeout(
            self.connect_timeout,
            TcpStream::connect(self.address.as_str()),
        )
        .await
        .map_err(|_| UpstreamError::ConnectTimeout)?
        .map_err(UpstreamError::Connect)?;
        let _ = stream.set_nodelay(true);
        Ok(Connection {
            stream,
            read: BytesMut::with_capacity(READ_SIZE),
            timer: Box::pin(tokio::time::sleep(self.timeout)),
        })
    }

    /// The answer, with its connection attached to the body until the body's end, and the rest of
    /// the request when it is still going out. An answer with no body gives its connection back
    /// at once.
    fn answer(
        &self,
        connection: Connection,
        answer: Answer,
        outgoing: Outgoing,
    ) -> Response<UpstreamBody> {
        let Answer {
            head,
            framing,
            reusable,
        } = answer;
        let back = reusable.then(|| self.idle.clone());
        let mut body = UpstreamBody {
            connection: Some(connection),
            framing,
            back,
            outgoing: (!outgoing.finished()).then(|| Box::new(outgoing)),
            timeout: self.timeout,
            waiting: None,
        };
        if matches!(body.framing, Framing::Done) {
            body.finish();
        }
        head.map(|()| body)
    }
}

/// An answer as `read_one_answer` found it: the status, the body, and the bytes left after it.
#[doc(hidden)]
pub type ReadAnswer = (u16, Vec<u8>, Vec<u8>);

/// One answer read from `wire` as it arrives in the pieces that `cuts` makes of it, for a GET
/// (or a HEAD, when `head`): its status, its body, and what was left unread after it; `None`
/// when `wire` ends first. What the fuzz target and the property tests check the head parser
/// and the body decoder through, as `exchange` and `UpstreamBody` drive them.
#[doc(hidden)]
pub fn read_one_answer(
    wire: &[u8],
    cuts: &[usize],
    head: bool,
) -> Result<Option<ReadAnswer>, UpstreamError> {
    let (request, ()) = http::Request::builder()
        .method(if head {
            http::Method::HEAD
        } else {
            http::Method::GET
        })
        .body(())
        .expect("a method and nothing else")
        .into_parts();
    let outgoing = Outgoing::new(&request, "/", None, &[], |_| false);
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (wire.len() + 1)).collect();
    points.push(wire.len());
    points.sort_unstable();
    let (mut read, mut from, mut answer, mut data) = (BytesMut::new(), 0, None, Vec::new());
    for to in points {
        read.extend_from_slice(&wire[from..to]);
        from = to;
        if answer.is_none() {
            answer = head::parse_head(&mut read, &outgoing)?;
        }
        let Some(Answer { head, framing, .. }) = answer.as_mut() else {
            continue;
        };
        loop {
            match body::decode(&mut read, framing)? {
                body::Decoded::Data(piece) => data.extend_from_slice(&piece),
                body::Decoded::End => {
                    let left = [&read[..], &wire[from..]].concat();
                    return Ok(Some((head.status().as_u16(), data, left)));
                }
                body::Decoded::NeedMore => break,
            }
        }
    }
    Ok(None)
}
