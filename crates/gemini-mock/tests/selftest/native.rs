//! The native routes on their normal path: bodies, auth order, models, validation.

use std::collections::HashSet;

use gemini_mock::{MockConfig, MockGemini};
use serde_json::json;

use crate::helpers::{call, generate, start, Resp, BODY, JSON_UTF8};

#[actix_rt::test]
async fn generate_content_echoes_the_last_user_text_in_upstreams_shape() {
    let mock = start().await;
    let r = generate(&mock, &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some(JSON_UTF8));
    assert!(
        r.text().starts_with("{\n  \"candidates\": [\n"),
        "{}",
        r.text()
    );
    assert!(r.text().ends_with("}\n"));
    let v = r.json();
    let cand = &v["candidates"][0];
    assert_eq!(
        cand["content"]["parts"][0]["text"],
        "echo: hello brave new world"
    );
    assert_eq!(cand["content"]["role"], "model");
    assert_eq!(cand["finishReason"], "STOP");
    assert_eq!(cand["index"], 0);
    let usage = &v["usageMetadata"];
    assert_eq!(usage["promptTokenCount"], 4);
    assert_eq!(usage["candidatesTokenCount"], 5);
    assert_eq!(usage["totalTokenCount"], 9);
    assert_eq!(v["modelVersion"], "gemini-2.5-flash");
    let id = v["responseId"].as_str().unwrap();
    assert!((20..=30).contains(&id.len()), "{id}");
    mock.stop().await;
}

#[actix_rt::test]
async fn auth_follows_upstreams_order() {
    let mock = start().await;
    let path = "/v1beta/models/gemini-2.5-flash:generateContent";
    let none = call(&mock, "POST", path, &[], Some(BODY)).await;
    assert_eq!(none.status, 403);
    assert!(none.json()["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("Method doesn't allow unregistered callers"));
    let bearer = [("authorization", "Bearer k"), ("x-goog-api-key", "k")];
    let r = call(&mock, "POST", path, &bearer, Some(BODY)).await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.json()["error"]["details"][0]["reason"],
        "ACCESS_TOKEN_TYPE_UNSUPPORTED"
    );
    let by_query = call(&mock, "POST", &format!("{path}?key=k"), &[], Some(BODY)).await;
    assert_eq!(by_query.status, 200);
    // Scenarios never mask auth failures.
    let masked = call(
        &mock,
        "POST",
        path,
        &[("x-mock-scenario", "503")],
        Some(BODY),
    )
    .await;
    assert_eq!(masked.status, 403);
    mock.stop().await;
}

#[actix_rt::test]
async fn accepted_keys_reject_others_with_the_exact_api_key_invalid_body() {
    let config = MockConfig {
        accepted_keys: Some(HashSet::from(["good".to_owned()])),
        ..MockConfig::default()
    };
    let mock = MockGemini::start(config).await.unwrap();
    let path = "/v1beta/models/gemini-2.5-flash:generateContent";
    let ok = call(
        &mock,
        "POST",
        path,
        &[("x-goog-api-key", "good")],
        Some(BODY),
    )
    .await;
    assert_eq!(ok.status, 200);
    let bad = call(
        &mock,
        "POST",
        path,
        &[("x-goog-api-key", "bad")],
        Some(BODY),
    )
    .await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.header("content-type"), Some(JSON_UTF8));
    let expected = r#"{
  "error": {
    "code": 400,
    "message": "API key not valid. Please pass a valid API key.",
    "status": "INVALID_ARGUMENT",
    "details": [
      {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": "API_KEY_INVALID",
        "domain": "googleapis.com",
        "metadata": {
          "service": "generativelanguage.googleapis.com"
        }
      },
      {
        "@type": "type.googleapis.com/google.rpc.LocalizedMessage",
        "locale": "en-US",
        "message": "API key not valid. Please pass a valid API key."
      }
    ]
  }
}
"#;
    assert_eq!(bad.text(), expected);
    mock.stop().await;
}

#[actix_rt::test]
async fn exhausted_keys_get_429_with_the_configured_retry_delay() {
    let mock = start().await;
    mock.update_config(|c| {
        c.exhausted_keys.insert("tired".to_owned());
        c.retry_delay = Some("1.5s".to_owned());
    });
    let path = "/v1/models/gemini-2.5-pro:generateContent";
    let r = call(
        &mock,
        "POST",
        path,
        &[("x-goog-api-key", "tired")],
        Some(BODY),
    )
    .await;
    assert_eq!(r.status, 429);
    let v = r.json();
    let details = v["error"]["details"].as_array().unwrap();
    let types: Vec<&str> = details
        .iter()
        .map(|d| d["@type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "type.googleapis.com/google.rpc.QuotaFailure",
            "type.googleapis.com/google.rpc.Help",
            "type.googleapis.com/google.rpc.RetryInfo"
        ]
    );
    assert_eq!(
        details[0]["violations"][0]["quotaDimensions"]["model"],
        "gemini-2.5-pro"
    );
    assert_eq!(details[2]["retryDelay"], "1.5s");
    mock.update_config(|c| c.retry_delay = None);
    let r = call(
        &mock,
        "POST",
        path,
        &[("x-goog-api-key", "tired")],
        Some(BODY),
    )
    .await;
    assert_eq!(r.json()["error"]["details"].as_array().unwrap().len(), 2);
    mock.stop().await;
}

