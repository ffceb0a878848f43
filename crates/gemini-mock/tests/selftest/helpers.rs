//! Shared by the mock's self-tests: an awc client, request helpers, SSE parsing, and a
//! bare-TCP exchange for checks that awc cannot make.

use std::time::{Duration, Instant};

use bytes::Bytes;
use gemini_mock::{MockConfig, MockGemini};
use serde_json::Value;

pub const BODY: &str =
    r#"{"contents":[{"role":"user","parts":[{"text":"hello brave new world"}]}]}"#;
pub const JSON_UTF8: &str = "application/json; charset=UTF-8";

pub use gemini_mock::testing::{client, connect, send_to, TestResponse as Resp};

pub async fn call(
    mock: &MockGemini,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Resp {
    let method = awc::http::Method::from_bytes(method.as_bytes()).expect("a method");
    let body = body.map(str::to_owned).unwrap_or_default();
    send_to(&mock.base_url(), method, path, headers, body).await
}

/// generateContent on gemini-2.5-flash with a key and optional extra headers.
pub async fn generate(mock: &MockGemini, extra: &[(&str, &str)]) -> Resp {
    let mut headers = vec![("x-goog-api-key", "test-key")];
    headers.extend_from_slice(extra);
    let path = "/v1beta/models/gemini-2.5-flash:generateContent";
    call(mock, "POST", path, &headers, Some(BODY)).await
}

pub async fn with_scenario(mock: &MockGemini, scenario: &str) -> Resp {
    generate(mock, &[("x-mock-scenario", scenario)]).await
}

pub async fn start() -> MockGemini {
    MockGemini::start(MockConfig::default()).await.unwrap()
}

/// Polls `f` until it holds, for at most 2 s.
pub async fn eventually(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(2);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
}

pub const STREAM_PATH: &str = "/v1beta/models/gemini-2.5-flash:streamGenerateContent";

pub async fn stream(mock: &MockGemini, query: &str, extra: &[(&str, &str)]) -> Resp {
    let mut headers = vec![("x-goog-api-key", "k")];
    headers.extend_from_slice(extra);
    call(
        mock,
        "POST",
        &format!("{STREAM_PATH}{query}"),
        &headers,
        Some(BODY),
    )
    .await
}

/// The `data:` payloads of a native SSE body, checking the framing on the way.
pub fn sse_events(body: &str, end: &str) -> Vec<Value> {
    assert!(body.ends_with(end), "{body:?}");
    body.split_terminator(end)
        .map(|e| {
            let payload = e.strip_prefix("data: ").unwrap_or_else(|| panic!("{e:?}"));
            assert!(!payload.contains('\n') && !payload.contains('\r'), "{e:?}");
            serde_json::from_str(payload).unwrap()
        })
        .collect()
}

/// One request over a bare TCP connection, returning every byte the server sent before it
/// closed. awc cannot be used to see a cut body: it reports an early close as a clean end.
pub async fn raw_exchange(mock: &MockGemini, path: &str, scenario: &str) -> (String, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = connect(mock.addr().port()).await;
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nx-goog-api-key: k\r\n\
         x-mock-scenario: {scenario}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{BODY}",
        BODY.len()
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut all = Vec::new();
    let mut buf = [0u8; 8192];
    // A reset also ends the exchange; what arrived before it is what counts.
    while let Ok(n @ 1..) = tcp.read(&mut buf).await {
        all.extend_from_slice(&buf[..n]);
    }
    let split = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(all.len(), |i| i + 4);
    let body = all.split_off(split);
    (String::from_utf8(all).unwrap().to_ascii_lowercase(), body)
}

/// Sends a generateContent with a scenario and reads the body, returning the status and
/// what reading gave.
pub async fn raw(mock: &MockGemini, scenario: &str) -> (u16, Result<Bytes, String>) {
    let url = format!(
        "{}/v1beta/models/gemini-2.5-flash:generateContent",
        mock.base_url()
    );
    let mut res = client()
        .post(url)
        .insert_header(("x-goog-api-key", "k"))
        .insert_header(("x-mock-scenario", scenario))
        .send_body(BODY)
        .await
        .unwrap();
    let body = res.body().limit(64 * 1024 * 1024).await;
    (res.status().as_u16(), body.map_err(|e| e.to_string()))
}

/// The body upstream sends for `object_body` where errors come as a one-element array
/// (the JSON-array stream and the OpenAI-compatible surface).
pub fn as_array(object_body: &str) -> String {
    format!("[{}\n]\n", object_body.trim_end_matches('\n'))
}

/// An OpenAI chat body for `model` with one user message.
pub fn chat_body(model: &str, text: &str) -> String {
    serde_json::json!({"model": model, "messages": [{"role": "user", "content": text}]}).to_string()
}
