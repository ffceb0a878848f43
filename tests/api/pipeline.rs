//! The one upstream pipeline, seen from outside: tokens counted whatever the
//! surface and framing, `alt` read as Gemini reads it, a client that stops
//! reading cut off without holding its place, and an upstream that does not
//! speak HTTP refused at once.

use crate::helpers::*;
use awc::http::Method;
use gemini_mock::start_not_http;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const JSON: (&str, &str) = ("Content-Type", "application/json");
const CLIENT: &str = "env-1";
const MODEL: &str = "gemini-2.5-flash";

fn contents(text: &str) -> String {
    json!({"contents": [{"role": "user", "parts": [{"text": text}]}]}).to_string()
}

fn chat(stream: bool) -> String {
    json!({"model": MODEL, "stream": stream, "messages": [{"role": "user", "content": "count my tokens"}]})
        .to_string()
}

/// Prompt, response and thought tokens counted for the test client so far.
async fn counted(app: &TestApp) -> [u64; 3] {
    let metrics = app.metrics().await;
    ["prompt", "response", "thoughts"].map(|kind| {
        let series = format!(
            "gemini_proxy_tokens_total{{client=\"{CLIENT}\",kind=\"{kind}\",model=\"{MODEL}\"}}"
        );
        metric_value(&metrics, &series).unwrap_or(0.0) as u64
    })
}

/// Gemini's `usageMetadata` as prompt, response and thought tokens.
fn gemini_usage(usage: &Value) -> [u64; 3] {
    [
        "promptTokenCount",
        "candidatesTokenCount",
        "thoughtsTokenCount",
    ]
    .map(|field| usage[field].as_u64().unwrap_or(0))
}

/// OpenAI's `usage` as prompt, response and thought tokens.
fn openai_usage(usage: &Value) -> [u64; 3] {
    let prompt = usage["prompt_tokens"].as_u64().unwrap_or(0);
    let response = usage["completion_tokens"].as_u64().unwrap_or(0);
    let total = usage["total_tokens"].as_u64().unwrap_or(0);
    [prompt, response, total.saturating_sub(prompt + response)]
}

/// The usage a body reports, read the plain way: the last usage object of a
/// whole answer, an SSE stream (any line end) or a JSON array.
fn usage_of(body: &[u8]) -> [u64; 3] {
    let text = String::from_utf8_lossy(body);
    let values: Vec<Value> = if let Ok(value) = serde_json::from_str::<Value>(&text) {
        match value {
            Value::Array(items) => items,
            other => vec![other],
        }
    } else {
        text.replace("\r\n", "\n")
            .replace('\r', "\n")
            .lines()
            .filter_map(|line| line.strip_prefix("data:"))
            .filter_map(|data| serde_json::from_str(data.trim_start()).ok())
            .collect()
    };
    values
        .iter()
        .rev()
        .find_map(|v| {
            if v["usageMetadata"].is_object() {
                Some(gemini_usage(&v["usageMetadata"]))
            } else if v["usage"].is_object() {
                Some(openai_usage(&v["usage"]))
            } else {
                None
            }
        })
        .expect("the answer reports its usage")
}

#[actix_rt::test]
async fn tokens_are_counted_on_every_surface_and_framing() {
    let bearer = format!("Bearer {CLIENT_KEY}");
    let native: [(&str, &str); 2] = [("x-goog-api-key", CLIENT_KEY), JSON];
    let openai: [(&str, &str); 2] = [("Authorization", bearer.as_str()), JSON];
    let stream = "/v1beta/models/gemini-2.5-flash:streamGenerateContent";
    type Case<'a> = (&'a str, String, [(&'a str, &'a str); 2], String);
    let cases: Vec<Case> = vec![
        (
            "native unary",
            "/v1beta/models/gemini-2.5-flash:generateContent".into(),
            native,
            contents("count my tokens"),
        ),
        (
            "native SSE",
            format!("{stream}?alt=sse"),
            native,
            contents("count my tokens"),
        ),
        (
            "native SSE framed with LF",
            format!("{stream}?alt=sse"),
            native,
            contents("[mock:lf-framing] count my tokens"),
        ),
        (
            "native SSE, alt percent-encoded",
            format!("{stream}?alt=%73se"),
            native,
            contents("count"),
        ),
        (
            "native JSON array",
            stream.into(),
            native,
            contents("count my tokens"),
        ),
        (
            "native JSON array, alt=json",
            format!("{stream}?alt=json"),
            native,
            contents("count"),
        ),
        (
            "OpenAI unary",
            "/v1beta/openai/chat/completions".into(),
            openai,
            chat(false),
        ),
        (
            "OpenAI streamed",
            "/v1beta/openai/chat/completions".into(),
            openai,
            chat(true),
        ),
    ];
    for split in [false, true] {
        for (what, path, headers, body) in &cases {
            let app = spawn_app().await;
            // Split: every usage object reaches the service cut over two reads.
            app.mock.update_config(|c| {
                c.chunks = 4;
                c.split_usage = split;
            });
            let what = format!(
                "{what}{}",
                if split {
                    ", usage split over chunks"
                } else {
                    ""
                }
            );
            let response = app.request(Method::POST, path, headers, body.clone()).await;
            assert_eq!(response.status, 200, "{what}: {}", response.text());
            let reported = usage_of(&response.body);
            assert!(reported[0] > 0 && reported[1] > 0, "{what}: {reported:?}");
            assert_eq!(counted(&app).await, reported, "{what}");
        }
    }
}

