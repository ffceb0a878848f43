//! HTTP/2 to Gemini with calls sharing connections.
//!
//! awc checks an HTTP/2 connection out for one request at a time, so every
//! call in flight would hold a TLS connection of its own
//! (docs/architecture.md#http2-upstream-calls-share-connections). This pool
//! keeps a few HTTP/2 connections per origin and opens streams on them: a
//! connection takes new streams up to the server's
//! `SETTINGS_MAX_CONCURRENT_STREAMS`, another one is opened only when every
//! connection is full, and a connection that received `GOAWAY` (or broke)
//! takes no new stream while the calls already on it finish.
//!
//! Whether an origin speaks HTTP/2 is the server's ALPN answer, learned on the
//! first connection and kept: an origin that picks `http/1.1` (or a plain
//! `http://` one) is left to awc, as before.
//!
//! Built on the `h2` crate (the one awc itself uses, so nothing new in the
//! graph) rather than hyper's `client::conn::http2`: hyper's `SendRequest` is
//! always ready and queues streams past the server's limit inside one
//! connection, and hides the server's limit, so a pool on top of it cannot tell
//! when to open another connection.
//!
//! Like the awc client beside it, a pool belongs to one upstream actor and
//! its thread: connections are driven by tasks on that thread.

pub(super) mod adapter;
mod body;
#[cfg(test)]
mod tests;

pub use body::{BodyError, H2Response};

use bytes::Bytes;
use h2::client::SendRequest;
use http::header::{HeaderName, HeaderValue, USER_AGENT};
use http::{HeaderMap, Method, Request, Uri};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// Streams assumed per connection until the server's SETTINGS say otherwise:
/// what RFC 9113 recommends as a floor, and what Google's front end allows.
const ASSUMED_MAX_STREAMS: usize = 100;
/// An idle connection is closed after this, like awc's keep-alive.
const KEEP_ALIVE: Duration = Duration::from_secs(60);
/// A connection takes no new stream after this, so DNS changes on Google's
/// side are picked up (awc's connection lifetime).
const CONNECTION_LIFETIME: Duration = Duration::from_secs(300);
/// Unread data a stream may hold: plenty for a stream of text, and what a
/// call whose client stopped reading pins until the stall timeout cuts it.
const STREAM_WINDOW: u32 = 256 * 1024;
/// Room for every stream of a full connection to hold its window, so calls
/// whose clients stopped reading never stall the others on the connection
/// (h2's default, 64 KiB for the whole connection, would).
const CONNECTION_WINDOW: u32 = STREAM_WINDOW * ASSUMED_MAX_STREAMS as u32;
/// Tries of one request over HTTP/2 when connections refuse it unprocessed.
/// Several connections may be going away at once (a server that ends each
/// after a count of requests ends those opened together at about the same
/// time), so a refusal may meet another; the call's deadline bounds the whole.
const MAX_TRIES: u32 = 8;
/// A refused stream counts as the server's lag when the connection had at
/// most this many places left.
const NEAR_THE_LIMIT: usize = 10;
/// The ALPN answer that means HTTP/2; any other (or none) means awc.
const ALPN_H2: &[u8] = b"h2";

/// Why a call over HTTP/2 got no answer.
#[derive(Debug, thiserror::Error)]
pub enum H2Error {
    #[error("could not connect to Gemini in time")]
    ConnectTimeout,
    #[error("could not connect to Gemini: {0}")]
    Connect(String),
    /// The upstream's certificate is not one the service trusts.
    #[error("upstream TLS certificate refused ({0})")]
    RefusedCertificate(String),
    /// The stream or its connection broke before an answer.
    #[error("the HTTP/2 stream to Gemini failed: {0}")]
    Stream(#[from] h2::Error),
    #[error("the request cannot go over HTTP/2: {0}")]
    Request(String),
    /// The connection took no new stream (it is going away or broke): the
    /// request never left.
    #[error("the HTTP/2 connection to Gemini took no new stream: {0}")]
    NotSent(h2::Error),
}

/// Headers HTTP/2 forbids (RFC 9113 §8.2.2); h2 refuses a request that has one.
const CONNECTION_SPECIFIC: &[&str] = &[
    "connection",
    "host",
    "keep-alive",
    "proxy-connection",
    "te",
    "transfer-encoding",
    "upgrade",
];

/// The head of a request to send: everything but the body. It borrows the
/// call's own parts: every call in flight holds it while it waits, and the
/// header map h2 sends is built for each try (h2 takes it by value anyway).
pub struct Head<'a> {
    pub method: &'a Method,
    /// Absolute: scheme and authority name the origin.
    pub uri: Uri,
    pub headers: &'a [(HeaderName, HeaderValue)],
}

