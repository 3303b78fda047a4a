//! An answer's head, parsed by `httparse` as in hyper, and how its body is framed (RFC 9112 §6.3).

use std::mem::MaybeUninit;

use bytes::{Buf, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Response, StatusCode, Version};

use super::UpstreamError;
use super::body::{Chunk, Framing};
use super::exchange::Answer;
use super::request::Outgoing;
use crate::core::websocket;

/// The most header fields an answer head may have.
const MAX_HEADERS: usize = 100;

/// Parses an answer head at the start of `read` and takes it out: `None` until it is complete.
/// Interim answers (`100 Continue`, `103 Early Hints`) are skipped.
pub(super) fn parse_head(
    read: &mut BytesMut,
    outgoing: &Outgoing,
) -> Result<Option<Answer>, UpstreamError> {
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
        // Where each name and value lies, so that the values can share the head's bytes: spans of
        // `u32`, read in place, since moving a larger array costs more than reading these.
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
        let (mut coded, mut connection, mut close, mut length) = (false, false, false, Ok(None));
        for &(name, name_len, value, value_len) in &spans {
            let (name, value) = (name as usize, value as usize);
            let (name_len, value_len) = (name_len as usize, value_len as usize);
            let name = &bytes[name..name + name_len];
            let (name, role) = match common_name(name) {
                Some(known) => known,
                None => {
                    let name = HeaderName::from_bytes(name)
                        .map_err(|_| UpstreamError::Invalid("bad header name"))?;
                    let role = Role::of(&name);
                    (name, role)
                }
            };
            coded |= role == Role::Coding;
            if role == Role::Connection {
                // `keep-alive` and `close` speak of this connection alone: noted and not kept,
                // so that the usual answer has no hop-by-hop field left to remove. A field with
                // any other option (`upgrade`, a field's name) is kept, for the switch's check
                // and for the removal of what it names.
                if let Some(closes) = keep_alive_or_close(&bytes[value..value + value_len]) {
                    close |= closes;
                    continue;
                }
                connection = true;
            }
            if role == Role::Length {
                length = content_length(length, &bytes[value..value + value_len]);
            }
            // SAFETY: httparse lets into a value exactly the bytes `HeaderValue` allows: tab,
            // space, visible ASCII and obs-text, not DEL or other controls (RFC 9110 §5.5;
            // `values_httparse_accepts_are_header_values` holds it to that). So the check
            // `from_maybe_shared` would make again cannot fail, and debug builds still make it.
            // hyper builds its request headers from httparse's output in the same way. (The
            // function's documentation asks for UTF-8, which obs-text is not; what it checks in
            // debug builds, and what `HeaderValue` relies on, is that check's set of bytes.)
            let value = unsafe {
                HeaderValue::from_maybe_shared_unchecked(bytes.slice(value..value + value_len))
            };
            headers.append(name, value);
        }

        let (framing, delimited) = framing(status, &mut headers, coded, length, outgoing)?;
        close |= connection && asks_to_close(&headers);
        let reusable = delimited && !http10 && !close;
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

/// What reading an answer's head needs to know of a field's name: whether it frames the body or
/// speaks of the connection.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Role {
    Coding,
    Length,
    Connection,
    Other,
}

impl Role {
    fn of(name: &HeaderName) -> Role {
        if name == header::TRANSFER_ENCODING {
            Role::Coding
        } else if name == header::CONTENT_LENGTH {
            Role::Length
        } else if name == header::CONNECTION {
            Role::Connection
        } else {
            Role::Other
        }
    }
}

