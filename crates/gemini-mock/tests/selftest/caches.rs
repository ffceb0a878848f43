//! Cached contents: create, get, list, update and delete per project, their use in
//! generateContent, and expiry.

use std::time::Duration;

use gemini_mock::{MockConfig, MockGemini};
use serde_json::{json, Value};

use crate::helpers::{call, start};

const GENERATE: &str = "/v1beta/models/gemini-2.5-flash:generateContent";

const CACHE_DENIED: &str =
    "{\n  \"error\": {\n    \"code\": 403,\n    \"message\": \"CachedContent \
                            not found (or permission denied)\",\n    \"status\": \
                            \"PERMISSION_DENIED\"\n  }\n}\n";

fn create_body(model: &str, ttl: &str) -> String {
    json!({
        "model": model,
        "contents": [{"role": "user", "parts": [{"text": "a long shared document of eight words"}]}],
        "systemInstruction": {"parts": [{"text": "answer briefly"}]},
        "ttl": ttl,
        "displayName": "doc"
    })
    .to_string()
}

async fn create(mock: &MockGemini, key: &str, ttl: &str) -> Value {
    let r = call(
        mock,
        "POST",
        "/v1beta/cachedContents",
        &[("x-goog-api-key", key)],
        Some(&create_body("models/gemini-2.5-flash", ttl)),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

fn using(cache: &Value) -> String {
    json!({"contents": [{"parts": [{"text": "and a question"}]}], "cachedContent": cache["name"]})
        .to_string()
}

fn seconds(stamp: &Value) -> f64 {
    // `2026-12-02T11:20:33.123456Z`: hours, minutes and seconds are enough here.
    let time = stamp
        .as_str()
        .unwrap()
        .split_once('T')
        .unwrap()
        .1
        .trim_end_matches('Z');
    let mut parts = time.split(':').map(|p| p.parse::<f64>().unwrap());
    parts.next().unwrap() * 3600.0 + parts.next().unwrap() * 60.0 + parts.next().unwrap()
}

#[actix_rt::test]
async fn a_cache_is_created_read_listed_updated_and_deleted() {
    let mock = start().await;
    let key = [("x-goog-api-key", "k")];
    let cache = create(&mock, "k", "300s").await;
    let name = cache["name"].as_str().unwrap().to_owned();
    let id = name.strip_prefix("cachedContents/").unwrap().to_owned();
    assert_eq!(id.len(), 40);
    assert_eq!(cache["model"], "models/gemini-2.5-flash");
    assert_eq!(cache["displayName"], "doc");
    assert_eq!(cache["usageMetadata"]["totalTokenCount"], 9);
    let lifetime =
        (seconds(&cache["expireTime"]) - seconds(&cache["createTime"])).rem_euclid(86_400.0);
    assert!((lifetime - 300.0).abs() < 1.0, "{cache}");
    // Gemini's key order (serde_json's `Value` sorts keys, so the text is read).
    let text = call(&mock, "GET", &format!("/v1beta/{name}"), &key, None)
        .await
        .text();
    let at = |k: &str| text.find(&format!("\"{k}\"")).unwrap();
    let order = [
        "name",
        "model",
        "createTime",
        "updateTime",
        "expireTime",
        "displayName",
        "usageMetadata",
    ];
    assert!(order.windows(2).all(|w| at(w[0]) < at(w[1])), "{text}");
    let held = mock.cached_contents();
    assert_eq!(
        (held.len(), held[0].id.as_str(), held[0].token_count),
        (1, id.as_str(), 9)
    );

    let got = call(&mock, "GET", &format!("/v1beta/{name}"), &key, None).await;
    assert_eq!((got.status, got.json()), (200, cache.clone()));
    let list = call(&mock, "GET", "/v1beta/cachedContents", &key, None)
        .await
        .json();
    assert_eq!(list, json!({"cachedContents": [cache.clone()]}));

    // python sends no updateMask; the field in the body is the one updated.
    let r = call(
        &mock,
        "PATCH",
        &format!("/v1beta/{name}"),
        &key,
        Some(r#"{"ttl": "7200s"}"#),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let patched = r.json();
    let lifetime =
        (seconds(&patched["expireTime"]) - seconds(&patched["updateTime"])).rem_euclid(86_400.0);
    assert!((lifetime - 7200.0).abs() < 1.0, "{patched}");
    let r = call(
        &mock,
        "PATCH",
        &format!("/v1beta/{name}?updateMask=expireTime"),
        &key,
        Some(r#"{"expireTime": "2099-01-01T00:00:00+00:00", "ttl": "1s"}"#),
    )
    .await;
    assert_eq!(r.json()["expireTime"], "2099-01-01T00:00:00.000000Z");
    let r = call(
        &mock,
        "PATCH",
        &format!("/v1beta/{name}?updateMask=model"),
        &key,
        Some("{}"),
    )
    .await;
    assert_eq!(r.status, 400);

    let r = call(&mock, "DELETE", &format!("/v1beta/{name}"), &key, None).await;
    assert_eq!((r.status, r.json()), (200, json!({})));
    let r = call(&mock, "GET", &format!("/v1beta/{name}"), &key, None).await;
    assert_eq!((r.status, r.text().as_str()), (403, CACHE_DENIED));
    let list = call(&mock, "GET", "/v1beta/cachedContents", &key, None).await;
    assert_eq!(list.text(), "{}\n");
    mock.stop().await;
}

#[actix_rt::test]
async fn generate_with_a_cache_counts_its_tokens_for_its_project_only() {
    let mock = MockGemini::start(MockConfig {
        projects: [("a1", "pa"), ("a2", "pa"), ("b", "pb")]
            .iter()
            .map(|(k, p)| ((*k).to_owned(), (*p).to_owned()))
            .collect(),
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let cache = create(&mock, "a1", "300s").await;
    let r = call(
        &mock,
        "POST",
        GENERATE,
        &[("x-goog-api-key", "a2")],
        Some(&using(&cache)),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let usage = &r.json()["usageMetadata"];
    assert_eq!(usage["cachedContentTokenCount"], 9);
    assert_eq!(usage["promptTokenCount"], 9 + 3);
    assert_eq!(usage["cacheTokensDetails"][0]["tokenCount"], 9);

    let b = [("x-goog-api-key", "b")];
    let r = call(&mock, "POST", GENERATE, &b, Some(&using(&cache))).await;
    assert_eq!((r.status, r.text().as_str()), (403, CACHE_DENIED));
    let name = cache["name"].as_str().unwrap();
    for method in ["GET", "DELETE"] {
        let r = call(&mock, method, &format!("/v1beta/{name}"), &b, None).await;
        assert_eq!(
            (r.status, r.text().as_str()),
            (403, CACHE_DENIED),
            "{method}"
        );
    }
    let r = call(
        &mock,
        "PATCH",
        &format!("/v1beta/{name}"),
        &b,
        Some(r#"{"ttl":"1s"}"#),
    )
    .await;
    assert_eq!((r.status, r.text().as_str()), (403, CACHE_DENIED));
    assert_eq!(
        call(&mock, "GET", "/v1beta/cachedContents", &b, None)
            .await
            .text(),
        "{}\n"
    );

    // A cache holds its system instruction and tools; a request may not set them again.
    let a1 = [("x-goog-api-key", "a1")];
    let with_system = json!({
        "contents": [{"parts": [{"text": "q"}]}],
        "systemInstruction": {"parts": [{"text": "x"}]},
        "cachedContent": name
    })
    .to_string();
    let r = call(&mock, "POST", GENERATE, &a1, Some(&with_system)).await;
    assert_eq!(r.status, 400);
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("CachedContent can not be used with GenerateContent request setting"));
    let pro = "/v1beta/models/gemini-2.5-pro:generateContent";
    let r = call(&mock, "POST", pro, &a1, Some(&using(&cache))).await;
    assert_eq!(r.status, 400);
    mock.stop().await;
}

#[actix_rt::test]
async fn creates_check_the_model_the_files_and_the_size() {
    let mock = start().await;
    let key = [("x-goog-api-key", "k")];
    let path = "/v1beta/cachedContents";
    let r = call(
        &mock,
        "POST",
        path,
        &key,
        Some(&create_body("models/nope-1", "60s")),
    )
    .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["status"], "NOT_FOUND");
    let r = call(
        &mock,
        "POST",
        path,
        &key,
        Some(&create_body("models/gemini-2.5-flash", "soon")),
    )
    .await;
    assert_eq!(r.status, 400);
    let with_file = json!({
        "model": "models/gemini-2.5-flash",
        "contents": [{"parts": [{"fileData": {"fileUri": "files/notmine"}}]}]
    })
    .to_string();
    let r = call(&mock, "POST", path, &key, Some(&with_file)).await;
    assert_eq!(r.status, 403);
    assert_eq!(
        r.json()["error"]["message"],
        "You do not have permission to access the File notmine or it may not exist."
    );
    mock.update_config(|c| c.cache_min_tokens = 1024);
    let r = call(
        &mock,
        "POST",
        path,
        &key,
        Some(&create_body("models/gemini-2.5-flash", "60s")),
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["error"]["message"],
        "Cached content is too small. total_token_count=9, min_total_token_count=1024"
    );
    assert!(mock.cached_contents().is_empty());
    mock.stop().await;
}

#[actix_rt::test]
async fn an_expired_cache_is_gone() {
    let mock = start().await;
    let cache = create(&mock, "k", "0.3s").await;
    let key = [("x-goog-api-key", "k")];
    let r = call(&mock, "POST", GENERATE, &key, Some(&using(&cache))).await;
    assert_eq!(r.status, 200);
    actix_rt::time::sleep(Duration::from_millis(400)).await;
    let r = call(&mock, "POST", GENERATE, &key, Some(&using(&cache))).await;
    assert_eq!((r.status, r.text().as_str()), (403, CACHE_DENIED));
    assert!(mock.cached_contents().is_empty());
    assert_eq!(
        call(&mock, "GET", "/v1/cachedContents", &key, None)
            .await
            .text(),
        "{}\n"
    );
    mock.stop().await;
}
