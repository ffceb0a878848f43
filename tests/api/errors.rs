//! The error table (docs/errors.md#error-codes), one code at a time: the HTTP status, the code, the exact
//! envelope, `Retry-After` where docs/errors.md#retry-after promises it, and — for every refusal the
//! service makes on its own — proof that nothing reached Gemini.

use crate::helpers::*;
use awc::http::Method;
use bytes::Bytes;
use governor::clock::FakeRelativeClock;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::future::Future;
use std::net::TcpListener;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

/// A client's own Gemini key, sent as `api_key`.
const OWN_KEY: &str = "AIzaClientOwnKey0123456789abcdefghijklm";
/// How long a raw-socket exchange may take before the test calls it a hang.
const RAW_ANSWER_LIMIT: Duration = Duration::from_secs(3);

/// Checks the status, the JSON content type and the whole envelope
/// (`{"result":"Failed","errors":[{"code","message"}]}`, no other keys); returns the message.
fn assert_error(response: &TestResponse, status: u16, code: &str) -> String {
    assert_eq!(response.status, status, "{}", response.text());
    assert!(
        response
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/json")),
        "content type {:?}",
        response.header("content-type")
    );
    let body = response.json();
    let keys: Vec<&String> = body.as_object().expect("an object").keys().collect();
    assert_eq!(keys, ["errors", "result"], "{body}");
    let errors = body["errors"].as_array().expect("errors is an array");
    assert_eq!(errors.len(), 1, "{body}");
    let keys: Vec<&String> = errors[0].as_object().expect("an object").keys().collect();
    assert_eq!(keys, ["code", "message"], "{body}");
    assert_eq!(response.error_code(), code, "{body}");
    errors[0]["message"].as_str().unwrap_or_default().to_owned()
}

fn retry_after(response: &TestResponse) -> Option<u64> {
    response.header("retry-after").map(|v| {
        v.parse()
            .unwrap_or_else(|_| panic!("Retry-After is not whole seconds: {v:?}"))
    })
}

/// A body naming the client's own model and key.
fn own(model: &str, prompt: &str) -> Value {
    json!({"prompt": prompt, "model": model, "api_key": OWN_KEY})
}

/// A loopback URL where nothing listens: the port was bound, then released.
fn closed_loopback_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

/// Polls `condition` every 10 ms for up to 5 s.
async fn wait_until(what: &str, condition: impl Fn() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "timed out waiting until {what}"
        );
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Writes `request` as raw bytes (so a body can stop half-way) and reads one answer:
/// its status, its head lower-cased, and its body. Panics if no answer comes in time.
async fn raw_exchange(app: &TestApp, request: &[u8]) -> (u16, String, Bytes) {
    let exchange = async {
        let mut stream = connect(app.port).await;
        stream.write_all(request).await.expect("write");
        let mut received = Vec::new();
        read_response(&mut stream, &mut received)
            .await
            .expect("an answer before the connection closed")
    };
    tokio::time::timeout(RAW_ANSWER_LIMIT, exchange)
        .await
        .expect("the service answered without waiting for the rest of the body")
}

/// A raw answer as a [`TestResponse`], so the envelope checks apply to it.
fn raw_response((status, head, body): (u16, String, Bytes)) -> TestResponse {
    let mut headers = awc::http::header::HeaderMap::new();
    for line in head.lines().skip(1) {
        if let Some((name, value)) = line.split_once(':') {
            headers.append(
                awc::http::header::HeaderName::from_bytes(name.trim().as_bytes()).expect("name"),
                awc::http::header::HeaderValue::from_str(value.trim()).expect("value"),
            );
        }
    }
    TestResponse {
        status,
        headers,
        body,
    }
}

async fn timed<T>(work: impl Future<Output = T>) -> (T, Duration) {
    let started = Instant::now();
    let out = work.await;
    (out, started.elapsed())
}

// ---------------------------------------------------------------- UNAUTHORIZED

