//! The small JSON bodies the auth endpoints read: content type checked, size capped while reading,
//! a deadline on the whole body. The core's `json_fields` then picks out the strings.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, header};
use hyper::body::Incoming;

use crate::http::body::{ReadError, read_limited};
use crate::http::error::ApiError;

/// What an auth endpoint's body is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyKind {
    Json,
    /// `application/x-www-form-urlencoded`, from the sign-in pages.
    Form,
}

/// Reads a JSON request body of at most `limit` bytes within `deadline`.
pub async fn read_json(
    request: Request<Incoming>,
    limit: usize,
    deadline: Duration,
) -> Result<Bytes, ApiError> {
    let (_, bytes) = read_body(request, limit, deadline, false).await?;
    Ok(bytes)
}

/// Reads a body of at most `limit` bytes within `deadline`: JSON, or (with `forms`) a form.
pub(crate) async fn read_body(
    request: Request<Incoming>,
    limit: usize,
    deadline: Duration,
    forms: bool,
) -> Result<(BodyKind, Bytes), ApiError> {
    let headers = request.headers();
    let kind = match body_kind(headers) {
        Some(BodyKind::Form) if !forms => None,
        kind => kind,
    };
    let Some(kind) = kind else {
        tokio::spawn(discard(request.into_body()));
        return Err(ApiError::UnsupportedMediaType);
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        tokio::spawn(discard(request.into_body()));
        return Err(ApiError::BodyTooLarge);
    }
    match tokio::time::timeout(deadline, read_limited(request.into_body(), limit)).await {
        Err(_) => Err(ApiError::BodyTimeout),
        Ok(Err(ReadError::TooLarge)) => Err(ApiError::BodyTooLarge),
        Ok(Err(ReadError::Io)) => Err(ApiError::BadRequest(
            "Could not read the request body".into(),
        )),
        Ok(Ok(bytes)) => Ok((kind, bytes)),
    }
}

/// The body's kind, from its `Content-Type`; `None` for anything else.
pub(crate) fn body_kind(headers: &http::HeaderMap) -> Option<BodyKind> {
    let media = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())?
        .trim();
    if media.eq_ignore_ascii_case("application/json") {
        Some(BodyKind::Json)
    } else if media.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        Some(BodyKind::Form)
    } else {
        None
    }
}

/// How long, and how much of, a body refused unread is still read after the answer has gone: a
/// client that writes its whole body before it reads (most do) would otherwise find the
/// connection reset under its writes and never see the 413 or 415 (nginx's lingering close does
/// the same).
const LINGER_TIME: Duration = Duration::from_secs(5);
const LINGER_BYTES: usize = 64 * 1024 * 1024;

/// Reads and drops what remains of a refused body, within `LINGER_TIME` and `LINGER_BYTES`.
async fn discard(mut body: Incoming) {
    use http_body_util::BodyExt;
    let mut read = 0;
    let _ = tokio::time::timeout(LINGER_TIME, async {
        while let Some(Ok(frame)) = body.frame().await {
            read += frame.data_ref().map_or(0, Bytes::len);
            if read > LINGER_BYTES {
                break;
            }
        }
    })
    .await;
}
