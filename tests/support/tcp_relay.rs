//! A TCP relay between authgate and its database that a test can cut and restore, to see what
//! authgate does when the store goes away and comes back; or that holds back what the database
//! sends on some connections only (a slow network on one of them), until released.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct TcpRelay {
    pub addr: SocketAddr,
    up: Arc<watch::Sender<bool>>,
    holding: Arc<watch::Sender<bool>>,
    task: tokio::task::JoinHandle<()>,
}

impl TcpRelay {
    pub async fn start(target: SocketAddr) -> TcpRelay {
        TcpRelay::start_holding(target, None).await
    }

    /// A relay that, while `hold` is on, holds back what the server sends on every connection
    /// whose client has sent `marker.0` (PostgreSQL's `LISTEN`, say) and not `marker.1` since
    /// (`UNLISTEN`, when the connection goes back to a pool), and passes the rest.
    pub async fn start_holding(
        target: SocketAddr,
        marker: Option<(&'static [u8], &'static [u8])>,
    ) -> TcpRelay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(watch::Sender::new(true));
        let holding = Arc::new(watch::Sender::new(false));
        let (up2, holding2) = (up.clone(), holding.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    continue;
                };
                if !*up2.borrow() {
                    drop(inbound);
                    continue;
                }
                let mut down = up2.subscribe();
                let hold = holding2.subscribe();
                tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = relay(inbound, outbound, marker, hold) => {}
                        _ = down.wait_for(|&up| !up) => {}
                    }
                });
            }
        });
        TcpRelay {
            addr,
            up,
            holding,
            task,
        }
    }

    /// Holds back what the server sends on marked connections, from now until `release`.
    pub fn hold(&self) {
        self.holding.send_replace(true);
    }

    /// Lets what was held back through, and all that follows.
    pub fn release(&self) {
        self.holding.send_replace(false);
    }

    /// Drops every relayed connection and refuses new ones until `restore`.
    pub fn cut(&self) {
        self.up.send_replace(false);
    }

    pub fn restore(&self) {
        self.up.send_replace(true);
    }
}

impl Drop for TcpRelay {
    fn drop(&mut self) {
        self.cut();
        self.task.abort();
    }
}

/// Copies both ways; on a connection marked by what its client sent, each piece from the server
/// waits while `hold` is on.
async fn relay(
    client: TcpStream,
    server: TcpStream,
    marker: Option<(&'static [u8], &'static [u8])>,
    mut hold: watch::Receiver<bool>,
) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let marked = Arc::new(AtomicBool::new(false));
    let marked_up = marked.clone();
    let upward = async move {
        let mut buffer = vec![0; 16 * 1024];
        loop {
            let n = match client_read.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            // Marked (or unmarked) before the server can answer: the bytes are forwarded after.
            if let Some((mark, unmark)) = marker {
                let sent = &buffer[..n];
                let holds = |pattern: &[u8]| sent.windows(pattern.len()).any(|w| w == pattern);
                if holds(unmark) {
                    marked_up.store(false, Ordering::SeqCst);
                } else if holds(mark) {
                    marked_up.store(true, Ordering::SeqCst);
                }
            }
            if server_write.write_all(&buffer[..n]).await.is_err() {
                return;
            }
        }
    };
    let downward = async move {
        let mut buffer = vec![0; 16 * 1024];
        loop {
            let n = match server_read.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if marked.load(Ordering::SeqCst) && hold.wait_for(|&h| !h).await.is_err() {
                return;
            }
            if client_write.write_all(&buffer[..n]).await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        _ = upward => {}
        _ = downward => {}
    }
}
