//! The upstream tests over TLS, as the service talks to Google: the mock serves
//! TLS with a CA of its own, which the service trusts through
//! `UPSTREAM_CA_FILE`. Each test runs its checks once against a mock that
//! speaks HTTP/2 only and once against one that speaks HTTP/1.1 only (by
//! ALPN), and checks every call Gemini received came in that protocol.
//! Without the CA the same mock is an untrusted upstream.

use crate::helpers::*;
use awc::http::{Method, Version};
use futures_util::StreamExt;
use gemini_mock::testing::LiveClient;
use gemini_mock::{Alpn, MockConfig, MockGemini};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Each protocol the upstream can speak, and the version the mock must see.
const PROTOCOLS: [(Alpn, Version); 2] =
    [(Alpn::H2, Version::HTTP_2), (Alpn::Http1, Version::HTTP_11)];
const NATIVE: &str = "/v1beta/models/gemini-2.5-flash:generateContent";
const STREAM: &str = "/v1beta/models/gemini-2.5-flash:streamGenerateContent";
const NATIVE_HEADERS: [(&str, &str); 2] = [
    ("x-goog-api-key", CLIENT_KEY),
    ("Content-Type", "application/json"),
];
const PROXY_HEADERS: [(&str, &str); 2] = [
    ("X-API-KEY", CLIENT_KEY),
    ("Content-Type", "application/json"),
];
/// How long a test waits for the mock to see a call end.
const SETTLE: Duration = Duration::from_secs(5);

fn contents(text: &str) -> String {
    json!({"contents": [{"role": "user", "parts": [{"text": text}]}]}).to_string()
}

/// Writes the mock's CA where the service can read it; the file is read once,
/// at start-up, so it goes as soon as the service is up.
fn write_ca(mock: &MockGemini) -> PathBuf {
    let path = std::env::temp_dir().join(format!(
        "gemini-proxy-upstream-ca-{}-{}.pem",
        std::process::id(),
        mock.addr().port()
    ));
    std::fs::write(&path, mock.ca_pem().expect("a TLS mock")).expect("write the CA");
    path
}

/// A TLS mock offering `alpn` and the service in front of it, trusting its
/// CA, with `extra` settings.
async fn spawn(alpn: Alpn, extra: &[(&str, &str)]) -> TestApp {
    let mock = MockGemini::start_tls(MockConfig::default(), alpn)
        .await
        .expect("the TLS mock starts");
    let ca = write_ca(&mock);
    let app = spawn_app_against(mock, |s| {
        s.insert("UPSTREAM_CA_FILE".into(), ca.display().to_string());
        s.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
    })
    .await;
    let _ = std::fs::remove_file(&ca);
    app
}

/// Every call the mock received came in `version`, and there was at least one.
fn assert_all_in(app: &TestApp, version: Version) {
    let versions: Vec<Version> = app.upstream_requests().iter().map(|r| r.version).collect();
    assert!(!versions.is_empty(), "no call reached the mock");
    assert!(
        versions.iter().all(|v| *v == version),
        "{versions:?}, expected {version:?}"
    );
}

/// The key of every model call (not the key re-checks), oldest first.
fn keys_used(app: &TestApp) -> Vec<String> {
    app.upstream_requests()
        .iter()
        .filter(|r| r.method == "POST")
        .map(|r| r.api_key().unwrap_or("<none>").to_owned())
        .collect()
}

fn assert_ok(response: &TestResponse, what: &str) {
    assert_eq!(response.status, 200, "{what}: {}", response.text());
}

