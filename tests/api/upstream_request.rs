//! What Gemini receives for a `POST /gemini-proxy` (docs/api.md#post-gemini-proxy): the
//! path built from a validated model id, the key only in `x-goog-api-key`, nothing of
//! the client's own headers, and exactly the documented body.

use crate::helpers::*;
use awc::http::Method;
use gemini_mock::RecordedRequest;
use serde_json::{json, Value};

/// A client's own Gemini key, sent as `api_key`.
const OWN_KEY: &str = "AIzaClientOwnKey0123456789abcdefghijklm";

/// The one request the mock received.
fn only_request(app: &TestApp) -> RecordedRequest {
    let mut sent = app.upstream_requests();
    assert_eq!(sent.len(), 1, "{sent:#?}");
    sent.remove(0)
}

fn body_of(request: &RecordedRequest) -> Value {
    request
        .json()
        .unwrap_or_else(|| panic!("not JSON: {:?}", request.body))
}

#[actix_rt::test]
async fn sends_a_default_request_to_the_default_model_with_the_server_key() {
    let app = spawn_app().await;
    let prompt = "Say \"hi\" — 日本語\nand a tab\t";
    let response = app
        .request(
            Method::POST,
            "/gemini-proxy",
            &[
                ("X-API-KEY", CLIENT_KEY),
                ("Content-Type", "application/json"),
                ("Authorization", "Bearer client-bearer-token"),
                ("Cookie", "session=client-cookie"),
            ],
            json!({"prompt": prompt}).to_string(),
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.text());

    let sent = only_request(&app);
    assert_eq!(sent.method, "POST");
    assert_eq!(
        sent.path_and_query, "/v1beta/models/gemini-2.5-flash:generateContent",
        "no query at all, so no `key=`"
    );
    assert_eq!(sent.header("x-goog-api-key"), Some(SERVER_KEY));
    assert_eq!(
        sent.header("authorization"),
        None,
        "the client's Authorization"
    );
    assert_eq!(sent.header("cookie"), None, "the client's cookie");
    assert_eq!(sent.header("x-api-key"), None, "the client's own key");
    assert!(
        sent.header("content-type")
            .is_some_and(|t| t.starts_with("application/json")),
        "{:?}",
        sent.header("content-type")
    );
    assert_eq!(
        body_of(&sent),
        json!({"contents": [{"role": "user", "parts": [{"text": prompt}]}]})
    );
}

#[actix_rt::test]
async fn adds_the_system_instruction_and_passes_the_generation_config_unchanged() {
    let app = spawn_app().await;
    let config = json!({
        "temperature": 0.25,
        "maxOutputTokens": 64,
        "stopSequences": ["END", "STOP"],
        "thinkingConfig": {"thinkingBudget": 0, "includeThoughts": false},
        "responseMimeType": "application/json",
        "seed": -7,
        "futureField": {"nested": [1, null, true]}
    });
    let response = app
        .proxy(&json!({
            "prompt": "hello",
            "system_instruction": "Answer in French.",
            "generation_config": config,
        }))
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(
        body_of(&only_request(&app)),
        json!({
            "contents": [{"role": "user", "parts": [{"text": "hello"}]}],
            "systemInstruction": {"parts": [{"text": "Answer in French."}]},
            "generationConfig": config,
        })
    );
}

#[actix_rt::test]
async fn leaves_out_optional_fields_sent_as_null() {
    let app = spawn_app().await;
    let response = app
        .proxy(&json!({
            "prompt": "hello",
            "system_instruction": null,
            "generation_config": null,
            "model": null,
            "api_key": null,
        }))
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    let sent = only_request(&app);
    assert_eq!(sent.header("x-goog-api-key"), Some(SERVER_KEY));
    assert_eq!(
        body_of(&sent),
        json!({"contents": [{"role": "user", "parts": [{"text": "hello"}]}]})
    );
}

#[actix_rt::test]
async fn sends_a_clients_own_model_with_its_own_key() {
    let app = spawn_app().await;
    let response = app
        .proxy(&json!({"prompt": "hello", "model": "models/gemini-2.5-pro", "api_key": OWN_KEY}))
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.json()["data"]["model"], "gemini-2.5-pro");

    let sent = only_request(&app);
    assert_eq!(
        sent.path_and_query,
        "/v1beta/models/gemini-2.5-pro:generateContent"
    );
    assert_eq!(sent.header("x-goog-api-key"), Some(OWN_KEY));
    assert_eq!(
        sent.headers
            .iter()
            .filter(|(name, _)| name == "x-goog-api-key")
            .count(),
        1,
        "exactly one key header"
    );
}

#[actix_rt::test]
async fn sends_a_tuned_model_to_the_tuned_models_collection() {
    let app = spawn_app().await;
    let response = app
        .proxy(&json!({"prompt": "hello", "model": "tunedModels/my-model", "api_key": OWN_KEY}))
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.json()["data"]["model"], "tunedModels/my-model");
    assert_eq!(
        only_request(&app).path_and_query,
        "/v1beta/tunedModels/my-model:generateContent"
    );
}

#[actix_rt::test]
async fn honours_the_default_model_setting() {
    let app = spawn_app_with(|s| {
        s.insert("DEFAULT_MODEL".into(), "models/gemini-2.5-pro".into());
    })
    .await;
    let response = app.proxy(&json!({"prompt": "hello"})).await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.json()["data"]["model"], "gemini-2.5-pro");
    let sent = only_request(&app);
    assert_eq!(
        sent.path_and_query,
        "/v1beta/models/gemini-2.5-pro:generateContent"
    );
    assert_eq!(sent.header("x-goog-api-key"), Some(SERVER_KEY));
}

#[actix_rt::test]
async fn sends_a_mock_default_model_upstream_unchanged() {
    // DEFAULT_MODEL reaches the path unchanged, so a `mock-*` default picks the scenario.
    let app = spawn_app_with(|s| {
        s.insert("DEFAULT_MODEL".into(), "mock-404".into());
    })
    .await;
    let response = app.proxy(&json!({"prompt": "hello"})).await;
    assert_eq!(response.status, 404, "{}", response.text());
    assert_eq!(response.error_code(), "MODEL_NOT_FOUND");
    assert_eq!(
        only_request(&app).path_and_query,
        "/v1beta/models/mock-404:generateContent"
    );
}
