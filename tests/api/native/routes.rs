//! The other native routes (models, countTokens, embeddings) and the OpenAI-compatible
//! surface: each reaches its own upstream path, with the server key where that surface
//! puts it, and answers what Gemini answered.

use super::*;
use serde_json::json;

/// Calls `path` through the service (key in `x-goog-api-key`) and directly on the mock;
/// asserts the answers match and returns the upstream request the service made.
async fn assert_passed_through(app: &TestApp, method: Method, path: &str, body: &str) {
    let direct = mock_answer(app, method.clone(), path, body).await;
    assert_eq!(direct.status, 200, "{path}: {}", direct.text());
    let response = app
        .request(
            method.clone(),
            path,
            &[("x-goog-api-key", CLIENT_KEY), JSON_TYPE],
            body.to_owned(),
        )
        .await;
    assert_eq!(response.status, 200, "{path}: {}", response.text());
    assert_same_answer(&response.body, &direct.body);
    let sent = only_request(app);
    assert_eq!(sent.method, method.as_str());
    assert_eq!(sent.path_and_query, path);
    assert_eq!(sent.header("x-goog-api-key"), Some(SERVER_KEY));
    assert_eq!(sent.body, body.as_bytes(), "{path}: the request body");
    assert_nothing_private_forwarded(&sent);
    app.mock.reset();
}

#[actix_rt::test]
async fn lists_models_forwarding_only_the_paging_parameters() {
    let app = spawn_app().await;
    let first = app
        .request(
            Method::GET,
            &format!("/v1beta/models?pageSize=2&key={CLIENT_KEY}&$alt=json&filter=x"),
            &[],
            "",
        )
        .await;
    assert_eq!(first.status, 200, "{}", first.text());
    let token = first.json()["nextPageToken"]
        .as_str()
        .expect("a next page")
        .to_owned();
    assert_eq!(first.json()["models"].as_array().map(Vec::len), Some(2));

    let second = app
        .request(
            Method::GET,
            &format!("/v1beta/models?pageToken={token}&pageSize=2&unknown=1"),
            &[("x-goog-api-key", CLIENT_KEY)],
            "",
        )
        .await;
    assert_eq!(second.status, 200, "{}", second.text());
    assert_eq!(
        second.json()["models"][0]["name"],
        "models/gemini-2.0-flash",
        "the third model: the token went upstream"
    );

    let paths: Vec<_> = app
        .upstream_requests()
        .into_iter()
        .map(|sent| {
            assert_eq!(sent.method, "GET");
            assert_eq!(sent.header("x-goog-api-key"), Some(SERVER_KEY));
            sent.path_and_query
        })
        .collect();
    assert_eq!(
        paths,
        [
            "/v1beta/models?pageSize=2".to_owned(),
            format!("/v1beta/models?pageToken={token}&pageSize=2"),
        ]
    );
    assert_no_key_in_any_url(&app);
}

#[actix_rt::test]
async fn gets_one_model_as_gemini_describes_it() {
    let app = spawn_app().await;
    assert_passed_through(&app, Method::GET, "/v1/models/gemini-2.5-pro", "").await;
    assert_passed_through(&app, Method::GET, "/v1beta/models/gemini-flash-latest", "").await;
}

#[actix_rt::test]
async fn a_tuned_model_is_called_in_its_own_collection() {
    let app = spawn_app().await;
    assert_passed_through(
        &app,
        Method::POST,
        "/v1beta/tunedModels/my-model-x1:generateContent",
        BODY,
    )
    .await;
}

#[actix_rt::test]
async fn counts_tokens_and_embeds_through_their_own_upstream_paths() {
    let app = spawn_app().await;
    assert_passed_through(
        &app,
        Method::POST,
        "/v1beta/models/gemini-2.5-flash:countTokens",
        BODY,
    )
    .await;
    assert_passed_through(
        &app,
        Method::POST,
        "/v1/models/gemini-embedding-001:embedContent",
        r#"{"content": {"parts": [{"text": "a"}]}}"#,
    )
    .await;
    assert_passed_through(
        &app,
        Method::POST,
        "/v1beta/models/gemini-embedding-001:batchEmbedContents",
        r#"{"requests": [{"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "a"}]}}, {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "b"}]}}]}"#,
    )
    .await;
}

