//! Client quotas (docs/keys-file.md#quotas) with the memory backend: tokens
//! per minute, requests and tokens per day, model groups, charging at the
//! answer's end, `GET /usage`, `RateLimit-Policy`, and daily usage kept across
//! a restart. Time is a clock the tests move; the Redis backend's are in
//! `redis::quotas`.

use crate::helpers::{
    code_of, connect, metric_value, spawn_app_with, spawn_app_with_clocks, TestApp, TestResponse,
};
use crate::keys::{client_entry, keys_file, KeysDir};
use awc::http::Method;
use governor::clock::FakeRelativeClock;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TEAM_KEY: &str = "team-key-0123456789abcdef";
const OTHER_KEY: &str = "other-key-0123456789abcdef";
/// A bucket that never gets in the way of these tests.
const ROOMY: &str = "requests_per_minute = 6000\nburst = 1000";

fn at(rfc3339: &str) -> jiff::Timestamp {
    rfc3339.parse().expect("a timestamp")
}

/// `generateContent` on the native surface, as the SDKs call it.
async fn generate(app: &TestApp, key: &str, model: &str) -> TestResponse {
    app.request(
        Method::POST,
        &format!("/v1beta/models/{model}:generateContent"),
        &[
            ("x-goog-api-key", key),
            ("content-type", "application/json"),
        ],
        json!({"contents": [{"parts": [{"text": "Say something"}]}]}).to_string(),
    )
    .await
}

fn total_tokens(response: &TestResponse) -> u64 {
    let body = response.json();
    body["usageMetadata"]["totalTokenCount"]
        .as_u64()
        .unwrap_or_else(|| panic!("no usage in {body}"))
}

async fn usage(app: &TestApp, key: &str) -> Value {
    let response = app
        .request(Method::GET, "/usage", &[("X-API-KEY", key)], "")
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    response.json()
}

fn used(usage: &Value, window: &str) -> u64 {
    usage["windows"][window]["used"]
        .as_u64()
        .unwrap_or_else(|| panic!("no {window} in {usage}"))
}

fn assert_refused_by(response: &TestResponse, limit: &str) -> u64 {
    assert_eq!(response.status, 429, "{}", response.text());
    assert_eq!(code_of(response).as_deref(), Some("RATE_LIMITED"));
    let text = response.text();
    assert!(text.contains(limit), "the message names {limit}: {text}");
    response
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After")
}

async fn quota_app(test: &str, team: &str, anchor: &str) -> (TestApp, FakeRelativeClock, KeysDir) {
    quota_app_in(test, team, anchor, "America/Los_Angeles").await
}

async fn quota_app_in(
    test: &str,
    team: &str,
    anchor: &str,
    zone: &str,
) -> (TestApp, FakeRelativeClock, KeysDir) {
    let keys = KeysDir::with_file(
        test,
        &(client_entry("team", TEAM_KEY, &format!("{ROOMY}\n{team}"))
            + &client_entry("other", OTHER_KEY, ROOMY)),
    );
    let clock = FakeRelativeClock::default();
    let zone = zone.to_owned();
    let configure = keys_file(&keys);
    let app = spawn_app_with_clocks(
        move |s| {
            configure(s);
            s.insert("QUOTA_TIMEZONE".into(), zone);
        },
        clock.clone(),
        at(anchor),
    )
    .await;
    (app, clock, keys)
}

