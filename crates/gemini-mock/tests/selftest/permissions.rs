//! Request-level 403s: refusals of one request that say nothing about the key (a file or
//! cached content the caller does not hold, or no permission in general).

use serde_json::json;

use crate::helpers::{as_array, call, start, with_scenario, BODY, JSON_UTF8};

const GENERATE: &str = "/v1beta/models/gemini-2.5-flash:generateContent";
const KEY: (&str, &str) = ("x-goog-api-key", "k");

const CALLER_DENIED: &str = r#"{
  "error": {
    "code": 403,
    "message": "The caller does not have permission",
    "status": "PERMISSION_DENIED"
  }
}
"#;

fn file_denied(id: &str) -> String {
    format!(
        r#"{{
  "error": {{
    "code": 403,
    "message": "You do not have permission to access the File {id} or it may not exist.",
    "status": "PERMISSION_DENIED"
  }}
}}
"#
    )
}

/// A generateContent body with a text part and a file part written as `file_part`.
fn with_file(file_part: serde_json::Value) -> String {
    json!({"contents": [
        {"role": "user", "parts": [{"text": "describe"}]},
        {"role": "model", "parts": [{"text": "which one?"}]},
        {"role": "user", "parts": [{"text": "this"}, file_part]}
    ]})
    .to_string()
}

#[actix_rt::test]
async fn the_403_scenario_is_a_bare_permission_denied_with_no_error_info() {
    let mock = start().await;
    let r = with_scenario(&mock, "403").await;
    assert_eq!(r.status, 403);
    assert_eq!(r.header("content-type"), Some(JSON_UTF8));
    assert_eq!(r.text(), CALLER_DENIED);
    mock.stop().await;
}

#[actix_rt::test]
async fn the_403_file_scenario_names_a_file_and_carries_no_details() {
    let mock = start().await;
    let r = with_scenario(&mock, "403-file").await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (403, &*file_denied("mock-file"))
    );
    let prompt = r#"{"contents":[{"parts":[{"text":"[mock:403-file] hi"}]}]}"#;
    let path = "/v1beta/models/gemini-2.5-flash:streamGenerateContent";
    let r = call(&mock, "POST", path, &[KEY], Some(prompt)).await;
    assert_eq!(r.text(), as_array(&file_denied("mock-file")));
    mock.stop().await;
}

#[actix_rt::test]
async fn a_body_naming_a_file_the_mock_does_not_hold_gets_the_file_403_with_its_id() {
    let mock = start().await;
    let url = "https://generativelanguage.googleapis.com/v1beta/files/vq8ruf6o8qt5";
    let cases = [
        (
            json!({"fileData": {"fileUri": "files/abc-1", "mimeType": "text/plain"}}),
            "abc-1",
        ),
        (json!({"file_data": {"file_uri": "files/abc-2"}}), "abc-2"),
        (
            json!({"fileData": {"file_uri": "files/abc-3", "mime_type": "image/png"}}),
            "abc-3",
        ),
        (json!({"fileData": {"fileUri": url}}), "vq8ruf6o8qt5"),
    ];
    for (part, id) in cases {
        let body = with_file(part);
        let r = call(&mock, "POST", GENERATE, &[KEY], Some(&body)).await;
        assert_eq!(
            (r.status, r.text().as_str()),
            (403, &*file_denied(id)),
            "{body}"
        );
    }
    let body = with_file(json!({"fileData": {"fileUri": "files/in-stream"}}));
    let stream = "/v1/models/gemini-2.5-flash:streamGenerateContent";
    let sse = call(
        &mock,
        "POST",
        &format!("{stream}?alt=sse"),
        &[KEY],
        Some(&body),
    )
    .await;
    assert_eq!(
        (sse.status, sse.text().as_str()),
        (403, &*file_denied("in-stream"))
    );
    let array = call(&mock, "POST", stream, &[KEY], Some(&body)).await;
    assert_eq!(array.text(), as_array(&file_denied("in-stream")));
    let count = "/v1/models/gemini-2.5-flash:countTokens";
    let r = call(&mock, "POST", count, &[KEY], Some(&body)).await;
    assert_eq!(r.text(), file_denied("in-stream"));
    let wrapped = json!({"generateContentRequest": {
        "model": "models/gemini-2.5-flash",
        "contents": [{"parts": [{"file_data": {"file_uri": "files/wrapped"}}]}]
    }})
    .to_string();
    let r = call(&mock, "POST", count, &[KEY], Some(&wrapped)).await;
    assert_eq!(r.text(), file_denied("wrapped"));
    let system = json!({
        "contents": [{"parts": [{"text": "hi"}]}],
        "systemInstruction": {"parts": [{"fileData": {"fileUri": "files/in-system"}}]}
    })
    .to_string();
    let r = call(&mock, "POST", GENERATE, &[KEY], Some(&system)).await;
    assert_eq!(r.text(), file_denied("in-system"));
    mock.stop().await;
}

#[actix_rt::test]
async fn a_uri_that_names_no_file_of_the_project_is_not_refused() {
    let mock = start().await;
    let video = json!({"fileData": {"fileUri": "https://www.youtube.com/watch?v=9hE5-98ZeCg"}});
    let r = call(&mock, "POST", GENERATE, &[KEY], Some(&with_file(video))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["candidates"][0]["content"]["parts"][0]["text"],
        "echo: this"
    );
    mock.stop().await;
}

const CACHE_DENIED: &str = r#"{
  "error": {
    "code": 403,
    "message": "CachedContent not found (or permission denied)",
    "status": "PERMISSION_DENIED"
  }
}
"#;

#[actix_rt::test]
async fn a_body_naming_a_cached_content_gets_a_bare_403() {
    let mock = start().await;
    let bodies = [
        json!({"contents": [{"parts": [{"text": "hi"}]}], "cachedContent": "cachedContents/c1"}),
        json!({"contents": [{"parts": [{"text": "hi"}]}], "cached_content": "cachedContents/c2"}),
    ];
    for body in &bodies {
        let body = body.to_string();
        let r = call(&mock, "POST", GENERATE, &[KEY], Some(&body)).await;
        assert_eq!((r.status, r.text().as_str()), (403, CACHE_DENIED), "{body}");
    }
    let wrapped = json!({"generateContentRequest": {
        "model": "models/gemini-2.5-flash",
        "contents": [{"parts": [{"text": "hi"}]}],
        "cachedContent": "cachedContents/c3"
    }})
    .to_string();
    let count = "/v1/models/gemini-2.5-flash:countTokens";
    let r = call(&mock, "POST", count, &[KEY], Some(&wrapped)).await;
    assert_eq!((r.status, r.text().as_str()), (403, CACHE_DENIED));
    assert_eq!(
        call(&mock, "POST", GENERATE, &[KEY], Some(BODY))
            .await
            .status,
        200
    );
    mock.stop().await;
}
