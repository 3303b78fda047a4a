//! Header rules, pure: which fields are hop-by-hop (RFC 9110 §7.6.1), which only authgate may
//! send to the app, and what a field's value may hold to reach the app unchanged.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Headers that describe one connection, never the message (RFC 9110 §7.6.1), and h2c's
/// `HTTP2-Settings` (RFC 7540 §3.2.1), which only an upgrade to HTTP/2 has any use for.
static HOP_BY_HOP: [HeaderName; 10] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    HeaderName::from_static("http2-settings"),
];

/// Headers that frameworks read as a request's method or path instead of the request line's
/// (Rails, Express's `method-override`, Symfony and Laravel; IIS's URL rewriting): the route was
/// decided on the request line, so these never reach the app, in any spelling.
pub const OVERRIDES: [&str; 5] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-original-url",
    "x-rewrite-url",
];

/// The form in which two header names mean the same to the app: lower case, `_` as `-`, since
/// WSGI and CGI read `X_Auth_User_Id` and `X-Auth-User-Id` as one header.
pub fn header_key(name: &str) -> String {
    name.bytes()
        .map(|b| {
            if b == b'_' {
                '-'
            } else {
                b.to_ascii_lowercase() as char
            }
        })
        .collect()
}

/// Whether any header is hop-by-hop: one look at each name, without hashing, since most
/// messages carry none.
pub fn has_hop_by_hop(headers: &HeaderMap) -> bool {
    headers.keys().any(|name| {
        matches!(
            name.as_str(),
            "connection"
                | "keep-alive"
                | "proxy-connection"
                | "te"
                | "trailer"
                | "transfer-encoding"
                | "upgrade"
                | "proxy-authenticate"
                | "proxy-authorization"
                | "http2-settings"
        )
    })
}

/// Removes `Connection` and every header it names, then the fixed hop-by-hop list.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    if !has_hop_by_hop(headers) {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

/// Whether `name` is `key` once its letters are lower-cased and its `_` read as `-`; compares
/// in place, since it runs for every header of every request.
fn same_header(name: &str, key: &str) -> bool {
    name.len() == key.len()
        && name.bytes().zip(key.bytes()).all(|(n, k)| {
            let n = if n == b'_' {
                b'-'
            } else {
                n.to_ascii_lowercase()
            };
            n == k
        })
}

/// Header names that only authgate may send (identity and forwarding headers, overrides), kept
/// in the form `header_key` gives. A client's copy is never passed on, whatever its case or
/// separators.
pub struct OwnedHeaders {
    keys: Vec<String>,
    /// Bit `n` is set when some key is `n` bytes long: most of a request's fields differ in
    /// length from every key, and are let through after one look at this.
    lengths: u64,
}

impl OwnedHeaders {
    pub fn new<'a>(names: impl IntoIterator<Item = &'a str>) -> OwnedHeaders {
        let keys: Vec<String> = names.into_iter().map(header_key).collect();
        let lengths = keys
            .iter()
            .filter(|key| key.len() < 64)
            .fold(0, |set, key| set | 1 << key.len());
        OwnedHeaders { keys, lengths }
    }

    /// Whether `name` is one of these, once its letters are lower-cased and its `_` read as `-`.
    pub fn contains(&self, name: &str) -> bool {
        let length = name.len();
        (length >= 64 || self.lengths >> length & 1 == 1)
            && self.keys.iter().any(|key| same_header(name, key))
    }
}

/// Whether `bytes` reach the app unchanged as a header field's value (RFC 9110 §5.5): visible
/// characters, spaces and tabs, no control characters, so nothing can end the field early; and
/// no space or tab at either end, which every HTTP parser trims (`" admin "` would arrive as
/// `admin`).
pub fn is_field_value(bytes: &[u8]) -> bool {
    let blank = |b: &u8| *b == b' ' || *b == b'\t';
    !bytes.first().is_some_and(blank)
        && !bytes.last().is_some_and(blank)
        && bytes
            .iter()
            .all(|&b| b == b'\t' || (b >= b' ' && b != 0x7f))
}