#[actix_rt::test]
async fn a_tokens_per_minute_limit_admits_until_reached_and_overshoots_by_at_most_one_answer() {
    let (app, clock, _keys) =
        quota_app("tpm", "tokens_per_minute = 100", "2026-06-01T12:00:00Z").await;
    let mut charged = Vec::new();
    let refused = loop {
        let response = generate(&app, TEAM_KEY, "gemini-2.5-flash").await;
        if response.status != 200 {
            break response;
        }
        charged.push(total_tokens(&response));
        assert!(charged.len() < 100, "never refused");
    };
    let total: u64 = charged.iter().sum();
    let last = *charged.last().expect("at least one answer");
    assert!(total >= 100, "refused before the limit: {total} tokens");
    assert!(total - last < 100, "admitted past the limit: {charged:?}");
    let wait = assert_refused_by(&refused, "tokens_per_minute");
    assert!((1..=60).contains(&wait), "Retry-After {wait}");
    assert_eq!(
        used(&usage(&app, TEAM_KEY).await, "tokens_per_minute"),
        total
    );
    // Another client is not touched; the first is back once enough drained.
    assert_eq!(
        generate(&app, OTHER_KEY, "gemini-2.5-flash").await.status,
        200
    );
    let gauge = r#"gemini_proxy_client_quota_remaining{client="team",limit="tokens_per_minute"}"#;
    assert_eq!(metric_value(&app.metrics().await, gauge), Some(0.0));
    clock.advance(Duration::from_secs(wait));
    // The gauge follows the time that passed, with no request in between.
    assert!(metric_value(&app.metrics().await, gauge) > Some(0.0));
    assert_eq!(
        generate(&app, TEAM_KEY, "gemini-2.5-flash").await.status,
        200
    );
}

#[actix_rt::test]
async fn a_refused_request_charges_nothing_and_never_reaches_gemini() {
    let (app, _clock, _keys) = quota_app(
        "refused",
        "requests_per_day = 2\ntokens_per_day = 100000",
        "2026-06-01T12:00:00Z",
    )
    .await;
    let mut tokens = 0;
    for _ in 0..2 {
        let response = generate(&app, TEAM_KEY, "gemini-2.5-flash").await;
        tokens += total_tokens(&response);
    }
    let calls = app.mock.request_count();
    for _ in 0..3 {
        assert_refused_by(
            &generate(&app, TEAM_KEY, "gemini-2.5-flash").await,
            "requests_per_day",
        );
    }
    assert_eq!(
        app.mock.request_count(),
        calls,
        "a refused request reached Gemini"
    );
    let usage = usage(&app, TEAM_KEY).await;
    assert_eq!(used(&usage, "requests_per_day"), 2);
    assert_eq!(used(&usage, "tokens_per_day"), tokens);
    let exposition = app.metrics().await;
    assert_eq!(
        metric_value(
            &exposition,
            r#"gemini_proxy_rate_limited_total{client="team"}"#
        ),
        Some(3.0)
    );
    assert_eq!(
        metric_value(
            &exposition,
            r#"gemini_proxy_client_quota_remaining{client="team",limit="requests_per_day"}"#
        ),
        Some(0.0)
    );
}

#[actix_rt::test]
async fn the_day_rolls_over_at_midnight_in_quota_timezone_also_on_a_25_hour_day() {
    // Europe/Berlin leaves summer time on 2026-10-25: that day has 25 hours.
    let (app, clock, _keys) = quota_app_in(
        "midnight",
        "requests_per_day = 1",
        "2026-10-24T21:59:30Z", // 23:59:30 in Berlin (UTC+2)
        "Europe/Berlin",
    )
    .await;
    assert_eq!(
        generate(&app, TEAM_KEY, "gemini-2.5-flash").await.status,
        200
    );
    let wait = assert_refused_by(
        &generate(&app, TEAM_KEY, "gemini-2.5-flash").await,
        "requests_per_day",
    );
    assert_eq!(wait, 30, "until midnight in Berlin");
    let reset = usage(&app, TEAM_KEY).await["windows"]["requests_per_day"]["reset"].clone();
    assert_eq!(reset, "2026-10-24T22:00:00Z");

    clock.advance(Duration::from_secs(30));
    assert_eq!(
        generate(&app, TEAM_KEY, "gemini-2.5-flash").await.status,
        200,
        "a new day"
    );
    let wait = assert_refused_by(
        &generate(&app, TEAM_KEY, "gemini-2.5-flash").await,
        "requests_per_day",
    );
    assert_eq!(wait, 25 * 3600, "the day clocks fall back lasts 25 hours");
    clock.advance(Duration::from_secs(25 * 3600 - 1));
    assert_eq!(
        generate(&app, TEAM_KEY, "gemini-2.5-flash").await.status,
        429
    );
    clock.advance(Duration::from_secs(1));
    assert_eq!(
        generate(&app, TEAM_KEY, "gemini-2.5-flash").await.status,
        200
    );
}

