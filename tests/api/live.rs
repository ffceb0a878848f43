//! The Live API's WebSocket (docs/api.md#the-live-api): refusals before the
//! upgrade in Google's error shape, then sessions relayed to the mock Gemini's
//! Live endpoint: frames both ways, allow-list, tokens and quotas, reloads,
//! shutdown, key failover and a client that stops reading.

use crate::helpers::{
    binary_env, code_of, metric_value, spawn_app, spawn_app_with, BinaryApp, TestApp, CLIENT_KEY,
    SERVER_KEY,
};
use crate::keys::{client_entry, keys_file, KeysDir};
use actix_ws::CloseCode;
use awc::http::Method;
use gemini_mock::testing::{LiveClient, LiveFrame};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const PATH: &str = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent";

fn upgrade_headers<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut headers = vec![
        ("connection", "Upgrade"),
        ("upgrade", "websocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];
    headers.extend_from_slice(extra);
    headers
}

/// A path, its headers, and the status and code it must get.
type Case<'a> = (String, Vec<(&'a str, &'a str)>, u16, &'a str);

#[actix_rt::test]
async fn refusals_before_the_upgrade_come_in_googles_shape() {
    let app = spawn_app().await;
    let cases: Vec<Case> = vec![
        (PATH.into(), upgrade_headers(&[]), 401, "UNAUTHORIZED"),
        (
            PATH.into(),
            upgrade_headers(&[("x-goog-api-key", "not-a-client-key")]),
            401,
            "UNAUTHORIZED",
        ),
        // An ephemeral token is never a client key, wherever it comes.
        (
            PATH.into(),
            upgrade_headers(&[("x-goog-api-key", "auth_tokens/abc")]),
            401,
            "UNAUTHORIZED",
        ),
        (
            format!("{PATH}?access_token=auth_tokens/abc"),
            upgrade_headers(&[("x-goog-api-key", CLIENT_KEY)]),
            401,
            "UNAUTHORIZED",
        ),
        (
            PATH.replace("BidiGenerateContent", "BidiGenerateContentConstrained"),
            upgrade_headers(&[("x-goog-api-key", CLIENT_KEY)]),
            401,
            "UNAUTHORIZED",
        ),
        (
            PATH.replace("v1beta", "v9"),
            upgrade_headers(&[("x-goog-api-key", CLIENT_KEY)]),
            404,
            "NOT_FOUND",
        ),
        // A plain GET with a valid key, without the upgrade.
        (
            PATH.into(),
            vec![("x-goog-api-key", CLIENT_KEY)],
            400,
            "INVALID_REQUEST",
        ),
    ];
    for (path, headers, status, code) in cases {
        let response = app.request(Method::GET, &path, &headers, "").await;
        assert_eq!(response.status, status, "{path}: {}", response.text());
        assert_eq!(code_of(&response).as_deref(), Some(code), "{path}");
        let body = response.json();
        assert_eq!(body["error"]["code"], status, "Google's shape: {body}");
    }
    assert!(app.upstream_requests().is_empty(), "nothing reached Gemini");
}

#[actix_rt::test]
async fn the_js_sdks_double_slash_reaches_the_same_route() {
    let app = spawn_app().await;
    let response = app
        .request(Method::GET, &format!("/{PATH}"), &upgrade_headers(&[]), "")
        .await;
    assert_eq!(response.status, 401, "{}", response.text());
    assert_eq!(code_of(&response).as_deref(), Some("UNAUTHORIZED"));
}

// ---------------------------------------------------------------- sessions

const MODEL: &str = "models/gemini-2.0-flash-live-001";

fn ws_url(app: &TestApp, version: &str) -> String {
    format!(
        "ws://127.0.0.1:{}/ws/google.ai.generativelanguage.{version}.GenerativeService.BidiGenerateContent",
        app.port
    )
}

