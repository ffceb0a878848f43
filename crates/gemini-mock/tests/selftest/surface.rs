//! The OpenAI-compatible surface, the request record, the control routes, and stop.

use serde_json::{json, Value};

use crate::helpers::{call, client, generate, start, BODY};

#[actix_rt::test]
async fn openai_surface_streams_to_done_and_wraps_errors_in_arrays() {
    let mock = start().await;
    let path = "/v1beta/openai/chat/completions";
    let bearer = [("authorization", "Bearer k")];
    let chat = r#"{"model":"gemini-2.5-flash","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi there"}]}"#;
    let r = call(&mock, "POST", path, &bearer, Some(chat)).await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["content"], "echo: hi there");
    assert_eq!(v["usage"]["prompt_tokens"], 4);

    let streamed = chat.replacen('{', r#"{"stream":true,"#, 1);
    let r = call(&mock, "POST", path, &bearer, Some(&streamed)).await;
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    assert!(r.text().ends_with("data: [DONE]\n\n"), "{}", r.text());
    let text = r.text();
    let events: Vec<&str> = text.split_terminator("\n\n").collect();
    assert_eq!(events.len(), 4);
    let last: Value = serde_json::from_str(events[2].strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    assert_eq!(last["object"], "chat.completion.chunk");

    let err = call(&mock, "POST", path, &[], Some(chat)).await;
    assert_eq!(err.status, 403);
    assert_eq!(err.json()[0]["error"]["status"], "PERMISSION_DENIED");
    let v1 = call(
        &mock,
        "POST",
        "/v1/openai/chat/completions",
        &[("authorization", "Bearer k"), ("x-mock-scenario", "429")],
        Some(chat),
    )
    .await;
    assert_eq!(v1.status, 429);
    assert_eq!(v1.json()[0]["error"]["code"], 429);

    let emb = r#"{"model":"gemini-embedding-001","input":["a","b"]}"#;
    let r = call(
        &mock,
        "POST",
        "/v1beta/openai/embeddings",
        &bearer,
        Some(emb),
    )
    .await;
    assert_eq!(r.json()["data"].as_array().unwrap().len(), 2);
    let r = call(&mock, "GET", "/v1beta/openai/models", &bearer, None).await;
    assert_eq!(r.json()["object"], "list");
    mock.stop().await;
}

#[actix_rt::test]
async fn requests_are_recorded_as_received() {
    let mock = start().await;
    let path = "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse";
    let headers = [
        ("x-goog-api-key", "rec-key"),
        ("X-Custom-Thing", "v1"),
        ("content-type", "application/json"),
    ];
    call(&mock, "POST", path, &headers, Some(BODY)).await;
    call(&mock, "GET", "/__mock/stats", &[], None).await;
    let recorded = mock.requests();
    assert_eq!(recorded.len(), 1, "control calls must not be recorded");
    let r = &recorded[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path_and_query, path);
    assert_eq!(r.header("X-Goog-Api-Key"), Some("rec-key"));
    assert_eq!(r.header("x-custom-thing"), Some("v1"));
    assert!(r
        .headers
        .iter()
        .all(|(n, _)| n.chars().all(|c| !c.is_ascii_uppercase())));
    assert_eq!(r.header("authorization"), None);
    assert_eq!(&r.body[..], BODY.as_bytes());
    assert_eq!(r.json().unwrap()["contents"][0]["role"], "user");
    assert_eq!(mock.request_count(), 1);
    mock.reset();
    assert!(mock.requests().is_empty());
    assert_eq!(mock.request_count(), 0);

    mock.update_config(|c| c.record = false);
    generate(&mock, &[]).await;
    assert!(mock.requests().is_empty());
    assert_eq!(mock.request_count(), 1);
    mock.stop().await;
}

#[actix_rt::test]
async fn control_routes_expose_the_same_over_http() {
    let mock = start().await;
    generate(&mock, &[("x-mock-marker", "m")]).await;
    let reqs = call(&mock, "GET", "/__mock/requests", &[], None)
        .await
        .json();
    assert_eq!(reqs[0]["method"], "POST");
    assert_eq!(reqs[0]["body"], BODY);
    assert!(reqs[0]["headers"]
        .as_array()
        .unwrap()
        .contains(&json!(["x-mock-marker", "m"])));
    let stats = call(&mock, "GET", "/__mock/stats", &[], None).await.json();
    assert_eq!(
        stats,
        json!({"request_count": 1, "in_flight": 0, "streams_cancelled": 0, "streams_completed": 0,
            "live_sessions_open": 0, "live_sessions_opened": 0})
    );

    let patch = r#"{"accepted_keys":["only"],"retry_delay":"3s","chunks":2,"record":true}"#;
    let r = call(&mock, "POST", "/__mock/config", &[], Some(patch)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["accepted_keys"], json!(["only"]));
    assert_eq!(generate(&mock, &[]).await.status, 400);
    let typo = call(
        &mock,
        "POST",
        "/__mock/config",
        &[],
        Some(r#"{"chunkz":2}"#),
    )
    .await;
    assert_eq!(typo.status, 400);

    assert_eq!(
        call(&mock, "POST", "/__mock/reset", &[], None).await.status,
        200
    );
    assert_eq!(mock.request_count(), 0);
    mock.stop().await;
}

#[actix_rt::test]
async fn stop_closes_the_listener() {
    let mock = start().await;
    let addr = mock.addr();
    assert_eq!(mock.base_url(), format!("http://127.0.0.1:{}", addr.port()));
    mock.stop().await;
    let res = client()
        .get(format!("http://{addr}/v1/models"))
        .send()
        .await;
    assert!(res.is_err());
}