/// Joins the `cookie` fields of an HTTP/2 request into one, with `; `, as RFC 9113 §8.2.3 asks
/// before a request goes on over HTTP/1.1, where apps read only one `Cookie` line.
pub fn join_cookies(headers: &mut HeaderMap) {
    let mut fields = headers.get_all(header::COOKIE).iter();
    if fields.next().is_none() || fields.next().is_none() {
        return;
    }
    let mut joined = Vec::new();
    for value in headers.get_all(header::COOKIE) {
        if !joined.is_empty() {
            joined.extend_from_slice(b"; ");
        }
        joined.extend_from_slice(value.as_bytes());
    }
    let joined = HeaderValue::from_bytes(&joined).expect("joined field values stay valid");
    headers.insert(header::COOKIE, joined);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    /// RFC 9110 §7.6.1: `Connection` and the headers it names go, with the fixed hop-by-hop set.
    #[test]
    fn hop_by_hop_headers_and_those_connection_names_are_removed() {
        let mut h = map(&[
            ("connection", "keep-alive, X-Secret-Hop"),
            ("connection", "x-other"),
            ("x-secret-hop", "1"),
            ("x-other", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("upgrade", "websocket"),
            ("proxy-authorization", "Basic x"),
            ("accept", "*/*"),
        ]);
        remove_hop_by_hop(&mut h);
        let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["accept"]);
    }

    /// The quick check and the list that is removed name the same headers.
    #[test]
    fn the_hop_by_hop_check_knows_every_hop_by_hop_header() {
        for name in &HOP_BY_HOP {
            assert!(
                has_hop_by_hop(&map(&[("accept", "*/*"), (name.as_str(), "x")])),
                "{name}"
            );
        }
        let ordinary = map(&[
            ("host", "a"),
            ("authorization", "b"),
            ("te-x", "c"),
            ("x-upgrade", "d"),
        ]);
        assert!(!has_hop_by_hop(&ordinary));
    }

    #[test]
    fn field_values_may_hold_anything_but_control_characters_or_blank_ends() {
        assert!(is_field_value(b"J\xc3\xbcrgen O'Brien\t(admin)"));
        assert!(is_field_value(b""));
        for bad in [
            &b"a\r\nx-auth-user-id: 1"[..],
            b"a\nb",
            b"nul\0",
            b"del\x7f",
            b" admin",
            b"admin ",
            b"admin\t",
        ] {
            assert!(!is_field_value(bad), "{bad:?}");
        }
    }

    /// RFC 9113 §8.2.3: one `Cookie` line for HTTP/1.1, its pairs in the order they came.
    #[test]
    fn http2_cookie_fields_are_joined_in_order() {
        let mut h = map(&[
            ("cookie", "a=1"),
            ("accept", "*/*"),
            ("cookie", "b=2; c=3"),
            ("cookie", "d=4"),
        ]);
        join_cookies(&mut h);
        assert_eq!(values(&h, "cookie"), ["a=1; b=2; c=3; d=4"]);
        let mut one = map(&[("cookie", "a=1; b=2")]);
        join_cookies(&mut one);
        assert_eq!(values(&one, "cookie"), ["a=1; b=2"]);
        let mut none = map(&[("accept", "*/*")]);
        join_cookies(&mut none);
        assert!(none.get("cookie").is_none());
    }

    fn values<'a>(h: &'a HeaderMap, name: &str) -> Vec<&'a str> {
        h.get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect()
    }

    #[test]
    fn owned_headers_go_in_any_case_and_with_underscores() {
        let long = "X-A-Header-Name-Longer-Than-Sixty-Four-Bytes-Which-Some-Deployments-Use";
        let owned = OwnedHeaders::new(["X-Auth-User-Id", long]);
        assert!(owned.contains(&long.to_ascii_lowercase().replace('-', "_")));
        assert!(!owned.contains(&format!("{long}x")));
        let h = map(&[
            ("x-auth-user-id", "1"),
            ("X_Auth_User_Id", "2"),
            ("x_auth-user_id", "3"),
            ("x-auth-user-idx", "kept"),
        ]);
        let left: Vec<&str> = h
            .keys()
            .map(|k| k.as_str())
            .filter(|name| !owned.contains(name))
            .collect();
        assert_eq!(left, ["x-auth-user-idx"]);
    }
}
