//! The Live API (`BidiGenerateContent`) over a real WebSocket: setup, turns, function
//! calls, refusals as close frames, faults and the knobs.

use std::time::{Duration, Instant};

use awc::ws::{CloseCode, CloseReason, Message};
use bytes::Bytes;
use gemini_mock::testing::{live_path, LiveClient, LiveFrame};
use gemini_mock::{KeyRefusal, LiveFault, MockConfig, MockGemini};
use serde_json::{json, Value};

use crate::helpers::{call, eventually, start};

const MODEL: &str = "models/gemini-2.0-flash-live-001";
const KEY: (&str, &str) = ("x-goog-api-key", "live-key");

fn url(mock: &MockGemini, version: &str) -> String {
    format!(
        "{}{}",
        mock.base_url().replacen("http://", "ws://", 1),
        live_path(version)
    )
}

async fn open(mock: &MockGemini, extra: &[(&str, &str)]) -> LiveClient {
    let mut headers = vec![KEY];
    headers.extend_from_slice(extra);
    LiveClient::connect(&url(mock, "v1beta"), &headers).await
}

/// A session past its setup.
async fn ready(mock: &MockGemini, extra: &[(&str, &str)]) -> LiveClient {
    let mut live = open(mock, extra).await;
    assert_eq!(live.setup(MODEL).await, json!({"setupComplete": {}}));
    live
}

fn text_of(message: &Value) -> &str {
    message["serverContent"]["modelTurn"]["parts"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("not a modelTurn: {message}"))
}

/// Checks a whole answered turn and returns its usage.
fn check_turn(messages: &[Value], expected_text: &str) -> Value {
    let (end, rest) = messages.split_last().unwrap();
    let (generation_complete, pieces) = rest.split_last().unwrap();
    assert!(pieces.len() >= 2, "{messages:?}");
    let joined: String = pieces.iter().map(text_of).collect();
    assert_eq!(joined, expected_text);
    assert_eq!(
        *generation_complete,
        json!({"serverContent": {"generationComplete": true}})
    );
    assert_eq!(end["serverContent"], json!({"turnComplete": true}));
    end["usageMetadata"].clone()
}

async fn reply_close(live: &mut LiveClient, code: u16) {
    live.send(Message::Close(Some(CloseReason::from(CloseCode::from(
        code,
    )))))
    .await;
}

#[actix_rt::test]
async fn setup_is_answered_on_every_version_and_after_a_double_slash() {
    let mock = start().await;
    for version in ["v1", "v1beta", "v1alpha"] {
        let mut live = LiveClient::connect(&url(&mock, version), &[KEY]).await;
        assert_eq!(live.setup(MODEL).await, json!({"setupComplete": {}}));
    }
    let double = url(&mock, "v1beta").replacen("/ws/", "//ws/", 1);
    let mut live = LiveClient::connect(&double, &[KEY]).await;
    assert_eq!(
        live.setup("gemini-2.5-flash-native-audio-preview-09-2025")
            .await,
        json!({"setupComplete": {}})
    );
    assert_eq!(mock.live_sessions_opened(), 4);
    let handshakes = mock.requests();
    assert_eq!(handshakes.len(), 4);
    let last = &handshakes[3];
    assert_eq!(last.method, "GET");
    assert_eq!(last.path_and_query, format!("/{}", live_path("v1beta")));
    assert_eq!(last.api_key(), Some("live-key"));
    assert_eq!(last.header("upgrade"), Some("websocket"));
    mock.stop().await;
}