/// The names nearly every answer carries, spelt as servers write them, with their role: found by
/// one comparison, where `HeaderName::from_bytes` folds the name to lower case and then looks it
/// up among all the standard names (about 150 instructions for each name of a mixed-case answer,
/// a quarter of reading an nginx answer's head; BENCHMARKS.md, issue 18), and the role would take
/// three comparisons more.
fn common_name(name: &[u8]) -> Option<(HeaderName, Role)> {
    Some(match name {
        b"Content-Type" | b"content-type" => (header::CONTENT_TYPE, Role::Other),
        b"Content-Length" | b"content-length" => (header::CONTENT_LENGTH, Role::Length),
        b"Date" | b"date" => (header::DATE, Role::Other),
        b"Server" | b"server" => (header::SERVER, Role::Other),
        b"Connection" | b"connection" => (header::CONNECTION, Role::Connection),
        b"Cache-Control" | b"cache-control" => (header::CACHE_CONTROL, Role::Other),
        b"ETag" | b"etag" => (header::ETAG, Role::Other),
        b"Last-Modified" | b"last-modified" => (header::LAST_MODIFIED, Role::Other),
        b"Vary" | b"vary" => (header::VARY, Role::Other),
        b"Set-Cookie" | b"set-cookie" => (header::SET_COOKIE, Role::Other),
        b"Location" | b"location" => (header::LOCATION, Role::Other),
        b"Transfer-Encoding" | b"transfer-encoding" => (header::TRANSFER_ENCODING, Role::Coding),
        _ => return None,
    })
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
pub fn only_chunked(headers: &HeaderMap) -> bool {
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
/// after, so that an answer's fields are gone through once.
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

/// For a `Connection` value whose every option is `keep-alive` or `close` (in any case, with
/// optional blanks, RFC 9110 §7.6.1): whether one is `close`. `None` for any other value.
fn keep_alive_or_close(value: &[u8]) -> Option<bool> {
    let mut close = false;
    for option in value.split(|&b| b == b',') {
        // httparse lets no blank but space and tab into a value.
        let option = option.trim_ascii();
        if option.eq_ignore_ascii_case(b"close") {
            close = true;
        } else if !option.is_empty() && !option.eq_ignore_ascii_case(b"keep-alive") {
            return None;
        }
    }
    Some(close)
}

fn asks_to_close(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"close"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::request::tests::outgoing;
    use http::Method;

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

    /// `keep-alive` and `close` are noted and their field dropped; a field with any other option
    /// is kept, for the switch's check and for the removal of the fields it names.
    #[test]
    fn connection_fields_of_keep_alive_or_close_are_noted_not_kept() {
        let get = outgoing(Method::GET);
        let parse = |connection: &str| {
            let wire =
                format!("HTTP/1.1 200 OK\r\nConnection: {connection}\r\nContent-Length: 0\r\n\r\n");
            let answer = parse_head(&mut BytesMut::from(wire.as_bytes()), &get)
                .unwrap()
                .unwrap();
            let kept = answer.head.headers().get_all(header::CONNECTION).iter();
            (kept.count(), answer.reusable)
        };
        assert_eq!(parse("keep-alive"), (0, true));
        assert_eq!(parse("Keep-Alive ,\t"), (0, true));
        assert_eq!(parse(""), (0, true));
        assert_eq!(parse("close"), (0, false));
        assert_eq!(parse("keep-alive, CLOSE"), (0, false));
        assert_eq!(parse("keep-alive, x-hop"), (1, true));
        assert_eq!(parse("x-hop, close"), (1, false));
        assert_eq!(parse("upgrade"), (1, true));
        assert_eq!(parse("closed"), (1, true));
    }

    /// Every byte httparse lets into a value is one `HeaderValue` allows, and the reverse: what
    /// `parse_head`'s unchecked values rest on.
    #[test]
    fn values_httparse_accepts_are_header_values() {
        let get = outgoing(Method::GET);
        for byte in 0..=255u8 {
            let mut wire = b"HTTP/1.1 204 No Content\r\nx-a: a".to_vec();
            wire.extend_from_slice(&[byte, b'a']);
            wire.extend_from_slice(b"\r\n\r\n");
            let parsed = parse_head(&mut BytesMut::from(&wire[..]), &get);
            let allowed = HeaderValue::from_bytes(&[b'a', byte, b'a']).is_ok();
            assert_eq!(matches!(parsed, Ok(Some(_))), allowed, "{byte:#04x}");
            if let Ok(Some(answer)) = parsed {
                let value = answer.head.headers()["x-a"].as_bytes();
                assert_eq!(value, [b'a', byte, b'a'], "{byte:#04x}");
            }
        }
    }

    /// Names spelt in a case the shortcut does not know still frame the body and speak of the
    /// connection: the role comes from the name, not from its spelling.
    #[test]
    fn names_in_any_case_keep_their_roles() {
        let get = outgoing(Method::GET);
        let wire = b"HTTP/1.1 200 OK\r\nTRANSFER-ENCODING: chunked\r\nCONTENT-LENGTH: 5\r\n\r\n";
        let answer = parse_head(&mut BytesMut::from(&wire[..]), &get)
            .unwrap()
            .unwrap();
        assert!(matches!(answer.framing, Framing::Chunked(_)));
        assert!(
            !answer.reusable,
            "both framings: the connection is not used again"
        );
        assert!(!answer.head.headers().contains_key(header::CONTENT_LENGTH));
        let wire = b"HTTP/1.1 200 OK\r\nCONNECTION: close\r\ncontent-LENGTH: 2\r\n\r\n";
        let answer = parse_head(&mut BytesMut::from(&wire[..]), &get)
            .unwrap()
            .unwrap();
        assert!(matches!(answer.framing, Framing::Length(2)));
        assert!(!answer.reusable, "Connection: close is heeded");
        assert!(!answer.head.headers().contains_key(header::CONNECTION));
    }

    /// The shortcut gives what `HeaderName::from_bytes` would, in both spellings, and the role
    /// `Role::of` gives that name.
    #[test]
    fn common_names_are_the_standard_ones() {
        for name in [
            "Content-Type",
            "Content-Length",
            "Date",
            "Server",
            "Connection",
            "Cache-Control",
            "ETag",
            "Last-Modified",
            "Vary",
            "Set-Cookie",
            "Location",
            "Transfer-Encoding",
        ] {
            for spelt in [name.to_string(), name.to_ascii_lowercase()] {
                let standard = HeaderName::from_bytes(spelt.as_bytes()).unwrap();
                let role = Role::of(&standard);
                assert_eq!(
                    common_name(spelt.as_bytes()),
                    Some((standard, role)),
                    "{spelt}"
                );
            }
        }
        assert_eq!(common_name(b"CONTENT-TYPE"), None);
        assert_eq!(common_name(b"X-Date"), None);
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

    /// A well-formed answer as an app may send it: a status, a framing, a body, and whatever the
    /// app sends after it.
    fn answer_wire(status: u16, framing: u8, body: &[u8], chunk: usize) -> (Vec<u8>, Vec<u8>) {
        let bodiless = status == 204 || status == 304;
        let mut wire = format!("HTTP/1.1 {status} X\r\n").into_bytes();
        let body: &[u8] = if bodiless { b"" } else { body };
        match framing % 3 {
            0 => {
                wire.extend_from_slice(format!("content-length: {}\r\n\r\n", body.len()).as_bytes())
            }
            1 if !bodiless => {
                wire.extend_from_slice(b"transfer-encoding: chunked\r\n\r\n");
                for piece in body.chunks(chunk.max(1)) {
                    wire.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
                    wire.extend_from_slice(piece);
                    wire.extend_from_slice(b"\r\n");
                }
                wire.extend_from_slice(b"0\r\n\r\n");
                return (wire, body.to_vec());
            }
            _ => wire.extend_from_slice(b"content-length: 0\r\n\r\n"),
        }
        let body = if framing % 3 == 0 {
            body.to_vec()
        } else {
            Vec::new()
        };
        wire.extend_from_slice(&body);
        (wire, body)
    }

    proptest::proptest! {
        /// Any bytes from the app: the head parser never panics, and when it takes a head it
        /// takes exactly that, leaving what follows in place for the body's decoder.
        #[test]
        fn any_bytes_parse_into_one_head_or_are_refused(
            wire in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
            prefix in 0usize..4,
        ) {
            let heads: [&[u8]; 4] = [
                b"",
                b"HTTP/1.1 200 OK\r\n",
                b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n",
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n",
            ];
            let all = [heads[prefix], &wire].concat();
            let mut read = BytesMut::from(&all[..]);
            let get = outgoing(Method::GET);
            if let Ok(Some(_)) = parse_head(&mut read, &get) {
                proptest::prop_assert!(all.ends_with(&read), "the head took bytes past its end");
            }
        }

        /// A well-formed answer followed by anything, arriving in any pieces: exactly its body
        /// comes out, and what followed is left unread, so the connection is never handed to
        /// the next request with it (`Idle::put`).
        #[test]
        fn one_answer_yields_its_body_and_leaves_what_follows(
            status in proptest::sample::select(vec![200u16, 201, 204, 304, 404, 500]),
            framing in 0u8..3,
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
            chunk in 1usize..64,
            after in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
            cuts in proptest::collection::vec(0usize..1024, 0..6),
        ) {
            let (answer, expected) = answer_wire(status, framing, &body, chunk);
            let wire = [&answer[..], &after[..]].concat();
            let read = crate::upstream::read_one_answer(&wire, &cuts, false)
                .expect("a well-formed answer");
            let Some((code, data, left)) = read else {
                return Err(proptest::test_runner::TestCaseError::fail("the body's end was not found"));
            };
            proptest::prop_assert_eq!(code, status);
            proptest::prop_assert_eq!(data, expected);
            proptest::prop_assert_eq!(left, after, "exactly what followed the answer is left");
        }
    }
}
