//! Connections to the upstream: HTTP/1.1 spoken directly on each worker's pool of keep-alive
//! connections, reused last in, first out. A connection goes back to its pool when its answer
//! has been read to the end and nothing about it was out of the ordinary; any other is closed.
//!
//! hyper's client gives each connection a task of its own, and hands requests, answers and body
//! chunks to it through channels: a third of an authenticated request's instructions (callgrind).
//! Here the request's own task writes the request and reads the answer, and the connection travels
//! with the answer's body until it is read. Heads are parsed by `httparse`, as in hyper.
//!
//! Rules kept for the connection's sake (RFC 9112): an answer's length comes from
//! `Transfer-Encoding`, then `Content-Length` (every value the same), else it runs until the
//! connection closes. An answer with both, with an unknown coding, from HTTP/1.0, with
//! `Connection: close`, or followed by stray bytes leaves its connection closed after it.

use std::future::poll_fn;
use std::io::{self, ErrorKind};
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker, ready};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Response, StatusCode, Version, request};
use hyper::body::{Body as _, Frame, SizeHint};
use tokio::io::AsyncWrite;
use tokio::net::TcpStream;
use tokio::time::Sleep;

use crate::core::websocket::{self, Accept};

/// A request body on its way to the app, boxed: the client's, streamed, as the edge hands it over.
pub type Body = http_body_util::combinators::BoxBody<Bytes, BoxError>;

/// Any error a body can end with: hyper's, for a client's body, or the upstream client's.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Idle connections kept per worker, at most.
const MAX_IDLE: usize = 256;
/// The longest answer head accepted, and the most header fields in it.
const MAX_HEAD: usize = 64 * 1024;
const MAX_HEADERS: usize = 100;
/// The longest chunk-size line (extensions included), and the most trailer bytes after the last.
const MAX_CHUNK_LINE: usize = 4096;
const MAX_TRAILERS: usize = 64 * 1024;
/// Room made in a connection's read buffer before each read.
const READ_SIZE: usize = 16 * 1024;
/// Request body bytes gathered before they are written.
const WRITE_SIZE: usize = 64 * 1024;

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

/// One open connection, and what the upstream sent on it that has not been consumed yet.
struct Connection {
    stream: TcpStream,
    read: BytesMut,
    /// Wakes an exchange when its deadline may have passed. Set for some earlier request's
    /// deadline, it is moved on only when it fires: registering a timer and removing it again for
    /// each request cost 4 % of a request's instructions.
    timer: Pin<Box<Sleep>>,
}