async fn open(app: &TestApp) -> LiveClient {
    LiveClient::connect(&ws_url(app, "v1beta"), &[("x-goog-api-key", CLIENT_KEY)]).await
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < Duration::from_secs(10), "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[actix_rt::test]
async fn a_session_is_relayed_both_ways_unchanged_with_the_server_key_in_a_header() {
    let app = spawn_app().await;
    let mut live = open(&app).await;
    assert_eq!(live.setup(MODEL).await, json!({"setupComplete": {}}));
    // The service answers the client's pings itself.
    live.send(awc::ws::Message::Ping(bytes::Bytes::from_static(
        b"are you there",
    )))
    .await;
    assert_eq!(
        live.next().await,
        Some(LiveFrame::Pong(bytes::Bytes::from_static(b"are you there")))
    );
    live.say("Hello there").await;
    let answer = live.turn().await;
    let text: String = answer
        .iter()
        .filter_map(|m| m["serverContent"]["modelTurn"]["parts"][0]["text"].as_str())
        .collect();
    assert_eq!(text, "echo: Hello there");
    assert_eq!(
        answer.last().unwrap()["usageMetadata"]["totalTokenCount"]
            .as_u64()
            .map(|t| t > 0),
        Some(true)
    );
    live.send(awc::ws::Message::Close(Some(CloseCode::Normal.into())))
        .await;
    assert_eq!(live.closed().await.map(|c| c.0), Some(1000));

    // What the mock got: the same messages, and the server key in a header only.
    wait_until("the mock saw the session end", || {
        app.mock.live_sessions_open() == 0
    })
    .await;
    let sessions = app.mock.live_sessions();
    assert_eq!(sessions.len(), 1);
    let session = &sessions[0];
    assert!(
        !session.path_and_query.contains("key="),
        "{}",
        session.path_and_query
    );
    let received: Vec<Value> = session
        .messages
        .iter()
        .map(|m| serde_json::from_slice(&m.data).unwrap())
        .collect();
    assert_eq!(received[0], json!({"setup": {"model": MODEL}}));
    assert_eq!(
        received[1]["client_content"]["turns"][0]["parts"][0]["text"],
        "Hello there"
    );
    let handshake = app
        .upstream_requests()
        .into_iter()
        .find(|r| r.path_and_query.contains("BidiGenerateContent"))
        .expect("the handshake was recorded");
    assert_eq!(handshake.api_key(), Some(SERVER_KEY));
    assert_eq!(app.mock.live_closes(), [(1000, String::new())]);

    // The service lowers the gauge when its relay ends, which may be a moment
    // after the mock saw the close.
    let open = r#"gemini_proxy_live_sessions{client="env-1"}"#;
    let started = Instant::now();
    let mut exposition = app.metrics().await;
    while metric_value(&exposition, open) != Some(0.0) {
        assert!(started.elapsed() < Duration::from_secs(10), "{exposition}");
        tokio::time::sleep(Duration::from_millis(20)).await;
        exposition = app.metrics().await;
    }
    let tokens = metric_value(
        &exposition,
        r#"gemini_proxy_tokens_total{client="env-1",kind="response",model="gemini-2.0-flash-live-001"}"#,
    );
    assert!(tokens > Some(0.0), "{exposition}");
}

#[actix_rt::test]
async fn binary_frames_and_the_js_sdks_double_slash_and_query_key_go_through() {
    let app = spawn_app().await;
    app.mock.update_config(|c| c.live_binary = true);
    let url = format!(
        "ws://127.0.0.1:{}//ws/google.ai.generativelanguage.v1alpha.GenerativeService.BidiGenerateContent?key={CLIENT_KEY}",
        app.port
    );
    let mut live = LiveClient::connect(&url, &[]).await;
    live.send_json(&json!({"setup": {"model": MODEL}})).await;
    let first = live.next().await.expect("a frame");
    assert!(
        matches!(first, LiveFrame::Binary(_)),
        "a binary frame stays binary: {first:?}"
    );
    live.say("bin").await;
    assert!(live.turn().await.len() >= 3);
    let session = &app.mock.live_sessions()[0];
    assert!(
        session
            .path_and_query
            .starts_with("/ws/google.ai.generativelanguage.v1alpha."),
        "{}",
        session.path_and_query
    );
}

#[actix_rt::test]
async fn a_model_outside_the_allow_list_is_closed_with_a_policy_frame_and_never_reaches_gemini() {
    let keys = KeysDir::with_file(
        "live-allow-list",
        &client_entry(
            "narrow",
            "narrow-client-key-0123",
            "models = [\"gemini-2.5-flash\"]",
        ),
    );
    let app = spawn_app_with(keys_file(&keys)).await;
    let mut live = LiveClient::connect(
        &ws_url(&app, "v1"),
        &[("x-goog-api-key", "narrow-client-key-0123")],
    )
    .await;
    live.send_json(&json!({"setup": {"model": MODEL}})).await;
    let (code, reason) = live.closed().await.expect("a close frame with a code");
    assert_eq!(code, 1008);
    assert!(reason.starts_with("MODEL_NOT_ALLOWED"), "{reason}");
    assert_eq!(app.mock.live_sessions_opened(), 0, "nothing went upstream");

    // A first message that is not setup is refused the same way, with 1007.
    let mut live = LiveClient::connect(
        &ws_url(&app, "v1"),
        &[("x-goog-api-key", "narrow-client-key-0123")],
    )
    .await;
    live.say("no setup first").await;
    let (code, reason) = live.closed().await.expect("a close frame");
    assert_eq!(
        (code, reason.starts_with("INVALID_REQUEST")),
        (1007, true),
        "{reason}"
    );
}

#[actix_rt::test]
async fn tokens_are_charged_to_the_clients_quota_as_they_arrive() {
    let keys = KeysDir::with_file(
        "live-quota",
        &client_entry("voice", "voice-client-key-0123", "tokens_per_day = 1000000"),
    );
    let app = spawn_app_with(keys_file(&keys)).await;
    let mut live = LiveClient::connect(
        &ws_url(&app, "v1beta"),
        &[("x-goog-api-key", "voice-client-key-0123")],
    )
    .await;
    live.setup(MODEL).await;
    let mut reported = 0;
    for text in ["one", "two"] {
        live.say(text).await;
        reported += live.turn().await.last().unwrap()["usageMetadata"]["totalTokenCount"]
            .as_u64()
            .unwrap();
    }
    // Charged while the session is still open.
    let usage = app
        .request(
            Method::GET,
            "/usage",
            &[("X-API-KEY", "voice-client-key-0123")],
            "",
        )
        .await
        .json();
    assert_eq!(
        usage["windows"]["tokens_per_day"]["used"].as_u64(),
        Some(reported),
        "{usage}"
    );
}

#[actix_rt::test]
async fn a_reload_that_removes_the_key_ends_its_session_and_shutdown_says_going_away() {
    let keys = KeysDir::with_file(
        "live-reload",
        &(client_entry("leaving", "leaving-client-key-01", "")
            + &client_entry("staying", "staying-client-key-01", "")),
    );
    let app = spawn_app_with(keys_file(&keys)).await;
    let mut leaving = LiveClient::connect(
        &ws_url(&app, "v1beta"),
        &[("x-goog-api-key", "leaving-client-key-01")],
    )
    .await;
    leaving.setup(MODEL).await;
    let mut staying = LiveClient::connect(
        &ws_url(&app, "v1beta"),
        &[("x-goog-api-key", "staying-client-key-01")],
    )
    .await;
    staying.setup(MODEL).await;
    assert_eq!(app.control.live_sessions(), 2);

    keys.write(&client_entry("staying", "staying-client-key-01", ""));
    app.control.reload().await.expect("a valid file");
    let (code, reason) = leaving.closed().await.expect("a close frame");
    assert_eq!(code, 1008);
    assert!(reason.contains("UNAUTHORIZED"), "{reason}");
    // The other session goes on.
    staying.say("still here").await;
    assert!(staying.turn().await.len() >= 3);

    app.control.set_draining();
    assert_eq!(
        staying.closed().await.map(|c| c.0),
        Some(1001),
        "going away"
    );
    wait_until("both sessions ended", || app.control.live_sessions() == 0).await;
    wait_until("the mock saw both sessions end", || {
        app.mock.live_sessions_open() == 0
    })
    .await;
}

#[actix_rt::test]
async fn a_refused_server_key_at_connect_moves_the_session_to_the_next_key() {
    const SECOND: &str = "AIzaSecondServerKey0123456789abcdefghijk";
    let app = spawn_app_with(|s| {
        s.insert("GEMINI_API_KEY".into(), format!("{SERVER_KEY},{SECOND}"));
    })
    .await;
    app.mock.update_config(|c| {
        c.accepted_keys = Some([SECOND.to_owned()].into_iter().collect());
    });
    let mut seen = Vec::new();
    for _ in 0..2 {
        let mut live = open(&app).await;
        let setup = live.setup(MODEL).await;
        assert_eq!(setup, json!({"setupComplete": {}}));
        live.say("after failover").await;
        let turn = live.turn().await;
        assert!(turn.len() >= 3);
        seen.push(setup);
        seen.extend(turn);
    }
    let keys: Vec<Option<String>> = app
        .upstream_requests()
        .iter()
        .filter(|r| r.path_and_query.contains("BidiGenerateContent"))
        .map(|r| r.api_key().map(str::to_owned))
        .collect();
    assert!(keys.contains(&Some(SECOND.to_owned())), "{keys:?}");
    // The first key's refusal reached no client: every message it got was
    // Gemini's own answer, and none names a server key.
    let frames = serde_json::to_string(&seen).unwrap();
    assert!(!frames.contains("AIza"), "{frames}");
    assert!(!frames.contains("API key not valid"), "{frames}");
}

#[actix_rt::test]
async fn a_client_that_stops_reading_does_not_grow_the_services_memory() {
    // The real service as a process of its own, so its memory can be read.
    let mock = gemini_mock::MockGemini::start(gemini_mock::MockConfig {
        live_chunks: 2_000,
        live_chunk_bytes: Some(64 * 1024),
        ..Default::default()
    })
    .await
    .expect("mock");
    let mut service = BinaryApp::start(&["serve"], &binary_env(&mock));
    let rss_kb = |pid: u32| -> u64 {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
            .unwrap_or(0)
    };
    let url = format!(
        "{}/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent",
        service.address.replacen("http://", "ws://", 1)
    );
    let mut live = LiveClient::connect(&url, &[("x-goog-api-key", CLIENT_KEY)]).await;
    live.setup(MODEL).await;
    let before = rss_kb(service.child.id());
    // A turn of 2,000 messages of 64 KiB (125 MiB), which this client does not read.
    live.say("a long answer").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let during = rss_kb(service.child.id());
    eprintln!("service RSS before the turn {before} kB, with 125 MiB waiting upstream {during} kB");
    assert!(
        during < before + 32 * 1024,
        "the service buffered what its client did not read: {before} kB -> {during} kB"
    );
    // Nothing was lost: the client reads the whole turn now.
    let messages = live.turn().await;
    assert_eq!(
        messages.len(),
        2_000 + 2,
        "every piece, generationComplete, turnComplete"
    );
    live.send(awc::ws::Message::Close(Some(CloseCode::Normal.into())))
        .await;
    assert_eq!(live.closed().await.map(|c| c.0), Some(1000));
    // One access line for the session, at its end, with what it did.
    let logs = service.logs_with("live session").await;
    let line = logs
        .lines()
        .find(|l| l.contains("live session"))
        .unwrap_or_default();
    for field in [
        "code=OK",
        "status=101",
        "messages_to_gemini=2",
        "messages_to_client=2003",
        "close_code=1000",
        "closed_by=client",
    ] {
        assert!(line.contains(field), "{field} in {line}");
    }
    assert!(!logs.contains("ERROR"), "{logs}");
    service.signal("TERM");
    assert!(service.wait_exit(Duration::from_secs(10)).success());
}

#[actix_rt::test]
async fn a_close_from_gemini_mid_session_is_passed_on_and_silence_ends_a_session() {
    let app = spawn_app_with(|s| {
        s.insert("LIVE_IDLE_TIMEOUT_SECS".into(), "1".into());
    })
    .await;
    // Gemini's own close, code and reason, reaches the client as it came.
    app.mock
        .update_config(|c| c.live_fault = Some(gemini_mock::LiveFault::CloseMidSession));
    let mut live = open(&app).await;
    live.setup(MODEL).await;
    live.say("then an error").await;
    let first = live.next_json().await;
    assert!(first["serverContent"]["modelTurn"].is_object(), "{first}");
    assert_eq!(
        live.closed().await,
        Some((1011, "Internal error encountered.".to_owned()))
    );

    // Neither side says anything for LIVE_IDLE_TIMEOUT_SECS: the service closes both.
    app.mock
        .update_config(|c| c.live_fault = Some(gemini_mock::LiveFault::NoAnswer));
    let mut live = open(&app).await;
    live.setup(MODEL).await;
    live.say("nobody answers").await;
    let (code, reason) = live.closed().await.expect("a close frame");
    assert_eq!(code, 1000);
    assert!(reason.starts_with("UPSTREAM_TIMEOUT"), "{reason}");
    wait_until("the mock's side was closed too", || {
        app.mock.live_sessions_open() == 0
    })
    .await;
}

#[actix_rt::test]
async fn sigterm_ends_open_sessions_with_going_away_and_the_service_exits() {
    let mock = gemini_mock::MockGemini::start(gemini_mock::MockConfig::default())
        .await
        .expect("mock");
    let mut service = BinaryApp::start(&["serve"], &binary_env(&mock));
    let url = format!(
        "{}/ws/google.ai.generativelanguage.v1.GenerativeService.BidiGenerateContent",
        service.address.replacen("http://", "ws://", 1)
    );
    let mut live = LiveClient::connect(&url, &[("x-goog-api-key", CLIENT_KEY)]).await;
    live.setup(MODEL).await;
    service.signal("TERM");
    let (code, _) = live.closed().await.expect("a close frame");
    assert_eq!(code, 1001, "going away");
    let status = service.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "{status}: {}", service.logs());
}

