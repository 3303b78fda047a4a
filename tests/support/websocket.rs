//! WebSockets through authgate to the test app's echo.

use std::net::SocketAddr;
use std::time::Duration;

use http::StatusCode;
use tokio::net::TcpStream;

pub type WebSocket = tokio_tungstenite::WebSocketStream<TcpStream>;

/// A WebSocket to the test app's echo through authgate at `addr`, opened with `token` (and a
/// forged identity header, which must not arrive).
pub async fn open_websocket(addr: SocketAddr, token: &str) -> WebSocket {
    open_websocket_at(addr, "/ws/chat", token).await
}

/// The same at `path`.
pub async fn open_websocket_at(addr: SocketAddr, path: &str, token: &str) -> WebSocket {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("ws://{addr}{path}").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
        .headers_mut()
        .insert("x-auth-user-id", "forged".parse().unwrap());
    let stream = TcpStream::connect(addr).await.unwrap();
    let (ws, response) = tokio_tungstenite::client_async(request, stream)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    ws
}

/// Sends `text` and gives the app's echo of it.
pub async fn echo(ws: &mut WebSocket, text: &str) -> String {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    ws.send(Message::text(text)).await.unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("an echo within 5 s")
        .expect("the tunnel is open")
        .unwrap();
    reply.into_text().unwrap().as_str().to_string()
}

/// Whether the tunnel under `ws` is closed within `limit`: reading ends (authgate closes both
/// TCP connections; it speaks no WebSocket itself, so no close frame comes).
pub async fn closed_within(ws: &mut WebSocket, limit: Duration) -> bool {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    match tokio::time::timeout(limit, ws.next()).await {
        Err(_) => false,
        Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => true,
        Ok(Some(Ok(message))) => panic!("a message nobody sent: {message:?}"),
    }
}

/// The status a WebSocket handshake at `path` is refused with, sent with `token` if any.
pub async fn refused_handshake(addr: SocketAddr, path: &str, token: Option<&str>) -> StatusCode {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("ws://{addr}{path}").into_client_request().unwrap();
    if let Some(token) = token {
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    let stream = TcpStream::connect(addr).await.unwrap();
    match tokio_tungstenite::client_async(request, stream).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status(),
        Ok((_, response)) => panic!("the handshake was accepted: {response:?}"),
        Err(other) => panic!("the handshake failed without an answer: {other:?}"),
    }
}