#[actix_rt::test]
async fn a_turn_is_answered_in_pieces_then_generation_complete_then_usage() {
    let mock = start().await;
    let mut live = ready(&mock, &[]).await;
    let turn = json!({"client_content": {
        "turns": [{"role": "user", "parts": [{"text": "hello brave world"}]}],
        "turn_complete": true
    }});
    let sent = turn.to_string();
    live.send(Message::Text(sent.clone().into())).await;
    let frames: Vec<LiveFrame> = {
        let mut frames = Vec::new();
        loop {
            let frame = live.next().await.unwrap();
            let done = frame.json()["serverContent"]["turnComplete"] == true;
            frames.push(frame);
            if done {
                break frames;
            }
        }
    };
    assert!(frames.iter().all(|f| matches!(f, LiveFrame::Text(_))));
    let first = match &frames[0] {
        LiveFrame::Text(t) => t.clone(),
        other => panic!("{other:?}"),
    };
    assert!(first.starts_with("{\n  \"serverContent\": {\n"), "{first}");
    assert!(first.ends_with("}\n"), "{first}");
    let messages: Vec<Value> = frames.iter().map(LiveFrame::json).collect();
    assert_eq!(messages.len(), 5);
    let usage = check_turn(&messages, "echo: hello brave world");
    assert_eq!(
        usage,
        json!({
            "promptTokenCount": 3, "responseTokenCount": 4, "totalTokenCount": 7,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 3}],
            "responseTokensDetails": [{"modality": "TEXT", "tokenCount": 4}]
        })
    );
    let sessions = mock.live_sessions();
    assert_eq!(sessions.len(), 1);
    let received = &sessions[0].messages;
    assert_eq!(received.len(), 2);
    assert_eq!(received[0].json(), Some(json!({"setup": {"model": MODEL}})));
    assert!(!received[1].binary);
    assert_eq!(received[1].data, Bytes::from(sent));
    mock.stop().await;
}

#[actix_rt::test]
async fn camel_case_split_turns_and_realtime_text_are_answered() {
    let mock = start().await;
    let mut live = ready(&mock, &[]).await;
    live.send_json(&json!({"clientContent": {
        "turns": [{"role": "user", "parts": [{"text": "first part"}]}],
        "turnComplete": false
    }}))
    .await;
    assert_eq!(live.next_within(Duration::from_millis(200)).await, None);
    live.send_json(&json!({"clientContent": {"turnComplete": true}}))
        .await;
    let usage = check_turn(&live.turn().await, "echo: first part");
    assert_eq!(usage["promptTokenCount"], 2);

    live.send_json(&json!({"realtimeInput": {"text": "typed live"}}))
        .await;
    check_turn(&live.turn().await, "echo: typed live");
    live.send_json(&json!({"realtime_input": {"text": "snake"}}))
        .await;
    check_turn(&live.turn().await, "echo: snake");
    mock.stop().await;
}

#[actix_rt::test]
async fn audio_is_answered_at_its_end_or_after_a_quiet_spell() {
    let mock = start().await;
    let mut live = ready(&mock, &[]).await;
    let chunk = json!({"realtimeInput": {"audio": {"mimeType": "audio/pcm;rate=16000", "data": "AAAAAAAA"}}});
    live.send_json(&chunk).await;
    live.send_json(&chunk).await;
    live.send_json(&json!({"realtimeInput": {"audioStreamEnd": true}}))
        .await;
    let usage = check_turn(&live.turn().await, "echo: 12 bytes of audio");
    assert_eq!(usage["promptTokensDetails"][0]["modality"], "AUDIO");

    let started = Instant::now();
    live.send_json(&json!({"realtime_input": {"media_chunks": [{"data": "AAAA"}]}}))
        .await;
    check_turn(&live.turn().await, "echo: 3 bytes of audio");
    assert!(started.elapsed() >= Duration::from_millis(250));
    mock.stop().await;
}

#[actix_rt::test]
async fn the_key_may_come_as_a_query_parameter_and_the_record_says_so() {
    let mock = start().await;
    let target = format!("{}?key=query-key", url(&mock, "v1alpha"));
    let mut live = LiveClient::connect(&target, &[]).await;
    assert_eq!(live.setup(MODEL).await, json!({"setupComplete": {}}));
    let handshake = &mock.requests()[0];
    assert_eq!(handshake.api_key(), None);
    assert!(handshake.path_and_query.ends_with("?key=query-key"));
    assert_eq!(
        mock.live_sessions()[0].path_and_query,
        handshake.path_and_query
    );
    mock.stop().await;
}

