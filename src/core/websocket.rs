//! The WebSocket opening handshake (RFC 6455 §4), the one protocol switch authgate lets through.
//!
//! Any other `Upgrade` is dropped from the request before it is forwarded: after a `101` the
//! connection to the app carries whatever the client sends, and with `h2c` that is HTTP/2 with
//! requests no rule ever saw and identity headers of the client's choosing. And a `101` opens a
//! tunnel only when it answers a WebSocket handshake with the `Sec-WebSocket-Accept` derived from
//! its key: proof that the app read the request as that handshake, and nothing else.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Version};
use sha1::{Digest, Sha1};

/// What a genuine answer's `Sec-WebSocket-Accept` holds: 20 bytes of SHA-1, in base64.
pub(crate) type Accept = [u8; 28];

/// The value RFC 6455 §1.3 appends to the key before hashing it.
const KEY_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The `Sec-WebSocket-Accept` that the app's `101` must carry, when the request is a well-formed
/// WebSocket opening handshake (RFC 6455 §4.2.1): `GET` over HTTP/1.1, `Connection` naming
/// `upgrade`, `Upgrade: websocket` and nothing else, one `Sec-WebSocket-Key` that is 16 bytes in
/// base64, and `Sec-WebSocket-Version: 13`. `None` for anything else, which is then forwarded as
/// an ordinary request.
#[cold]
pub(crate) fn handshake_accept(
    method: &Method,
    version: Version,
    headers: &HeaderMap,
) -> Option<Accept> {
    if method != Method::GET || version != Version::HTTP_11 {
        return None;
    }
    let asks_to_upgrade = headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"upgrade"));
    let websocket = only(headers, header::UPGRADE)
        .is_some_and(|v| v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"websocket"));
    let version_13 = only(headers, header::SEC_WEBSOCKET_VERSION)
        .is_some_and(|v| v.as_bytes().trim_ascii() == b"13");
    if !(asks_to_upgrade && websocket && version_13) {
        return None;
    }
    let key = only(headers, header::SEC_WEBSOCKET_KEY)?
        .as_bytes()
        .trim_ascii();
    let decoded = STANDARD.decode(key).ok()?;
    (decoded.len() == 16).then(|| accept_for(key))
}

/// `base64(SHA-1(key ++ GUID))`, as RFC 6455 §4.2.2 defines the accept value.
pub(crate) fn accept_for(key: &[u8]) -> Accept {
    let digest = Sha1::new()
        .chain_update(key)
        .chain_update(KEY_GUID)
        .finalize();
    let mut accept = [0u8; 28];
    let written = STANDARD
        .encode_slice(digest, &mut accept)
        .expect("20 bytes are 28 in base64");
    debug_assert_eq!(written, accept.len());
    accept
}

/// Whether a `101`'s headers complete the handshake whose accept value is `expected`: it switches
/// to `websocket`, and its one `Sec-WebSocket-Accept` is the expected one.
pub(crate) fn switch_completes(headers: &HeaderMap, expected: &Accept) -> bool {
    let websocket = only(headers, header::UPGRADE)
        .is_some_and(|v| v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"websocket"));
    let accepted = only(headers, header::SEC_WEBSOCKET_ACCEPT)
        .is_some_and(|v| v.as_bytes().trim_ascii() == expected);
    websocket && accepted
}

/// The value of a header that must appear exactly once.
fn only(headers: &HeaderMap, name: header::HeaderName) -> Option<&HeaderValue> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    values.next().is_none().then_some(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        crate::core::headers::header_map(pairs)
    }

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    fn handshake() -> Vec<(&'static str, &'static str)> {
        vec![
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-key", KEY),
            ("sec-websocket-version", "13"),
        ]
    }

    /// RFC 6455 §1.3's own example.
    #[test]
    fn the_accept_value_is_the_one_rfc_6455_gives() {
        assert_eq!(&accept_for(KEY.as_bytes()), b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn a_well_formed_handshake_is_recognised() {
        let accept = handshake_accept(&Method::GET, Version::HTTP_11, &map(&handshake()));
        assert_eq!(accept, Some(*b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
        let mut upper = handshake();
        upper[1].1 = "WebSocket";
        assert!(handshake_accept(&Method::GET, Version::HTTP_11, &map(&upper)).is_some());
    }

    /// h2c above all, but every other protocol, method, version or key too.
    #[test]
    fn anything_but_a_websocket_handshake_is_not_one() {
        let refused = |pairs: Vec<(&str, &str)>, method: Method, version: Version| {
            handshake_accept(&method, version, &map(&pairs)).is_none()
        };
        let with = |name: &'static str, value: &'static str| {
            let mut pairs = handshake();
            pairs.retain(|(n, _)| *n != name);
            pairs.push((name, value));
            pairs
        };
        let get = Method::GET;
        assert!(refused(
            with("upgrade", "h2c"),
            get.clone(),
            Version::HTTP_11
        ));
        assert!(refused(
            with("upgrade", "websocket, h2c"),
            get.clone(),
            Version::HTTP_11
        ));
        let mut twice = handshake();
        twice.push(("upgrade", "h2c"));
        assert!(refused(twice, get.clone(), Version::HTTP_11));
        assert!(refused(
            with("connection", "keep-alive"),
            get.clone(),
            Version::HTTP_11
        ));
        assert!(refused(
            with("sec-websocket-version", "8"),
            get.clone(),
            Version::HTTP_11
        ));
        assert!(refused(
            with("sec-websocket-key", "c2hvcnQ="),
            get.clone(),
            Version::HTTP_11
        ));
        assert!(refused(
            with("sec-websocket-key", "not base64 at all!!!!!=="),
            get.clone(),
            Version::HTTP_11
        ));
        let mut no_key = handshake();
        no_key.retain(|(n, _)| *n != "sec-websocket-key");
        assert!(refused(no_key, get.clone(), Version::HTTP_11));
        assert!(refused(handshake(), Method::POST, Version::HTTP_11));
        assert!(refused(handshake(), get.clone(), Version::HTTP_10));
        assert!(refused(handshake(), get, Version::HTTP_2));
    }

    #[test]
    fn only_the_matching_accept_completes_the_switch() {
        let expected = accept_for(KEY.as_bytes());
        let good = [
            ("upgrade", "websocket"),
            ("connection", "Upgrade"),
            ("sec-websocket-accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        ];
        assert!(switch_completes(&map(&good), &expected));
        let wrong_accept = [
            ("upgrade", "websocket"),
            ("sec-websocket-accept", "AAAAAAAAAAAAAAAAAAAAAAAAAAA="),
        ];
        assert!(!switch_completes(&map(&wrong_accept), &expected));
        let h2c = [
            ("upgrade", "h2c"),
            ("sec-websocket-accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        ];
        assert!(!switch_completes(&map(&h2c), &expected));
        assert!(!switch_completes(
            &map(&[("upgrade", "websocket")]),
            &expected
        ));
    }
}