#[actix_rt::test]
async fn a_model_group_counts_apart_from_the_clients_total_and_both_apply() {
    let team = "models = [\"gemini-2.5-flash\", \"gemini-2.5-pro\"]\nrequests_per_day = 3\n\
                [[client.quota]]\nmodels = [\"gemini-2.5-pro\"]\nrequests_per_day = 1";
    let (app, _clock, _keys) = quota_app("group", team, "2026-06-01T12:00:00Z").await;
    assert_eq!(generate(&app, TEAM_KEY, "gemini-2.5-pro").await.status, 200);
    assert_refused_by(
        &generate(&app, TEAM_KEY, "gemini-2.5-pro").await,
        "requests_per_day (1) for the models of its `gemini-2.5-pro` quota group",
    );
    // The refused pro request charged nothing: two more flash requests fit.
    assert_eq!(
        generate(&app, TEAM_KEY, "gemini-2.5-flash").await.status,
        200
    );
    assert_eq!(
        generate(&app, TEAM_KEY, "gemini-2.5-flash").await.status,
        200
    );
    let refused = generate(&app, TEAM_KEY, "gemini-2.5-flash").await;
    assert_refused_by(&refused, "this client's requests_per_day (3)");
    let usage = usage(&app, TEAM_KEY).await;
    assert_eq!(used(&usage, "requests_per_day"), 3);
    assert_eq!(usage["quota"][0]["models"], json!(["gemini-2.5-pro"]));
    assert_eq!(usage["quota"][0]["windows"]["requests_per_day"]["used"], 1);
    assert_eq!(
        refused.header("ratelimit-policy"),
        Some("\"rpm\";q=6000;w=60, \"rpd\";q=3;w=86400, \"rpd:gemini-2.5-pro\";q=1;w=86400")
    );
}

#[actix_rt::test]
async fn a_stream_charges_its_tokens_when_it_ends() {
    let (app, _clock, _keys) =
        quota_app("stream", "tokens_per_day = 1000000", "2026-06-01T12:00:00Z").await;
    app.mock.update_config(|c| {
        c.chunks = 4;
        c.chunk_delay = Duration::from_millis(300);
    });
    // The first event arrives; nothing is charged while the stream runs.
    let (mut socket, mut received) = open_stream(&app, 1).await;
    let mut buffer = vec![0u8; 16 * 1024];
    assert_eq!(used(&usage(&app, TEAM_KEY).await, "tokens_per_day"), 0);
    loop {
        let n = socket.read(&mut buffer).await.expect("read");
        received.extend_from_slice(&buffer[..n]);
        if n == 0 || received.ends_with(b"0\r\n\r\n") {
            break;
        }
    }
    let reported = last_total(&String::from_utf8_lossy(&received));
    assert!(reported > 0);
    assert_eq!(
        used(&usage(&app, TEAM_KEY).await, "tokens_per_day"),
        reported
    );
}

