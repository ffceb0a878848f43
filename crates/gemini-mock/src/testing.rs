//! A small HTTP client for tests, written once for the mock's self-tests and
//! the service's own tests: send a request to any loopback origin and read the
//! whole answer, open a raw connection to write bytes by hand, or speak the Live
//! API's WebSocket (`LiveClient`).
//!
//! Test code: it panics with a message naming the request when a request
//! cannot be sent, which is what a test wants.
#![allow(clippy::panic, clippy::expect_used)]

use actix_web::http::header::HeaderMap;
use actix_web::http::Method;
use bytes::Bytes;
use std::time::Duration;

/// Bodies read whole are cut off past this; the largest a test reads (an
/// oversize answer) is 33 MiB.
const MAX_BODY: usize = 64 * 1024 * 1024;

/// A whole response, read so it can outlive the connection.
#[derive(Debug)]
pub struct TestResponse {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl TestResponse {
    /// The body as JSON; panics with the body when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A client that follows no redirect and gives up after 30 s.
pub fn client() -> awc::Client {
    awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .disable_redirects()
        .finish()
}

/// As [`client`], for a TLS mock: trusts only the CA in `ca_pem` (the mock's
/// [`crate::MockGemini::ca_pem`]) and offers `alpn` (`b"h2"`, `b"http/1.1"`).
pub fn tls_client(ca_pem: &str, alpn: &[&[u8]]) -> awc::Client {
    use rustls::pki_types::pem::PemObject;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    // awc asks for the process default in places; one installed is enough.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    for certificate in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots
            .add(certificate.expect("a PEM certificate"))
            .expect("a root rustls accepts");
    }
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    awc::Client::builder()
        .connector(awc::Connector::new().rustls_0_23(std::sync::Arc::new(config)))
        .timeout(Duration::from_secs(30))
        .disable_redirects()
        .finish()
}

/// Sends a request to `origin` (`http://127.0.0.1:PORT`) and reads the whole answer.
pub async fn send_to(
    origin: &str,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> TestResponse {
    let mut request = client().request(method, format!("{origin}{path}"));
    for (name, value) in headers {
        request = request.append_header((*name, *value));
    }
    let mut response = request
        .send_body(body.into())
        .await
        .unwrap_or_else(|e| panic!("request to {origin}{path} failed: {e}"));
    let body = response
        .body()
        .limit(MAX_BODY)
        .await
        .unwrap_or_else(|e| panic!("the body of {origin}{path} did not read: {e}"));
    TestResponse {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        body,
    }
}

/// A raw connection to a loopback port, for requests written byte by byte.
pub async fn connect(port: u16) -> tokio::net::TcpStream {
    tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap_or_else(|e| panic!("cannot connect to 127.0.0.1:{port}: {e}"))
}

/// A Live API path: `/ws/google.ai.generativelanguage.{version}.GenerativeService.BidiGenerateContent`.
pub fn live_path(version: &str) -> String {
    format!("/ws/google.ai.generativelanguage.{version}.GenerativeService.BidiGenerateContent")
}

/// Frames a Live test client reads: far more than any test sends.
const LIVE_MAX_FRAME: usize = 64 * 1024 * 1024;
/// How long `LiveClient::next` waits before it calls a session stuck.
const LIVE_WAIT: Duration = Duration::from_secs(10);

/// One frame a `LiveClient` received (continuations are not expected from the mock).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiveFrame {
    Text(String),
    Binary(Bytes),
    Ping(Bytes),
    Pong(Bytes),
    /// The close frame's code and reason; `None` for a close frame without a code.
    Close(Option<(u16, String)>),
}

impl LiveFrame {
    /// A data frame's payload as JSON; panics for other frames or non-JSON.
    pub fn json(&self) -> serde_json::Value {
        let data: &[u8] = match self {
            LiveFrame::Text(t) => t.as_bytes(),
            LiveFrame::Binary(b) => b,
            other => panic!("not a data frame: {other:?}"),
        };
        serde_json::from_slice(data)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(data)))
    }

    pub fn is_data(&self) -> bool {
        matches!(self, LiveFrame::Text(_) | LiveFrame::Binary(_))
    }
}

/// A WebSocket client for the Live API, over awc.
pub struct LiveClient {
    framed: actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec>,
}