#[actix_rt::test]
async fn refuses_a_missing_empty_or_unknown_client_key_without_calling_gemini() {
    let app = spawn_app().await;
    let cases: [(Option<&str>, &str); 5] = [
        (None, "no X-API-KEY header"),
        (Some(""), "an empty key"),
        (Some("   "), "a key of spaces"),
        (Some("not-a-client-key"), "a key nobody was given"),
        (
            Some("client-key-0123456789abcdeF"),
            "a known key with one letter changed",
        ),
    ];
    for (key, why) in cases {
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(key) = key {
            headers.push(("X-API-KEY", key));
        }
        let response = app
            .request(
                Method::POST,
                "/gemini-proxy",
                &headers,
                json!({"prompt": "hello"}).to_string(),
            )
            .await;
        assert_error(&response, 401, "UNAUTHORIZED");
        assert_eq!(app.mock.request_count(), 0, "{why}");
    }
}

#[actix_rt::test]
async fn refuses_an_unknown_key_before_reading_the_body() {
    let app = spawn_app().await;
    // Declares 100 kB and sends 11 bytes: a service that read the body would wait for the rest.
    let request = b"POST /gemini-proxy HTTP/1.1\r\nHost: localhost\r\n\
        Content-Type: application/json\r\nX-API-KEY: nobody\r\nContent-Length: 100000\r\n\r\n\
        {\"prompt\":\"";
    let response = raw_response(raw_exchange(&app, request).await);
    assert_error(&response, 401, "UNAUTHORIZED");
    assert_eq!(app.mock.request_count(), 0);
}

// ---------------------------------------------------------------- INVALID_JSON

#[actix_rt::test]
async fn refuses_a_body_that_is_not_a_json_object() {
    let app = spawn_app().await;
    for (body, why) in [
        ("prompt=hello", "form data, not JSON"),
        ("[{\"prompt\":\"hello\"}]", "a JSON array"),
        ("\"hello\"", "a JSON string"),
        ("{\"prompt\":\"hel", "truncated JSON"),
        ("", "an empty body"),
    ] {
        let response = app.proxy_raw(body).await;
        assert_eq!(response.status, 400, "{why}: {}", response.text());
        assert_error(&response, 400, "INVALID_JSON");
    }
    assert_eq!(app.mock.request_count(), 0);
}

// ---------------------------------------------------------------- INVALID_REQUEST

#[actix_rt::test]
async fn refuses_missing_blank_wrongly_typed_or_unknown_fields() {
    let cases = [
        (json!({}), "no prompt"),
        (json!({"prompt": null}), "a null prompt counts as absent"),
        (json!({"prompt": ""}), "an empty prompt"),
        (json!({"prompt": " \n\t "}), "a prompt of whitespace"),
        (json!({"prompt": 42}), "a number prompt"),
        (json!({"prompt": ["hello"]}), "an array prompt"),
        (
            json!({"prompt": "hi", "temperature": 1}),
            "an unknown field",
        ),
        (
            json!({"prompt": "hi", "system_instruction": 5}),
            "a number system_instruction",
        ),
        (
            json!({"prompt": "hi", "generation_config": "hot"}),
            "a string generation_config",
        ),
        (
            json!({"prompt": "hi", "model": 7, "api_key": OWN_KEY}),
            "a number model",
        ),
        (
            json!({"prompt": "hi", "model": "gemini-2.5-flash", "api_key": ""}),
            "an empty api_key with a model",
        ),
        (
            json!({"prompt": "hi", "api_key": ""}),
            "an empty api_key alone",
        ),
    ];
    for (body, why) in cases {
        // A fresh app per row: more rows than a client's burst of 10.
        let app = spawn_app().await;
        let response = app.proxy(&body).await;
        assert_eq!(response.status, 400, "{why}: {}", response.text());
        assert_error(&response, 400, "INVALID_REQUEST");
        assert_eq!(app.mock.request_count(), 0, "{why} reached Gemini");
    }
}