/// The HTTP/2 connections of one upstream actor, by origin. Cheap to clone.
#[derive(Clone)]
pub struct H2Pool {
    inner: Rc<Inner>,
}

struct Inner {
    tls: TlsConnector,
    connect_timeout: Duration,
    /// The egress proxy this pool's connections go through, if any.
    proxy: Option<crate::upstream::egress::Proxy>,
    origins: RefCell<HashMap<String, Rc<Origin>>>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Protocol {
    Unknown,
    H2,
    Http1,
}

struct Origin {
    host: String,
    port: u16,
    protocol: Cell<Protocol>,
    conns: RefCell<Vec<Conn>>,
    /// One connection opened at a time per origin, so a burst of calls fills
    /// the new connection instead of each opening its own.
    opening: tokio::sync::Mutex<()>,
    /// Streams refused unprocessed; for tests.
    refused: Cell<usize>,
}

struct Conn {
    send: SendRequest<Bytes>,
    state: Rc<ConnState>,
}

/// What the pool knows of a connection; its driver task keeps it current.
struct ConnState {
    in_flight: Cell<usize>,
    max_streams: Cell<usize>,
    /// Streams kept free below the server's limit: one more each time the
    /// server refused a stream while the connection was near it, at most a
    /// quarter of it, for the connection's life (300 s at most). nginx
    /// counts a stream until it has cleaned it up, a while after the client
    /// reset it or read its last frame, so it refuses streams under its
    /// announced limit, and it ends a connection that sent it more than 100
    /// refused streams. A refusal far under the limit (a server shedding
    /// load) keeps no place free: the pool would only open more connections.
    headroom: Cell<usize>,
    closed: Cell<bool>,
    opened: Instant,
    idle_since: Cell<Instant>,
}

impl ConnState {
    /// Streams this connection may carry at once.
    fn room(&self) -> usize {
        let max = self.max_streams.get();
        // Clamped when read too: the server may lower its limit later.
        max.saturating_sub(self.headroom.get().min(max / 4))
    }

    /// The server refused a stream under its announced limit. Called with
    /// the refused stream's slot still held.
    fn refused_under_limit(&self) {
        let max = self.max_streams.get();
        let near = self.in_flight.get() + NEAR_THE_LIMIT >= self.room();
        if near && self.headroom.get() < max / 4 {
            self.headroom.set(self.headroom.get() + 1);
        }
    }
}

/// A stream's place on its connection, given back when dropped.
pub(crate) struct StreamSlot(Rc<ConnState>);

impl StreamSlot {
    fn take(state: &Rc<ConnState>) -> StreamSlot {
        state.in_flight.set(state.in_flight.get() + 1);
        StreamSlot(state.clone())
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let left = self.0.in_flight.get().saturating_sub(1);
        self.0.in_flight.set(left);
        if left == 0 {
            self.0.idle_since.set(Instant::now());
        }
    }
}

impl H2Pool {
    /// `tls` is the same trust as awc's client (`client::tls_config`); its
    /// ALPN list is replaced with `h2`, `http/1.1`, since the answer decides
    /// the protocol.
    /// With `proxy`, every connection is a tunnel through it, as awc's are.
    pub fn new(
        tls: &rustls::ClientConfig,
        connect_timeout: Duration,
        proxy: Option<&crate::upstream::egress::Proxy>,
    ) -> H2Pool {
        let mut tls = tls.clone();
        tls.alpn_protocols = vec![ALPN_H2.to_vec(), b"http/1.1".to_vec()];
        H2Pool {
            inner: Rc::new(Inner {
                tls: TlsConnector::from(Arc::new(tls)),
                connect_timeout,
                proxy: proxy.cloned(),
                origins: RefCell::new(HashMap::new()),
            }),
        }
    }

