//! Per-model and per-day quotas: which calls a quota covers, and the whole 429 bodies.

use gemini_mock::{Exhaustion, MockGemini};

use crate::helpers::{as_array, call, chat_body, start, BODY, JSON_UTF8};

const MINUTE: (&str, &str, &str) = (
    "generativelanguage.googleapis.com/generate_content_free_tier_requests",
    "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
    "10",
);
const DAY: (&str, &str, &str) = (
    "generativelanguage.googleapis.com/generate_content_free_tier_requests",
    "GenerateRequestsPerDayPerProjectPerModel-FreeTier",
    "250",
);
/// The violation of the captured free-tier body, which the `429` scenarios answer.
const TOKENS: (&str, &str, &str) = (
    "generativelanguage.googleapis.com/generate_content_free_tier_input_token_count",
    "GenerateContentInputTokensPerModelPerMinute-FreeTier",
    "250000",
);

fn quota_body(violation: (&str, &str, &str), model: &str, retry: Option<&str>) -> String {
    let (metric, id, value) = violation;
    let retry = retry.map_or(String::new(), |d| {
        format!(
            r#",
      {{
        "@type": "type.googleapis.com/google.rpc.RetryInfo",
        "retryDelay": "{d}"
      }}"#
        )
    });
    format!(
        r#"{{
  "error": {{
    "code": 429,
    "message": "You exceeded your current quota, please check your plan and billing details. For more information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.",
    "status": "RESOURCE_EXHAUSTED",
    "details": [
      {{
        "@type": "type.googleapis.com/google.rpc.QuotaFailure",
        "violations": [
          {{
            "quotaMetric": "{metric}",
            "quotaId": "{id}",
            "quotaDimensions": {{
              "location": "global",
              "model": "{model}"
            }},
            "quotaValue": "{value}"
          }}
        ]
      }},
      {{
        "@type": "type.googleapis.com/google.rpc.Help",
        "links": [
          {{
            "description": "Learn more about Gemini API quotas",
            "url": "https://ai.google.dev/gemini-api/docs/rate-limits"
          }}
        ]
      }}{retry}
    ]
  }}
}}
"#
    )
}

fn exhaustion(key: Option<&str>, model: Option<&str>, per_day: bool) -> Exhaustion {
    Exhaustion {
        key: key.map(str::to_owned),
        model: model.map(str::to_owned),
        per_day,
    }
}

async fn generate_on(mock: &MockGemini, model: &str, key: &str) -> crate::helpers::Resp {
    let path = format!("/v1beta/models/{model}:generateContent");
    call(mock, "POST", &path, &[("x-goog-api-key", key)], Some(BODY)).await
}

#[actix_rt::test]
async fn an_exhausted_model_answers_a_per_minute_429_and_the_keys_other_models_pass() {
    let mock = start().await;
    mock.update_config(|c| {
        c.exhausted = vec![exhaustion(Some("k"), Some("gemini-2.5-pro"), false)]
    });
    let r = generate_on(&mock, "gemini-2.5-pro", "k").await;
    assert_eq!(r.status, 429);
    assert_eq!(r.header("content-type"), Some(JSON_UTF8));
    assert_eq!(
        r.header("retry-after"),
        None,
        "the delay lives only in RetryInfo"
    );
    assert_eq!(r.text(), quota_body(MINUTE, "gemini-2.5-pro", Some("26s")));
    assert_eq!(
        generate_on(&mock, "gemini-2.5-flash", "k").await.status,
        200
    );
    assert_eq!(
        generate_on(&mock, "gemini-2.5-pro", "other").await.status,
        200
    );
    mock.stop().await;
}

#[actix_rt::test]
async fn a_per_day_exhaustion_names_the_day_quota_and_follows_the_retry_delay_setting() {
    let mock = start().await;
    mock.update_config(|c| {
        c.exhausted = vec![exhaustion(None, Some("models/gemini-2.5-flash"), true)];
        c.retry_delay = Some("3.5s".to_owned());
    });
    let r = generate_on(&mock, "gemini-2.5-flash", "any").await;
    assert_eq!(r.text(), quota_body(DAY, "gemini-2.5-flash", Some("3.5s")));
    mock.update_config(|c| c.retry_delay = None);
    let r = generate_on(&mock, "gemini-2.5-flash", "another").await;
    assert_eq!(r.text(), quota_body(DAY, "gemini-2.5-flash", None));
    mock.stop().await;
}

#[actix_rt::test]
async fn the_first_matching_exhaustion_wins_and_none_matches_every_key_and_model() {
    let mock = start().await;
    mock.update_config(|c| {
        c.exhausted = vec![
            exhaustion(Some("daily"), None, true),
            exhaustion(None, None, false),
        ]
    });
    let r = generate_on(&mock, "gemma-3-27b-it", "daily").await;
    assert_eq!(r.text(), quota_body(DAY, "gemma-3-27b-it", Some("26s")));
    let r = generate_on(&mock, "gemini-2.0-flash", "anyone").await;
    assert_eq!(
        r.text(),
        quota_body(MINUTE, "gemini-2.0-flash", Some("26s"))
    );
    mock.update_config(|c| c.exhausted.clear());
    assert_eq!(
        generate_on(&mock, "gemini-2.0-flash", "anyone")
            .await
            .status,
        200
    );
    mock.stop().await;
}