// ---------------------------------------------------------------- PROMPT_TOO_LONG

#[actix_rt::test]
async fn counts_the_prompt_limit_in_characters_not_bytes() {
    let app = spawn_app().await;
    for letter in ["é", "日"] {
        let at_limit = letter.repeat(10_000);
        let response = app.proxy(&json!({"prompt": at_limit})).await;
        assert_eq!(
            response.status,
            200,
            "10,000 × {letter}: {}",
            response.text()
        );
        assert_eq!(
            response.json()["data"]["response"],
            format!("echo: {at_limit}")
        );

        let over = letter.repeat(10_001);
        let response = app.proxy(&json!({"prompt": over})).await;
        let message = assert_error(&response, 400, "PROMPT_TOO_LONG");
        assert!(message.contains("10000"), "names the limit: {message}");
    }
    assert_eq!(app.mock.request_count(), 2, "only the prompts at the limit");
}

// ---------------------------------------------------------------- INVALID_MODEL

#[actix_rt::test]
async fn refuses_every_hostile_model_id_without_calling_gemini() {
    let long = "a".repeat(200);
    let cases: Vec<(&str, &str)> = vec![
        ("../x", "a parent-directory path"),
        ("a/b", "a slash"),
        ("a:b", "a colon, which would change the method"),
        ("a?b", "a query string"),
        ("a#b", "a fragment"),
        ("%2e%2e", "percent-encoded dots"),
        ("Gemini-2.5-Flash", "upper case"),
        ("gemini 2.5", "a space"),
        ("gemini\t", "a trailing tab"),
        ("gemini\n", "a trailing newline"),
        (&long, "200 characters, over the 128 limit"),
        ("models/../x", "a path after the models/ prefix"),
        ("tunedModels/../x", "a path after the tunedModels/ prefix"),
        ("models/", "the prefix alone"),
        ("", "an empty string"),
        ("gemini..flash", "a doubled separator"),
        ("-gemini", "a leading separator"),
    ];
    for (model, why) in cases {
        // A fresh app per row: more rows than a client's burst of 10.
        let app = spawn_app().await;
        let response = app.proxy(&own(model, "hello")).await;
        assert_eq!(response.status, 400, "{why}: {}", response.text());
        assert_error(&response, 400, "INVALID_MODEL");
        assert_eq!(app.mock.request_count(), 0, "{why} reached Gemini");
    }
}

// ---------------------------------------------------------------- MODEL_AND_KEY_REQUIRED

#[actix_rt::test]
async fn requires_a_model_and_a_key_together() {
    let app = spawn_app().await;
    for (body, why) in [
        (
            json!({"prompt": "hi", "model": "gemini-2.5-pro"}),
            "a model only",
        ),
        (json!({"prompt": "hi", "api_key": OWN_KEY}), "a key only"),
        (
            json!({"prompt": "hi", "model": "gemini-2.5-pro", "api_key": null}),
            "a model and a null key",
        ),
        (
            json!({"prompt": "hi", "model": "../x"}),
            "a hostile model without a key: the pair is checked before the grammar",
        ),
    ] {
        let response = app.proxy(&body).await;
        assert_eq!(response.status, 400, "{why}: {}", response.text());
        assert_error(&response, 400, "MODEL_AND_KEY_REQUIRED");
    }
    assert_eq!(app.mock.request_count(), 0);
}

// ---------------------------------------------------------------- PAYLOAD_TOO_LARGE

/// A valid request (the prompt is under MAX_PROMPT_CHARS) of about 2 kB.
fn two_kilobyte_request() -> String {
    json!({"prompt": "a".repeat(2_000)}).to_string()
}