impl Connection {
    /// Reads what is there into the buffer; `Ok(0)` at the end of the stream.
    ///
    /// Through `AsyncRead`, not `try_read_buf`: a read that leaves room in the buffer tells tokio
    /// the socket is drained, so the check in `fit_for_reuse` costs no `recvfrom` (one in three
    /// of a request's reads from the upstream, before).
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.read.capacity() - self.read.len() < READ_SIZE / 4 {
            self.read.reserve(READ_SIZE);
        }
        tokio_util::io::poll_read_buf(Pin::new(&mut self.stream), cx, &mut self.read)
    }

    /// Ready once `deadline` has passed.
    fn poll_deadline(&mut self, deadline: Instant, cx: &mut Context<'_>) -> Poll<()> {
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
    fn fit_for_reuse(&mut self) -> bool {
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
struct Idle {
    connections: Mutex<Vec<(Connection, Instant)>>,
    timeout: Duration,
}

impl Idle {
    /// The most recently used connection that is still fit for a request at `now`; those idle for
    /// too long are closed.
    fn take(&self, now: Instant) -> Option<Connection> {
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
    fn prune(&self, now: Instant) {
        let mut connections = self.connections.lock().unwrap_or_else(|e| e.into_inner());
        connections.retain_mut(|(connection, since)| {
            !self.expired(*since, now) && connection.fit_for_reuse()
        });
    }

    /// Whether a connection idle since `since` has been idle too long at `now`.
    fn expired(&self, since: Instant, now: Instant) -> bool {
        now.saturating_duration_since(since) > self.timeout
    }

    fn put(&self, connection: Connection) {
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

    /// Sends `outgoing` on an idle connection, or a new one when none is left.
    ///
    /// When an idle connection turns out to be closed under the request, the request goes out
    /// again on the next one if the app cannot have seen it: nothing of it was written, or it has
    /// no body and an idempotent method (RFC 9110 §9.2.2) and no answer had begun, as nginx does.
    pub async fn send(
        &self,
        mut outgoing: Outgoing,
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        let now = Instant::now();
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
        // Boxed: connecting is rare, and its state would otherwise weigh on every request's future.
        let mut connection = Box::pin(self.connect()).await?;
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

/// A request ready to go out, encoded once so that it can go out again on another connection.
pub struct Outgoing {
    /// Bytes to write: the head, then body bytes as they come; `written` of them have been.
    buffer: Vec<u8>,
    written: usize,
    /// Whether any byte of the request has been handed to a socket.
    sent_any: bool,
    /// The body, until its end has been buffered.
    body: Option<Body>,
    chunked: bool,
    /// Without a body and idempotent: safe to send twice.
    replayable: bool,
    /// A `HEAD` answer has no body whatever its headers say.
    head_only: bool,
    /// For a WebSocket handshake, the `Sec-WebSocket-Accept` that a `101` must carry: the only
    /// `101` that is a valid answer. Boxed, as it is rare and every request's future holds this.
    switch: Option<Box<Accept>>,
}

impl Outgoing {
    /// A request with `head`'s method to `target` (origin form, valid as a request target), with
    /// `head`'s header fields but those `omit` picks, then the `extra` ones. The fields are
    /// written as given: valid names and values, and a `Host` among them or in `head`. `body` is
    /// `None` for a request without one.
    ///
    /// Omitted while encoding rather than removed from `head` first: one pass over the fields.
    pub fn new(
        parts: &request::Parts,
        target: &str,
        body: Option<Body>,
        extra: &[(&str, &[u8])],
        omit: impl Fn(&str) -> bool,
    ) -> Outgoing {
        // The length the client gave, which hyper's server has held its body to, or chunks.
        let chunked = body.is_some() && !parts.headers.contains_key(header::CONTENT_LENGTH);

        let head_fields = || {
            parts
                .headers
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_bytes()))
        };
        // The size of what follows, so that it takes one allocation. Omitted fields are counted
        // too: a few bytes to spare, rather than asking `omit` about every field twice.
        let size = head_fields()
            .chain(extra.iter().copied())
            .map(|(n, v)| n.len() + v.len() + 4)
            .sum::<usize>()
            + target.len()
            + 64;
        let mut buffer = Vec::with_capacity(size);
        buffer.extend_from_slice(parts.method.as_str().as_bytes());
        buffer.push(b' ');
        buffer.extend_from_slice(target.as_bytes());
        buffer.extend_from_slice(b" HTTP/1.1\r\n");
        let kept = head_fields().filter(|&(name, _)| !omit(name));
        for (name, value) in kept.chain(extra.iter().copied()) {
            buffer.extend_from_slice(name.as_bytes());
            buffer.extend_from_slice(b": ");
            buffer.extend_from_slice(value);
            buffer.extend_from_slice(b"\r\n");
        }
        if chunked {
            buffer.extend_from_slice(b"transfer-encoding: chunked\r\n");
        }
        buffer.extend_from_slice(b"\r\n");

        let idempotent = matches!(
            parts.method,
            Method::GET
                | Method::HEAD
                | Method::OPTIONS
                | Method::TRACE
                | Method::PUT
                | Method::DELETE
        );
        Outgoing {
            buffer,
            written: 0,
            sent_any: false,
            replayable: idempotent && body.is_none(),
            body,
            chunked,
            head_only: parts.method == Method::HEAD,
            switch: None,
        }
    }

    /// Makes a `101` that completes this WebSocket handshake (and only such a `101`) a valid
    /// answer: the request must already carry its `Upgrade` and `Connection` fields.
    pub fn expect_switch(&mut self, accept: Accept) {
        self.switch = Some(Box::new(accept));
    }

    /// Whether all of the request has been written.
    fn finished(&self) -> bool {
        self.body.is_none() && self.written == self.buffer.len()
    }

    fn can_go_again(&self) -> bool {
        !self.sent_any || self.replayable
    }

    /// Ready to be written from the start on another connection. What was buffered is still
    /// there: either nothing was written, or the request is its head alone.
    fn rewind(&mut self) {
        self.written = 0;
        self.sent_any = false;
    }

    /// Writes the request, taking body bytes as they come.
    fn poll_send(
        &mut self,
        stream: &mut TcpStream,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), UpstreamError>> {
        loop {
            // What the body has ready goes with what is waiting, so a small request is one write.
            while self.buffer.len() < WRITE_SIZE {
                let Some(body) = self.body.as_mut() else {
                    break;
                };
                match Pin::new(body).poll_frame(cx) {
                    Poll::Pending => break,
                    Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(UpstreamError::Body(e))),
                    Poll::Ready(Some(Ok(frame))) => {
                        // Trailers are not passed on.
                        if let Ok(data) = frame.into_data() {
                            self.push_data(&data);
                        }
                    }
                    Poll::Ready(None) => {
                        if self.chunked {
                            self.buffer.extend_from_slice(b"0\r\n\r\n");
                        }
                        self.body = None;
                    }
                }
            }
            if self.written == self.buffer.len() {
                // The body's waker is registered when it has more to come.
                return match self.body {
                    None => Poll::Ready(Ok(())),
                    Some(_) => Poll::Pending,
                };
            }
            let unwritten = &self.buffer[self.written..];
            let n = ready!(Pin::new(&mut *stream).poll_write(cx, unwritten))
                .map_err(UpstreamError::Io)?;
            if n == 0 {
                return Poll::Ready(Err(UpstreamError::Io(ErrorKind::WriteZero.into())));
            }
            self.written += n;
            self.sent_any = true;
            // A replayable request keeps its head for another go.
            if self.written == self.buffer.len() && !self.replayable {
                self.buffer.clear();
                self.written = 0;
            }
        }
    }

    fn push_data(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        if self.chunked {
            self.buffer
                .extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
            self.buffer.extend_from_slice(data);
            self.buffer.extend_from_slice(b"\r\n");
        } else {
            self.buffer.extend_from_slice(data);
        }
    }
}

/// What went wrong in one exchange, and whether the app may have seen any of the request.
struct Failure {
    error: UpstreamError,
    answer_begun: bool,
}

impl Failure {
    fn connection_lost(&self) -> bool {
        !self.answer_begun && self.error.connection_lost()
    }
}

/// An answer's head, how its body is framed, and whether its connection can serve again.
struct Answer {
    head: Response<()>,
    framing: Framing,
    reusable: bool,
}

/// Writes the request and reads the answer's head by `deadline`, both at once: an app may answer
/// before it has read the whole body, to echo it as it comes or to refuse it (413). The body then
/// goes on being sent alongside the answer's (see `UpstreamBody`).
async fn exchange(
    connection: &mut Connection,
    outgoing: &mut Outgoing,
    deadline: Instant,
) -> Result<Answer, Failure> {
    let mut sending = true;
    let mut write_error = None;
    let mut answer_begun = false;
    poll_fn(|cx| {
        if sending {
            match outgoing.poll_send(&mut connection.stream, cx) {
                Poll::Ready(Ok(())) => sending = false,
                Poll::Ready(Err(UpstreamError::Io(e))) => {
                    // The app may have answered before it closed: read that first.
                    sending = false;
                    write_error = Some(UpstreamError::Io(e));
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {}
            }
        }
        loop {
            match parse_head(&mut connection.read, outgoing) {
                Ok(Some(mut answer)) => {
                    // The app stopped reading before the request's end: it is read no further.
                    if write_error.is_some() {
                        answer.reusable = false;
                        outgoing.body = None;
                        outgoing.written = outgoing.buffer.len();
                    }
                    return Poll::Ready(Ok(answer));
                }
                Ok(None) => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
            if connection.read.len() >= MAX_HEAD {
                return Poll::Ready(Err(UpstreamError::Invalid("answer head too large")));
            }
            let filled = match connection.poll_fill(cx) {
                Poll::Ready(filled) => filled,
                Poll::Pending => {
                    ready!(connection.poll_deadline(deadline, cx));
                    return Poll::Ready(Err(UpstreamError::Timeout));
                }
            };
            match filled {
                Ok(0) => {
                    return Poll::Ready(Err(write_error.take().unwrap_or(UpstreamError::Closed)));
                }
                Ok(_) => answer_begun = true,
                Err(e) => {
                    return Poll::Ready(Err(write_error.take().unwrap_or(UpstreamError::Io(e))));
                }
            }
        }
    })
    .await
    .map_err(|error| Failure {
        error,
        answer_begun,
    })
}

/// Parses an answer head at the start of `read` and takes it out: `None` until it is complete.
/// Interim answers (`100 Continue`, `103 Early Hints`) are skipped.
fn parse_head(read: &mut BytesMut, outgoing: &Outgoing) -> Result<Option<Answer>, UpstreamError> {
    loop {
        let mut fields = [const { MaybeUninit::<httparse::Header>::uninit() }; MAX_HEADERS];
        let mut parsed = httparse::Response::new(&mut []);
        let length = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut parsed,
            read,
            &mut fields,
        ) {
            Ok(httparse::Status::Complete(length)) => length,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => {
                return Err(UpstreamError::Invalid("too many header fields"));
            }
            Err(_) => return Err(UpstreamError::Invalid("malformed head")),
        };
        let code = parsed.code.unwrap_or_default();
        let status = StatusCode::from_u16(code)
            .map_err(|_| UpstreamError::Invalid("status code out of range"))?;
        if status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS {
            read.advance(length);
            continue;
        }
        let http10 = parsed.version == Some(0);
        // Where each name and value lies, so that the values can share the head's bytes. (Read
        // in place, not moved: as 24 spans of four `usize`, moving them cost 200 instructions.)
        let base = read.as_ptr() as usize;
        let offset = |field: &[u8]| (field.as_ptr() as usize - base) as u32;
        let spans: smallvec::SmallVec<[(u32, u32, u32, u32); 24]> = parsed
            .headers
            .iter()
            .map(|field| {
                let (name, value) = (field.name.as_bytes(), field.value);
                (
                    offset(name),
                    name.len() as u32,
                    offset(value),
                    value.len() as u32,
                )
            })
            .collect();
        let bytes = read.split_to(length).freeze();
        let mut headers = HeaderMap::with_capacity(spans.len());
        // Noted on the way, so that most answers need no lookup for them.
        let (mut coded, mut connection, mut length) = (false, false, Ok(None));
        for &(name, name_len, value, value_len) in &spans {
            let (name, value) = (name as usize, value as usize);
            let (name_len, value_len) = (name_len as usize, value_len as usize);
            let name = HeaderName::from_bytes(&bytes[name..name + name_len])
                .map_err(|_| UpstreamError::Invalid("bad header name"))?;
            coded |= name == header::TRANSFER_ENCODING;
            connection |= name == header::CONNECTION;
            if name == header::CONTENT_LENGTH {
                length = content_length(length, &bytes[value..value + value_len]);
            }
            let value = HeaderValue::from_maybe_shared(bytes.slice(value..value + value_len))
                .map_err(|_| UpstreamError::Invalid("bad header value"))?;
            headers.append(name, value);
        }

        let (framing, delimited) = framing(status, &mut headers, coded, length, outgoing)?;
        let reusable = delimited && !http10 && !(connection && asks_to_close(&headers));
        let mut head = Response::new(());
        *head.status_mut() = status;
        *head.version_mut() = Version::HTTP_11;
        *head.headers_mut() = headers;
        return Ok(Some(Answer {
            head,
            framing,
            reusable,
        }));
    }
}

/// How the answer's body ends, and whether that end is clear enough to reuse the connection.
/// `coded`: whether there is a `Transfer-Encoding` field; `length`: what the `Content-Length`
/// fields said, if anything, or why they are not to be trusted.
fn framing(
    status: StatusCode,
    headers: &mut HeaderMap,
    coded: bool,
    length: Result<Option<u64>, &'static str>,
    outgoing: &Outgoing,
) -> Result<(Framing, bool), UpstreamError> {
    if status == StatusCode::SWITCHING_PROTOCOLS {
        // Anything but the completion of the client's own WebSocket handshake would hand the
        // client a raw connection to the app.
        return match &outgoing.switch {
            Some(accept) if websocket::switch_completes(headers, accept) => {
                Ok((Framing::Upgrade, false))
            }
            Some(_) => Err(UpstreamError::Invalid(
                "101 that does not complete the WebSocket handshake",
            )),
            None => Err(UpstreamError::Invalid(
                "101 to a request that asked for no upgrade",
            )),
        };
    }
    if outgoing.head_only || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED
    {
        // A body that this answer may not even announce (a 204 with a length or chunks, a 304
        // with chunks) may still be on its way: the connection is not trusted with another
        // request, whose answer those bytes would become. A HEAD or 304 answer's length is the
        // representation's, as RFC 9110 §8.6 allows, and keeps the connection.
        let impossible = !outgoing.head_only
            && (coded
                || (status == StatusCode::NO_CONTENT && !matches!(length, Ok(None | Some(0)))));
        return Ok((Framing::Done, !impossible));
    }
    if coded {
        // Codings other than chunked would reach the client undone and unannounced, since
        // Transfer-Encoding is hop-by-hop: refused rather than passed on wrong.
        if !only_chunked(headers) {
            return Err(UpstreamError::Invalid("transfer coding other than chunked"));
        }
        // Transfer-Encoding wins over Content-Length, which must not reach the client with it.
        let both = headers.remove(header::CONTENT_LENGTH).is_some();
        return Ok((Framing::Chunked(Chunk::Size), !both));
    }
    match length.map_err(UpstreamError::Invalid)? {
        Some(0) => Ok((Framing::Done, true)),
        Some(length) => Ok((Framing::Length(length), true)),
        None => Ok((Framing::UntilClose, false)),
    }
}

/// Whether the `Transfer-Encoding` fields name `chunked` once and no other coding.
pub(crate) fn only_chunked(headers: &HeaderMap) -> bool {
    let mut codings = headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii);
    codings
        .next()
        .is_some_and(|first| first.eq_ignore_ascii_case(b"chunked"))
        && codings.next().is_none()
}

/// What the `Content-Length` fields before said (`known`), with one more `field`: every value, in
/// every field, must be the same number. Folded in as the head is read, rather than looked up
/// after: the lookup was 0.6 % of a proxied request's instructions.
fn content_length(
    known: Result<Option<u64>, &'static str>,
    field: &[u8],
) -> Result<Option<u64>, &'static str> {
    let mut length = known?;
    for value in field.split(|&b| b == b',') {
        let value = value.trim_ascii();
        let parsed =
            (!value.is_empty() && value.len() <= 19 && value.iter().all(u8::is_ascii_digit))
                .then(|| value.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
                .ok_or("bad Content-Length")?;
        if length.is_some_and(|known| known != parsed) {
            return Err("conflicting Content-Length values");
        }
        length = Some(parsed);
    }
    Ok(length)
}

fn asks_to_close(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"close"))
}

/// Where the answer's body ends.
enum Framing {
    /// This many bytes are left.
    Length(u64),
    Chunked(Chunk),
    /// Everything until the app closes the connection.
    UntilClose,
    /// `101`: the connection now belongs to the new protocol.
    Upgrade,
    Done,
}

/// Where a chunked body's reader stands.
enum Chunk {
    /// Before a chunk-size line.
    Size,
    /// Inside a chunk's data, with this many bytes left.
    Data(u64),
    /// After a chunk's data, before its CRLF.
    DataEnd,
    /// After the last chunk, with this many trailer bytes read so far.
    Trailers(usize),
}

/// An answer body read straight from its connection, which goes back to the pool at the end.
pub struct UpstreamBody {
    connection: Option<Connection>,
    framing: Framing,
    /// The pool, when the connection may serve again.
    back: Option<Arc<Idle>>,
    /// The rest of a request whose answer began before it was all sent.
    outgoing: Option<Box<Outgoing>>,
    /// How long the app may leave the body waiting for its next bytes, and since when the body
    /// has been waiting, if it is: set only when a read finds nothing, so a body that is there
    /// already never reads the clock.
    timeout: Duration,
    waiting: Option<Instant>,
}

impl UpstreamBody {
    /// After a `101`: the connection, and whatever the upstream already sent past the head.
    pub fn into_upgraded(mut self) -> Option<(TcpStream, Bytes)> {
        if !matches!(self.framing, Framing::Upgrade) {
            return None;
        }
        let connection = self.connection.take()?;
        Some((connection.stream, connection.read.freeze()))
    }

    fn finish(&mut self) {
        self.framing = Framing::Done;
        // A request cut short leaves its connection mid-message.
        if self.outgoing.take().is_some() {
            self.back = None;
        }
        if let (Some(connection), Some(idle)) = (self.connection.take(), self.back.take()) {
            idle.put(connection);
        }
    }
}

impl hyper::body::Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let Some(connection) = this.connection.as_mut() else {
            return Poll::Ready(None);
        };
        if let Some(outgoing) = this.outgoing.as_mut() {
            match outgoing.poll_send(&mut connection.stream, cx) {
                Poll::Ready(Ok(())) => this.outgoing = None,
                // The app stopped reading, or the client stopped sending: the answer is still
                // read, but the connection is not reused.
                Poll::Ready(Err(_)) => {
                    this.outgoing = None;
                    this.back = None;
                }
                Poll::Pending => {}
            }
        }
        let next = match next_data(connection, &mut this.framing, cx) {
            Poll::Ready(next) => next,
            Poll::Pending => {
                let since = *this.waiting.get_or_insert_with(Instant::now);
                ready!(connection.poll_deadline(since + this.timeout, cx));
                Err(UpstreamError::Timeout)
            }
        };
        this.waiting = None;
        match next {
            Ok(Some(data)) => {
                if matches!(this.framing, Framing::Done) {
                    this.finish();
                }
                Poll::Ready(Some(Ok(Frame::data(data))))
            }
            Ok(None) => {
                if matches!(this.framing, Framing::Done) {
                    this.finish();
                }
                this.connection = None;
                Poll::Ready(None)
            }
            Err(e) => {
                // A broken body leaves its connection in no state to be reused.
                this.connection = None;
                Poll::Ready(Some(Err(e.into())))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.framing, Framing::Done | Framing::Upgrade)
    }

    fn size_hint(&self) -> SizeHint {
        match self.framing {
            Framing::Length(left) => SizeHint::with_exact(left),
            Framing::Done | Framing::Upgrade => SizeHint::with_exact(0),
            Framing::Chunked(_) | Framing::UntilClose => SizeHint::default(),
        }
    }
}

