//! `POST /gemini-proxy`: the success path and what reaches Gemini.

use crate::helpers::*;
use serde_json::json;

#[actix_rt::test]
async fn answers_a_prompt_in_the_success_envelope() {
    let app = spawn_app().await;
    let response = app
        .proxy(&json!({"prompt": "What is the capital of France?"}))
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    let body = response.json();
    assert_eq!(body["result"], "OK");
    let data = &body["data"];
    assert_eq!(data["response"], "echo: What is the capital of France?");
    assert_eq!(data["model"], "gemini-2.5-flash");
    assert_eq!(data["finish_reason"], "STOP");
    assert!(data["time"].is_u64(), "{data}");
    let usage = &data["usage"];
    let (p, r, t) = (
        usage["prompt_tokens"].as_u64().unwrap(),
        usage["response_tokens"].as_u64().unwrap(),
        usage["total_tokens"].as_u64().unwrap(),
    );
    assert!(p > 0 && r > 0 && t == p + r, "{usage}");
    assert_eq!(
        data.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["finish_reason", "model", "response", "time", "usage"]
    );
}

#[actix_rt::test]
async fn dedicated_upstream_actors_serve_both_surfaces_too() {
    // The default gives each worker its own upstream actor; UPSTREAM_ACTORS
    // puts them on threads of their own instead, used in turn.
    let app = spawn_app_with(|s| {
        s.insert("UPSTREAM_ACTORS".into(), "2".into());
    })
    .await;
    for prompt in ["first", "second", "third"] {
        let response = app.proxy(&json!({ "prompt": prompt })).await;
        assert_eq!(response.status, 200, "{}", response.text());
        assert_eq!(
            response.json()["data"]["response"],
            format!("echo: {prompt}")
        );
    }
    let native = app
        .request(
            awc::http::Method::POST,
            "/v1beta/models/gemini-2.5-flash:generateContent",
            &[
                ("x-goog-api-key", CLIENT_KEY),
                ("Content-Type", "application/json"),
            ],
            r#"{"contents":[{"parts":[{"text":"hi"}]}]}"#,
        )
        .await;
    assert_eq!(native.status, 200, "{}", native.text());
    assert_eq!(app.upstream_requests().len(), 4);
}