#[actix_rt::test]
async fn refuses_a_body_over_the_limit_sent_with_a_content_length() {
    let app = spawn_app_with(|s| {
        s.insert("MAX_BODY_BYTES".into(), "1024".into());
    })
    .await;
    let response = app.proxy_raw(&two_kilobyte_request()).await;
    assert_error(&response, 413, "PAYLOAD_TOO_LARGE");
    // A body just under the limit still goes through.
    let response = app.proxy(&json!({"prompt": "a".repeat(1_000)})).await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(app.mock.request_count(), 1);
}

#[actix_rt::test]
async fn refuses_a_chunked_body_over_the_limit() {
    let app = spawn_app_with(|s| {
        s.insert("MAX_BODY_BYTES".into(), "1024".into());
    })
    .await;
    let body = Bytes::from(two_kilobyte_request());
    let chunks: Vec<Result<Bytes, std::io::Error>> = (0..body.len())
        .step_by(300)
        .map(|at| Ok(body.slice(at..(at + 300).min(body.len()))))
        .collect();
    let mut response = client()
        .post(format!("{}/gemini-proxy", app.address))
        .insert_header(("X-API-KEY", CLIENT_KEY))
        .insert_header(("Content-Type", "application/json"))
        .send_stream(futures_util::stream::iter(chunks))
        .await
        .expect("request sent");
    let response = TestResponse {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        body: response.body().await.expect("body"),
    };
    assert_error(&response, 413, "PAYLOAD_TOO_LARGE");
    assert_eq!(app.mock.request_count(), 0);
}

#[actix_rt::test]
async fn refuses_a_declared_length_over_the_limit_before_reading_the_body() {
    let app = spawn_app_with(|s| {
        s.insert("MAX_BODY_BYTES".into(), "1024".into());
    })
    .await;
    let request = format!(
        "POST /gemini-proxy HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         X-API-KEY: {CLIENT_KEY}\r\nContent-Length: 10000000\r\n\r\n{{\"prompt\":\""
    );
    let response = raw_response(raw_exchange(&app, request.as_bytes()).await);
    assert_error(&response, 413, "PAYLOAD_TOO_LARGE");
}

// ---------------------------------------------------------------- UNSUPPORTED_MEDIA_TYPE

#[actix_rt::test]
async fn refuses_a_body_that_is_not_sent_as_json() {
    let app = spawn_app().await;
    let body = json!({"prompt": "hello"}).to_string();
    for (content_type, why) in [
        (None, "no content type"),
        (Some("text/plain"), "text/plain"),
        (Some("application/x-www-form-urlencoded"), "a form"),
        (Some("application/jsonp"), "a look-alike type"),
    ] {
        let mut headers = vec![("X-API-KEY", CLIENT_KEY)];
        if let Some(content_type) = content_type {
            headers.push(("Content-Type", content_type));
        }
        let response = app
            .request(Method::POST, "/gemini-proxy", &headers, body.clone())
            .await;
        assert_eq!(response.status, 415, "{why}: {}", response.text());
        assert_error(&response, 415, "UNSUPPORTED_MEDIA_TYPE");
    }
    assert_eq!(app.mock.request_count(), 0);
    // JSON with a charset parameter is still JSON.
    let headers = [
        ("X-API-KEY", CLIENT_KEY),
        ("Content-Type", "application/json; charset=utf-8"),
    ];
    let response = app
        .request(Method::POST, "/gemini-proxy", &headers, body)
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
}

// ---------------------------------------------------------------- RATE_LIMITED