#[actix_rt::test]
async fn models_are_checked_against_the_catalogue_and_version() {
    let mock = start().await;
    let key = [("x-goog-api-key", "k")];
    let r = call(
        &mock,
        "POST",
        "/v1/models/gpt-4o:generateContent",
        &key,
        Some(BODY),
    )
    .await;
    assert_eq!(r.status, 404);
    assert_eq!(
        r.json()["error"]["message"],
        "models/gpt-4o is not found for API version v1, or is not supported for generateContent. \
         Call ListModels to see the list of available models and their supported methods."
    );
    let latest = "/models/gemini-flash-latest:generateContent";
    let v1 = call(&mock, "POST", &format!("/v1{latest}"), &key, Some(BODY)).await;
    assert_eq!(v1.status, 404);
    let beta = call(&mock, "POST", &format!("/v1beta{latest}"), &key, Some(BODY)).await;
    assert_eq!(beta.status, 200);
    let tuned = call(
        &mock,
        "POST",
        "/v1beta/tunedModels/my-tune-1:generateContent",
        &key,
        Some(BODY),
    )
    .await;
    assert_eq!(tuned.status, 200);
    let unknown_route = call(&mock, "GET", "/v2/whatever", &key, None).await;
    assert_eq!(unknown_route.status, 404);
    assert!(unknown_route
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/html")));
    mock.stop().await;
}

#[actix_rt::test]
async fn bodies_are_validated_like_upstream() {
    let mock = start().await;
    let path = "/v1beta/models/gemini-2.5-flash:generateContent";
    let key = ("x-goog-api-key", "k");
    let message = |r: &Resp| r.json()["error"]["message"].as_str().unwrap().to_owned();
    let r = call(&mock, "POST", path, &[key], Some("{not json")).await;
    assert_eq!(
        (r.status, r.json()["error"]["status"].clone()),
        (400, json!("INVALID_ARGUMENT"))
    );
    let r = call(&mock, "POST", path, &[key], Some(r#"{"contents":[]}"#)).await;
    assert_eq!(
        message(&r),
        "* GenerateContentRequest.contents: contents is not specified\n"
    );
    let bad_role = r#"{"contents":[{"role":"system","parts":[{"text":"x"}]}]}"#;
    let r = call(&mock, "POST", path, &[key], Some(bad_role)).await;
    assert_eq!(message(&r), "Please use a valid role: user, model.");
    let snake = r#"{"contents":[{"parts":[{"text":"a b"}]}],"system_instruction":{"parts":[{"text":"c"}]},"generation_config":{"max_output_tokens":5}}"#;
    let r = call(&mock, "POST", path, &[key], Some(snake)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["usageMetadata"]["promptTokenCount"], 3);
    let r = call(
        &mock,
        "POST",
        path,
        &[key, ("x-server-timeout", "5")],
        Some(BODY),
    )
    .await;
    assert_eq!(
        message(&r),
        "Manually set deadline 5s is too short. Minimum allowed deadline is 10s."
    );
    mock.stop().await;
}

#[actix_rt::test]
async fn count_tokens_and_embeddings_answer_upstreams_shapes() {
    let mock = start().await;
    let key = [("x-goog-api-key", "k")];
    let r = call(
        &mock,
        "POST",
        "/v1beta/models/gemini-2.5-flash:countTokens",
        &key,
        Some(BODY),
    )
    .await;
    assert_eq!(r.json()["totalTokens"], 4);
    assert_eq!(r.json()["promptTokensDetails"][0]["tokenCount"], 4);
    let one = r#"{"content":{"parts":[{"text":"a"}]}}"#;
    let r = call(
        &mock,
        "POST",
        "/v1/models/gemini-embedding-001:embedContent",
        &key,
        Some(one),
    )
    .await;
    let single = r.json()["embedding"]["values"].clone();
    assert_eq!(single.as_array().unwrap().len(), 8);
    let batch = r#"{"requests":[{"model":"models/gemini-embedding-001","content":{"parts":[{"text":"a"}]}},
        {"model":"models/gemini-embedding-001","content":{"parts":[{"text":"b"}]}}]}"#;
    let path = "/v1/models/gemini-embedding-001:batchEmbedContents";
    let r = call(&mock, "POST", path, &key, Some(batch)).await;
    let embeddings = r.json()["embeddings"].clone();
    assert_eq!(embeddings.as_array().unwrap().len(), 2);
    assert_eq!(embeddings[0]["values"], single);
    assert_ne!(embeddings[1]["values"], single);
    mock.stop().await;
}

#[actix_rt::test]
async fn models_list_pages_and_get_returns_one_model() {
    let mock = start().await;
    let key = [("x-goog-api-key", "k")];
    let page = call(&mock, "GET", "/v1beta/models?pageSize=5", &key, None)
        .await
        .json();
    assert_eq!(page["models"].as_array().unwrap().len(), 5);
    let token = page["nextPageToken"].as_str().unwrap().to_owned();
    let rest = call(
        &mock,
        "GET",
        &format!("/v1beta/models?pageSize=5&pageToken={token}"),
        &key,
        None,
    )
    .await
    .json();
    let names: Vec<&str> = rest["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["models/gemini-flash-latest", "models/gemini-pro-latest"]
    );
    assert!(rest.get("nextPageToken").is_none());
    let v1 = call(&mock, "GET", "/v1/models", &key, None).await.json();
    assert_eq!(v1["models"].as_array().unwrap().len(), 5);
    let one = call(&mock, "GET", "/v1/models/gemini-2.5-flash", &key, None).await;
    assert_eq!(one.status, 200);
    assert_eq!(one.json()["name"], "models/gemini-2.5-flash");
    assert_eq!(
        call(&mock, "GET", "/v1/models/nope", &key, None)
            .await
            .status,
        404
    );
    mock.stop().await;
}
