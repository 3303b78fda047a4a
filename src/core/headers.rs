//! Header rules, pure: which fields are hop-by-hop (RFC 9110 §7.6.1), which only authgate may
//! send to the app, and what a field's value may hold to reach the app unchanged.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use smallvec::SmallVec;

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

/// Headers that frameworks read as a request's method, path or host instead of the request's own
/// (Rails, Express's `method-override`, Symfony and Laravel; IIS's URL rewriting; nginx's
/// `auth_request` conventions): the route was decided on the request line, so these never reach
/// the app, in any spelling.
pub const OVERRIDES: [&str; 9] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-original-method",
    "x-original-url",
    "x-rewrite-url",
    "x-original-host",
    "x-host",
    "x-http-host-override",
];

/// Headers in which proxies name the client's address, each read by some app or framework
/// (Rails' `Client-IP`, CDNs' `True-Client-IP` and `CF-Connecting-IP`): authgate names the client
/// in `X-Forwarded-For` and `X-Real-IP`, and a client's own copies of these never reach the app.
pub const CLIENT_ADDRESSES: [&str; 7] = [
    "client-ip",
    "x-client-ip",
    "true-client-ip",
    "cf-connecting-ip",
    "x-cluster-client-ip",
    "forwarded-for",
    "x-forwarded",
];

/// Whether an identity header may be called `name`: not a header that frames, routes or
/// authenticates the request, nor one authgate writes or removes for its own reasons. Named
/// `Content-Length`, say, the identity would replace the request's framing on the way to the app.
pub fn may_carry_identity(name: &str) -> bool {
    const RESERVED: [&str; 12] = [
        "host",
        "content-length",
        "content-type",
        "content-encoding",
        "expect",
        "authorization",
        "cookie",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-real-ip",
        "forwarded",
    ];
    let key = header_key(name);
    !RESERVED.contains(&key.as_str())
        && !HOP_BY_HOP.iter().any(|h| header_key(h.as_str()) == key)
        && !OVERRIDES.contains(&key.as_str())
        && !CLIENT_ADDRESSES.contains(&key.as_str())
        && !is_forwarded_detail(&key)
}

/// Whether `name` is an `X-Forwarded-…` header in any spelling (`-Port`, `-Prefix`, `-Ssl`,
/// `-Uri`, …): what a proxy tells the app about the original request. Passed on from a trusted
/// proxy only; from anyone else, a claim about a request that authgate saw itself.
pub fn is_forwarded_detail(name: &str) -> bool {
    const PREFIX: &[u8] = b"x-forwarded-";
    name.len() > PREFIX.len() && name.bytes().zip(PREFIX).all(|(n, &p)| fold(n) == p)
}

/// The form in which two header names mean the same to the app: lower case, and any mark that is
/// not a letter or a digit read as `-`. CGI and WSGI read `X_Auth_User_Id` as `X-Auth-User-Id`,
/// and PHP reads `X.Auth.User.Id` the same way; what other parsers do with the rest of the marks
/// a header name may hold (`!#$%&'*+^`|~`) is folded the same way, to be safe.
pub fn header_key(name: &str) -> String {
    name.bytes().map(|b| fold(b) as char).collect()
}

/// One byte of a header name as `header_key` reads it.
fn fold(b: u8) -> u8 {
    if b.is_ascii_alphanumeric() {
        b.to_ascii_lowercase()
    } else {
        b'-'
    }
}

/// Whether any header is hop-by-hop: one look at each name, without hashing, since most
/// messages carry none.
pub fn has_hop_by_hop(headers: &HeaderMap) -> bool {
    headers.keys().any(is_hop_by_hop)
}

fn is_hop_by_hop(name: &HeaderName) -> bool {
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
}

/// Removes `Connection` and every header it names, then the fixed hop-by-hop headers. Only the
/// names present are removed, each found by the look `has_hop_by_hop` takes: the usual
/// `Connection: keep-alive` costs two removals, not eleven hashed lookups and an allocation.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let present: SmallVec<[HeaderName; 4]> = headers
        .keys()
        .filter(|n| is_hop_by_hop(n))
        .cloned()
        .collect();
    if present.contains(&header::CONNECTION) {
        let named: SmallVec<[HeaderName; 4]> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for name in present {
        headers.remove(name);
    }
}