    /// Sends a request over HTTP/2 when its origin speaks it; `Ok(None)` when
    /// the origin is HTTP/1.1 (or plain HTTP), for awc to send. Dropping the
    /// future, or the answer's body, resets the stream.
    ///
    /// One flat loop: every call in flight holds this future while it waits
    /// for its answer, so the rare steps (opening a connection) are boxed and
    /// the waiting state stays small.
    pub async fn send(&self, head: &Head<'_>, body: &Bytes) -> Result<Option<H2Response>, H2Error> {
        let Some(origin) = self.origin(&head.uri) else {
            return Ok(None);
        };
        // A request refused by a connection that is going away never reached
        // the server: it tries again, on another connection. Servers rotate
        // connections (nginx after 1,000 requests each), and under load
        // several may be going away at once.
        let mut tries = 0;
        // The connection that refused the last try: the next goes elsewhere,
        // or a server that keeps refusing on one connection would spend every
        // try there.
        let mut refused_by: Option<Rc<ConnState>> = None;
        loop {
            tries += 1;
            let (send, slot) = match origin.pick(refused_by.as_ref()) {
                Some(found) => found,
                // Boxed: only the calls that find no connection with room (the
                // first to an origin, or every one full or going away) hold it.
                None => match Box::pin(self.open(&origin, refused_by.as_ref())).await? {
                    Some(found) => found,
                    None => return Ok(None),
                },
            };
            // Taken apart before the wait: a match around it would keep the
            // whole result in the future while it waits.
            let (response, stream) = match open_stream(send, head, body) {
                Ok(opened) => opened,
                // The connection is going away or broke: the request never left.
                Err(H2Error::NotSent(e)) if e.is_go_away() || e.is_io() => {
                    log::debug!("an HTTP/2 connection to Gemini took no new stream: {e}");
                    refused_by = Some(retry_elsewhere(&slot, e, tries)?);
                    continue;
                }
                Err(e) => return Err(e),
            };
            let answer = response.await;
            drop(stream);
            match answer {
                Ok(response) => return Ok(Some(H2Response::new(response, slot))),
                Err(e) if never_processed(&e) => {
                    log::debug!("an HTTP/2 connection to Gemini refused a stream: {e}");
                    origin.refused.set(origin.refused.get() + 1);
                    if !e.is_go_away() {
                        slot.0.refused_under_limit();
                    }
                    refused_by = Some(retry_elsewhere(&slot, e, tries)?);
                }
                // A connection that broke before the answer: whether the
                // server took the request is unknown, so it is the
                // pipeline's to retry, with backoff and inside the
                // retry budget (classify_h2_error).
                Err(e) => return Err(H2Error::Stream(e)),
            }
        }
    }