/// The next piece of body data, `None` at its end; `framing` is `Done` once the end is reached.
fn next_data(
    connection: &mut Connection,
    framing: &mut Framing,
    cx: &mut Context<'_>,
) -> Poll<Result<Option<Bytes>, UpstreamError>> {
    loop {
        match decode(&mut connection.read, framing) {
            Ok(Decoded::Data(data)) => return Poll::Ready(Ok(Some(data))),
            Ok(Decoded::End) => return Poll::Ready(Ok(None)),
            Ok(Decoded::NeedMore) => {}
            Err(e) => return Poll::Ready(Err(e)),
        }
        match ready!(connection.poll_fill(cx)) {
            Ok(0) if matches!(framing, Framing::UntilClose) => {
                *framing = Framing::Done;
                // The connection is closed: `back` never gets it, since this framing was not
                // reusable.
                return Poll::Ready(Ok(None));
            }
            Ok(0) => return Poll::Ready(Err(UpstreamError::Closed)),
            Ok(_) => {}
            Err(e) => return Poll::Ready(Err(UpstreamError::Io(e))),
        }
    }
}

/// What `decode` made of the bytes read so far.
#[derive(Debug, PartialEq)]
enum Decoded {
    Data(Bytes),
    End,
    NeedMore,
}

/// Takes the next piece of body data off the front of `read`, moving `framing` on; never reads
/// past the body's end, so what follows it stays in `read`.
fn decode(read: &mut BytesMut, framing: &mut Framing) -> Result<Decoded, UpstreamError> {
    loop {
        match framing {
            Framing::Done | Framing::Upgrade => return Ok(Decoded::End),
            Framing::Length(left) if !read.is_empty() => {
                let data = read.split_to(read.len().min(clamp(*left))).freeze();
                *left -= data.len() as u64;
                if *left == 0 {
                    *framing = Framing::Done;
                }
                return Ok(Decoded::Data(data));
            }
            Framing::UntilClose if !read.is_empty() => {
                return Ok(Decoded::Data(read.split().freeze()));
            }
            Framing::Chunked(Chunk::Data(left)) if !read.is_empty() => {
                let data = read.split_to(read.len().min(clamp(*left))).freeze();
                *left -= data.len() as u64;
                if *left == 0 {
                    *framing = Framing::Chunked(Chunk::DataEnd);
                }
                return Ok(Decoded::Data(data));
            }
            Framing::Chunked(Chunk::DataEnd) if !read.is_empty() => {
                let seen = read.len().min(2);
                if read[..seen] != b"\r\n"[..seen] {
                    return Err(UpstreamError::Invalid("chunk without its CRLF"));
                }
                if seen < 2 {
                    return Ok(Decoded::NeedMore);
                }
                read.advance(2);
                *framing = Framing::Chunked(Chunk::Size);
            }
            Framing::Chunked(Chunk::Size) => {
                let Some(line) = take_line(read, MAX_CHUNK_LINE)? else {
                    return Ok(Decoded::NeedMore);
                };
                *framing = match chunk_size(&line)? {
                    0 => Framing::Chunked(Chunk::Trailers(0)),
                    size => Framing::Chunked(Chunk::Data(size)),
                };
            }
            Framing::Chunked(Chunk::Trailers(seen)) => {
                let budget = MAX_TRAILERS.saturating_sub(*seen);
                let Some(line) = take_line(read, budget)? else {
                    return Ok(Decoded::NeedMore);
                };
                if line.is_empty() {
                    *framing = Framing::Done;
                    return Ok(Decoded::End);
                }
                // Trailer fields are read past, not passed on.
                *seen += line.len() + 2;
            }
            _ => return Ok(Decoded::NeedMore),
        }
    }
}