/// An OpenAI-SDK request through the service: the client key as a Bearer token.
async fn openai_call(app: &TestApp, method: Method, path: &str, body: &str) -> TestResponse {
    let bearer = format!("Bearer {CLIENT_KEY}");
    app.request(
        method,
        path,
        &[("Authorization", &bearer), JSON_TYPE],
        body.to_owned(),
    )
    .await
}

/// Checks the one upstream request of an OpenAI-compatible call and clears the record.
fn assert_openai_upstream(app: &TestApp, method: &str, path: &str, body: &str) {
    let sent = only_request(app);
    assert_eq!(sent.method, method);
    assert_eq!(sent.path_and_query, path);
    assert_eq!(
        sent.header("authorization"),
        Some(format!("Bearer {SERVER_KEY}").as_str()),
        "the server key as the Bearer token"
    );
    assert_eq!(sent.header("x-goog-api-key"), None);
    assert_eq!(sent.body, body.as_bytes());
    app.mock.reset();
}

#[actix_rt::test]
async fn an_openai_chat_completion_reaches_gemini_with_the_server_key_as_bearer() {
    let app = spawn_app().await;
    let path = "/v1beta/openai/chat/completions";
    let body = json!({"model": "gemini-2.5-flash", "messages": [
        {"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]})
    .to_string();

    let response = openai_call(&app, Method::POST, path, &body).await;

    assert_eq!(response.status, 200, "{}", response.text());
    let completion = response.json();
    assert_eq!(completion["object"], "chat.completion", "{completion}");
    assert_eq!(completion["choices"][0]["message"]["content"], "echo: hi");
    assert_openai_upstream(&app, "POST", path, &body);
}

#[actix_rt::test]
async fn a_streamed_openai_chat_completion_ends_with_done() {
    let app = spawn_app().await;
    let path = "/v1beta/openai/chat/completions";
    let body = json!({"model": "gemini-2.5-flash", "stream": true,
        "messages": [{"role": "user", "content": "count to three"}]})
    .to_string();

    let response = openai_call(&app, Method::POST, path, &body).await;

    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.header("content-type"), Some("text/event-stream"));
    let text = response.text();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text:?}");
    let events: Vec<&str> = text.split_terminator("\n\n").collect();
    let mut content = String::new();
    for event in &events[..events.len() - 1] {
        let chunk: serde_json::Value =
            serde_json::from_str(event.strip_prefix("data: ").expect("a data line"))
                .expect("a JSON chunk");
        assert_eq!(chunk["object"], "chat.completion.chunk", "{chunk}");
        content.push_str(
            chunk["choices"][0]["delta"]["content"]
                .as_str()
                .unwrap_or(""),
        );
    }
    assert_eq!(content, "echo: count to three");
    assert_openai_upstream(&app, "POST", path, &body);
}

#[actix_rt::test]
async fn openai_embeddings_and_models_reach_their_upstream_paths() {
    let app = spawn_app().await;
    let embeddings = "/v1beta/openai/embeddings";
    let body = json!({"model": "gemini-embedding-001", "input": ["a", "b"]}).to_string();
    let response = openai_call(&app, Method::POST, embeddings, &body).await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(
        response.json()["data"].as_array().map(Vec::len),
        Some(2),
        "{}",
        response.text()
    );
    assert_openai_upstream(&app, "POST", embeddings, &body);

    let models = "/v1beta/openai/models";
    let response = openai_call(&app, Method::GET, models, "").await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.json()["object"], "list", "{}", response.text());
    assert_openai_upstream(&app, "GET", models, "");
}
