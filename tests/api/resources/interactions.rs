//! Interactions: a conversation continues on the key that holds it, for the
//! client that started it only; tokens in `usage` are counted.

use super::*;
use serde_json::json;

const CREATE: &str = "/v1beta/interactions";

async fn create(app: &TestApp, client: &str, body: serde_json::Value) -> TestResponse {
    call(app, client, Method::POST, CREATE, body.to_string()).await
}

fn key_of(app: &TestApp, id: &str) -> String {
    app.mock
        .interactions()
        .into_iter()
        .find(|i| i.id == id)
        .map(|i| i.key)
        .unwrap_or_else(|| panic!("the mock holds no interaction {id}"))
}

/// Starts a background interaction on Flash for `client`: its id, and the answer.
async fn background(app: &TestApp, client: &str, input: &str) -> (String, TestResponse) {
    let made = create(
        app,
        client,
        json!({"model": "gemini-2.5-flash", "input": input, "background": true}),
    )
    .await;
    assert_eq!(made.status, 200, "{}", made.text());
    let id = made.json()["id"].as_str().unwrap().to_owned();
    (id, made)
}

#[actix_rt::test]
async fn a_conversation_continues_on_the_key_that_holds_it() {
    let app = spawn_resources(&[]).await;
    // Several conversations, so the round robin would spread them over the keys.
    for n in 0..3 {
        let first = create(
            &app,
            A,
            json!({"model": "gemini-2.5-flash", "input": format!("hello {n}")}),
        )
        .await;
        assert_eq!(first.status, 200, "{}", first.text());
        let id = first.json()["id"].as_str().unwrap().to_owned();
        let key = key_of(&app, &id);
        let mut previous = id;
        for turn in 2..=3 {
            let next = create(
                &app,
                A,
                json!({"model": "gemini-2.5-flash", "input": "and then?", "previous_interaction_id": previous}),
            )
            .await;
            assert_eq!(next.status, 200, "turn {turn}: {}", next.text());
            let body = next.json();
            let text = body["steps"][0]["content"][0]["text"]
                .as_str()
                .unwrap_or_default();
            assert!(
                text.contains(&format!("(turn {turn})")),
                "the mock saw the history: {body}"
            );
            previous = body["id"].as_str().unwrap().to_owned();
            assert_eq!(
                key_of(&app, &previous),
                key,
                "turn {turn} went out with the conversation's key"
            );
        }
        let get = call(
            &app,
            A,
            Method::GET,
            &format!("/v1beta/interactions/{previous}?stream=false"),
            "",
        )
        .await;
        assert_eq!(get.status, 200, "{}", get.text());
        assert_calls_on_key(&app, &previous, &key);
    }
}

