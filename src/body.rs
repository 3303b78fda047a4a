//! The one body type authgate answers with: either a streamed upstream body or a small JSON body
//! of its own, boxed so both travel through the same `Response`.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited, combinators::BoxBody};
use hyper::body::Incoming;

pub type Body = BoxBody<Bytes, BoxError>;

/// Any error a body can end with: hyper's, for a client's body, or the upstream client's.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A complete body from bytes we produced ourselves.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// A streamed body (a client's request or the upstream's answer), passed on chunk by chunk.
pub fn stream<B>(body: B) -> Body
where
    B: hyper::body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed()
}

/// Why a body could not be read whole.
#[derive(Debug)]
pub enum ReadError {
    TooLarge,
    Io,
}

/// Reads a request body of at most `limit` bytes; reading stops as soon as the limit is passed.
pub async fn read_limited(incoming: Incoming, limit: usize) -> Result<Bytes, ReadError> {
    match Limited::new(incoming, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(ReadError::TooLarge),
        Err(_) => Err(ReadError::Io),
    }
}