    /// Connections open to `uri`'s origin and streams in flight on each; for tests.
    #[cfg(test)]
    fn streams(&self, uri: &Uri) -> Vec<usize> {
        self.origin(uri)
            .map(|o| {
                o.conns
                    .borrow()
                    .iter()
                    .map(|c| c.state.in_flight.get())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Streams refused unprocessed by `uri`'s origin; for tests.
    #[cfg(test)]
    fn refused(&self, uri: &Uri) -> usize {
        self.origin(uri).map_or(0, |o| o.refused.get())
    }

    /// Connections to `uri`'s origin that take new streams; for tests.
    #[cfg(test)]
    fn taking_streams(&self, uri: &Uri) -> usize {
        self.origin(uri).map_or(0, |o| {
            o.conns
                .borrow_mut()
                .iter_mut()
                .map(Conn::usable)
                .filter(|usable| *usable)
                .count()
        })
    }

    fn origin(&self, uri: &Uri) -> Option<Rc<Origin>> {
        if uri.scheme_str() != Some("https") {
            return None;
        }
        let authority = uri.authority()?;
        let mut origins = self.inner.origins.borrow_mut();
        // Looked up as written first: every call names the same origin, and
        // the lower-cased key would be an allocation on each.
        let origin = match origins.get(authority.as_str()) {
            Some(origin) => origin.clone(),
            None => origins
                .entry(authority.as_str().to_ascii_lowercase())
                .or_insert_with(|| {
                    Rc::new(Origin {
                        host: authority
                            .host()
                            .trim_start_matches('[')
                            .trim_end_matches(']')
                            .to_owned(),
                        port: authority.port_u16().unwrap_or(443),
                        protocol: Cell::new(Protocol::Unknown),
                        conns: RefCell::new(Vec::new()),
                        opening: tokio::sync::Mutex::new(()),
                        refused: Cell::new(0),
                    })
                })
                .clone(),
        };
        (origin.protocol.get() != Protocol::Http1).then_some(origin)
    }

    /// Opens a connection to `origin` unless another call did meanwhile;
    /// `None` when the origin turned out to speak HTTP/1.1.
    async fn open(
        &self,
        origin: &Origin,
        except: Option<&Rc<ConnState>>,
    ) -> Result<Option<(SendRequest<Bytes>, StreamSlot)>, H2Error> {
        let _opening = origin.opening.lock().await;
        // Another call may have opened one while this one waited.
        if let Some(found) = origin.pick(except) {
            return Ok(Some(found));
        }
        if origin.protocol.get() == Protocol::Http1 {
            return Ok(None);
        }
        // Boxed: opening a connection (TCP, a proxy's tunnel, TLS, the
        // HTTP/2 handshake) is a future of several KiB, and in a burst every
        // call waiting for the connection being opened (the lock above)
        // would otherwise hold room for it: 10,000 calls, 40 MB.
        match Box::pin(self.connect(origin)).await? {
            None => {
                log::info!(
                    "{}:{} answered ALPN without h2; its calls use HTTP/1.1",
                    origin.host,
                    origin.port
                );
                origin.protocol.set(Protocol::Http1);
                Ok(None)
            }
            Some(conn) => {
                origin.protocol.set(Protocol::H2);
                let slot = StreamSlot::take(&conn.state);
                let send = conn.send.clone();
                origin.conns.borrow_mut().push(conn);
                Ok(Some((send, slot)))
            }
        }
    }

    /// Opens a connection over TCP and TLS; `None` when the server did not
    /// pick `h2`.
    async fn connect(&self, origin: &Origin) -> Result<Option<Conn>, H2Error> {
        let connecting = async {
            let tcp = match &self.inner.proxy {
                Some(proxy) => crate::upstream::egress::connect(
                    proxy,
                    &origin.host,
                    origin.port,
                    self.inner.connect_timeout,
                )
                .await
                .map_err(|e| H2Error::Connect(e.to_string()))?,
                None => TcpStream::connect((origin.host.as_str(), origin.port))
                    .await
                    .map_err(|e| H2Error::Connect(e.to_string()))?,
            };
            // Small frames (a chunk of a stream) must not wait for more.
            let _ = tcp.set_nodelay(true);
            let name = rustls::pki_types::ServerName::try_from(origin.host.clone())
                .map_err(|e| H2Error::Connect(e.to_string()))?;
            let tls = self.inner.tls.connect(name, tcp).await.map_err(|e| {
                // tokio-rustls hands the handshake's rustls error inside the io::Error.
                let refused = e
                    .get_ref()
                    .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                    .is_some_and(|tls| matches!(tls, rustls::Error::InvalidCertificate(_)));
                if refused {
                    H2Error::RefusedCertificate(e.to_string())
                } else {
                    H2Error::Connect(e.to_string())
                }
            })?;
            if tls.get_ref().1.alpn_protocol() != Some(ALPN_H2) {
                return Ok(None);
            }
            let (send, connection) = h2::client::Builder::new()
                .initial_max_send_streams(ASSUMED_MAX_STREAMS)
                .initial_window_size(STREAM_WINDOW)
                .initial_connection_window_size(CONNECTION_WINDOW)
                .handshake::<_, Bytes>(tls)
                .await?;
            Ok(Some((send, connection)))
        };
        let (send, connection) =
            match tokio::time::timeout(self.inner.connect_timeout, connecting).await {
                Err(_) => return Err(H2Error::ConnectTimeout),
                Ok(Err(e)) => return Err(e),
                Ok(Ok(None)) => return Ok(None),
                Ok(Ok(Some(pair))) => pair,
            };
        let now = Instant::now();
        let state = Rc::new(ConnState {
            in_flight: Cell::new(0),
            max_streams: Cell::new(ASSUMED_MAX_STREAMS),
            headroom: Cell::new(0),
            closed: Cell::new(false),
            opened: now,
            idle_since: Cell::new(now),
        });
        // The driver runs until the connection closes: when it breaks, when
        // the server ends it after GOAWAY, or when the pool and every stream
        // on it let go.
        actix_rt::spawn(Driver {
            connection,
            state: state.clone(),
        });
        Ok(Some(Conn { send, state }))
    }
}

impl Origin {
    /// The first connection with room, so streams pack into as few
    /// connections as the server allows; drops connections that can take no
    /// new stream.
    fn pick(&self, except: Option<&Rc<ConnState>>) -> Option<(SendRequest<Bytes>, StreamSlot)> {
        let mut conns = self.conns.borrow_mut();
        conns.retain_mut(|conn| conn.usable());
        conns.iter().find_map(|conn| {
            let state = &conn.state;
            let skipped = except.is_some_and(|except| Rc::ptr_eq(except, state));
            (!skipped && state.in_flight.get() < state.room())
                .then(|| (conn.send.clone(), StreamSlot::take(state)))
        })
    }
}

impl Conn {
    /// Whether the connection may take new streams. `poll_ready` on the
    /// pool's own handle (which never opens a stream) fails once the
    /// connection received GOAWAY or broke.
    fn usable(&mut self) -> bool {
        let state = &self.state;
        if state.closed.get() || state.opened.elapsed() > CONNECTION_LIFETIME {
            return false;
        }
        if state.in_flight.get() == 0 && state.idle_since.get().elapsed() > KEEP_ALIVE {
            return false;
        }
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        match self.send.poll_ready(&mut cx) {
            Poll::Ready(Ok(())) | Poll::Pending => true,
            Poll::Ready(Err(e)) => {
                log::debug!("an HTTP/2 connection to Gemini takes no new streams: {e}");
                state.closed.set(true);
                false
            }
        }
    }
}

/// Opens the stream and hands it its body; the answer's head comes on the
/// returned future. The stream handle must live until then.
fn open_stream(
    mut send: SendRequest<Bytes>,
    head: &Head<'_>,
    body: &Bytes,
) -> Result<(h2::client::ResponseFuture, h2::SendStream<Bytes>), H2Error> {
    let mut request = Request::builder()
        .method(head.method.clone())
        .uri(head.uri.clone())
        .body(())
        .map_err(|e| H2Error::Request(e.to_string()))?;
    *request.headers_mut() = header_map(head.headers);
    let end_of_stream = body.is_empty();
    // Refused here, the request never left: always safe to send elsewhere.
    let (response, mut stream) = send
        .send_request(request, end_of_stream)
        .map_err(H2Error::NotSent)?;
    if !end_of_stream {
        // h2 holds what the window does not take yet and sends it as the
        // server opens it; the body is already whole in memory.
        stream.send_data(body.clone(), true)?;
    }
    Ok((response, stream))
}

fn header_map(headers: &[(HeaderName, HeaderValue)]) -> HeaderMap {
    // `with_capacity` panics past http's limit; a request head is bounded well
    // under it (middleware/observe.rs), but an upstream actor must not panic.
    let mut map = HeaderMap::try_with_capacity(headers.len() + 1).unwrap_or_default();
    map.insert(
        USER_AGENT,
        HeaderValue::from_static(crate::upstream::client::USER_AGENT),
    );
    for (name, value) in headers {
        if !CONNECTION_SPECIFIC.contains(&name.as_str()) {
            map.insert(name.clone(), value.clone());
        }
    }
    map
}

/// A try that never reached the server (refused unprocessed, or its
/// connection could take no new stream): the connection, for the next try to
/// avoid, or the error when the tries are spent. Refused by GOAWAY (or unable
/// to open a stream at all), the connection takes no new stream; its driver
/// may not have seen the GOAWAY yet, so the next try must not pick it. One
/// refused stream alone (REFUSED_STREAM) does not end it.
fn retry_elsewhere(
    slot: &StreamSlot,
    error: h2::Error,
    tries: u32,
) -> Result<Rc<ConnState>, H2Error> {
    if error.is_go_away() || !error.is_reset() {
        slot.0.closed.set(true);
    }
    if tries >= MAX_TRIES {
        return Err(H2Error::Stream(error));
    }
    Ok(slot.0.clone())
}

/// Whether a failed stream was refused before the server worked on it, so
/// it can go again (RFC 9113 §8.7).
fn never_processed(error: &h2::Error) -> bool {
    // Remote only: h2 itself resets a stream with REFUSED_STREAM when the
    // answer's head is too large, after the server did the work.
    error.is_remote() && (error.is_go_away() || error.reason() == Some(h2::Reason::REFUSED_STREAM))
}

/// Drives one connection and tells the pool what it learns: the server's
/// stream limit (from its SETTINGS) and the end.
struct Driver {
    connection: h2::client::Connection<TlsStream<TcpStream>, Bytes>,
    state: Rc<ConnState>,
}

impl Future for Driver {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let polled = Pin::new(&mut self.connection).poll(cx);
        let max = self.connection.max_concurrent_send_streams();
        self.state.max_streams.set(max);
        match polled {
            Poll::Pending => Poll::Pending,
            Poll::Ready(result) => {
                if let Err(e) = result {
                    log::debug!("an HTTP/2 connection to Gemini ended: {e}");
                }
                self.state.closed.set(true);
                Poll::Ready(())
            }
        }
    }
}