async fn wait_until(what: &str, condition: impl Fn() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(started.elapsed() < SETTLE, "timed out waiting until {what}");
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn native(app: &TestApp, path: &str, prompt: &str) -> TestResponse {
    app.request(Method::POST, path, &NATIVE_HEADERS, contents(prompt))
        .await
}

#[actix_rt::test]
async fn unary_calls_go_through_over_tls_in_each_protocol() {
    for (alpn, version) in PROTOCOLS {
        let app = spawn(alpn, &[]).await;
        let response = app.proxy(&json!({"prompt": "hello"})).await;
        assert_ok(&response, "/gemini-proxy");
        assert_eq!(response.json()["result"], "OK", "{alpn:?}");

        let response = native(&app, NATIVE, "hello").await;
        assert_ok(&response, "native generateContent");
        let text = &response.json()["candidates"][0]["content"]["parts"][0]["text"];
        assert_eq!(text, "echo: hello", "{alpn:?}");

        assert_eq!(app.mock.request_count(), 2, "{alpn:?}");
        assert_eq!(keys_used(&app), [SERVER_KEY; 2], "{alpn:?}");
        assert_all_in(&app, version);
    }
}

/// The text of every event of an SSE body, or of a JSON-array body.
fn streamed_text(body: &[u8], sse: bool) -> (String, Vec<Value>) {
    let events: Vec<Value> = if sse {
        String::from_utf8_lossy(body)
            .split("\r\n\r\n")
            .filter_map(|event| event.trim().strip_prefix("data: "))
            .map(|data| serde_json::from_str(data).expect("an event is JSON"))
            .collect()
    } else {
        serde_json::from_slice::<Vec<Value>>(body).expect("a JSON array")
    };
    let text = events
        .iter()
        .filter_map(|e| e["candidates"][0]["content"]["parts"][0]["text"].as_str())
        .collect();
    (text, events)
}

#[actix_rt::test]
async fn sse_and_json_array_streams_are_read_to_their_end_in_each_protocol() {
    for (alpn, version) in PROTOCOLS {
        let app = spawn(alpn, &[]).await;
        app.mock.update_config(|c| c.chunks = 5);
        for (query, sse) in [("?alt=sse", true), ("", false)] {
            let what = format!("{alpn:?} stream{query}");
            let response = native(&app, &format!("{STREAM}{query}"), "stream me please").await;
            assert_ok(&response, &what);
            let (text, events) = streamed_text(&response.body, sse);
            assert_eq!(events.len(), 5, "{what}: {}", response.text());
            assert_eq!(text, "echo: stream me please", "{what}");
            let last = events.last().expect("events");
            assert_eq!(last["candidates"][0]["finishReason"], "STOP", "{what}");
        }
        assert_eq!(app.mock.streams_completed(), 2, "{alpn:?}");
        assert_eq!(app.mock.streams_cancelled(), 0, "{alpn:?}");
        assert_all_in(&app, version);
    }
}

#[actix_rt::test]
async fn upstream_faults_get_the_same_answers_over_tls_in_each_protocol() {
    for (alpn, version) in PROTOCOLS {
        // Dedicated actors, the other way the pool gets its clients.
        let app = spawn(
            alpn,
            &[
                ("GEMINI_API_KEY", "bad-key,key-a,key-b"),
                ("KEY_RECHECK_SECS", "1"),
                ("UPSTREAM_ACTORS", "2"),
            ],
        )
        .await;
        let what = |fault: &str| format!("{alpn:?}: {fault}");

        // Two 503s, then a success: retried on the same connection kind.
        let response = app.proxy(&json!({"prompt": "[mock:flaky-2] hello"})).await;
        assert_ok(&response, &what("flaky-2"));
        assert_eq!(app.mock.request_count(), 3, "{}", what("flaky-2"));

        // A key Gemini refuses at key level (400 API_KEY_INVALID) leaves the
        // rotation; a key out of quota (429) rests and the call moves on.
        app.mock.reset();
        app.mock.update_config(|c| {
            c.accepted_keys = Some(HashSet::from(["key-a".to_owned(), "key-b".to_owned()]));
            c.exhausted_keys = HashSet::from(["key-a".to_owned()]);
        });
        for prompt in ["first", "second"] {
            let response = app.proxy(&json!({ "prompt": prompt })).await;
            assert_ok(&response, &what(prompt));
        }
        let used = keys_used(&app);
        assert_eq!(
            used.iter().filter(|k| *k == "bad-key").count(),
            1,
            "{used:?}"
        );
        assert_eq!(used.iter().filter(|k| *k == "key-a").count(), 1, "{used:?}");
        assert_eq!(used.last().map(String::as_str), Some("key-b"), "{used:?}");

        // A 400 about the request is final: no retry, no other key.
        app.mock.reset();
        let response = app.proxy(&json!({"prompt": "[mock:400] hello"})).await;
        assert_eq!(response.status, 400, "{}", response.text());
        assert_eq!(response.error_code(), "UPSTREAM_BAD_REQUEST");
        assert_eq!(keys_used(&app).len(), 1, "{}", what("400"));

        // The refused key is accepted again: the re-check (its own client)
        // finds it so.
        app.mock.update_config(|c| c.accepted_keys = None);
        wait_until(&what("a re-check of bad-key"), || {
            app.upstream_requests()
                .iter()
                .any(|r| r.method == "GET" && r.api_key() == Some("bad-key"))
        })
        .await;
        assert_all_in(&app, version);
    }
}

#[actix_rt::test]
async fn a_client_that_goes_away_cancels_its_call_in_each_protocol() {
    for (alpn, version) in PROTOCOLS {
        // A deadline far away: only the client's departure can end a call in time.
        let app = spawn(alpn, &[("UPSTREAM_TIMEOUT_SECS", "60")]).await;

        // A unary answer that trickles (a byte every 200 ms): the client gives
        // up after 200 ms. Not `hang`: actix-http's HTTP/2 server learns of a
        // reset stream only when it next writes, so a mock that never writes
        // could not show the cancel.
        app.proxy_and_give_up(
            &json!({"prompt": "[mock:trickle] hello"}),
            Duration::from_millis(200),
        )
        .await;
        wait_until(
            &format!("{alpn:?}: the mock saw the trickling call end"),
            || app.mock.request_count() == 1 && app.mock.in_flight() == 0,
        )
        .await;

        // A slow stream: the client reads its first event, then leaves. (The
        // trickling body above counts as a cancelled stream too.)
        let cancelled = app.mock.streams_cancelled();
        app.mock.update_config(|c| {
            c.chunks = 100;
            c.chunk_delay = Duration::from_millis(50);
        });
        let client = awc::Client::default();
        let mut request = client.post(format!("{}{STREAM}?alt=sse", app.address));
        for header in NATIVE_HEADERS {
            request = request.insert_header(header);
        }
        let mut response = request.send_body(contents("a long story")).await.unwrap();
        assert_eq!(response.status(), 200, "{alpn:?}");
        let first = response.next().await.expect("a first chunk").unwrap();
        assert!(first.starts_with(b"data: "), "{alpn:?}: {first:?}");
        drop(response);
        drop(client);
        wait_until(
            &format!("{alpn:?}: the mock saw the stream cancelled"),
            || app.mock.streams_cancelled() == cancelled + 1 && app.mock.in_flight() == 0,
        )
        .await;
        assert_eq!(app.mock.streams_completed(), 0, "{alpn:?}");
        assert_all_in(&app, version);
    }
}

#[actix_rt::test]
async fn a_tls_upstream_the_service_does_not_trust_is_refused_before_any_call() {
    let mock = MockGemini::start_tls(MockConfig::default(), Alpn::Both)
        .await
        .expect("the TLS mock starts");
    let app = spawn_app_against(mock, |_| {}).await;
    for response in [
        app.proxy(&json!({"prompt": "hello"})).await,
        native(&app, NATIVE, "hello").await,
    ] {
        assert_eq!(response.status, 503, "{}", response.text());
        assert_eq!(code_of(&response).as_deref(), Some("UPSTREAM_UNAVAILABLE"));
    }
    assert_eq!(app.mock.request_count(), 0, "no request got through");
}

#[actix_rt::test]
async fn the_binary_warns_that_an_untrusted_upstream_needs_upstream_ca_file() {
    let mock = MockGemini::start_tls(MockConfig::default(), Alpn::Both)
        .await
        .expect("the TLS mock starts");
    let app = BinaryApp::start(&[], &binary_env(&mock));
    let response = send_to(
        &app.address,
        Method::POST,
        "/gemini-proxy",
        &PROXY_HEADERS,
        json!({"prompt": "hello"}).to_string(),
    )
    .await;
    assert_eq!(code_of(&response).as_deref(), Some("UPSTREAM_UNAVAILABLE"));
    let started = Instant::now();
    let logs = loop {
        let logs = app.logs();
        if logs.contains("certificate refused") || started.elapsed() > SETTLE {
            break logs;
        }
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    };
    let warning = logs
        .lines()
        .find(|l| l.contains("upstream TLS certificate refused"))
        .unwrap_or_else(|| panic!("no warning:\n{logs}"));
    assert!(warning.contains("WARN"), "{warning}");
    assert!(warning.contains("UPSTREAM_CA_FILE"), "{warning}");
    assert!(!logs.contains(SERVER_KEY), "{logs}");
}

#[test]
fn a_ca_file_without_a_certificate_stops_the_binary_naming_the_setting() {
    let dir = std::env::temp_dir().join(format!("gemini-proxy-ca-refused-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    // A private key where the CA should be: refused, and never quoted.
    let key = rcgen::KeyPair::generate().expect("a key").serialize_pem();
    let file = dir.join("ca.pem");
    std::fs::write(&file, &key).expect("write");
    let mut env = offline_env();
    env.insert("UPSTREAM_CA_FILE".into(), file.display().to_string());
    let run = run_binary_in(&dir, &[], &env, "");
    let _ = std::fs::remove_dir_all(&dir);
    let output = run.stdout + &run.stderr;
    assert!(!run.status.success(), "{output}");
    let expected = format!(
        "invalid setting UPSTREAM_CA_FILE: {}: holds no PEM certificate",
        file.display()
    );
    assert!(output.contains(&expected), "{output}");
    assert!(
        !output.contains(key.lines().nth(1).expect("key material")),
        "{output}"
    );
    assert!(!output.contains("listening on"), "{output}");
}

#[actix_rt::test]
async fn a_live_session_goes_through_over_wss_with_the_extra_roots() {
    // The Live client offers HTTP/1.1 only: the mock offering both must pick it.
    let app = spawn(Alpn::Both, &[]).await;
    let url = format!(
        "ws://127.0.0.1:{}/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent",
        app.port
    );
    let mut live = LiveClient::connect(&url, &[("x-goog-api-key", CLIENT_KEY)]).await;
    assert_eq!(
        live.setup("models/gemini-2.0-flash-live-001").await,
        json!({"setupComplete": {}})
    );
    live.say("Hello over TLS").await;
    let text: String = live
        .turn()
        .await
        .iter()
        .filter_map(|m| m["serverContent"]["modelTurn"]["parts"][0]["text"].as_str())
        .collect();
    assert_eq!(text, "echo: Hello over TLS");
    assert_eq!(app.mock.live_sessions_opened(), 1);
    let handshake = app
        .upstream_requests()
        .into_iter()
        .find(|r| r.path_and_query.contains("BidiGenerateContent"))
        .expect("the handshake was recorded");
    assert_eq!(handshake.version, Version::HTTP_11);
    assert_eq!(handshake.api_key(), Some(SERVER_KEY));
}
