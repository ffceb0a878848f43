//! Scenarios that change what is answered: upstream's errors and the odd 200s.

use serde_json::json;

use crate::helpers::{call, start, with_scenario, Resp, BODY, JSON_UTF8};

#[actix_rt::test]
async fn error_scenarios_answer_upstreams_status_and_body() {
    let mock = start().await;
    let cases = [
        ("400-badkey", 400, "INVALID_ARGUMENT"),
        ("400-geo", 400, "FAILED_PRECONDITION"),
        ("400", 400, "INVALID_ARGUMENT"),
        ("403", 403, "PERMISSION_DENIED"),
        ("404", 404, "NOT_FOUND"),
        ("429", 429, "RESOURCE_EXHAUSTED"),
        ("429-noretry", 429, "RESOURCE_EXHAUSTED"),
        ("500", 500, "INTERNAL"),
        ("503", 503, "UNAVAILABLE"),
        ("504", 504, "DEADLINE_EXCEEDED"),
    ];
    for (scenario, status, grpc) in cases {
        let r = with_scenario(&mock, scenario).await;
        assert_eq!(r.status, status, "{scenario}");
        assert_eq!(r.header("content-type"), Some(JSON_UTF8), "{scenario}");
        assert!(r.text().starts_with("{\n  \"error\": {\n"), "{scenario}");
        assert!(r.text().ends_with("}\n"), "{scenario}");
        let v = r.json();
        assert_eq!(v["error"]["code"], status, "{scenario}");
        assert_eq!(v["error"]["status"], grpc, "{scenario}");
    }
    let geo = with_scenario(&mock, "400-geo").await.json();
    assert_eq!(
        geo["error"]["message"],
        "User location is not supported for the API use."
    );
    let nf = with_scenario(&mock, "404").await.json();
    assert!(nf["error"]["message"]
        .as_str()
        .unwrap()
        .contains("for API version v1beta, or is not supported for generateContent."));
    let noretry = with_scenario(&mock, "429-noretry").await.json();
    assert_eq!(noretry["error"]["details"].as_array().unwrap().len(), 2);
    let n = with_scenario(&mock, "429-7").await.json();
    assert_eq!(n["error"]["details"][2]["retryDelay"], "7s");
    mock.stop().await;
}

#[actix_rt::test]
async fn scenarios_can_be_named_by_model_id_or_prompt_prefix() {
    let mock = start().await;
    let key = [("x-goog-api-key", "k")];
    let by_model = call(
        &mock,
        "POST",
        "/v1/models/mock-503:generateContent",
        &key,
        Some(BODY),
    )
    .await;
    assert_eq!(by_model.status, 503);
    let prompt = r#"{"contents":[{"parts":[{"text":"[mock:500] hi"}]}]}"#;
    let by_prompt = call(
        &mock,
        "POST",
        "/v1/models/gemini-2.5-flash:generateContent",
        &key,
        Some(prompt),
    )
    .await;
    assert_eq!(by_prompt.status, 500);
    let unknown = call(
        &mock,
        "POST",
        "/v1/models/mock-whatever:generateContent",
        &key,
        Some(BODY),
    )
    .await;
    assert_eq!(unknown.status, 200);
    assert_eq!(unknown.json()["modelVersion"], "mock-whatever");
    mock.stop().await;
}

#[actix_rt::test]
async fn flaky_two_fails_twice_then_succeeds_and_reset_starts_over() {
    let mock = start().await;
    let statuses = |rs: &[Resp]| rs.iter().map(|r| r.status).collect::<Vec<_>>();
    let mut rs = Vec::new();
    for _ in 0..3 {
        rs.push(with_scenario(&mock, "flaky-2").await);
    }
    assert_eq!(statuses(&rs), [503, 503, 200]);
    assert_eq!(rs[0].json()["error"]["status"], "UNAVAILABLE");
    mock.reset();
    assert_eq!(with_scenario(&mock, "flaky-2").await.status, 503);
    mock.stop().await;
}

#[actix_rt::test]
async fn content_scenarios_shape_the_answer() {
    let mock = start().await;
    let blocked = with_scenario(&mock, "blocked").await;
    assert_eq!(blocked.status, 200);
    let v = blocked.json();
    assert!(v.get("candidates").is_none());
    assert_eq!(v["promptFeedback"]["blockReason"], "PROHIBITED_CONTENT");
    let v = with_scenario(&mock, "safety-finish").await.json();
    assert_eq!(v["candidates"][0]["finishReason"], "SAFETY");
    assert!(v["candidates"][0].get("content").is_none());
    let v = with_scenario(&mock, "max-tokens-empty").await.json();
    assert_eq!(v["candidates"][0]["finishReason"], "MAX_TOKENS");
    assert!(v["candidates"][0]["content"].get("parts").is_none());
    assert!(v["usageMetadata"]["thoughtsTokenCount"].as_u64().unwrap() > 0);
    let v = with_scenario(&mock, "thoughts").await.json();
    let parts = &v["candidates"][0]["content"]["parts"];
    assert_eq!(parts[0]["thought"], true);
    assert_eq!(parts[1]["text"], "echo: hello brave new world");
    let usage = &v["usageMetadata"];
    let sum = [
        "promptTokenCount",
        "candidatesTokenCount",
        "thoughtsTokenCount",
    ]
    .iter()
    .map(|k| usage[k].as_u64().unwrap())
    .sum::<u64>();
    assert_eq!(usage["totalTokenCount"].as_u64(), Some(sum));
    let v = with_scenario(&mock, "empty-candidates").await.json();
    assert_eq!(v["candidates"], json!([]));
    assert!(v["usageMetadata"].is_object());
    mock.stop().await;
}

#[actix_rt::test]
async fn fail_half_fails_every_odd_call_and_reset_starts_over() {
    let mock = start().await;
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(with_scenario(&mock, "fail-half").await.status);
    }
    assert_eq!(statuses, [503, 200, 503, 200]);
    mock.reset();
    assert_eq!(with_scenario(&mock, "fail-half").await.status, 503);
    mock.stop().await;
}