#[actix_rt::test]
async fn refuses_the_eleventh_request_at_once_with_retry_after_and_rate_limit_headers() {
    // The limiter's clock stands still unless the test moves it, so "at once" is exact.
    let clock = FakeRelativeClock::default();
    let app = spawn_app_with_clock(|_| {}, Some(clock.clone())).await;
    for i in 0..10 {
        let response = app.proxy(&json!({"prompt": format!("request {i}")})).await;
        assert_eq!(
            response.status,
            200,
            "request {i} of the burst: {}",
            response.text()
        );
    }
    let response = app.proxy(&json!({"prompt": "the eleventh"})).await;
    assert_error(&response, 429, "RATE_LIMITED");
    assert_eq!(
        retry_after(&response),
        Some(1),
        "one token a second at 60/min"
    );
    assert_eq!(response.header("ratelimit-limit"), Some("10"));
    assert_eq!(response.header("ratelimit-remaining"), Some("0"));
    assert_eq!(
        response.header("ratelimit-reset"),
        Some("10"),
        "ten tokens to refill at one a second"
    );
    assert_eq!(
        app.mock.request_count(),
        10,
        "the refused request never reached Gemini"
    );

    // Retry-After tells the truth: one second later, one more request passes.
    clock.advance(Duration::from_secs(1));
    let response = app.proxy(&json!({"prompt": "after the wait"})).await;
    assert_eq!(response.status, 200, "{}", response.text());
}

// ---------------------------------------------------------------- QUOTA_ERROR

#[actix_rt::test]
async fn passes_on_an_exhausted_server_quota_with_retry_after_rounded_up() {
    let app = spawn_app().await;
    app.mock
        .update_config(|c| c.retry_delay = Some("26.5s".into()));
    let response = app.proxy(&json!({"prompt": "[mock:429] hello"})).await;
    assert_error(&response, 429, "QUOTA_ERROR");
    assert_eq!(retry_after(&response), Some(27), "26.5 s rounds up");
    assert_eq!(app.mock.request_count(), 1, "a quota answer is not retried");
}

#[actix_rt::test]
async fn rests_a_key_for_sixty_seconds_when_gemini_gives_no_retry_delay() {
    let app = spawn_app().await;
    let response = app
        .proxy(&json!({"prompt": "[mock:429-noretry] hello"}))
        .await;
    assert_error(&response, 429, "QUOTA_ERROR");
    assert_eq!(retry_after(&response), Some(60));
}

#[actix_rt::test]
async fn passes_on_an_exhausted_quota_of_the_clients_own_key() {
    let app = spawn_app().await;
    app.mock.update_config(|c| {
        c.retry_delay = Some("26.5s".into());
        c.exhausted_keys = HashSet::from([OWN_KEY.to_owned()]);
    });
    let response = app.proxy(&own("gemini-2.5-flash", "hello")).await;
    assert_error(&response, 429, "QUOTA_ERROR");
    assert_eq!(retry_after(&response), Some(27));
    let sent = app.upstream_requests();
    assert_eq!(
        sent.len(),
        1,
        "the client's key is never swapped for a server key"
    );
    assert_eq!(sent[0].header("x-goog-api-key"), Some(OWN_KEY));
}

// ---------------------------------------------------------------- MODEL_NOT_FOUND

#[actix_rt::test]
async fn reports_a_model_gemini_does_not_know() {
    let app = spawn_app().await;
    let response = app.proxy(&own("no-such-model-1", "hello")).await;
    let message = assert_error(&response, 404, "MODEL_NOT_FOUND");
    assert!(message.contains("no-such-model-1"), "{message}");
    assert_eq!(app.mock.request_count(), 1);
}

// ---------------------------------------------------------------- INVALID_GEMINI_KEY

#[actix_rt::test]
async fn reports_an_own_key_that_gemini_rejects_as_the_clients_fault() {
    let app = spawn_app().await;
    app.mock
        .update_config(|c| c.accepted_keys = Some(HashSet::from([SERVER_KEY.to_owned()])));
    let response = app.proxy(&own("gemini-2.5-flash", "hello")).await;
    let message = assert_error(&response, 400, "INVALID_GEMINI_KEY");
    assert!(
        !message.contains(OWN_KEY),
        "the message holds the key: {message}"
    );
    let sent = app.upstream_requests();
    assert_eq!(sent.len(), 1, "the client's key is never swapped");
    assert_eq!(sent[0].header("x-goog-api-key"), Some(OWN_KEY));
}