/// `left` as a buffer length.
fn clamp(left: u64) -> usize {
    usize::try_from(left).unwrap_or(usize::MAX)
}

/// Takes one CRLF-terminated line (without its CRLF) off the front of `read`: `None` while it is
/// incomplete and shorter than `max`.
fn take_line(read: &mut BytesMut, max: usize) -> Result<Option<Bytes>, UpstreamError> {
    let Some(end) = read.iter().take(max).position(|&b| b == b'\n') else {
        return if read.len() >= max {
            Err(UpstreamError::Invalid("line too long in a chunked body"))
        } else {
            Ok(None)
        };
    };
    if end == 0 || read[end - 1] != b'\r' {
        return Err(UpstreamError::Invalid("bare LF in a chunked body"));
    }
    let line = read.split_to(end + 1).freeze();
    Ok(Some(line.slice(..end - 1)))
}

/// A chunk-size line: hex digits, then optionally `;` and extensions, which are ignored.
fn chunk_size(line: &[u8]) -> Result<u64, UpstreamError> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    let rest = line[digits..].trim_ascii_start();
    let valid_rest = rest.is_empty()
        || (rest[0] == b';'
            && rest
                .iter()
                .all(|&b| b == b'\t' || (b' '..0x7f).contains(&b)));
    if digits == 0 || digits > 16 || !valid_rest {
        return Err(UpstreamError::Invalid("bad chunk size"));
    }
    let hex = std::str::from_utf8(&line[..digits]).expect("hex digits are ASCII");
    u64::from_str_radix(hex, 16).map_err(|_| UpstreamError::Invalid("bad chunk size"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    HeaderValue::from_str(v).unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn chunk_sizes_are_hex_with_optional_extensions() {
        assert_eq!(chunk_size(b"1a").unwrap(), 26);
        assert_eq!(chunk_size(b"0").unwrap(), 0);
        assert_eq!(chunk_size(b"FF;name=value").unwrap(), 255);
        assert_eq!(chunk_size(b"10 ; x").unwrap(), 16);
        assert_eq!(chunk_size(b"ffffffffffffffff").unwrap(), u64::MAX);
        for bad in [
            &b""[..],
            b";x",
            b"-1",
            b"0x10",
            b"1 2",
            b"1\x00",
            b"11111111111111111",
        ] {
            assert!(
                chunk_size(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn content_length_values_must_agree() {
        let length = |fields: &[&str]| {
            fields
                .iter()
                .try_fold(None, |known, field| {
                    content_length(Ok(known), field.as_bytes())
                })
                .ok()
        };
        assert_eq!(length(&[]), Some(None));
        assert_eq!(length(&["42"]), Some(Some(42)));
        assert_eq!(length(&["7, 7", "7"]), Some(Some(7)));
        assert_eq!(length(&["7", "8"]), None);
        assert_eq!(length(&["7", "+7", "7"]), None);
        assert_eq!(length(&["+7"]), None);
        assert_eq!(length(&[""]), None);
        assert_eq!(length(&["99999999999999999999"]), None);
    }

    #[test]
    fn lines_need_their_crlf_and_a_limit() {
        let mut read = BytesMut::from(&b"5;a\r\nrest"[..]);
        assert_eq!(take_line(&mut read, 100).unwrap().unwrap(), &b"5;a"[..]);
        assert_eq!(&read[..], b"rest");
        assert!(
            take_line(&mut BytesMut::from(&b"12"[..]), 100)
                .unwrap()
                .is_none()
        );
        assert!(take_line(&mut BytesMut::from(&b"12\n"[..]), 100).is_err());
        assert!(take_line(&mut BytesMut::from(&b"123456"[..]), 4).is_err());
    }

    fn outgoing(method: Method) -> Outgoing {
        let (head, ()) = http::Request::builder()
            .method(method)
            .body(())
            .unwrap()
            .into_parts();
        Outgoing::new(&head, "/x", None, &[], |_| false)
    }

    #[test]
    fn the_answer_framing_follows_rfc_9112() {
        let get = outgoing(Method::GET);
        let frame = |status: u16, pairs: &[(&str, &str)], request: &Outgoing| {
            let mut h = headers(pairs);
            let coded = h.contains_key(header::TRANSFER_ENCODING);
            let length = h
                .get_all(header::CONTENT_LENGTH)
                .iter()
                .try_fold(None, |known, field| {
                    content_length(Ok(known), field.as_bytes())
                });
            let result = framing(
                StatusCode::from_u16(status).unwrap(),
                &mut h,
                coded,
                length,
                request,
            );
            result.map(|(framing, reusable)| {
                let kind = match framing {
                    Framing::Length(n) => format!("length {n}"),
                    Framing::Chunked(_) => "chunked".into(),
                    Framing::UntilClose => "until close".into(),
                    Framing::Upgrade => "upgrade".into(),
                    Framing::Done => "done".into(),
                };
                (kind, reusable, h.contains_key(header::CONTENT_LENGTH))
            })
        };
        let ok =
            |kind: &str, reusable, length_kept| Some((kind.to_string(), reusable, length_kept));
        assert_eq!(
            frame(200, &[("content-length", "5")], &get).ok(),
            ok("length 5", true, true)
        );
        assert_eq!(
            frame(200, &[("content-length", "0")], &get).ok(),
            ok("done", true, true)
        );
        assert_eq!(
            frame(200, &[("transfer-encoding", "chunked")], &get).ok(),
            ok("chunked", true, false)
        );
        assert_eq!(
            frame(
                200,
                &[("transfer-encoding", "chunked"), ("content-length", "5")],
                &get
            )
            .ok(),
            ok("chunked", false, false),
        );
        for coding in ["chunked, gzip", "gzip, chunked", "gzip", "chunked, chunked"] {
            assert!(
                frame(200, &[("transfer-encoding", coding)], &get).is_err(),
                "{coding}"
            );
        }
        assert_eq!(
            frame(200, &[("transfer-encoding", "Chunked")], &get).ok(),
            ok("chunked", true, false)
        );
        assert_eq!(frame(200, &[], &get).ok(), ok("until close", false, false));
        assert_eq!(frame(204, &[], &get).ok(), ok("done", true, false));
        assert_eq!(frame(304, &[], &get).ok(), ok("done", true, false));
        assert_eq!(
            frame(304, &[("content-length", "5")], &get).ok(),
            ok("done", true, true)
        );
        assert_eq!(
            frame(200, &[("content-length", "5")], &outgoing(Method::HEAD)).ok(),
            ok("done", true, true)
        );
        // A body announced where none may be: the connection is not used again.
        assert_eq!(
            frame(204, &[("content-length", "5")], &get).ok(),
            ok("done", false, true)
        );
        assert_eq!(
            frame(204, &[("transfer-encoding", "chunked")], &get).ok(),
            ok("done", false, false)
        );
        assert_eq!(
            frame(304, &[("transfer-encoding", "chunked")], &get).ok(),
            ok("done", false, false)
        );
        assert!(frame(101, &[], &get).is_err(), "a 101 nobody asked for");
        let mut handshake = outgoing(Method::GET);
        handshake.expect_switch(websocket::accept_for(b"dGhlIHNhbXBsZSBub25jZQ=="));
        let switch = |accept: &str| {
            frame(
                101,
                &[("upgrade", "websocket"), ("sec-websocket-accept", accept)],
                &handshake,
            )
        };
        assert_eq!(
            switch("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=").ok(),
            ok("upgrade", false, false)
        );
        assert!(switch("AAAAAAAAAAAAAAAAAAAAAAAAAAA=").is_err());
        assert!(
            frame(101, &[("upgrade", "h2c")], &handshake).is_err(),
            "a 101 to another protocol"
        );
        assert!(frame(200, &[("content-length", "5, 6")], &get).is_err());
    }

    #[test]
    fn a_request_is_encoded_with_its_framing() {
        let (head, ()) = http::Request::builder()
            .method(Method::POST)
            .header("host", "app")
            .header("x-dropped", "1")
            .body(())
            .unwrap()
            .into_parts();
        let body: Body = {
            use http_body_util::BodyExt;
            http_body_util::Full::new(Bytes::from_static(b"hi"))
                .map_err(|never| match never {})
                .boxed()
        };
        let outgoing = Outgoing::new(
            &head,
            "/submit?x=1",
            Some(body),
            &[("x-added", b"1")],
            |name| name == "x-dropped",
        );
        assert_eq!(
            String::from_utf8_lossy(&outgoing.buffer),
            "POST /submit?x=1 HTTP/1.1\r\nhost: app\r\nx-added: 1\r\ntransfer-encoding: chunked\r\n\r\n"
        );
        assert!(!outgoing.replayable);
        assert!(self::outgoing(Method::GET).replayable);
        assert!(!self::outgoing(Method::PATCH).replayable);
    }

    /// Feeds `wire` to `decode` in the pieces `cuts` makes of it, as reads would deliver it,
    /// and returns the data, whether the end was reached, and what was left unread.
    fn decode_in_pieces(
        wire: &[u8],
        cuts: &[usize],
        mut framing: Framing,
    ) -> Result<(Vec<u8>, bool, Vec<u8>), UpstreamError> {
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (wire.len() + 1)).collect();
        points.push(wire.len());
        points.sort_unstable();
        let (mut read, mut data, mut from) = (BytesMut::new(), Vec::new(), 0);
        for to in points {
            read.extend_from_slice(&wire[from..to]);
            from = to;
            loop {
                match decode(&mut read, &mut framing)? {
                    Decoded::Data(piece) => {
                        assert!(!piece.is_empty(), "empty data");
                        data.extend_from_slice(&piece);
                    }
                    Decoded::End => return Ok((data, true, [&read[..], &wire[from..]].concat())),
                    Decoded::NeedMore => break,
                }
            }
        }
        Ok((data, false, read.to_vec()))
    }

    proptest::proptest! {
        /// Any chunked body, with extensions and trailers, cut anywhere: the data comes out
        /// whole, the end is found, and what follows the body is left alone.
        #[test]
        fn chunked_bodies_decode_whatever_the_reads(
            chunks in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 1..300), 0..8),
            extension in proptest::option::of("[a-z]{1,8}(=[a-z0-9]{1,8})?"),
            trailers in proptest::collection::vec("[a-z]{1,10}: [ -~]{0,20}", 0..3),
            uppercase in proptest::bool::ANY,
            cuts in proptest::collection::vec(0usize..4096, 0..12),
        ) {
            let mut wire = Vec::new();
            for chunk in &chunks {
                let size = if uppercase { format!("{:X}", chunk.len()) } else { format!("{:x}", chunk.len()) };
                wire.extend_from_slice(size.as_bytes());
                if let Some(extension) = &extension {
                    wire.extend_from_slice(format!(";{extension}").as_bytes());
                }
                wire.extend_from_slice(b"\r\n");
                wire.extend_from_slice(chunk);
                wire.extend_from_slice(b"\r\n");
            }
            wire.extend_from_slice(b"0\r\n");
            for trailer in &trailers {
                wire.extend_from_slice(format!("{trailer}\r\n").as_bytes());
            }
            wire.extend_from_slice(b"\r\nHTTP/1.1 200 OK\r\n");
            let (data, ended, left) =
                decode_in_pieces(&wire, &cuts, Framing::Chunked(Chunk::Size)).unwrap();
            proptest::prop_assert_eq!(data, chunks.concat());
            proptest::prop_assert!(ended);
            proptest::prop_assert_eq!(left, b"HTTP/1.1 200 OK\r\n".to_vec());
        }

        /// A body with a length, cut anywhere: exactly that many bytes, and the rest left alone.
        #[test]
        fn bodies_with_a_length_stop_at_it(
            body in proptest::collection::vec(proptest::num::u8::ANY, 1..2000),
            extra in proptest::collection::vec(proptest::num::u8::ANY, 0..50),
            cuts in proptest::collection::vec(0usize..4096, 0..12),
        ) {
            let wire = [body.clone(), extra.clone()].concat();
            let (data, ended, left) =
                decode_in_pieces(&wire, &cuts, Framing::Length(body.len() as u64)).unwrap();
            proptest::prop_assert_eq!(data, body);
            proptest::prop_assert!(ended);
            proptest::prop_assert_eq!(left, extra);
        }

        /// Bytes an app might send as a chunked body, valid or not: decoding ends in data, an
        /// end, a wait for more or an error, never a panic or a loop.
        #[test]
        fn any_bytes_as_a_chunked_body_never_panic(
            wire in proptest::collection::vec(
                proptest::sample::select(b"0123456789abcdefABCDEF;=\r\n \tXz\x00\xff".to_vec()),
                0..400,
            ),
            cuts in proptest::collection::vec(0usize..512, 0..8),
        ) {
            let _ = decode_in_pieces(&wire, &cuts, Framing::Chunked(Chunk::Size));
        }
    }
}
