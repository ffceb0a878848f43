//! An upstream that is not HTTP at all: a loopback listener that answers every
//! connection with bytes of another protocol (an SSH banner and the start of a binary
//! packet) and closes. It stands for a base URL pointing at the wrong port, so tests can
//! check that the proxy fails such a call cleanly, and does not retry it.
//!
//! It is separate from `MockGemini` because nothing HTTP may answer on its port.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// What an OpenSSH server sends first.
const BANNER: &[u8] = b"SSH-2.0-OpenSSH_9.6\r\n";
/// The start of an SSH key-exchange packet: a length, padding and message number 20,
/// then binary noise, with bytes no HTTP parser accepts in a status line.
const BINARY: &[u8] = &[
    0x00, 0x00, 0x05, 0xdc, 0x07, 0x14, 0x9f, 0x3c, 0x00, 0xff, 0xfe, 0x81, 0x0d, 0x0a, 0x00, 0x00,
    0x01, 0x0e, 0x63, 0x75, 0x72, 0x76, 0x65, 0x32, 0x35, 0x35, 0x31, 0x39,
];
/// How long the request is read after the answer, so the socket closes with nothing
/// unread: closing with unread bytes would reset the connection, and the client would
/// then see a reset rather than the bytes.
const DRAIN: Duration = Duration::from_millis(500);
/// A pause after a failed accept (out of file descriptors, say), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(10);

/// A running non-HTTP listener. Dropping it (or `stop`) closes the port.
pub struct NotHttpUpstream {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

/// Binds 127.0.0.1 on a free port and answers on the current runtime.
pub async fn start_not_http() -> io::Result<NotHttpUpstream> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&connections);
    let task = tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((socket, _)) => {
                    counted.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(answer(socket));
                }
                Err(e) => {
                    log::warn!("not-http upstream: accept failed: {e}");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            }
        }
    });
    log::info!("not-http upstream listening on {addr}");
    Ok(NotHttpUpstream {
        addr,
        connections,
        task,
    })
}

/// Speaks first, as an SSH server does, whatever the client sent.
async fn answer(mut socket: TcpStream) {
    if socket.write_all(BANNER).await.is_err() || socket.write_all(BINARY).await.is_err() {
        return;
    }
    if socket.shutdown().await.is_err() {
        return;
    }
    let mut buf = [0u8; 4096];
    let drain = async { while let Ok(1..) = socket.read(&mut buf).await {} };
    // Either end is fine: the client closed, or it had its chance.
    let _ = tokio::time::timeout(DRAIN, drain).await;
}

impl NotHttpUpstream {
    /// `http://127.0.0.1:PORT`
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Connections accepted so far, so a test can tell whether a client retried.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Closes the port; connections already accepted finish their answer.
    pub async fn stop(mut self) {
        self.task.abort();
        // The listener is dropped with the task; waiting for it makes the port closed
        // by the time `stop` returns. The outcome is always "cancelled".
        let _ = (&mut self.task).await;
    }
}

impl Drop for NotHttpUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}
