//! The server keys are shared by every client, so no client may harm another
//! through them: what happens to a key follows only from what Gemini says about
//! the key itself (docs/upstream.md). Each test here is one way a client could
//! try, or one way Gemini really answers about a key.

use crate::helpers::*;
use awc::http::Method;
use gemini_mock::{Exhaustion, KeyRefusal, MockGemini};
use serde_json::json;
use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

pub const KEYS: [&str; 3] = [
    "AIzaSharedKeyNumberZero0123456789abcdef",
    "AIzaSharedKeyNumberOne01123456789abcdef",
    "AIzaSharedKeyNumberTwo02123456789abcdef",
];
const JSON: (&str, &str) = ("Content-Type", "application/json");
const NATIVE_FLASH: &str = "/v1beta/models/gemini-2.5-flash:generateContent";
const NATIVE_PRO: &str = "/v1beta/models/gemini-2.5-pro:generateContent";

async fn spawn_with_keys(keys: &[&str], extra: &[(&str, &str)]) -> TestApp {
    let keys = keys.join(",");
    let extra: Vec<(String, String)> = extra
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    spawn_app_with(move |settings| {
        settings.insert("GEMINI_API_KEY".into(), keys);
        settings.extend(extra);
    })
    .await
}

pub fn contents(text: &str) -> String {
    json!({"contents": [{"role": "user", "parts": [{"text": text}]}]}).to_string()
}

async fn native(app: &TestApp, path: &str, body: String) -> TestResponse {
    app.request(
        Method::POST,
        path,
        &[("x-goog-api-key", CLIENT_KEY), JSON],
        body,
    )
    .await
}

async fn openai_chat(app: &TestApp, model: &str, stream: bool) -> TestResponse {
    let bearer = format!("Bearer {CLIENT_KEY}");
    app.request(
        Method::POST,
        "/v1beta/openai/chat/completions",
        &[("Authorization", &bearer), JSON],
        json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]})
            .to_string(),
    )
    .await
}

/// The server keys the mock received, in order.
fn keys_used(app: &TestApp) -> Vec<String> {
    app.upstream_requests()
        .iter()
        .filter_map(|r| r.api_key().map(str::to_owned))
        .collect()
}

/// The generate calls the mock received (probes of keys are GETs).
fn generate_calls(app: &TestApp) -> usize {
    app.upstream_requests()
        .iter()
        .filter(|r| r.method == "POST")
        .count()
}

/// The keys asked by themselves (`models.get`) so far.
fn probes(app: &TestApp) -> usize {
    app.upstream_requests()
        .iter()
        .filter(|r| r.method == "GET")
        .count()
}

/// Key 0 suspended, key 1 out of its `gemini-2.5-pro` quota (per minute).
pub fn suspend_key_0_and_exhaust_key_1_for_pro(mock: &MockGemini) {
    mock.update_config(|c| {
        c.key_refusals = HashMap::from([(KEYS[0].to_owned(), KeyRefusal::Suspended)]);
        c.exhausted = vec![Exhaustion {
            key: Some(KEYS[1].to_owned()),
            model: Some("gemini-2.5-pro".into()),
            per_day: false,
        }];
    });
}

async fn gauge(app: &TestApp, family: &str, key: usize) -> Option<f64> {
    metric_value(&app.metrics().await, &format!("{family}{{key=\"{key}\"}}"))
}

fn assert_no_piece_of_a_server_key(what: &str, response: &TestResponse) {
    let mut text = response.text();
    for (name, value) in response.headers.iter() {
        text.push_str(&format!("\n{name}: {}", value.to_str().unwrap_or_default()));
    }
    for key in KEYS {
        let pieces = leaked_fragments(&text, key);
        assert!(
            pieces.is_empty(),
            "{what}: pieces of a server key {pieces:?} in {text}"
        );
    }
}

