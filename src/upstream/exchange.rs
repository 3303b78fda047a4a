//! One exchange on a connection: the request written while the answer's head is awaited, by a
//! deadline.

use std::future::poll_fn;
use std::task::{Poll, ready};
use std::time::Instant;

use http::Response;

use super::UpstreamError;
use super::body::Framing;
use super::head::parse_head;
use super::pool::Connection;
use super::request::Outgoing;

/// The longest answer head accepted.
const MAX_HEAD: usize = 64 * 1024;

/// What went wrong in one exchange, and whether the app may have seen any of the request.
pub(super) struct Failure {
    pub(super) error: UpstreamError,
    pub(super) answer_begun: bool,
}

impl Failure {
    pub(super) fn connection_lost(&self) -> bool {
        !self.answer_begun && self.error.connection_lost()
    }
}

/// An answer's head, how its body is framed, and whether its connection can serve again.
pub(super) struct Answer {
    pub(super) head: Response<()>,
    pub(super) framing: Framing,
    pub(super) reusable: bool,
}

/// Writes the request and reads the answer's head by `deadline`, both at once: an app may answer
/// before it has read the whole body, to echo it as it comes or to refuse it (413). The body then
/// goes on being sent alongside the answer's (see `UpstreamBody`).
pub(super) async fn exchange(
    connection: &mut Connection,
    outgoing: &mut Outgoing,
    deadline: Instant,
) -> Result<Answer, Failure> {
    let mut sending = true;
    let mut write_error = None;
    let mut answer_begun = false;
    poll_fn(|cx| {
        if sending {
            match outgoing.poll_send(&mut connection.stream, cx) {
                Poll::Ready(Ok(())) => sending = false,
                Poll::Ready(Err(UpstreamError::Io(e))) => {
                    // The app may have answered before it closed: read that first.
                    sending = false;
                    write_error = Some(UpstreamError::Io(e));
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {}
            }
        }
        loop {
            match parse_head(&mut connection.read, outgoing) {
                Ok(Some(mut answer)) => {
                    // The app stopped reading before the request's end: it is read no further.
                    if write_error.is_some() {
                        answer.reusable = false;
                        outgoing.body = None;
                        outgoing.written = outgoing.buffer.len();
                    }
                    return Poll::Ready(Ok(answer));
                }
                Ok(None) => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
            if connection.read.len() >= MAX_HEAD {
                return Poll::Ready(Err(UpstreamError::Invalid("answer head too large")));
            }
            let filled = match connection.poll_fill(cx) {
                Poll::Ready(filled) => filled,
                Poll::Pending => {
                    ready!(connection.poll_deadline(deadline, cx));
                    return Poll::Ready(Err(UpstreamError::Timeout));
                }
            };
            match filled {
                Ok(0) => {
                    return Poll::Ready(Err(write_error.take().unwrap_or(UpstreamError::Closed)));
                }
                Ok(_) => answer_begun = true,
                Err(e) => {
                    return Poll::Ready(Err(write_error.take().unwrap_or(UpstreamError::Io(e))));
                }
            }
        }
    })
    .await
    .map_err(|error| Failure {
        error,
        answer_begun,
    })
}