#[actix_rt::test]
async fn a_cancelled_stream_charges_what_gemini_reported_up_to_then() {
    let (app, _clock, _keys) =
        quota_app("cancel", "tokens_per_day = 1000000", "2026-06-01T12:00:00Z").await;
    app.mock.update_config(|c| {
        c.chunks = 20;
        c.chunk_delay = Duration::from_millis(200);
    });
    let (socket, received) = open_stream(&app, 3).await;
    let seen = last_total(&String::from_utf8_lossy(&received));
    drop(socket);
    // The service notices at its next write, within one chunk's gap.
    let started = Instant::now();
    let charged = loop {
        let charged = used(&usage(&app, TEAM_KEY).await, "tokens_per_day");
        if charged > 0 || started.elapsed() > Duration::from_secs(10) {
            break charged;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        charged >= seen,
        "charged {charged}, the client saw {seen} reported"
    );
    // Far less than the whole answer: only what was reported before the cut.
    app.mock.update_config(|c| c.chunk_delay = Duration::ZERO);
    let whole = last_total(&generate_stream_text(&app).await);
    assert!(
        charged < whole,
        "charged {charged}, the whole stream reports {whole}"
    );
}

/// Starts a streamed `generateContent` of the team's on a raw socket and
/// reads until `events` events have come; answers the socket and the bytes.
async fn open_stream(app: &TestApp, events: usize) -> (tokio::net::TcpStream, Vec<u8>) {
    let mut socket = connect(app.port).await;
    socket
        .write_all(stream_request(TEAM_KEY).as_bytes())
        .await
        .expect("write");
    let mut received = Vec::new();
    let mut buffer = vec![0u8; 16 * 1024];
    while String::from_utf8_lossy(&received).matches("data:").count() < events {
        let n = socket.read(&mut buffer).await.expect("read");
        assert!(n > 0, "the stream ended early");
        received.extend_from_slice(&buffer[..n]);
    }
    (socket, received)
}

fn stream_request(key: &str) -> String {
    let body = json!({"contents": [{"parts": [{"text": "Tell me a story"}]}]}).to_string();
    format!(
        "POST /v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse HTTP/1.1\r\n\
         host: localhost\r\nx-goog-api-key: {key}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n{body}",
        body.len()
    )
}

async fn generate_stream_text(app: &TestApp) -> String {
    app.request(
        Method::POST,
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
        &[
            ("x-goog-api-key", OTHER_KEY),
            ("content-type", "application/json"),
        ],
        json!({"contents": [{"parts": [{"text": "Tell me a story"}]}]}).to_string(),
    )
    .await
    .text()
}

/// The last `totalTokenCount` in SSE text (usage is cumulative).
fn last_total(text: &str) -> u64 {
    text.rmatch_indices("\"totalTokenCount\":")
        .next()
        .and_then(|(at, key)| {
            let digits: String = text[at + key.len()..]
                .chars()
                .skip_while(|c| c.is_whitespace())
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse().ok()
        })
        .unwrap_or(0)
}

#[actix_rt::test]
async fn a_reload_that_changes_limits_keeps_todays_usage() {
    let (app, _clock, keys) =
        quota_app("reload", "requests_per_day = 5", "2026-06-01T12:00:00Z").await;
    for _ in 0..3 {
        assert_eq!(
            generate(&app, TEAM_KEY, "gemini-2.5-flash").await.status,
            200
        );
    }
    keys.write(
        &(client_entry(
            "team",
            TEAM_KEY,
            "requests_per_minute = 3000\nburst = 500\nrequests_per_day = 4",
        ) + &client_entry("other", OTHER_KEY, ROOMY)),
    );
    app.control.reload().await.expect("the new file is valid");
    assert_eq!(
        generate(&app, TEAM_KEY, "gemini-2.5-flash").await.status,
        200
    );
    assert_refused_by(
        &generate(&app, TEAM_KEY, "gemini-2.5-flash").await,
        "requests_per_day (4)",
    );
}

#[actix_rt::test]
async fn usage_shows_a_client_its_own_windows_only_and_refuses_unknown_keys() {
    let (app, _clock, _keys) = quota_app(
        "usage",
        "tokens_per_day = 5000\nrequests_per_day = 10",
        "2026-06-01T12:00:00Z",
    )
    .await;
    let tokens = total_tokens(&generate(&app, TEAM_KEY, "gemini-2.5-flash").await);
    let team = usage(&app, TEAM_KEY).await;
    assert_eq!(team["client"], "team");
    let window = &team["windows"]["tokens_per_day"];
    assert_eq!(
        (window["limit"].as_u64(), window["used"].as_u64()),
        (Some(5000), Some(tokens))
    );
    assert_eq!(window["remaining"].as_u64(), Some(5000 - tokens));
    assert_eq!(window["reset"], "2026-06-02T07:00:00Z", "midnight Pacific");
    assert_eq!(window["reset_secs"], 19 * 3600);
    assert_eq!(
        team["windows"]["requests_per_minute"]["rate_per_minute"],
        6000
    );

    let other = usage(&app, OTHER_KEY).await;
    assert_eq!(other["client"], "other");
    let names: Vec<&String> = other["windows"]
        .as_object()
        .expect("windows")
        .keys()
        .collect();
    assert_eq!(
        names,
        ["requests_per_minute"],
        "another client has no quota windows: {other}"
    );
    assert!(!other.to_string().contains("team"), "{other}");

    for headers in [vec![], vec![("X-API-KEY", "not-a-client-key-0000")]] {
        let refused = app.request(Method::GET, "/usage", &headers, "").await;
        assert_eq!(refused.status, 401, "{}", refused.text());
        assert_eq!(code_of(&refused).as_deref(), Some("UNAUTHORIZED"));
    }
    // A client whose day is used up can still read when it starts again.
    let spent = app
        .request(Method::GET, "/usage", &[("X-API-KEY", TEAM_KEY)], "")
        .await;
    assert_eq!(
        spent.header("ratelimit-policy"),
        Some("\"rpm\";q=6000;w=60, \"rpd\";q=10;w=86400, \"tpd\";q=5000;w=86400")
    );
}

fn state_file_settings<'a>(
    keys: &'a KeysDir,
    state: &'a std::path::Path,
) -> impl FnOnce(&mut std::collections::HashMap<String, String>) + 'a {
    move |s| {
        keys_file(keys)(s);
        s.insert("QUOTA_STATE_FILE".into(), state.display().to_string());
    }
}