#[actix_rt::test]
async fn bare_403s_sent_through_every_path_leave_every_server_key_in_rotation() {
    let app = spawn_with_keys(&KEYS, &[]).await;
    // What anyone can send: someone else's file or cached content never reaches
    // Gemini (the service knows it is not theirs); Gemini's own bare 403s do.
    let file = json!({"contents": [{"role": "user", "parts": [
        {"text": "summarise"},
        {"fileData": {"fileUri": "https://generativelanguage.googleapis.com/v1beta/files/abc123", "mimeType": "application/pdf"}}]}]})
    .to_string();
    let cached = json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}],
        "cachedContent": "cachedContents/someone-elses"})
    .to_string();
    for (what, body) in [
        ("another client's file", &file),
        ("another client's cache", &cached),
    ] {
        let calls = generate_calls(&app);
        let response = native(&app, NATIVE_FLASH, body.clone()).await;
        assert_eq!(response.status, 404, "{what}: {}", response.text());
        assert_eq!(code_of(&response).as_deref(), Some("NOT_FOUND"), "{what}");
        assert_eq!(generate_calls(&app), calls, "{what}: Gemini was not asked");
    }
    {
        // Four requests, round-robin over three keys: each key meets a 403.
        for (what, body) in [
            (
                "Gemini's 403 for a file",
                contents("[mock:403-file] summarise"),
            ),
            ("a bare 403", contents("[mock:403] hi")),
            ("another bare 403", contents("[mock:403] again")),
        ] {
            let calls = generate_calls(&app);
            let response = native(&app, NATIVE_FLASH, body).await;
            assert_eq!(response.status, 403, "{what}: {}", response.text());
            assert_eq!(
                response.json()["error"]["status"],
                "PERMISSION_DENIED",
                "{what}: Gemini's answer comes back as it came"
            );
            assert_eq!(
                generate_calls(&app),
                calls + 1,
                "{what}: no other key tried"
            );
        }
        let response = app.proxy(&json!({"prompt": "[mock:403] hello"})).await;
        assert_eq!(response.status, 403, "{}", response.text());
        assert_eq!(response.error_code(), "UPSTREAM_FORBIDDEN");
    }
    // Each key was asked by itself, once, and found fine.
    let started = Instant::now();
    while probes(&app) < KEYS.len() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "probes: {}",
            probes(&app)
        );
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        probes(&app),
        KEYS.len(),
        "one probe per key, not one per 403"
    );
    for key in 0..KEYS.len() {
        assert_eq!(
            gauge(&app, "gemini_proxy_upstream_key_available", key).await,
            Some(1.0),
            "key {key}"
        );
    }
    app.mock.reset();
    for _ in 0..KEYS.len() {
        let response = app.proxy(&json!({"prompt": "hello"})).await;
        assert_eq!(response.status, 200, "{}", response.text());
    }
    let mut used = keys_used(&app);
    used.sort();
    let mut all = KEYS.map(str::to_owned);
    all.sort();
    assert_eq!(used, all, "every key still serves");
}

#[actix_rt::test]
async fn a_key_refused_by_a_bare_403_leaves_the_rotation_once_a_probe_confirms_it() {
    let app = spawn_with_keys(&KEYS[..2], &[]).await;
    app.mock.update_config(|c| {
        c.key_refusals = HashMap::from([(KEYS[0].to_owned(), KeyRefusal::Leaked)]);
    });
    // The first answer from key 0 is a bare 403: about the request, as far
    // as the answer says. The client gets it; the key is then asked alone.
    let first = native(&app, NATIVE_FLASH, contents("hello")).await;
    assert_eq!(first.status, 403, "{}", first.text());
    let started = Instant::now();
    while gauge(&app, "gemini_proxy_upstream_key_available", 0).await != Some(0.0) {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the probe never refused key 0"
        );
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(probes(&app), 1);
    for _ in 0..4 {
        let response = native(&app, NATIVE_FLASH, contents("hello")).await;
        assert_eq!(response.status, 200, "{}", response.text());
    }
    assert_eq!(
        keys_used(&app).iter().filter(|k| *k == KEYS[0]).count(),
        2,
        "key 0: the request and the probe, then nothing"
    );
}

