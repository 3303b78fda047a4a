//! How authgate reads the app's answers, byte for byte as an app might send them: each framing
//! the protocol allows, interim answers, and broken answers, which get 502. Which connections are
//! reused afterwards is counted at the app.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use support::*;
use tokio::io::AsyncWriteExt;

/// An app that answers every request on a connection with `answer`, and keeps the connection
/// open for the next (unless `close_after`), in front of one authgate worker.
async fn gate_before(
    answer: &'static [u8],
    close_after: bool,
) -> (Gate, Arc<AtomicUsize>, tempfile::TempDir) {
    let (port, accepted) = raw_upstream(move |mut stream, _| async move {
        while read_request_head(&mut stream).await.is_some() {
            if stream.write_all(answer).await.is_err() || close_after {
                return;
            }
        }
    })
    .await;
    let (gate, dir) = gate_in_front_of(port).await;
    (gate, accepted, dir)
}

/// Two GETs through authgate: their statuses and bodies, and how many connections the app saw.
async fn two_gets(answer: &'static [u8], close_after: bool) -> Vec<(StatusCode, Bytes)> {
    let (gate, _, _dir) = gate_before(answer, close_after).await;
    let mut answers = Vec::new();
    for _ in 0..2 {
        let r = get(gate.addr, "/public/x", &[]).await;
        answers.push((r.status, r.body));
    }
    gate.stop().await;
    answers
}

async fn connections_for_two_gets(answer: &'static [u8]) -> usize {
    let (gate, accepted, _dir) = gate_before(answer, false).await;
    for _ in 0..2 {
        get(gate.addr, "/public/x", &[]).await;
    }
    gate.stop().await;
    accepted.load(Ordering::SeqCst)
}

#[tokio::test]
async fn a_chunked_answer_is_passed_on_whole_and_its_connection_reused() {
    let answer = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\
        5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nx-trailer: t\r\n\r\n";
    for (status, body) in two_gets(answer, false).await {
        assert_eq!((status, &body[..]), (StatusCode::OK, &b"hello world"[..]));
    }
    assert_eq!(connections_for_two_gets(answer).await, 1);
}

#[tokio::test]
async fn an_answer_with_a_length_reuses_its_connection() {
    let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello";
    for (status, body) in two_gets(answer, false).await {
        assert_eq!((status, &body[..]), (StatusCode::OK, &b"hello"[..]));
    }
    assert_eq!(connections_for_two_gets(answer).await, 1);
}

/// No length and no chunks: the body is everything until the app closes, and the connection is
/// not used again.
#[tokio::test]
async fn an_answer_without_a_length_runs_until_the_app_closes() {
    let answer = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil the end";
    for (status, body) in two_gets(answer, true).await {
        assert_eq!((status, &body[..]), (StatusCode::OK, &b"until the end"[..]));
    }
}

/// `100 Continue` and `103 Early Hints` come before the real answer and are not passed on.
#[tokio::test]
async fn interim_answers_are_skipped() {
    let answer = b"HTTP/1.1 100 Continue\r\n\r\n\
        HTTP/1.1 103 Early Hints\r\nlink: </style.css>\r\n\r\n\
        HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\nok";
    for (status, body) in two_gets(answer, false).await {
        assert_eq!((status, &body[..]), (StatusCode::CREATED, &b"ok"[..]));
    }
}

/// Answers whose end cannot be trusted are passed on, but their connection is closed: HTTP/1.0,
/// `Connection: close`, both `Transfer-Encoding` and `Content-Length`, and bytes after the end.
#[tokio::test]
async fn connections_after_doubtful_answers_are_not_reused() {
    let doubtful: [&'static [u8]; 4] = [
        b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 9\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n",
    ];
    for answer in doubtful {
        let shown = String::from_utf8_lossy(answer);
        for (status, body) in two_gets(answer, false).await {
            assert_eq!((status, &body[..]), (StatusCode::OK, &b"ok"[..]), "{shown}");
        }
        assert_eq!(connections_for_two_gets(answer).await, 2, "{shown}");
    }
}