#[actix_rt::test]
async fn a_restart_of_the_memory_backend_keeps_daily_usage() {
    let keys = KeysDir::with_file(
        "restart",
        &client_entry("team", TEAM_KEY, &format!("{ROOMY}\nrequests_per_day = 3")),
    );
    let state = keys.path().with_file_name("keys.usage.json");
    let first = spawn_app_with(state_file_settings(&keys, &state)).await;
    for _ in 0..2 {
        assert_eq!(
            generate(&first, TEAM_KEY, "gemini-2.5-flash").await.status,
            200
        );
    }
    first.stop_gracefully().await;
    let started = Instant::now();
    while !std::fs::read_to_string(&state).is_ok_and(|t| t.contains("\"requests\": 2")) {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the state file was not written at shutdown"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let second = spawn_app_with(state_file_settings(&keys, &state)).await;
    assert_eq!(
        generate(&second, TEAM_KEY, "gemini-2.5-flash").await.status,
        200
    );
    assert_refused_by(
        &generate(&second, TEAM_KEY, "gemini-2.5-flash").await,
        "requests_per_day (3)",
    );
}

#[actix_rt::test]
async fn a_corrupt_state_file_does_not_stop_start_up() {
    let keys = KeysDir::with_file(
        "corrupt",
        &client_entry("team", TEAM_KEY, &format!("{ROOMY}\nrequests_per_day = 1")),
    );
    let state = keys.path().with_file_name("keys.usage.json");
    std::fs::write(&state, "{\"version\": 1, \"clients\": {\"team\": ").expect("write");
    let app = spawn_app_with(state_file_settings(&keys, &state)).await;
    assert_eq!(
        generate(&app, TEAM_KEY, "gemini-2.5-flash").await.status,
        200,
        "starts from zero"
    );
    assert_eq!(
        generate(&app, TEAM_KEY, "gemini-2.5-flash").await.status,
        429
    );
}