/// A refused handshake and the close it meets.
struct Refused {
    what: &'static str,
    headers: &'static [(&'static str, &'static str)],
    code: u16,
    reason: &'static str,
}

#[actix_rt::test]
async fn refused_keys_are_closed_once_the_setup_arrives() {
    let mock = MockGemini::start(MockConfig {
        accepted_keys: Some(["good".to_owned(), "leaked".to_owned()].into()),
        key_refusals: [("leaked".to_owned(), KeyRefusal::Leaked)].into(),
        ..MockConfig::default()
    })
    .await
    .unwrap();
    const INVALID: &str = "API key not valid. Please pass a valid API key.";
    let cases = [
        Refused {
            what: "no key",
            headers: &[],
            code: 1008,
            reason: "Method doesn't allow unregistered callers (callers without established \
                     identity). Please use API Key or other form of API c",
        },
        Refused {
            what: "a key not accepted",
            headers: &[("x-goog-api-key", "bad")],
            code: 1007,
            reason: INVALID,
        },
        Refused {
            what: "a leaked key",
            headers: &[("x-goog-api-key", "leaked")],
            code: 1008,
            reason: "Your API key was reported as leaked. Please use another API key.",
        },
        Refused {
            what: "the refuse-key fault",
            headers: &[
                ("x-goog-api-key", "good"),
                ("x-mock-live-fault", "refuse-key"),
            ],
            code: 1007,
            reason: INVALID,
        },
    ];
    for case in cases {
        let mut live = LiveClient::connect(&url(&mock, "v1beta"), case.headers).await;
        live.send_json(&json!({"setup": {"model": MODEL}})).await;
        assert_eq!(
            live.closed().await,
            Some((case.code, case.reason.to_owned())),
            "{}",
            case.what
        );
        reply_close(&mut live, case.code).await;
    }
    eventually("every session over", || mock.live_sessions_open() == 0).await;
    let closes: Vec<u16> = mock.live_closes().into_iter().map(|(c, _)| c).collect();
    assert_eq!(closes, [1008, 1007, 1008, 1007]);
    let first = &mock.live_sessions()[0];
    assert_eq!(
        first.mock_close.as_ref().map(|(c, r)| (*c, r.len())),
        Some((1008, 123))
    );

    let started = Instant::now();
    let mut quiet = LiveClient::connect(&url(&mock, "v1beta"), &[]).await;
    assert_eq!(quiet.closed().await.map(|(c, _)| c), Some(1008));
    assert!(started.elapsed() >= Duration::from_millis(400));
    mock.stop().await;
}

#[actix_rt::test]
async fn models_that_cannot_go_live_are_closed_with_1008() {
    let mock = start().await;
    let mut live = open(&mock, &[]).await;
    live.send_json(&json!({"setup": {"model": "models/gemini-2.5-flash"}}))
        .await;
    assert_eq!(
        live.closed().await,
        Some((
            1008,
            "models/gemini-2.5-flash is not found for API version v1beta, or is not \
             supported for bidiGenerateContent. Call ListModels t"
                .to_owned()
        ))
    );
    mock.stop().await;
}

#[actix_rt::test]
async fn messages_out_of_protocol_are_closed_with_1007() {
    let mock = start().await;
    let cases = [
        (
            json!({"clientContent": {"turnComplete": true}}),
            "must be setup",
        ),
        (json!({"bogus": {}}), "Unknown name \"bogus\""),
    ];
    for (first, expected) in cases {
        let mut live = open(&mock, &[]).await;
        live.send_json(&first).await;
        let (code, reason) = live.closed().await.unwrap();
        assert_eq!(code, 1007);
        assert!(reason.contains(expected), "{reason}");
    }
    let mut live = ready(&mock, &[]).await;
    live.send(Message::Text("not json".into())).await;
    let (code, reason) = live.closed().await.unwrap();
    assert_eq!(code, 1007);
    assert!(
        reason.starts_with("Invalid JSON payload received."),
        "{reason}"
    );
    mock.stop().await;
}

