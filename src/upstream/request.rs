//! A request as the app gets it: encoded once (so that it can go out again on another connection),
//! then written as its body comes, chunked when the client gave no length.

use std::io::ErrorKind;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::header;
use http::{Method, request};
use hyper::body::Body as _;
use tokio::io::AsyncWrite;
use tokio::net::TcpStream;

use super::{Body, UpstreamError};
use crate::core::websocket::Accept;

/// Request body bytes gathered before they are written.
const WRITE_SIZE: usize = 64 * 1024;

/// A request ready to go out, encoded once so that it can go out again on another connection.
pub struct Outgoing {
    /// Bytes to write: the head, then body bytes as they come; `written` of them have been.
    pub(super) buffer: Vec<u8>,
    pub(super) written: usize,
    /// Whether any byte of the request has been handed to a socket.
    pub(super) sent_any: bool,
    /// The body, until its end has been buffered.
    pub(super) body: Option<Body>,
    pub(super) chunked: bool,
    /// Without a body and idempotent: safe to send twice.
    pub(super) replayable: bool,
    /// A `HEAD` answer has no body whatever its headers say.
    pub(super) head_only: bool,
    /// For a WebSocket handshake, the `Sec-WebSocket-Accept` that a `101` must carry: the only
    /// `101` that is a valid answer. Boxed, as it is rare and every request's future holds this.
    pub(super) switch: Option<Box<Accept>>,
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

        // Idempotent (RFC 9110 §9.2.2), so sent again on a fresh connection if a kept one was
        // found closed. TRACE is too, but never gets this far (`classify` refuses it).
        let idempotent = matches!(
            parts.method,
            Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE
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
    pub(super) fn finished(&self) -> bool {
        self.body.is_none() && self.written == self.buffer.len()
    }

    pub(super) fn can_go_again(&self) -> bool {
        !self.sent_any || self.replayable
    }

    /// Ready to be written from the start on another connection. What was buffered is still
    /// there: either nothing was written, or the request is its head alone.
    pub(super) fn rewind(&mut self) {
        self.written = 0;
        self.sent_any = false;
    }

    /// Writes the request, taking body bytes as they come.
    pub(super) fn poll_send(
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

    pub(super) fn push_data(&mut self, data: &[u8]) {
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

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use bytes::Bytes;

    /// A bodiless request with `method`, for tests of how its answer is read.
    pub(in crate::upstream) fn outgoing(method: Method) -> Outgoing {
        let (head, ()) = http::Request::builder()
            .method(method)
            .body(())
            .unwrap()
            .into_parts();
        Outgoing::new(&head, "/x", None, &[], |_| false)
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
}