#[actix_rt::test]
async fn a_client_that_stops_reading_is_cut_after_the_stall_timeout() {
    let app = spawn_app_with(|s| {
        s.insert("CLIENT_STALL_TIMEOUT_SECS".into(), "1".into());
    })
    .await;
    app.mock.update_config(|c| {
        c.live_chunks = 2_000;
        c.live_chunk_bytes = Some(64 * 1024);
    });
    let mut live = open(&app).await;
    live.setup(MODEL).await;
    live.say("a long answer nobody reads").await;
    // Its place, its registry entry and Gemini's socket are all given back.
    wait_until("the session ended", || app.control.live_sessions() == 0).await;
    wait_until("Gemini's side was closed", || {
        app.mock.live_sessions_open() == 0
    })
    .await;
    drop(live);
}

#[actix_rt::test]
async fn a_suspended_server_key_is_never_quoted_to_the_client_and_the_next_key_serves() {
    const SECOND: &str = "AIzaSecondServerKey0123456789abcdefghijk";
    // One key only: the client learns the service's keys were refused, not the key.
    let app = spawn_app().await;
    app.mock.update_config(|c| {
        c.key_refusals
            .insert(SERVER_KEY.to_owned(), gemini_mock::KeyRefusal::Suspended);
    });
    let mut live = open(&app).await;
    live.send_json(&json!({"setup": {"model": MODEL}})).await;
    let (code, reason) = live.closed().await.expect("a close frame");
    assert_eq!(code, 1011, "{reason}");
    assert!(reason.starts_with("UPSTREAM_AUTH_ERROR"), "{reason}");
    assert!(!reason.contains("AIza"), "{reason}");

    // Two keys: the session moves on to the one Gemini accepts.
    let app = spawn_app_with(|s| {
        s.insert("GEMINI_API_KEY".into(), format!("{SERVER_KEY},{SECOND}"));
    })
    .await;
    app.mock.update_config(|c| {
        c.key_refusals
            .insert(SERVER_KEY.to_owned(), gemini_mock::KeyRefusal::Suspended);
    });
    let mut live = open(&app).await;
    assert_eq!(live.setup(MODEL).await, json!({"setupComplete": {}}));
}

