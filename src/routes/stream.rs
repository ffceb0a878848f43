//! The client's side of a relayed stream: the body actix writes out, and the
//! cut that ends the connection of a client that stopped reading.
//!
//! A client that stops reading is never polled again (actix stops pulling a
//! body while its write buffer is full, and has no write timeout), so the
//! upstream pump decides that the client stalled; this side then shuts the
//! client's socket down, which makes actix drop the connection and with it
//! this body, whose end the access log records.

use crate::upstream::relay::{Relay, StreamEnd};
use crate::upstream::stream_reader::StreamBroken;
use bytes::Bytes;
use futures_util::Stream;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::mpsc;

/// Attached to a streamed response, so the access log can wait for the
/// stream's end and record how it really ended.
#[derive(Clone)]
pub struct StreamOutcome(pub Arc<StreamEnd>);

/// The client connection's socket, recorded when the connection opens (see
/// [`ClientSocket::record`]).
#[derive(Clone, Copy, Debug)]
pub struct ClientSocket(#[cfg(unix)] std::os::fd::RawFd);

impl ClientSocket {
    /// For `HttpServer::on_connect`: remembers an HTTP/1 connection's socket
    /// (plain or under TLS), sends small writes at once, and bounds how long
    /// the kernel keeps sending to a client that acknowledges nothing
    /// (`TCP_USER_TIMEOUT`; zero-window probes count), so a client that stops
    /// reading a large unary answer is let go too.
    pub fn record(
        stall: std::time::Duration,
    ) -> impl Fn(&dyn std::any::Any, &mut actix_web::dev::Extensions) + Send + Sync + 'static {
        move |connection, data| {
            use actix_tls::accept::rustls_0_23::TlsStream;
            use actix_web::rt::net::TcpStream;
            let (stream, multiplexed) = if let Some(tcp) = connection.downcast_ref::<TcpStream>() {
                (tcp, false)
            } else if let Some(tls) = connection.downcast_ref::<TlsStream<TcpStream>>() {
                let (tcp, session) = tls.get_ref();
                (tcp, session.alpn_protocol() == Some(b"h2"))
            } else {
                return;
            };
            // A stream's last bytes (its last event, then the chunked end)
            // may leave in two small writes: without this, Nagle holds the
            // second until the client's delayed ACK, 40 ms later.
            if let Err(error) = stream.set_nodelay(true) {
                log::debug!("TCP_NODELAY not set: {error}");
            }
            #[cfg(any(target_os = "linux", target_os = "android"))]
            if let Err(error) = socket2::SockRef::from(stream).set_tcp_user_timeout(Some(stall)) {
                log::debug!("TCP_USER_TIMEOUT not set: {error}");
            }
            // An HTTP/2 connection carries other streams beside a stalled
            // one: cutting its socket would end them too, so it is not
            // recorded (the stalled stream's upstream call still ends, and
            // its in-flight place is freed).
            #[cfg(unix)]
            if !multiplexed {
                use std::os::fd::AsRawFd;
                data.insert(ClientSocket(stream.as_raw_fd()));
            }
            let _ = (&stall, &data, multiplexed);
        }
    }

    /// Ends both directions of the connection; actix then sees the socket
    /// closed and drops it. Call only while the connection is known to be
    /// open (see [`RelayedStream::new`]).
    fn shut_down(self) {
        #[cfg(unix)]
        // SAFETY: `shutdown` only changes the state of the socket the
        // descriptor names, and the caller guarantees the connection that
        // owns the descriptor is still open, so it names that socket and no
        // other; the descriptor itself stays owned (and later closed) by
        // actix.
        unsafe {
            libc::shutdown(self.0, libc::SHUT_RDWR);
        }
    }
}

/// The stream actix writes to the client.
pub struct RelayedStream {
    chunks: mpsc::Receiver<Result<Bytes, StreamBroken>>,
    end: Arc<StreamEnd>,
    /// A break held back for one poll; see `poll_next`.
    broken: Option<StreamBroken>,
    /// Alive exactly as long as the connection that writes this body.
    _alive: Rc<()>,
}

impl RelayedStream {
    /// `socket`: the client's connection, cut if the pump finds the client stalled.
    pub fn new(relay: Relay, socket: Option<ClientSocket>) -> RelayedStream {
        let alive = Rc::new(());
        if let Some(socket) = socket {
            let connection_open = Rc::downgrade(&alive);
            let stalled = relay.stalled;
            // On this worker's thread, like the connection: while this body is
            // alive its connection is open, so the socket is still its own.
            actix_rt::spawn(async move {
                if stalled.await.is_ok() && connection_open.upgrade().is_some() {
                    socket.shut_down();
                }
            });
        }
        RelayedStream {
            chunks: relay.chunks,
            end: relay.end,
            broken: None,
            _alive: alive,
        }
    }
}

impl Drop for RelayedStream {
    fn drop(&mut self) {
        // Gone before the end: nothing is left for the pump to wait for.
        self.end.drained();
    }
}

impl Stream for RelayedStream {
    type Item = Result<Bytes, StreamBroken>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(broken) = self.broken.take() {
            return Poll::Ready(Some(Err(broken)));
        }
        let broken = match self.chunks.poll_recv(cx) {
            Poll::Ready(Some(Ok(chunk))) => return Poll::Ready(Some(Ok(chunk))),
            Poll::Ready(Some(Err(broken))) => broken,
            // The pump says how the stream ended before it lets go of the
            // channel: only a finished stream ends cleanly.
            Poll::Ready(None) if self.end.code() == Some("OK") => {
                self.end.drained();
                return Poll::Ready(None);
            }
            Poll::Ready(None) => StreamBroken("the stream from Gemini did not finish"),
            Poll::Pending => return Poll::Pending,
        };
        self.end.drained();
        // actix drops the response bytes it has not written yet when a body
        // fails, which can be the whole head and the events before the break.
        // Pausing once lets it flush them, so the client gets what Gemini sent
        // and then a cut connection, not nothing.
        self.broken = Some(broken);
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