impl LiveClient {
    /// Opens `url` (`ws://127.0.0.1:PORT/ws/…`) with `headers`; panics when the upgrade fails.
    pub async fn connect(url: &str, headers: &[(&str, &str)]) -> LiveClient {
        Self::try_connect(url, headers)
            .await
            .unwrap_or_else(|e| panic!("the upgrade of {url} failed: {e}"))
    }

    /// Like `connect`, returning the failure (e.g. a refused upgrade's status).
    pub async fn try_connect(url: &str, headers: &[(&str, &str)]) -> Result<LiveClient, String> {
        let mut request = awc::Client::new().ws(url).max_frame_size(LIVE_MAX_FRAME);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        // Debug, not Display: it names the refused status.
        let (_, framed) = request.connect().await.map_err(|e| format!("{e:?}"))?;
        Ok(LiveClient { framed })
    }

    pub async fn send(&mut self, message: awc::ws::Message) {
        use futures_util::SinkExt;
        self.framed
            .send(message)
            .await
            .unwrap_or_else(|e| panic!("could not send a frame: {e}"));
    }

    /// Sends `value` as one text frame.
    pub async fn send_json(&mut self, value: &serde_json::Value) {
        self.send(awc::ws::Message::Text(value.to_string().into()))
            .await;
    }

    /// The next frame, or `None` when the connection ended; panics after 10 s of silence.
    pub async fn next(&mut self) -> Option<LiveFrame> {
        self.next_within(LIVE_WAIT)
            .await
            .unwrap_or_else(|| panic!("no frame within {LIVE_WAIT:?}"))
    }

    /// The next frame within `wait`: `None` when nothing came in time, `Some(None)`
    /// when the connection ended.
    pub async fn next_within(&mut self, wait: Duration) -> Option<Option<LiveFrame>> {
        use awc::ws::Frame;
        use futures_util::StreamExt;
        let frame = tokio::time::timeout(wait, self.framed.next()).await.ok()?;
        let frame = match frame {
            None | Some(Err(_)) => return Some(None),
            Some(Ok(frame)) => frame,
        };
        Some(Some(match frame {
            Frame::Text(b) => LiveFrame::Text(String::from_utf8_lossy(&b).into_owned()),
            Frame::Binary(b) => LiveFrame::Binary(b),
            Frame::Ping(b) => LiveFrame::Ping(b),
            Frame::Pong(b) => LiveFrame::Pong(b),
            Frame::Close(reason) => LiveFrame::Close(
                reason.map(|r| (u16::from(r.code), r.description.unwrap_or_default())),
            ),
            Frame::Continuation(_) => panic!("unexpected continuation frame"),
        }))
    }

    /// The next data frame as JSON, skipping pongs; panics on anything else.
    pub async fn next_json(&mut self) -> serde_json::Value {
        loop {
            match self.next().await {
                Some(LiveFrame::Pong(_)) => continue,
                Some(frame) if frame.is_data() => return frame.json(),
                other => panic!("expected a message, got {other:?}"),
            }
        }
    }

    /// Sends a setup for `model` and returns the first answer (`setupComplete`, when
    /// all goes well).
    pub async fn setup(&mut self, model: &str) -> serde_json::Value {
        self.send_json(&serde_json::json!({"setup": {"model": model}}))
            .await;
        self.next_json().await
    }

    /// Sends `text` as a complete user turn, spelt as python does (snake_case at the top,
    /// camelCase inside).
    pub async fn say(&mut self, text: &str) {
        let turn = serde_json::json!({"client_content": {
            "turns": [{"role": "user", "parts": [{"text": text}]}],
            "turnComplete": true,
        }});
        self.send_json(&turn).await;
    }

    /// Messages up to and including the one with `serverContent.turnComplete`.
    pub async fn turn(&mut self) -> Vec<serde_json::Value> {
        let mut all = Vec::new();
        loop {
            let message = self.next_json().await;
            let done = message["serverContent"]["turnComplete"] == true;
            all.push(message);
            if done {
                return all;
            }
        }
    }

    /// Reads until the close frame and returns it; panics on a data frame or the
    /// connection ending first.
    pub async fn closed(&mut self) -> Option<(u16, String)> {
        loop {
            match self.next().await {
                Some(LiveFrame::Close(reason)) => return reason,
                Some(LiveFrame::Ping(_) | LiveFrame::Pong(_)) => continue,
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    }
}
