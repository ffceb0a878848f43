//! A small HTTP client for tests, written once for the mock's self-tests and
//! the service's own tests: send a request to any loopback origin and read the
//! whole answer, or open a raw connection to write bytes by hand.
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
