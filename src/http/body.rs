//! Bodies: `Body`, any body boxed, for requests passed on and authgate's own answers; and
//! `Outbound`, the one type authgate answers with, which carries the upstream's answer unboxed.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Frame, Incoming, SizeHint};

use crate::upstream::UpstreamBody;
pub(crate) use crate::upstream::{Body, BoxError};

/// An answer's body: the upstream's, as it is (most answers), or any other, boxed. Not boxing the
/// upstream's saves an allocation and two indirect calls per proxied request.
pub(crate) enum Outbound {
    Upstream(UpstreamBody),
    Boxed(Body),
}

impl hyper::body::Body for Outbound {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            Outbound::Upstream(body) => Pin::new(body).poll_frame(cx),
            Outbound::Boxed(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Outbound::Upstream(body) => body.is_end_stream(),
            Outbound::Boxed(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Outbound::Upstream(body) => body.size_hint(),
            Outbound::Boxed(body) => body.size_hint(),
        }
    }
}

/// A complete body from bytes we produced ourselves.
pub(crate) fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// A streamed body (a client's request or the upstream's answer), passed on chunk by chunk.
pub(crate) fn stream<B>(body: B) -> Body
where
    B: hyper::body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed()
}

/// Why a body could not be read whole.
#[derive(Debug)]
pub(crate) enum ReadError {
    TooLarge,
    Io,
}

/// Reads a request body of at most `limit` bytes; reading stops as soon as the limit is passed.
pub(crate) async fn read_limited(incoming: Incoming, limit: usize) -> Result<Bytes, ReadError> {
    match Limited::new(incoming, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(ReadError::TooLarge),
        Err(_) => Err(ReadError::Io),
    }
}