#[actix_rt::test]
async fn a_token_quota_one_large_request_gets_everywhere_rests_no_key() {
    let app = spawn_with_keys(&KEYS, &[]).await;
    // The input-token quota answer of a real capture, from every key.
    let response = native(
        &app,
        NATIVE_FLASH,
        contents("[mock:429] a very long document"),
    )
    .await;
    assert_eq!(response.status, 429, "{}", response.text());
    assert_eq!(code_of(&response).as_deref(), Some("QUOTA_ERROR"));
    assert_eq!(response.header("retry-after"), Some("26"));
    assert_eq!(
        generate_calls(&app),
        3,
        "the first key and two more, no more"
    );
    for key in 0..KEYS.len() {
        assert_eq!(
            gauge(&app, "gemini_proxy_upstream_key_resting_models", key).await,
            Some(0.0),
            "key {key} rests"
        );
    }
    let response = app.proxy(&json!({"prompt": "a short one"})).await;
    assert_eq!(response.status, 200, "{}", response.text());
}

#[actix_rt::test]
async fn a_suspended_server_key_is_skipped_and_never_quoted_to_the_client() {
    let app = spawn_with_keys(&KEYS, &[]).await;
    app.mock.update_config(|c| {
        c.key_refusals = HashMap::from([(KEYS[0].to_owned(), KeyRefusal::Suspended)]);
    });
    for _ in 0..3 {
        let response = app.proxy(&json!({"prompt": "hello"})).await;
        assert_eq!(response.status, 200, "{}", response.text());
        assert_no_piece_of_a_server_key("a success after the suspended key", &response);
    }
    assert_eq!(
        keys_used(&app).iter().filter(|k| *k == KEYS[0]).count(),
        1,
        "the suspended key was tried once, then left the rotation"
    );
    assert_eq!(
        gauge(&app, "gemini_proxy_upstream_key_available", 0).await,
        Some(0.0)
    );
    assert_eq!(
        gauge(&app, "gemini_proxy_upstream_key_available", 1).await,
        Some(1.0)
    );
}

/// One ordinary request on the surface `what` names.
async fn send_on(app: &TestApp, what: &str) -> TestResponse {
    match what.split(',').next().unwrap_or_default() {
        "/gemini-proxy" => app.proxy(&json!({"prompt": "hello"})).await,
        "native generateContent" => native(app, NATIVE_FLASH, contents("hello")).await,
        "native SSE stream" => {
            native(
                app,
                "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
                contents("hello"),
            )
            .await
        }
        "OpenAI chat" => openai_chat(app, "gemini-2.5-flash", false).await,
        "OpenAI streamed chat" => openai_chat(app, "gemini-2.5-flash", true).await,
        other => panic!("no surface {other}"),
    }
}

#[actix_rt::test]
async fn when_every_server_key_is_suspended_each_surface_gets_upstream_auth_error_without_the_key()
{
    let surfaces = [
        "/gemini-proxy",
        "native generateContent",
        "native SSE stream",
        "OpenAI chat",
        "OpenAI streamed chat",
    ];
    for what in surfaces {
        for refusal in [
            KeyRefusal::Suspended,
            KeyRefusal::ServiceDisabled,
            KeyRefusal::Invalid,
        ] {
            let app = spawn_with_keys(&KEYS, &[]).await;
            app.mock.update_config(|c| {
                c.key_refusals = KEYS.iter().map(|k| ((*k).to_owned(), refusal)).collect();
            });
            let response = send_on(&app, what).await;
            let what = format!("{what}, {refusal:?}");
            assert_eq!(response.status, 502, "{what}: {}", response.text());
            assert_eq!(
                code_of(&response).as_deref(),
                Some("UPSTREAM_AUTH_ERROR"),
                "{what}"
            );
            assert_no_piece_of_a_server_key(&what, &response);
            assert_eq!(
                app.mock.request_count(),
                KEYS.len(),
                "{what}: each key once"
            );
            // The keys are out of rotation: the next request costs no call.
            let again = send_on(&app, &what).await;
            assert_eq!(
                code_of(&again).as_deref(),
                Some("UPSTREAM_AUTH_ERROR"),
                "{what}"
            );
            assert_eq!(app.mock.request_count(), KEYS.len(), "{what}: no call");
        }
    }
}

