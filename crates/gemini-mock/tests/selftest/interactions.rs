//! The Interactions API: create, continuation within a project only, `store: false`,
//! streamed events and their order, background runs polled and streamed (and resumed
//! with `last_event_id`), cancel and delete.

use std::time::{Duration, Instant};

use gemini_mock::{MockConfig, MockGemini};
use serde_json::{json, Value};

use crate::helpers::{call, sse_events, Resp};

const CREATE: &str = "/v1/interactions";
const NOT_FOUND: &str = r#"{
  "error": {
    "code": 404,
    "message": "Requested entity was not found.",
    "status": "NOT_FOUND"
  }
}
"#;

/// Keys `a` and `b` share project `p1`; any other key is a project of its own.
async fn start(delay: Duration) -> MockGemini {
    let mut config = MockConfig {
        interaction_delay: delay,
        ..MockConfig::default()
    };
    config.projects.insert("a".into(), "p1".into());
    config.projects.insert("b".into(), "p1".into());
    MockGemini::start(config).await.unwrap()
}

async fn post(mock: &MockGemini, key: &str, body: Value) -> Resp {
    let key = [
        ("x-goog-api-key", key),
        ("content-type", "application/json"),
    ];
    call(mock, "POST", CREATE, &key, Some(&body.to_string())).await
}