#[actix_rt::test]
async fn reports_a_403_about_an_own_key_request_as_upstream_forbidden() {
    let app = spawn_app().await;
    let response = app.proxy(&own("mock-403", "hello")).await;
    let message = assert_error(&response, 403, "UPSTREAM_FORBIDDEN");
    assert_eq!(
        message, "The caller does not have permission",
        "Gemini's message"
    );
    assert_eq!(app.mock.request_count(), 1);
}

// ---------------------------------------------------------------- PROMPT_BLOCKED

#[actix_rt::test]
async fn reports_a_blocked_prompt_with_its_reason() {
    let app = spawn_app().await;
    for (scenario, reason) in [
        ("blocked", "PROHIBITED_CONTENT"),
        ("safety-finish", "SAFETY"),
    ] {
        let response = app
            .proxy(&json!({"prompt": format!("[mock:{scenario}] hello")}))
            .await;
        assert_eq!(response.status, 422, "{scenario}: {}", response.text());
        let message = assert_error(&response, 422, "PROMPT_BLOCKED");
        assert!(message.contains(reason), "{scenario}: {message}");
    }
}

// ---------------------------------------------------------------- UPSTREAM_BAD_REQUEST

#[actix_rt::test]
async fn passes_on_geminis_message_for_any_other_bad_request() {
    let app = spawn_app().await;
    let response = app.proxy(&json!({"prompt": "[mock:400] hello"})).await;
    let message = assert_error(&response, 400, "UPSTREAM_BAD_REQUEST");
    assert!(
        message.contains("Request contains an invalid argument."),
        "{message}"
    );
    assert_eq!(app.mock.request_count(), 1, "a 400 is not retried");
}

// ---------------------------------------------------------------- UPSTREAM_AUTH_ERROR

#[actix_rt::test]
async fn reports_a_rejected_server_key_as_an_operator_problem() {
    let app = spawn_app().await;
    app.mock
        .update_config(|c| c.accepted_keys = Some(HashSet::from(["another-key".to_owned()])));
    let response = app.proxy(&json!({"prompt": "hello"})).await;
    let message = assert_error(&response, 502, "UPSTREAM_AUTH_ERROR");
    assert!(!message.contains(SERVER_KEY), "{message}");
    assert_eq!(app.mock.request_count(), 1);
    // The rejected key left the rotation: the next request does not try it again.
    let response = app.proxy(&json!({"prompt": "hello"})).await;
    assert_error(&response, 502, "UPSTREAM_AUTH_ERROR");
    assert_eq!(
        app.mock.request_count(),
        1,
        "the rejected key was used again"
    );
}

#[actix_rt::test]
async fn reports_a_403_about_the_request_as_upstream_forbidden_and_keeps_the_key() {
    let app = spawn_app().await;
    let response = app.proxy(&json!({"prompt": "[mock:403] hello"})).await;
    let message = assert_error(&response, 403, "UPSTREAM_FORBIDDEN");
    assert_eq!(
        message, "The caller does not have permission",
        "Gemini's message"
    );
    let generate_calls = app
        .upstream_requests()
        .iter()
        .filter(|r| r.method == "POST")
        .count();
    assert_eq!(generate_calls, 1, "no other key tried");
    // Anyone can provoke such a 403: the server key stays in rotation (the
    // key asked by itself is fine).
    let response = app.proxy(&json!({"prompt": "hello"})).await;
    assert_eq!(response.status, 200, "{}", response.text());
}

// ---------------------------------------------------------------- LOCATION_NOT_SUPPORTED

#[actix_rt::test]
async fn reports_a_geo_block_as_a_deployment_problem() {
    let app = spawn_app().await;
    let response = app.proxy(&json!({"prompt": "[mock:400-geo] hello"})).await;
    assert_error(&response, 502, "LOCATION_NOT_SUPPORTED");
    assert_eq!(app.mock.request_count(), 1, "not retried");
    // The server key is not to blame, so it stays in rotation.
    let response = app.proxy(&json!({"prompt": "hello"})).await;
    assert_eq!(response.status, 200, "{}", response.text());
}