/// Heads that break HTTP/1.1 get `502 Bad gateway` and are never passed on.
#[tokio::test]
async fn broken_answer_heads_get_502() {
    let long_header: &'static [u8] = format!(
        "HTTP/1.1 200 OK\r\nx-long: {}\r\ncontent-length: 2\r\n\r\nok",
        "a".repeat(70 * 1024)
    )
    .leak()
    .as_bytes();
    let broken: [&'static [u8]; 6] = [
        b"garbage\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\ncontent-length: -2\r\n\r\nok",
        b"HTTP/1.1 2000 OK\r\ncontent-length: 2\r\n\r\nok",
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\n",
        long_header,
    ];
    for answer in broken {
        let shown = String::from_utf8_lossy(&answer[..answer.len().min(80)]).into_owned();
        for (status, body) in two_gets(answer, false).await {
            assert_eq!(status, StatusCode::BAD_GATEWAY, "{shown}");
            let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(json["msg"], "Upstream unavailable", "{shown}");
        }
    }
}

/// A body that breaks after its head arrived cannot become a 502: the client's connection is
/// closed before the answer's end (with nothing sent, or the head and what came before the
/// break), so the client sees that the answer is incomplete.
#[tokio::test]
async fn a_body_that_breaks_midway_is_cut_off_not_completed() {
    let broken: [&'static [u8]; 2] = [
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\n",
    ];
    for answer in broken {
        let (gate, _, _dir) = gate_before(answer, false).await;
        let raw = send_raw(
            gate.addr,
            b"GET /public/x HTTP/1.1\r\nHost: gate.test\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(
            raw.is_empty() || raw.starts_with("HTTP/1.1 200 OK"),
            "{raw}"
        );
        assert!(
            !raw.ends_with("0\r\n\r\n"),
            "a broken body was completed: {raw}"
        );
        gate.stop().await;
    }
}

/// An app may refuse a request before reading its body. Its answer reaches the client; the rest
/// of the body is not sent, and the connection, left mid-request, is not used again.
#[tokio::test]
async fn an_answer_before_the_body_is_read_reaches_the_client() {
    let (port, accepted) = raw_upstream(|mut stream, number| async move {
        if read_request_head(&mut stream).await.is_none() {
            return;
        }
        if number == 1 {
            let _ = stream
                .write_all(b"HTTP/1.1 413 Content Too Large\r\ncontent-length: 8\r\n\r\ntoo big!")
                .await;
            // Not a byte of the body is read.
            tokio::time::sleep(Duration::from_secs(10)).await;
        } else {
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .await;
        }
    })
    .await;
    let (gate, _dir) = gate_in_front_of(port).await;
    // More than the sockets on both sides can hold, so the upload cannot have ended.
    let mut upload = format!(
        "PUT /public/upload HTTP/1.1\r\nHost: gate.test\r\nContent-Length: {}\r\n\r\n",
        32 << 20
    )
    .into_bytes();
    upload.resize(upload.len() + (32 << 20), b'x');
    let refused = send_raw_reading_early(gate.addr, upload).await;
    assert_eq!(raw_status(&refused), 413, "{refused}");
    assert!(refused.ends_with("\r\n\r\ntoo big!"), "{refused}");
    let next = get(gate.addr, "/public/x", &[]).await;
    assert_eq!((next.status, &next.body[..]), (StatusCode::OK, &b"ok"[..]));
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
    gate.stop().await;
}

/// An app that stops sending halfway through a body: after `upstream.timeout` (1 s in tests)
/// without a byte, the client's connection is cut rather than left hanging.
#[tokio::test]
async fn a_body_that_stalls_is_cut_off_after_the_upstream_timeout() {
    let (port, _) = raw_upstream(|mut stream, _| async move {
        if read_request_head(&mut stream).await.is_some() {
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhalf-")
                .await;
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
    })
    .await;
    let (gate, _dir) = gate_in_front_of(port).await;
    let started = std::time::Instant::now();
    let raw = send_raw(
        gate.addr,
        b"GET /public/x HTTP/1.1\r\nHost: gate.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "cut before the timeout"
    );
    assert_eq!(raw_status(&raw), 200, "{raw}");
    assert!(raw.ends_with("\r\n\r\nhalf-"), "{raw}");
    gate.stop().await;
}