async fn create(mock: &MockGemini, key: &str, body: Value) -> Value {
    let r = post(mock, key, body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

async fn get(mock: &MockGemini, key: &str, id: &str, query: &str) -> Resp {
    let path = format!("/v1/interactions/{id}{query}");
    call(mock, "GET", &path, &[("x-goog-api-key", key)], None).await
}

fn text_of(interaction: &Value) -> &str {
    interaction["steps"][0]["content"][0]["text"]
        .as_str()
        .unwrap()
}

fn event_types(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect()
}

#[actix_rt::test]
async fn an_interaction_echoes_its_input_and_reports_usage() {
    let mock = start(Duration::ZERO).await;
    for version in ["v1", "v1beta", "v1alpha"] {
        let path = format!("/{version}/interactions");
        let body = json!({"model": "gemini-2.5-flash", "input": "hello there"}).to_string();
        let r = call(
            &mock,
            "POST",
            &path,
            &[("x-goog-api-key", "a")],
            Some(&body),
        )
        .await;
        assert_eq!(r.status, 200, "{version}: {}", r.text());
        assert_eq!(
            r.header("content-type"),
            Some("application/json; charset=UTF-8")
        );
        let i = r.json();
        assert!(i["id"].as_str().unwrap().starts_with("v1_"), "{i}");
        assert_eq!(i["object"], "interaction");
        assert_eq!(i["model"], "gemini-2.5-flash");
        assert_eq!(i["status"], "completed");
        assert!(i["created"].as_str().unwrap().ends_with('Z'));
        assert_eq!(i["steps"][0]["type"], "model_output");
        assert_eq!(text_of(&i), "echo: hello there");
        assert_eq!(
            i["usage"],
            json!({"total_input_tokens": 2, "total_output_tokens": 3,
                   "total_thought_tokens": 0, "total_cached_tokens": 0,
                   "total_tool_use_tokens": 0, "total_tokens": 5})
        );
    }
    let blocks = json!({"model": "models/gemini-2.5-flash",
                        "input": [{"type": "text", "text": "from"}, {"type": "text", "text": "blocks"}],
                        "system_instruction": "be brief"});
    let i = create(&mock, "a", blocks).await;
    assert_eq!(text_of(&i), "echo: from blocks");
    assert_eq!(i["usage"]["total_input_tokens"], 4);
    mock.stop().await;
}

#[actix_rt::test]
async fn a_conversation_continues_in_its_project_only() {
    let mock = start(Duration::ZERO).await;
    let first = create(
        &mock,
        "a",
        json!({"model": "gemini-2.5-flash", "input": "hi"}),
    )
    .await;
    let id = first["id"].as_str().unwrap();
    let next =
        json!({"model": "gemini-2.5-flash", "input": "and then", "previous_interaction_id": id});
    // Another key of the same project may continue it.
    let second = create(&mock, "b", next.clone()).await;
    assert_eq!(text_of(&second), "echo: and then (turn 2)");
    assert_eq!(second["previous_interaction_id"], id);
    // The conversation so far (1 + 2 tokens) is read again as input.
    assert_eq!(second["usage"]["total_input_tokens"], 3 + 2);
    let third = json!({"model": "gemini-2.5-flash", "input": "last",
                       "previousInteractionId": second["id"]});
    assert_eq!(
        text_of(&create(&mock, "a", third).await),
        "echo: last (turn 3)"
    );

    let refused = post(&mock, "c", next).await;
    assert_eq!((refused.status, refused.text().as_str()), (404, NOT_FOUND));
    let missing =
        json!({"model": "gemini-2.5-flash", "input": "x", "previous_interaction_id": "v1_none"});
    assert_eq!(post(&mock, "a", missing).await.status, 404);

    let records = mock.interactions();
    assert_eq!(records.len(), 3, "the refused ones were not made");
    assert_eq!(records[1].key, "b");
    assert_eq!(records[1].project, "p1");
    assert_eq!(records[1].previous_interaction_id.as_deref(), Some(id));
    assert_eq!(records[2].turn, 3);
    mock.stop().await;
}

#[actix_rt::test]
async fn an_unstored_interaction_is_answered_but_never_found_again() {
    let mock = start(Duration::ZERO).await;
    let i = create(
        &mock,
        "a",
        json!({"model": "gemini-2.5-flash", "input": "x", "store": false}),
    )
    .await;
    let id = i["id"].as_str().unwrap();
    assert_eq!(i["status"], "completed");
    assert_eq!(get(&mock, "a", id, "").await.text(), NOT_FOUND);
    let next = json!({"model": "gemini-2.5-flash", "input": "y", "previous_interaction_id": id});
    assert_eq!(post(&mock, "a", next).await.status, 404);
    assert!(!mock.interactions()[0].stored);
    let background =
        json!({"model": "gemini-2.5-flash", "input": "y", "store": false, "background": true});
    assert_eq!(post(&mock, "a", background).await.status, 400);
    mock.stop().await;
}

#[actix_rt::test]
async fn a_streamed_interaction_sends_its_events_in_order() {
    let mock = start(Duration::ZERO).await;
    let body =
        json!({"model": "gemini-2.5-flash", "input": "stream me please now", "stream": true});
    let r = post(&mock, "a", body).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    let events = sse_events(&r.text(), "\n\n");
    assert_eq!(
        event_types(&events),
        [
            "interaction.created",
            "step.start",
            "step.delta",
            "step.delta",
            "step.delta",
            "step.stop",
            "interaction.completed"
        ]
    );
    let ids: Vec<&str> = events
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["1", "2", "3", "4", "5", "6", "7"]);
    let created = &events[0]["interaction"];
    assert_eq!(created["status"], "in_progress");
    assert_eq!(created["object"], "interaction");
    assert_eq!(events[1]["step"], json!({"type": "model_output"}));
    let text: String = events[2..5]
        .iter()
        .map(|e| {
            assert_eq!(e["index"], 0);
            assert_eq!(e["delta"]["type"], "text");
            e["delta"]["text"].as_str().unwrap()
        })
        .collect();
    assert_eq!(text, "echo: stream me please now");
    let completed = &events[6]["interaction"];
    assert_eq!(completed["status"], "completed");
    assert_eq!(completed["id"], created["id"]);
    assert_eq!(completed["usage"]["total_tokens"], 4 + 5);
    // Stored like any other: its object can be read back.
    let again = get(&mock, "a", created["id"].as_str().unwrap(), "?stream=false").await;
    assert_eq!(text_of(&again.json()), "echo: stream me please now");
    mock.stop().await;
}

#[actix_rt::test]
async fn a_background_interaction_completes_after_the_delay_and_its_stream_can_be_resumed() {
    let mock = start(Duration::from_millis(300)).await;
    let i = create(
        &mock,
        "a",
        json!({"model": "gemini-2.5-flash", "input": "slow job", "background": true}),
    )
    .await;
    assert_eq!(i["status"], "in_progress");
    assert!(i.get("steps").is_none() && i.get("usage").is_none(), "{i}");
    let id = i["id"].as_str().unwrap().to_owned();

    // A stream opened while it runs waits for the events.
    let started = Instant::now();
    let r = get(&mock, "b", &id, "?stream=true").await;
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "{:?}",
        started.elapsed()
    );
    let events = sse_events(&r.text(), "\n\n");
    assert_eq!(events.len(), 7);
    assert_eq!(events.last().unwrap()["interaction"]["status"], "completed");

    let done = get(&mock, "a", &id, "?stream=false").await.json();
    assert_eq!(done["status"], "completed");
    assert_eq!(text_of(&done), "echo: slow job");

    let resumed = get(&mock, "a", &id, "?stream=true&last_event_id=4").await;
    let rest = sse_events(&resumed.text(), "\n\n");
    assert_eq!(
        event_types(&rest),
        ["step.delta", "step.stop", "interaction.completed"]
    );
    assert_eq!(rest[0]["event_id"], "5");
    let bad = get(&mock, "a", &id, "?stream=true&last_event_id=x").await;
    assert_eq!(bad.status, 400);
    mock.stop().await;
}