#[actix_rt::test]
async fn an_alt_gemini_does_not_know_is_refused_before_any_call() {
    let app = spawn_app().await;
    for query in ["alt=proto", "alt=", "alt=SSE", "alt=sse&alt=json"] {
        let path = format!("/v1beta/models/gemini-2.5-flash:streamGenerateContent?{query}");
        let response = app
            .request(
                Method::POST,
                &path,
                &[("x-goog-api-key", CLIENT_KEY), JSON],
                contents("hi"),
            )
            .await;
        assert_eq!(response.status, 400, "{query}: {}", response.text());
        let body = response.json();
        assert_eq!(
            body["error"]["details"][0]["reason"], "INVALID_REQUEST",
            "{query}"
        );
    }
    assert!(app.upstream_requests().is_empty());
}

#[actix_rt::test]
async fn bodies_go_upstream_as_json_whatever_the_client_asked_for() {
    let app = spawn_app().await;
    let response = app
        .request(
            Method::POST,
            "/v1beta/models/gemini-2.5-flash:generateContent",
            &[
                ("x-goog-api-key", CLIENT_KEY),
                ("Content-Type", "application/x-protobuf"),
                ("Accept", "application/x-protobuf"),
            ],
            contents("hi"),
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    let sent = app.upstream_requests();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].header("content-type"), Some("application/json"));
    assert_eq!(
        sent[0].header("accept"),
        None,
        "the client's Accept stays here"
    );
}

#[actix_rt::test]
async fn the_model_route_describes_models_only() {
    let app = spawn_app().await;
    let response = app
        .request(
            Method::GET,
            "/v1beta/models/tunedModels%2Fmy-model-x1",
            &[("x-goog-api-key", CLIENT_KEY)],
            "",
        )
        .await;
    assert_eq!(response.status, 400, "{}", response.text());
    assert_eq!(
        response.json()["error"]["details"][0]["reason"],
        "INVALID_MODEL"
    );
    let response = app
        .request(
            Method::GET,
            "/v1beta/models/gemini-2.5-flash",
            &[("x-goog-api-key", CLIENT_KEY)],
            "",
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    let sent: Vec<String> = app
        .upstream_requests()
        .iter()
        .map(|r| r.path_and_query.clone())
        .collect();
    assert_eq!(sent, ["/v1beta/models/gemini-2.5-flash"]);
}

#[actix_rt::test]
async fn an_upstream_that_does_not_speak_http_is_an_upstream_error_at_once() {
    let upstream = start_not_http().await.expect("not-HTTP upstream starts");
    let url = upstream.base_url();
    let app = spawn_app_with(|s| {
        s.insert("GEMINI_BASE_URL".into(), url);
    })
    .await;
    let response = app.proxy(&json!({"prompt": "hello"})).await;
    assert_eq!(response.status, 502, "{}", response.text());
    assert_eq!(response.error_code(), "UPSTREAM_ERROR");
    assert_eq!(upstream.connections(), 1, "not retried");

    let response = app
        .request(
            Method::POST,
            "/v1beta/models/gemini-2.5-flash:generateContent",
            &[("x-goog-api-key", CLIENT_KEY), JSON],
            contents("hi"),
        )
        .await;
    assert_eq!(response.status, 502, "{}", response.text());
    assert_eq!(
        response.json()["error"]["details"][0]["reason"],
        "UPSTREAM_ERROR"
    );
    assert_eq!(upstream.connections(), 2, "not retried");
}

#[actix_rt::test]
async fn a_client_that_stops_reading_its_stream_is_cut_and_frees_its_place() {
    const STALL_SECS: u64 = 2;
    let app = spawn_app_with(|s| {
        s.insert("MAX_IN_FLIGHT".into(), "1".into());
        s.insert("CLIENT_STALL_TIMEOUT_SECS".into(), STALL_SECS.to_string());
    })
    .await;
    // About 80 MB: far more than every buffer between Gemini and the client.
    app.mock.update_config(|c| {
        c.chunks = 5000;
        c.chunk_text_bytes = Some(16 * 1024);
    });
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .set_recv_buffer_size(4096)
        .expect("small receive buffer");
    let mut stalled = socket
        .connect(([127, 0, 0, 1], app.port).into())
        .await
        .expect("connect");
    let body = contents("a long story");
    let request = format!(
        "POST /v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse HTTP/1.1\r\n\
         Host: 127.0.0.1\r\nx-goog-api-key: {CLIENT_KEY}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stalled.write_all(request.as_bytes()).await.expect("send");
    let started = Instant::now();

    // While the stalled stream holds the only place, others are turned away.
    actix_rt::time::sleep(Duration::from_millis(300)).await;
    let response = app.proxy(&json!({"prompt": "hello"})).await;
    assert_eq!(response.status, 503, "{}", response.text());

    // Within the stall timeout (and some slack) the upstream call is
    // cancelled and the place free again.
    while app.mock.streams_cancelled() == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(STALL_SECS + 5),
            "the stalled stream still runs"
        );
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
    let response = app.proxy(&json!({"prompt": "hello"})).await;
    assert_eq!(response.status, 200, "{}", response.text());

    // The stalled client's connection was shut down: reading now drains what
    // was buffered, then ends.
    let mut sink = vec![0u8; 1 << 16];
    let drained = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match stalled.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(drained.is_ok(), "the stalled connection was left open");

    let started = Instant::now();
    loop {
        let metrics = app.metrics().await;
        let series =
            format!("gemini_proxy_client_requests_total{{client=\"{CLIENT}\",code=\"CANCELLED\"}}");
        if metric_value(&metrics, &series) == Some(1.0) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "not counted CANCELLED:\n{metrics}"
        );
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
}