#[actix_rt::test]
async fn another_client_cannot_see_continue_cancel_or_delete_an_interaction() {
    let app = spawn_resources(&[]).await;
    let (id, _) = background(&app, A, "secret plans").await;
    let before = app.mock.request_count();
    let path = format!("/v1beta/interactions/{id}");
    for (what, response) in [
        ("get", call(&app, B, Method::GET, &path, "").await),
        ("streamed get", call(&app, B, Method::GET, &format!("{path}?stream=true&last_event_id=1"), "").await),
        ("cancel", call(&app, B, Method::POST, &format!("{path}/cancel"), "").await),
        ("delete", call(&app, B, Method::DELETE, &path, "").await),
        (
            "continue",
            create(&app, B, json!({"model": "gemini-2.5-flash", "input": "tell me", "previous_interaction_id": id})).await,
        ),
        (
            // A JSON escape spells the field name: Gemini would read it.
            "continue, the field name escaped",
            call(
                &app,
                B,
                Method::POST,
                CREATE,
                format!(r#"{{"model":"gemini-2.5-flash","input":"tell me","previous\u005finteraction_id":"{id}"}}"#),
            )
            .await,
        ),
        (
            "continue, camelCase",
            create(&app, B, json!({"model": "gemini-2.5-flash", "input": "x", "previousInteractionId": id})).await,
        ),
    ] {
        assert_not_found(what, &response);
    }
    assert_eq!(
        app.mock.request_count(),
        before,
        "none of B's calls reached Gemini"
    );
    // A still can: cancel its running background interaction.
    let cancelled = call(&app, A, Method::POST, &format!("{path}/cancel"), "").await;
    assert_eq!(cancelled.status, 200, "{}", cancelled.text());
}

#[actix_rt::test]
async fn a_streamed_interaction_is_recorded_from_its_first_event() {
    let app = spawn_resources(&[]).await;
    let streamed = create(
        &app,
        A,
        json!({"model": "gemini-2.5-flash", "input": "stream me", "stream": true}),
    )
    .await;
    assert_eq!(streamed.status, 200, "{}", streamed.text());
    assert!(streamed
        .header("content-type")
        .unwrap_or_default()
        .starts_with("text/event-stream"));
    let text = streamed.text();
    let created = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        .find(|e| e["event_type"] == "interaction.created")
        .expect("an interaction.created event");
    let id = created["interaction"]["id"]
        .as_str()
        .expect("the event names the id")
        .to_owned();
    assert!(text.contains("interaction.completed"), "{text}");
    // The record is written beside the stream; give it a moment.
    let key = key_of(&app, &id);
    let path = format!("/v1beta/interactions/{id}");
    let mut got = call(&app, A, Method::GET, &path, "").await;
    for _ in 0..20 {
        if got.status == 200 {
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(50)).await;
        got = call(&app, A, Method::GET, &path, "").await;
    }
    assert_eq!(got.status, 200, "{}", got.text());
    assert_calls_on_key(&app, &id, &key);
    assert_not_found("B's get", &call(&app, B, Method::GET, &path, "").await);
    // A resumed event stream of the finished interaction, on its key.
    let resumed = call(
        &app,
        A,
        Method::GET,
        &format!("{path}?stream=true&last_event_id=1"),
        "",
    )
    .await;
    assert_eq!(resumed.status, 200, "{}", resumed.text());
    assert!(resumed.text().contains("interaction.completed"));
}

#[actix_rt::test]
async fn a_background_interaction_is_polled_to_completion_and_deleted() {
    let app = spawn_resources(&[]).await;
    let (id, made) = background(&app, A, "research").await;
    let path = format!("/v1beta/interactions/{id}");
    let mut status = made.json()["status"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    for _ in 0..50 {
        if status == "completed" {
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(50)).await;
        let got = call(&app, A, Method::GET, &path, "").await;
        assert_eq!(got.status, 200, "{}", got.text());
        status = got.json()["status"].as_str().unwrap_or_default().to_owned();
    }
    assert_eq!(status, "completed");
    let deleted = call(&app, A, Method::DELETE, &path, "").await;
    assert_eq!(
        deleted.status,
        200,
        "the SDKs accept only 200: {}",
        deleted.text()
    );
    // Forgotten with it: the service answers without asking Gemini.
    let before = app.mock.request_count();
    assert_not_found(
        "a deleted interaction",
        &call(&app, A, Method::GET, &path, "").await,
    );
    assert_eq!(app.mock.request_count(), before);
    let key = key_of(&app, &id);
    assert_calls_on_key(&app, &id, &key);
}

#[actix_rt::test]
async fn an_interactions_tokens_are_counted_for_its_client() {
    let app = spawn_resources(&[]).await;
    let made = create(
        &app,
        A,
        json!({"model": "gemini-2.5-flash", "input": "count me"}),
    )
    .await;
    assert_eq!(made.status, 200, "{}", made.text());
    let total = made.json()["usage"]["total_tokens"].as_f64().unwrap();
    let streamed = create(
        &app,
        A,
        json!({"model": "gemini-2.5-flash", "input": "count me too", "stream": true}),
    )
    .await;
    assert_eq!(streamed.status, 200);
    let streamed_total: f64 = app
        .mock
        .interactions()
        .iter()
        .filter(|i| !i.background && i.id != made.json()["id"].as_str().unwrap())
        .map(|i| f64::from(i.total_tokens))
        .sum();
    let metrics = app.metrics().await;
    let counted = flash_tokens_of_a(&metrics);
    assert!(total > 0.0 && streamed_total > 0.0);
    assert_eq!(counted, total + streamed_total, "{metrics}");
}

#[actix_rt::test]
async fn an_interaction_with_a_model_outside_the_allow_list_is_refused() {
    let keys = keys_file(
        "interactions-allow",
        &format!("[[client]]\nname = \"narrow\"\nkey = \"{A}\"\nmodels = [\"gemini-2.5-flash\"]\n"),
    );
    let app = spawn_resources(&[("KEYS_FILE", &keys)]).await;
    let refused = create(&app, A, json!({"model": "gemini-2.5-pro", "input": "x"})).await;
    assert_eq!(refused.status, 403, "{}", refused.text());
    assert_eq!(code_of(&refused).as_deref(), Some("MODEL_NOT_ALLOWED"));
    let agent = create(
        &app,
        A,
        json!({"agent": "deep-research-pro-preview-12-2025", "input": "x", "background": true}),
    )
    .await;
    assert_eq!(
        code_of(&agent).as_deref(),
        Some("MODEL_NOT_ALLOWED"),
        "{}",
        agent.text()
    );
    let allowed = create(
        &app,
        A,
        json!({"model": "models/gemini-2.5-flash", "input": "x"}),
    )
    .await;
    assert_eq!(allowed.status, 200, "{}", allowed.text());
}

#[actix_rt::test]
async fn a_background_runs_tokens_are_charged_once_when_a_poll_sees_it_end() {
    let app = spawn_resources(&[]).await;
    let (id, _) = background(&app, A, "long research task").await;
    assert_eq!(
        flash_tokens_of_a(&app.metrics().await),
        0.0,
        "nothing spent yet"
    );
    let path = format!("/v1beta/interactions/{id}");
    let mut total = 0.0;
    for _ in 0..50 {
        let got = call(&app, A, Method::GET, &path, "").await;
        assert_eq!(got.status, 200, "{}", got.text());
        if got.json()["status"] == "completed" {
            total = got.json()["usage"]["total_tokens"].as_f64().unwrap();
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(total > 0.0);
    assert_eq!(flash_tokens_of_a(&app.metrics().await), total);
    // Polled again: counted once.
    let again = call(&app, A, Method::GET, &path, "").await;
    assert_eq!(again.status, 200);
    assert_eq!(flash_tokens_of_a(&app.metrics().await), total);
}

#[actix_rt::test]
async fn a_background_run_read_only_as_a_stream_is_charged_once() {
    let app = spawn_resources(&[]).await;
    let (id, _) = background(&app, A, "long research task").await;
    actix_rt::time::sleep(Duration::from_millis(600)).await;
    let path = format!("/v1beta/interactions/{id}?stream=true");
    let streamed = call(&app, A, Method::GET, &path, "").await;
    assert_eq!(streamed.status, 200, "{}", streamed.text());
    assert!(
        streamed.text().contains("interaction.completed"),
        "{}",
        streamed.text()
    );
    let spent = f64::from(key_of_record(&app, &id));
    assert!(spent > 0.0);
    assert_eq!(flash_tokens_of_a(&app.metrics().await), spent);
    // Read again, streamed or polled: not charged twice.
    assert_eq!(call(&app, A, Method::GET, &path, "").await.status, 200);
    assert_eq!(
        call(
            &app,
            A,
            Method::GET,
            &format!("/v1beta/interactions/{id}"),
            ""
        )
        .await
        .status,
        200
    );
    assert_eq!(flash_tokens_of_a(&app.metrics().await), spent);
}

fn key_of_record(app: &TestApp, id: &str) -> u32 {
    app.mock
        .interactions()
        .into_iter()
        .find(|i| i.id == id)
        .map(|i| i.total_tokens)
        .unwrap_or_default()
}

/// Client `a`'s tokens on gemini-2.5-flash, all kinds, as `/metrics` counts them.
fn flash_tokens_of_a(metrics: &str) -> f64 {
    ["prompt", "response", "thoughts"]
        .iter()
        .filter_map(|kind| {
            metric_value(
                metrics,
                &format!(
                    "gemini_proxy_tokens_total{{client=\"a\",kind=\"{kind}\",model=\"gemini-2.5-flash\"}}"
                ),
            )
        })
        .sum()
}