// ---------------------------------------------------------------- UPSTREAM_UNAVAILABLE

#[actix_rt::test]
async fn reports_gemini_unavailable_after_two_retries() {
    let app = spawn_app().await;
    for scenario in ["503", "500", "reset-before-headers"] {
        app.mock.reset();
        let response = app
            .proxy(&json!({"prompt": format!("[mock:{scenario}] hello")}))
            .await;
        assert_eq!(response.status, 503, "{scenario}: {}", response.text());
        assert_error(&response, 503, "UPSTREAM_UNAVAILABLE");
        assert_eq!(
            app.mock.request_count(),
            3,
            "{scenario}: one call and two retries"
        );
    }
}

#[actix_rt::test]
async fn reports_gemini_unavailable_when_the_connection_is_refused() {
    let app = spawn_app_with(|s| {
        s.insert("GEMINI_BASE_URL".into(), closed_loopback_url());
    })
    .await;
    let response = app.proxy(&json!({"prompt": "hello"})).await;
    assert_error(&response, 503, "UPSTREAM_UNAVAILABLE");
}

#[actix_rt::test]
async fn sheds_load_at_once_past_max_in_flight() {
    let app = spawn_app_with(|s| {
        s.insert("MAX_IN_FLIGHT".into(), "1".into());
    })
    .await;
    let hang = json!({"prompt": "[mock:hang] hello"});
    let hanging = app.proxy(&hang);
    let second = async {
        wait_until("the first call reaches Gemini", || {
            app.mock.request_count() == 1
        })
        .await;
        timed(app.proxy(&json!({"prompt": "hello"}))).await
    };
    let (response, elapsed) = tokio::select! {
        answer = hanging => panic!("the hanging call answered: {}", answer.text()),
        shed = second => shed,
    };
    assert_error(&response, 503, "UPSTREAM_UNAVAILABLE");
    assert!(retry_after(&response).is_some_and(|s| s >= 1));
    assert!(elapsed < Duration::from_secs(1), "took {elapsed:?}");
    assert_eq!(
        app.mock.request_count(),
        1,
        "the shed call never reached Gemini"
    );
}

// ---------------------------------------------------------------- NO_SERVER_KEY

#[actix_rt::test]
async fn needs_a_server_key_only_for_requests_without_their_own() {
    let app = spawn_app_with(|s| {
        s.remove("GEMINI_API_KEY");
    })
    .await;
    let response = app.proxy(&json!({"prompt": "hello"})).await;
    assert_error(&response, 503, "NO_SERVER_KEY");
    assert_eq!(app.mock.request_count(), 0);
    let response = app.proxy(&own("gemini-2.5-flash", "hello")).await;
    assert_eq!(response.status, 200, "{}", response.text());
}

// ---------------------------------------------------------------- UPSTREAM_TIMEOUT

#[actix_rt::test]
async fn times_out_a_call_that_never_answers_and_abandons_it() {
    let app = spawn_app_with(|s| {
        s.insert("UPSTREAM_TIMEOUT_SECS".into(), "1".into());
    })
    .await;
    let (response, elapsed) = timed(app.proxy(&json!({"prompt": "[mock:hang] hello"}))).await;
    assert_error(&response, 504, "UPSTREAM_TIMEOUT");
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(3),
        "answered after {elapsed:?}"
    );
    wait_until("the upstream call is abandoned", || {
        app.mock.in_flight() == 0
    })
    .await;
}

#[actix_rt::test]
async fn reports_geminis_deadline_exceeded_as_a_timeout() {
    let app = spawn_app().await;
    let response = app.proxy(&json!({"prompt": "[mock:504] hello"})).await;
    assert_error(&response, 504, "UPSTREAM_TIMEOUT");
    assert_eq!(app.mock.request_count(), 1, "a 504 is not retried");
}