#[actix_rt::test]
async fn only_a_running_background_interaction_can_be_cancelled_and_delete_forgets() {
    let mock = start(Duration::from_secs(60)).await;
    let bg = create(
        &mock,
        "a",
        json!({"model": "gemini-2.5-flash", "input": "x", "background": true}),
    )
    .await;
    let id = bg["id"].as_str().unwrap();
    let key = [("x-goog-api-key", "b")];
    let early = json!({"model": "gemini-2.5-flash", "input": "y", "previous_interaction_id": id});
    let r = post(&mock, "a", early).await;
    assert_eq!(
        r.status, 400,
        "a running interaction cannot be continued yet"
    );
    assert_eq!(r.json()["error"]["status"], "FAILED_PRECONDITION");
    let cancel = format!("/v1/interactions/{id}/cancel");
    let other = call(&mock, "POST", &cancel, &[("x-goog-api-key", "c")], None).await;
    assert_eq!((other.status, other.text().as_str()), (404, NOT_FOUND));
    let r = call(&mock, "POST", &cancel, &key, None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["status"], "cancelled");
    assert_eq!(get(&mock, "a", id, "").await.json()["status"], "cancelled");
    let events = sse_events(&get(&mock, "a", id, "?stream=true").await.text(), "\n\n");
    assert_eq!(
        event_types(&events),
        ["interaction.created", "interaction.status_update"]
    );
    assert_eq!(events[1]["status"], "cancelled");
    let again = call(&mock, "POST", &cancel, &key, None).await;
    assert_eq!(again.status, 400);
    assert_eq!(again.json()["error"]["status"], "FAILED_PRECONDITION");
    let fg = create(
        &mock,
        "a",
        json!({"model": "gemini-2.5-flash", "input": "x"}),
    )
    .await;
    let fg_cancel = format!("/v1/interactions/{}/cancel", fg["id"].as_str().unwrap());
    assert_eq!(
        call(&mock, "POST", &fg_cancel, &key, None).await.status,
        400
    );

    let path = format!("/v1/interactions/{id}");
    let theirs = call(&mock, "DELETE", &path, &[("x-goog-api-key", "c")], None).await;
    assert_eq!(theirs.status, 404);
    let r = call(&mock, "DELETE", &path, &key, None).await;
    assert_eq!((r.status, r.text().as_str()), (200, "{}\n"));
    assert_eq!(get(&mock, "a", id, "").await.status, 404);
    assert_eq!(call(&mock, "DELETE", &path, &key, None).await.status, 404);
    assert!(mock.interactions()[0].deleted);
    mock.stop().await;
}

#[actix_rt::test]
async fn models_agents_and_keys_are_checked() {
    let mock = start(Duration::ZERO).await;
    let unknown = post(&mock, "a", json!({"model": "nope-1", "input": "x"})).await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.json()["error"]["status"], "NOT_FOUND");
    let agent = "deep-research-pro-preview-12-2025";
    let foreground = post(&mock, "a", json!({"agent": agent, "input": "x"})).await;
    assert_eq!(foreground.status, 400);
    let research = create(
        &mock,
        "a",
        json!({"agent": agent, "input": "x", "background": true}),
    )
    .await;
    assert_eq!(research["agent"], agent);
    assert!(research.get("model").is_none());
    assert_eq!(
        post(
            &mock,
            "a",
            json!({"agent": "no-such-agent", "input": "x", "background": true})
        )
        .await
        .status,
        404
    );
    for body in [
        json!({"input": "x"}),
        json!({"model": "gemini-2.5-flash", "agent": agent, "input": "x"}),
        json!({"model": "gemini-2.5-flash"}),
    ] {
        assert_eq!(post(&mock, "a", body.clone()).await.status, 400, "{body}");
    }
    let anonymous = call(
        &mock,
        "POST",
        CREATE,
        &[],
        Some(r#"{"model":"gemini-2.5-flash","input":"x"}"#),
    )
    .await;
    assert_eq!(anonymous.status, 403);
    let bearer = call(
        &mock,
        "GET",
        "/v1/interactions/v1_x",
        &[("authorization", "Bearer t")],
        None,
    )
    .await;
    assert_eq!(bearer.status, 401);
    mock.stop().await;
}

#[actix_rt::test]
async fn the_control_route_lists_who_made_what() {
    let mock = start(Duration::ZERO).await;
    create(
        &mock,
        "a",
        json!({"model": "gemini-2.5-flash", "input": "x"}),
    )
    .await;
    let r = call(&mock, "GET", "/__mock/jobs", &[], None).await;
    assert_eq!(r.status, 200);
    let jobs = r.json();
    assert_eq!(jobs["batches"], json!([]));
    assert_eq!(jobs["interactions"][0]["key"], "a");
    assert_eq!(jobs["interactions"][0]["project"], "p1");
    assert_eq!(jobs["interactions"][0]["status"], "completed");
    assert_eq!(mock.request_count(), 1, "control calls are not counted");
    mock.stop().await;
}
