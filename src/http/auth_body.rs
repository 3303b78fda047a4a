//! The small JSON bodies the auth endpoints read: content type checked, size capped while reading,
//! a deadline on the whole body, then string fields picked out by a pure function (fuzzed).

use std::time::Duration;

use bytes::Bytes;
use http::{Request, header};
use hyper::body::Incoming;
use serde_json::Value;

use crate::http::body::{ReadError, read_limited};
use crate::http::error::ApiError;

/// Reads a JSON request body of at most `limit` bytes within `deadline`.
pub async fn read_json(
    request: Request<Incoming>,
    limit: usize,
    deadline: Duration,
) -> Result<Bytes, ApiError> {
    let headers = request.headers();
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        tokio::spawn(discard(request.into_body()));
        return Err(ApiError::UnsupportedMediaType);
    }
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
        Ok(Ok(bytes)) => Ok(bytes),
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

/// The string values of `names` in a JSON object body, with a clear message for each way it can
/// be wrong. Other fields are ignored.
pub fn string_fields<const N: usize>(
    body: &[u8],
    names: [&str; N],
) -> Result<[String; N], ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|_| ApiError::BadRequest("Request body must be valid JSON".into()))?;
    let object = value
        .as_object()
        .ok_or_else(|| ApiError::BadRequest("Request body must be a JSON object".into()))?;
    let mut out: [String; N] = std::array::from_fn(|_| String::new());
    for (slot, name) in out.iter_mut().zip(names) {
        *slot = match object.get(name) {
            None | Some(Value::Null) => {
                return Err(ApiError::BadRequest(format!(
                    "Missing \"{name}\" in JSON body"
                )));
            }
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err(ApiError::BadRequest(format!("\"{name}\" must be a string"))),
        };
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(r: Result<[String; 2], ApiError>) -> String {
        r.err().map(|e| e.message()).unwrap_or_default()
    }

    #[test]
    fn fields_are_picked_out_or_named_in_the_error() {
        let names = ["username", "password"];
        let ok = string_fields(br#"{"username":"a","password":"b","extra":1}"#, names).unwrap();
        assert_eq!(ok, ["a".to_string(), "b".to_string()]);
        assert_eq!(
            msg(string_fields(b"{", names)),
            "Request body must be valid JSON"
        );
        assert_eq!(
            msg(string_fields(b"[]", names)),
            "Request body must be a JSON object"
        );
        assert_eq!(
            msg(string_fields(br#"{"username":"a"}"#, names)),
            "Missing \"password\" in JSON body"
        );
        assert_eq!(
            msg(string_fields(br#"{"username":1,"password":"b"}"#, names)),
            "\"username\" must be a string"
        );
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(
            msg(string_fields(deep.as_bytes(), names)),
            "Request body must be valid JSON"
        );
    }
}