// ---------------------------------------------------------------- UPSTREAM_ERROR

#[actix_rt::test]
async fn reports_answers_that_break_the_api_contract() {
    let app = spawn_app().await;
    for (scenario, why) in [
        ("non-json", "an HTML page with status 200"),
        ("truncated-json", "a 200 whose JSON is cut in half"),
        (
            "empty-candidates",
            "a 200 with no candidates and no block reason",
        ),
    ] {
        app.mock.reset();
        let response = app
            .proxy(&json!({"prompt": format!("[mock:{scenario}] hello")}))
            .await;
        assert_eq!(response.status, 502, "{why}: {}", response.text());
        assert_error(&response, 502, "UPSTREAM_ERROR");
        assert_eq!(app.mock.request_count(), 1, "{why}: not retried");
    }
}

#[actix_rt::test]
async fn does_not_follow_a_redirect() {
    let app = spawn_app().await;
    let response = app.proxy(&json!({"prompt": "[mock:redirect] hello"})).await;
    assert_error(&response, 502, "UPSTREAM_ERROR");
    let paths: Vec<String> = app
        .upstream_requests()
        .into_iter()
        .map(|r| r.path_and_query)
        .collect();
    assert_eq!(
        paths,
        ["/v1beta/models/gemini-2.5-flash:generateContent"],
        "the redirect target received nothing"
    );
}

// ---------------------------------------------------------------- NOT_FOUND, METHOD_NOT_ALLOWED

#[actix_rt::test]
async fn answers_an_unknown_route_in_the_envelope() {
    let app = spawn_app().await;
    for (method, path) in [
        (Method::GET, "/no-such-route"),
        (Method::POST, "/gemini-proxy/extra"),
        (Method::POST, "/gemini-proxy2"),
    ] {
        let response = app
            .request(method, path, &[("X-API-KEY", CLIENT_KEY)], "")
            .await;
        assert_eq!(response.status, 404, "{path}: {}", response.text());
        assert_error(&response, 404, "NOT_FOUND");
    }
}

#[actix_rt::test]
async fn refuses_other_methods_on_the_proxy_route_with_an_allow_header() {
    let app = spawn_app().await;
    for method in [Method::GET, Method::PUT, Method::DELETE, Method::PATCH] {
        let response = app
            .request(
                method.clone(),
                "/gemini-proxy",
                &[("X-API-KEY", CLIENT_KEY)],
                "",
            )
            .await;
        assert_eq!(response.status, 405, "{method}: {}", response.text());
        assert_error(&response, 405, "METHOD_NOT_ALLOWED");
        assert_eq!(response.header("allow"), Some("POST"), "{method}");
    }
    assert_eq!(app.mock.request_count(), 0);
}

// ---------------------------------------------------------------- successes at the edges

#[actix_rt::test]
async fn answers_an_empty_max_tokens_candidate_as_a_success() {
    let app = spawn_app().await;
    let response = app
        .proxy(&json!({"prompt": "[mock:max-tokens-empty] hello"}))
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    let body = response.json();
    assert_eq!(body["result"], "OK");
    assert_eq!(body["data"]["response"], "");
    assert_eq!(body["data"]["finish_reason"], "MAX_TOKENS");
    let usage = &body["data"]["usage"];
    assert_eq!(usage["response_tokens"], 0);
    assert!(
        usage["total_tokens"].as_u64() > usage["prompt_tokens"].as_u64(),
        "the total includes thinking tokens: {usage}"
    );
}

#[actix_rt::test]
async fn leaves_thought_parts_out_of_the_response() {
    let app = spawn_app().await;
    let prompt = "[mock:thoughts] hello";
    let response = app.proxy(&json!({"prompt": prompt})).await;
    assert_eq!(response.status, 200, "{}", response.text());
    let data = &response.json()["data"];
    assert_eq!(data["response"], format!("echo: {prompt}"));
    assert_eq!(data["finish_reason"], "STOP");
}