/// Whether `name` is `key` (a `header_key`) once folded as `header_key` folds; compares in place,
/// since it runs for the fields of every request whose length is a key's.
fn same_header(name: &str, key: &str) -> bool {
    name.len() == key.len() && name.bytes().zip(key.bytes()).all(|(n, k)| fold(n) == k)
}

/// Header names that only authgate may send (identity and forwarding headers, overrides), kept
/// in the form `header_key` gives. A client's copy is never passed on, whatever its case or
/// separators.
pub struct OwnedHeaders {
    /// The keys by length, for names under 64 bytes: a field is compared with the few keys as
    /// long as it is, most often none.
    by_length: Vec<Vec<String>>,
    /// Keys of 64 bytes or more.
    long: Vec<String>,
}

impl OwnedHeaders {
    pub fn new<'a>(names: impl IntoIterator<Item = &'a str>) -> OwnedHeaders {
        let mut owned = OwnedHeaders {
            by_length: vec![Vec::new(); 64],
            long: Vec::new(),
        };
        for key in names.into_iter().map(header_key) {
            match owned.by_length.get_mut(key.len()) {
                Some(keys) => keys.push(key),
                None => owned.long.push(key),
            }
        }
        owned
    }

    /// Whether `name` is one of these, once its letters are lower-cased and its `_` read as `-`.
    pub fn contains(&self, name: &str) -> bool {
        self.by_length
            .get(name.len())
            .unwrap_or(&self.long)
            .iter()
            .any(|key| same_header(name, key))
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
#[cold]
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

/// A header map of `pairs`, in order, for the core's tests.
#[cfg(test)]
pub(crate) fn header_map(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        header_map(pairs)
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

    /// The quick check and the removal know every hop-by-hop header, each alone and all at once.
    #[test]
    fn the_hop_by_hop_check_knows_every_hop_by_hop_header() {
        let mut all = map(&[("accept", "*/*")]);
        for name in &HOP_BY_HOP {
            let mut h = map(&[
                ("accept", "*/*"),
                (name.as_str(), "x"),
                (name.as_str(), "y"),
            ]);
            assert!(has_hop_by_hop(&h), "{name}");
            remove_hop_by_hop(&mut h);
            assert_eq!(h.keys().collect::<Vec<_>>(), ["accept"], "{name}");
            all.append(name, HeaderValue::from_static("x"));
        }
        remove_hop_by_hop(&mut all);
        assert_eq!(all.keys().collect::<Vec<_>>(), ["accept"]);
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
    fn forwarded_details_are_known_in_any_spelling() {
        for name in [
            "x-forwarded-port",
            "X_Forwarded_Prefix",
            "x-FORWARDED-ssl",
            "x-forwarded-x",
        ] {
            assert!(is_forwarded_detail(name), "{name}");
        }
        for name in [
            "x-forwarded-",
            "x-forwarded",
            "x-forwardedport",
            "forwarded",
            "x-real-ip",
        ] {
            assert!(!is_forwarded_detail(name), "{name}");
        }
    }

    #[test]
    fn an_identity_never_takes_the_name_of_a_header_that_frames_routes_or_authenticates() {
        for reserved in [
            "Content-Length",
            "transfer_encoding",
            "Host",
            "CONNECTION",
            "Upgrade",
            "Authorization",
            "Cookie",
            "X-Forwarded-For",
            "X-Forwarded-Port",
            "Forwarded",
            "X-Real-IP",
            "X-HTTP-Method-Override",
            "True-Client-IP",
        ] {
            assert!(!may_carry_identity(reserved), "{reserved}");
        }
        for free in [
            "X-Auth-User-Id",
            "X-Auth-Assertion",
            "X-Remote-User",
            "Remote-Groups",
        ] {
            assert!(may_carry_identity(free), "{free}");
        }
    }

    #[test]
    fn owned_headers_go_in_any_case_and_with_underscores() {
        // PHP reads `.` as `_`, and so as `-`: `X.Auth.User.Id` is the same header to it.
        let php = OwnedHeaders::new(["X-Auth-User-Id", "X-HTTP-Method-Override"]);
        for name in [
            "X.Auth.User.Id",
            "x.http.method.override",
            "X~Auth~User~Id",
            "x!auth!user!id",
        ] {
            assert!(php.contains(name), "{name}");
        }
        assert!(is_forwarded_detail("X.Forwarded.Port"));
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