#[actix_rt::test]
async fn a_session_on_the_shared_keys_may_not_name_a_file_or_a_cache() {
    let app = spawn_app().await;
    // In its setup: refused before anything goes upstream.
    let mut live =
        LiveClient::connect(&ws_url(&app, "v1beta"), &[("x-goog-api-key", CLIENT_KEY)]).await;
    live.send_json(
        &json!({"setup": {"model": MODEL, "systemInstruction": {"parts": [
        {"fileData": {"fileUri": "files/someone-elses", "mimeType": "application/pdf"}}]}}}),
    )
    .await;
    let (code, reason) = live.closed().await.expect("a close frame");
    assert_eq!(code, 1008, "{reason}");
    assert!(reason.starts_with("INVALID_REQUEST"), "{reason}");
    assert_eq!(app.mock.live_sessions_opened(), 0);
    // Later in the session: the session ends, the message never reaches Gemini.
    let mut live =
        LiveClient::connect(&ws_url(&app, "v1beta"), &[("x-goog-api-key", CLIENT_KEY)]).await;
    live.setup(MODEL).await;
    live.send_json(&json!({"clientContent": {"turns": [{"role": "user", "parts": [
        {"fileData": {"file_uri": "https://generativelanguage.googleapis.com/v1beta/files/abc", "mimeType": "image/png"}}]}],
        "turnComplete": true}}))
        .await;
    let (code, reason) = live.closed().await.expect("a close frame");
    assert_eq!(code, 1008, "{reason}");
    let sessions = app.mock.live_sessions();
    assert!(
        sessions.iter().all(|s| s
            .messages
            .iter()
            .all(|m| !String::from_utf8_lossy(&m.data).contains("files/abc"))),
        "the message naming the file stayed here"
    );
    // An ordinary turn still works.
    let mut live =
        LiveClient::connect(&ws_url(&app, "v1beta"), &[("x-goog-api-key", CLIENT_KEY)]).await;
    live.setup(MODEL).await;
    live.say("hello").await;
    assert!(!live.turn().await.is_empty());
}