#[actix_rt::test]
async fn a_quota_for_one_model_leaves_the_key_serving_the_others() {
    let app = spawn_with_keys(&KEYS[..1], &[]).await;
    app.mock.update_config(|c| {
        c.exhausted = vec![Exhaustion {
            key: None,
            model: Some("gemini-2.5-pro".into()),
            per_day: false,
        }];
    });
    let response = native(&app, NATIVE_PRO, contents("hello")).await;
    assert_eq!(response.status, 429, "{}", response.text());
    assert_eq!(code_of(&response).as_deref(), Some("QUOTA_ERROR"));
    assert_eq!(response.header("retry-after"), Some("26"));
    assert_no_piece_of_a_server_key("a quota answer", &response);

    for _ in 0..3 {
        let response = app.proxy(&json!({"prompt": "hello"})).await;
        assert_eq!(
            response.status,
            200,
            "flash still served: {}",
            response.text()
        );
        let response = native(&app, NATIVE_FLASH, contents("hello")).await;
        assert_eq!(response.status, 200, "{}", response.text());
    }
    let calls = app.mock.request_count();
    let response = native(&app, NATIVE_PRO, contents("hello")).await;
    assert_eq!(code_of(&response).as_deref(), Some("QUOTA_ERROR"));
    assert_eq!(
        app.mock.request_count(),
        calls,
        "the key rests for pro: no call"
    );
    assert_eq!(
        gauge(&app, "gemini_proxy_upstream_key_resting_models", 0).await,
        Some(1.0)
    );
    assert_eq!(
        gauge(&app, "gemini_proxy_upstream_key_available", 0).await,
        Some(1.0)
    );
    let metrics = app.metrics().await;
    assert_eq!(
        metric_value(
            &metrics,
            r#"gemini_proxy_upstream_key_rests_total{key="0",scope="minute"}"#
        ),
        Some(1.0)
    );
}

#[actix_rt::test]
async fn a_per_day_quota_rests_the_key_for_that_model_until_midnight_pacific() {
    let app = spawn_with_keys(&KEYS[..2], &[]).await;
    app.mock.update_config(|c| {
        c.exhausted = vec![Exhaustion {
            key: None,
            model: Some("gemini-2.5-pro".into()),
            per_day: true,
        }];
    });
    let response = native(&app, NATIVE_PRO, contents("hello")).await;
    let expected = gemini_proxy::upstream::day::until_next_midnight_pacific(SystemTime::now());
    assert_eq!(response.status, 429, "{}", response.text());
    assert_eq!(app.mock.request_count(), 2, "each key once for pro");
    let retry_after: u64 = response
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    // Gemini's RetryInfo (26 s) is shorter than the day: the day wins.
    assert!(
        retry_after.abs_diff(expected.as_secs()) <= 2,
        "Retry-After {retry_after} s, midnight Pacific in {} s",
        expected.as_secs()
    );
    let metrics = app.metrics().await;
    assert_eq!(
        metric_value(
            &metrics,
            r#"gemini_proxy_upstream_key_rests_total{key="1",scope="day"}"#
        ),
        Some(1.0)
    );
    let response = app.proxy(&json!({"prompt": "hello"})).await;
    assert_eq!(
        response.status,
        200,
        "other models are served: {}",
        response.text()
    );
}