#[actix_rt::test]
async fn exhausted_quotas_close_with_1011_instead_of_setup_complete() {
    let mock = MockGemini::start(MockConfig {
        exhausted_keys: ["spent".to_owned()].into(),
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let quota = "You exceeded your current quota, please check your plan and billing \
                 details. For more information on this error, head to: h";
    let mut live = LiveClient::connect(&url(&mock, "v1"), &[("x-goog-api-key", "spent")]).await;
    live.send_json(&json!({"setup": {"model": MODEL}})).await;
    assert_eq!(live.closed().await, Some((1011, quota.to_owned())));

    let mut live = open(&mock, &[("x-mock-live-fault", "quota")]).await;
    live.send_json(&json!({"setup": {"model": MODEL}})).await;
    assert_eq!(live.closed().await, Some((1011, quota.to_owned())));

    let mut live = ready(&mock, &[("x-mock-live-fault", "quota-mid-session")]).await;
    live.say("hi there").await;
    assert_eq!(text_of(&live.next_json().await), "echo");
    assert_eq!(live.closed().await, Some((1011, quota.to_owned())));
    mock.stop().await;
}

#[actix_rt::test]
async fn goaway_follows_setup_complete_and_the_session_goes_on() {
    let mock = MockGemini::start(MockConfig {
        live_fault: Some(LiveFault::GoAway),
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let mut live = ready(&mock, &[]).await;
    assert_eq!(
        live.next_json().await,
        json!({"goAway": {"timeLeft": "10s"}})
    );
    live.say("still here").await;
    check_turn(&live.turn().await, "echo: still here");

    let mut plain = ready(&mock, &[("x-mock-live-fault", "none")]).await;
    plain.say("x").await;
    check_turn(&plain.turn().await, "echo: x");
    mock.stop().await;
}

#[actix_rt::test]
async fn close_mid_session_sends_one_piece_then_closes_with_1011() {
    let mock = start().await;
    let mut live = ready(&mock, &[("x-mock-live-fault", "close-mid-session")]).await;
    live.say("one two three").await;
    assert_eq!(text_of(&live.next_json().await), "echo: ");
    assert_eq!(
        live.closed().await,
        Some((1011, "Internal error encountered.".to_owned()))
    );
    reply_close(&mut live, 1011).await;
    assert_eq!(live.next().await, None);
    eventually("the session over", || mock.live_sessions_open() == 0).await;
    let session = &mock.live_sessions()[0];
    assert_eq!(
        session.mock_close,
        Some((1011, "Internal error encountered.".to_owned()))
    );
    assert_eq!(session.client_close, Some((1011, String::new())));
    assert!(!session.open);
    mock.stop().await;
}

#[actix_rt::test]
async fn silent_sessions_answer_nothing_but_pings() {
    let mock = start().await;
    let mut silent = open(&mock, &[("x-mock-live-fault", "silence")]).await;
    silent.send_json(&json!({"setup": {"model": MODEL}})).await;
    assert_eq!(silent.next_within(Duration::from_millis(300)).await, None);
    silent
        .send(Message::Ping(Bytes::from_static(b"still?")))
        .await;
    assert_eq!(
        silent.next().await,
        Some(LiveFrame::Pong(Bytes::from_static(b"still?")))
    );

    let mut mute = ready(&mock, &[("x-mock-live-fault", "no-answer")]).await;
    mute.say("anyone?").await;
    assert_eq!(mute.next_within(Duration::from_millis(300)).await, None);
    assert_eq!(mock.live_sessions_open(), 2);
    drop(silent);
    drop(mute);
    eventually("both sessions over", || mock.live_sessions_open() == 0).await;
    mock.stop().await;
}

#[actix_rt::test]
async fn the_binary_knob_sends_every_message_in_binary_frames() {
    let mock = MockGemini::start(MockConfig {
        live_binary: true,
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let mut live = open(&mock, &[]).await;
    live.send(Message::Binary(Bytes::from(
        json!({"setup": {"model": MODEL}}).to_string(),
    )))
    .await;
    assert_eq!(
        live.next().await,
        Some(LiveFrame::Binary(Bytes::from_static(
            b"{\n  \"setupComplete\": {}\n}\n"
        )))
    );
    live.say("bin").await;
    for _ in 0..5 {
        assert!(matches!(live.next().await, Some(LiveFrame::Binary(_))));
    }
    assert!(mock.live_sessions()[0].messages[0].binary);

    let mut text = open(&mock, &[("x-mock-live-binary", "0")]).await;
    text.send_json(&json!({"setup": {"model": MODEL}})).await;
    assert!(matches!(text.next().await, Some(LiveFrame::Text(_))));
    mock.stop().await;
}

#[actix_rt::test]
async fn pings_get_pongs_and_a_close_is_echoed() {
    let mock = start().await;
    let mut live = ready(&mock, &[]).await;
    live.send(Message::Ping(Bytes::from_static(b"are you there")))
        .await;
    assert_eq!(
        live.next().await,
        Some(LiveFrame::Pong(Bytes::from_static(b"are you there")))
    );
    assert_eq!(mock.live_sessions_open(), 1);
    live.send(Message::Close(Some(CloseReason {
        code: CloseCode::Normal,
        description: Some("bye".to_owned()),
    })))
    .await;
    assert_eq!(
        live.next().await,
        Some(LiveFrame::Close(Some((1000, String::new()))))
    );
    assert_eq!(live.next().await, None);
    eventually("the session over", || mock.live_sessions_open() == 0).await;
    assert_eq!(mock.live_closes(), [(1000, "bye".to_owned())]);

    let mut bare = ready(&mock, &[]).await;
    bare.send(Message::Close(None)).await;
    assert_eq!(bare.next().await, Some(LiveFrame::Close(None)));
    eventually("the second close", || mock.live_closes().len() == 2).await;
    assert_eq!(mock.live_closes()[1], (1005, String::new()));
    mock.stop().await;
}

#[actix_rt::test]
async fn the_trigger_word_calls_the_declared_function_and_waits_for_its_answer() {
    let mock = start().await;
    let mut live = open(&mock, &[]).await;
    let setup = json!({"setup": {"model": MODEL, "tools": [{"functionDeclarations": [
        {"name": "get_weather", "description": "The weather in a city"}
    ]}]}});
    live.send_json(&setup).await;
    assert_eq!(live.next_json().await, json!({"setupComplete": {}}));
    live.say("What is the Weather in Paris?").await;
    let call = live.next_json().await;
    assert_eq!(
        call,
        json!({"toolCall": {"functionCalls": [{
            "id": "function-call-1",
            "name": "get_weather",
            "args": {"prompt": "What is the Weather in Paris?"}
        }]}})
    );
    assert_eq!(live.next_within(Duration::from_millis(200)).await, None);
    live.send_json(&json!({"tool_response": {"function_responses": [
        {"id": "function-call-1", "name": "get_weather", "response": {"sky": "clear"}}
    ]}}))
    .await;
    check_turn(
        &live.turn().await,
        "echo: What is the Weather in Paris? [get_weather: {\"sky\":\"clear\"}]",
    );

    let mut no_tools = ready(&mock, &[]).await;
    no_tools.say("weather?").await;
    check_turn(&no_tools.turn().await, "echo: weather?");
    mock.stop().await;
}

#[actix_rt::test]
async fn turns_can_be_many_large_messages_with_a_delay_between_them() {
    let mock = start().await;
    let knobs = [
        ("x-mock-live-chunks", "40"),
        ("x-mock-live-chunk-bytes", "1000"),
        ("x-mock-live-delay-ms", "5"),
    ];
    let mut live = ready(&mock, &knobs).await;
    let started = Instant::now();
    live.say("big").await;
    let messages = live.turn().await;
    assert!(started.elapsed() >= Duration::from_millis(5 * 41));
    assert_eq!(messages.len(), 42);
    let pieces = &messages[..40];
    assert!(pieces.iter().all(|m| text_of(m).len() == 1000));
    assert!(text_of(&pieces[0]).starts_with("echo: big lorem ipsum"));
    let usage = &messages[41]["usageMetadata"];
    assert!(usage["responseTokenCount"].as_u64().unwrap() > 40 * 100);
    mock.stop().await;
}

#[actix_rt::test]
async fn a_client_that_stops_reading_still_ends_its_session_by_leaving() {
    let mock = MockGemini::start(MockConfig {
        live_chunks: 5000,
        live_chunk_bytes: Some(16 * 1024),
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let mut live = ready(&mock, &[]).await;
    live.say("flood").await;
    assert!(text_of(&live.next_json().await).starts_with("echo: flood"));
    actix_rt::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(mock.live_sessions_open(), 1);
    drop(live);
    eventually("the flooding session over", || {
        mock.live_sessions_open() == 0
    })
    .await;
    mock.stop().await;
}

#[actix_rt::test]
async fn control_routes_set_the_live_knobs_and_show_the_sessions() {
    let mock = start().await;
    let patch = r#"{"live_binary": true, "live_fault": "goaway", "live_chunks": 2,
        "live_chunk_bytes": null, "live_delay_ms": 0}"#;
    let r = call(&mock, "POST", "/__mock/config", &[], Some(patch)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["live_fault"], "goaway");
    let bad = call(
        &mock,
        "POST",
        "/__mock/config",
        &[],
        Some(r#"{"live_fault": "nope"}"#),
    )
    .await;
    assert_eq!(bad.status, 400);

    let mut live = ready(&mock, &[]).await;
    assert!(live.next_json().await.get("goAway").is_some());
    live.say("two pieces").await;
    assert_eq!(live.turn().await.len(), 4);

    let stats = call(&mock, "GET", "/__mock/stats", &[], None).await.json();
    assert_eq!(stats["live_sessions_open"], 1);
    assert_eq!(stats["live_sessions_opened"], 1);
    let view = call(&mock, "GET", "/__mock/live", &[], None).await.json();
    let session = &view["sessions"][0];
    assert_eq!(session["open"], true);
    assert_eq!(session["messages"].as_array().unwrap().len(), 2);
    assert_eq!(session["messages"][1]["binary"], false);
    assert!(session["messages"][1]["data"]
        .as_str()
        .unwrap()
        .contains("two pieces"));

    mock.reset();
    assert_eq!(mock.live_sessions_opened(), 0);
    assert!(mock.live_sessions().is_empty());
    assert_eq!(mock.live_sessions_open(), 1);
    mock.stop().await;
}

#[actix_rt::test]
async fn unknown_live_paths_get_the_html_404() {
    let mock = start().await;
    let r = call(
        &mock,
        "GET",
        "/ws/google.ai.generativelanguage.v2.GenerativeService.BidiGenerateContent",
        &[KEY],
        None,
    )
    .await;
    assert_eq!(r.status, 404);
    assert!(r.text().contains("<title>Error 404 (Not Found)!!1</title>"));
    let post = call(&mock, "POST", &live_path("v1beta"), &[KEY], Some("{}")).await;
    assert_eq!(post.status, 404);
    assert_eq!(mock.request_count(), 2);
    mock.stop().await;
}