#[actix_rt::test]
async fn a_quota_covers_every_model_call_and_no_model_listing() {
    let mock = start().await;
    mock.update_config(|c| c.exhausted = vec![exhaustion(Some("k"), None, false)]);
    let key = [("x-goog-api-key", "k")];
    let embed = r#"{"content":{"parts":[{"text":"a"}]}}"#;
    let batch = r#"{"requests":[{"model":"models/gemini-embedding-001","content":{"parts":[{"text":"a"}]}}]}"#;
    let native = [
        ("gemini-2.5-flash", "streamGenerateContent?alt=sse", BODY),
        ("gemini-2.5-flash", "countTokens", BODY),
        ("gemini-embedding-001", "embedContent", embed),
        ("gemini-embedding-001", "batchEmbedContents", batch),
    ];
    for (model, verb, body) in native {
        let path = format!("/v1/models/{model}:{verb}");
        let r = call(&mock, "POST", &path, &key, Some(body)).await;
        assert_eq!(r.text(), quota_body(MINUTE, model, Some("26s")), "{verb}");
    }
    let array = call(
        &mock,
        "POST",
        "/v1/models/gemini-2.5-flash:streamGenerateContent",
        &key,
        Some(BODY),
    )
    .await;
    let expected = quota_body(MINUTE, "gemini-2.5-flash", Some("26s"));
    assert_eq!(
        (array.status, array.text().as_str()),
        (429, &*as_array(&expected))
    );

    let bearer = [("authorization", "Bearer k")];
    let chat = chat_body("models/gemini-2.5-pro", "hi");
    let r = call(
        &mock,
        "POST",
        "/v1beta/openai/chat/completions",
        &bearer,
        Some(&chat),
    )
    .await;
    let expected = quota_body(MINUTE, "gemini-2.5-pro", Some("26s"));
    assert_eq!((r.status, r.text().as_str()), (429, &*as_array(&expected)));
    let emb = r#"{"model":"gemini-embedding-001","input":"a"}"#;
    let r = call(
        &mock,
        "POST",
        "/v1beta/openai/embeddings",
        &bearer,
        Some(emb),
    )
    .await;
    let expected = quota_body(MINUTE, "gemini-embedding-001", Some("26s"));
    assert_eq!((r.status, r.text().as_str()), (429, &*as_array(&expected)));

    for path in ["/v1/models", "/v1/models/gemini-2.5-flash"] {
        assert_eq!(
            call(&mock, "GET", path, &key, None).await.status,
            200,
            "{path}"
        );
    }
    let r = call(&mock, "GET", "/v1beta/openai/models", &bearer, None).await;
    assert_eq!(r.status, 200);
    mock.stop().await;
}

#[actix_rt::test]
async fn exhausted_keys_answer_a_per_minute_violation_for_the_requests_model() {
    let mock = start().await;
    mock.update_config(|c| {
        c.exhausted_keys.insert("tired".to_owned());
    });
    let r = generate_on(&mock, "gemini-2.5-pro", "tired").await;
    assert_eq!(r.text(), quota_body(MINUTE, "gemini-2.5-pro", Some("26s")));
    let r = call(
        &mock,
        "GET",
        "/v1/models",
        &[("x-goog-api-key", "tired")],
        None,
    )
    .await;
    assert_eq!(r.status, 200, "a quota is spent by model calls only");
    mock.stop().await;
}

#[actix_rt::test]
async fn quota_scenarios_name_the_requests_model_and_window() {
    let mock = start().await;
    let key = [("x-goog-api-key", "k")];
    let cases = [
        ("429-day", DAY, Some("26s")),
        ("429-day-noretry", DAY, None),
        ("429", TOKENS, Some("26s")),
        ("429-noretry", TOKENS, None),
        ("429-7", TOKENS, Some("7s")),
    ];
    for (scenario, violation, retry) in cases {
        let prompt = format!(r#"{{"contents":[{{"parts":[{{"text":"[mock:{scenario}] hi"}}]}}]}}"#);
        let path = "/v1/models/gemini-2.0-flash:generateContent";
        let r = call(&mock, "POST", path, &key, Some(&prompt)).await;
        let expected = quota_body(violation, "gemini-2.0-flash", retry);
        assert_eq!(
            (r.status, r.text().as_str()),
            (429, &*expected),
            "{scenario}"
        );
    }
    let by_model = call(
        &mock,
        "POST",
        "/v1beta/models/mock-429-day:generateContent",
        &key,
        Some(BODY),
    )
    .await;
    assert_eq!(
        by_model.text(),
        quota_body(DAY, "mock-429-day", Some("26s"))
    );
    let chat = chat_body("gemini-2.5-pro", "[mock:429-day] hi");
    let r = call(
        &mock,
        "POST",
        "/v1beta/openai/chat/completions",
        &[("authorization", "Bearer k")],
        Some(&chat),
    )
    .await;
    let expected = quota_body(DAY, "gemini-2.5-pro", Some("26s"));
    assert_eq!(r.text(), as_array(&expected));
    mock.stop().await;
}

#[actix_rt::test]
async fn exhaustions_can_be_set_and_read_through_the_control_route() {
    let mock = start().await;
    let patch =
        r#"{"exhausted":[{"key":"k","model":"gemini-2.5-pro","per_day":true},{"model":null}]}"#;
    let r = call(&mock, "POST", "/__mock/config", &[], Some(patch)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["exhausted"],
        serde_json::json!([
            {"key": "k", "model": "gemini-2.5-pro", "per_day": true},
            {"key": null, "model": null, "per_day": false}
        ])
    );
    let r = generate_on(&mock, "gemini-2.5-pro", "k").await;
    assert_eq!(r.text(), quota_body(DAY, "gemini-2.5-pro", Some("26s")));
    let typo = r#"{"exhausted":[{"per_dya":true}]}"#;
    let r = call(&mock, "POST", "/__mock/config", &[], Some(typo)).await;
    assert_eq!(r.status, 400);
    mock.stop().await;
}
