//! An answer's body, read straight from its connection and decoded (a length, chunks, or until the
//! app closes); the connection goes back to the pool at the body's end when nothing was amiss.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use hyper::body::{Frame, SizeHint};
use tokio::net::TcpStream;

use super::pool::{Connection, Idle};
use super::request::Outgoing;
use super::{BoxError, UpstreamError};

/// The longest chunk-size line (extensions included).
const MAX_CHUNK_LINE: usize = 4096;
/// The most trailer bytes after the last chunk.
const MAX_TRAILERS: usize = 64 * 1024;

/// Where the answer's body ends.
pub(super) enum Framing {
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
pub(super) enum Chunk {
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
    pub(super) connection: Option<Connection>,
    pub(super) framing: Framing,
    /// The pool, when the connection may serve again.
    pub(super) back: Option<Arc<Idle>>,
    /// The rest of a request whose answer began before it was all sent.
    pub(super) outgoing: Option<Box<Outgoing>>,
    /// How long the app may leave the body waiting for its next bytes, and since when the body
    /// has been waiting, if it is: set only when a read finds nothing, so a body that is there
    /// already never reads the clock.
    pub(super) timeout: Duration,
    pub(super) waiting: Option<Instant>,
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

    pub(super) fn finish(&mut self) {
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
pub(super) enum Decoded {
    Data(Bytes),
    End,
    NeedMore,
}

/// Takes the next piece of body data off the front of `read`, moving `framing` on; never reads
/// past the body's end, so what follows it stays in `read`.
pub(super) fn decode(read: &mut BytesMut, framing: &mut Framing) -> Result<Decoded, UpstreamError> {
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