#[actix_rt::test]
async fn a_refused_key_comes_back_when_a_recheck_finds_it_accepted() {
    let app = spawn_with_keys(&KEYS[..2], &[("KEY_RECHECK_SECS", "1")]).await;
    app.mock.update_config(|c| {
        c.key_refusals = HashMap::from([(KEYS[0].to_owned(), KeyRefusal::ServiceDisabled)]);
    });
    let response = app.proxy(&json!({"prompt": "hello"})).await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(keys_used(&app), [KEYS[0], KEYS[1]]);
    assert_eq!(
        gauge(&app, "gemini_proxy_upstream_key_available", 0).await,
        Some(0.0)
    );

    // The project is fixed: within a re-check interval the key is back.
    app.mock.update_config(|c| c.key_refusals.clear());
    let started = Instant::now();
    while gauge(&app, "gemini_proxy_upstream_key_available", 0).await != Some(1.0) {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the key never came back"
        );
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
    let recheck = app
        .upstream_requests()
        .into_iter()
        .find(|r| r.method == "GET")
        .expect("a re-check call");
    assert_eq!(recheck.path_and_query, "/v1beta/models/gemini-2.5-flash");
    assert_eq!(recheck.header("x-goog-api-key"), Some(KEYS[0]));

    app.mock.reset();
    for _ in 0..4 {
        assert_eq!(app.proxy(&json!({"prompt": "hello"})).await.status, 200);
    }
    assert!(
        keys_used(&app).iter().any(|k| k == KEYS[0]),
        "key 0 serves again"
    );
}

#[actix_rt::test]
async fn a_key_still_refused_stays_out_and_restoring_keeps_the_rests() {
    let app = spawn_with_keys(&KEYS[..2], &[]).await;
    suspend_key_0_and_exhaust_key_1_for_pro(&app.mock);
    let response = native(&app, NATIVE_PRO, contents("hello")).await;
    assert_eq!(
        code_of(&response).as_deref(),
        Some("QUOTA_ERROR"),
        "{}",
        response.text()
    );
    assert_eq!(app.control.recheck_keys().await, 0, "still suspended");
    assert_eq!(
        gauge(&app, "gemini_proxy_upstream_key_available", 0).await,
        Some(0.0)
    );

    // What SIGHUP does: refused keys come back, rests stay.
    app.control.restore_refused_keys();
    app.mock.update_config(|c| c.key_refusals.clear());
    assert_eq!(
        gauge(&app, "gemini_proxy_upstream_key_available", 0).await,
        Some(1.0)
    );
    app.mock.reset();
    let response = native(&app, NATIVE_PRO, contents("hello")).await;
    assert_eq!(
        response.status,
        200,
        "key 0 serves pro: {}",
        response.text()
    );
    let response = native(&app, NATIVE_PRO, contents("hello")).await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(
        keys_used(&app),
        [KEYS[0], KEYS[0]],
        "key 1 still rests for pro"
    );
}

#[actix_rt::test]
async fn a_three_key_pool_with_one_key_suspended_and_one_model_exhausted() {
    // The upstream calls each request costs, for the closing figures.
    let app = spawn_with_keys(&KEYS, &[]).await;
    suspend_key_0_and_exhaust_key_1_for_pro(&app.mock);
    let mut calls = Vec::new();
    for path in [
        NATIVE_PRO,
        NATIVE_PRO,
        NATIVE_FLASH,
        NATIVE_FLASH,
        NATIVE_PRO,
        NATIVE_FLASH,
    ] {
        let before = app.mock.request_count();
        let response = native(&app, path, contents("hello")).await;
        assert_eq!(response.status, 200, "{path}: {}", response.text());
        calls.push(app.mock.request_count() - before);
    }
    // The first request meets the suspended key and the exhausted one; after
    // that every request costs one call.
    assert_eq!(calls[0], 3, "{calls:?}");
    assert!(calls[1..].iter().all(|c| *c == 1), "{calls:?}");
    println!("upstream calls per request (3 keys, key 0 suspended, key 1 out of pro): {calls:?}");
}
