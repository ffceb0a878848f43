//! The Batch API: create, poll to SUCCEEDED, inlined results with usage, list, cancel,
//! delete, and batches kept to the project of the key that made them.

use std::time::{Duration, Instant};

use gemini_mock::{BatchState, MockConfig, MockGemini};
use serde_json::{json, Value};

use crate::helpers::{call, Resp};

const CREATE: &str = "/v1beta/models/gemini-2.5-flash:batchGenerateContent";
const NOT_FOUND: &str = r#"{
  "error": {
    "code": 404,
    "message": "Requested entity was not found.",
    "status": "NOT_FOUND"
  }
}
"#;

/// Keys `a` and `b` share project `p1`; any other key is a project of its own.
async fn start(delay: Duration) -> MockGemini {
    let mut config = MockConfig {
        batch_delay: delay,
        ..MockConfig::default()
    };
    config.projects.insert("a".into(), "p1".into());
    config.projects.insert("b".into(), "p1".into());
    MockGemini::start(config).await.unwrap()
}

fn two_requests() -> String {
    json!({"batch": {"displayName": "nightly", "inputConfig": {"requests": {"requests": [
        {"request": {"contents": [{"role": "user", "parts": [{"text": "hello batch"}]}]},
         "metadata": {"key": "r1"}},
        {"request": {"contents": [{"parts": [{"text": "second"}]}]}, "metadata": {"key": "r2"}}
    ]}}}})
    .to_string()
}

async fn create(mock: &MockGemini, key: &str) -> Value {
    let r = call(
        mock,
        "POST",
        CREATE,
        &[("x-goog-api-key", key)],
        Some(&two_requests()),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

async fn get(mock: &MockGemini, key: &str, name: &str) -> Resp {
    call(
        mock,
        "GET",
        &format!("/v1beta/{name}"),
        &[("x-goog-api-key", key)],
        None,
    )
    .await
}

#[actix_rt::test]
async fn a_batch_is_pending_then_running_then_succeeded_with_one_answer_per_request() {
    let mock = start(Duration::from_millis(400)).await;
    let op = create(&mock, "a").await;
    let name = op["name"].as_str().unwrap().to_owned();
    assert!(name.starts_with("batches/") && name.len() == 48, "{name}");
    let meta = &op["metadata"];
    assert_eq!(
        meta["@type"],
        "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch"
    );
    assert_eq!(meta["model"], "models/gemini-2.5-flash");
    assert_eq!(meta["displayName"], "nightly");
    assert_eq!(meta["state"], "BATCH_STATE_PENDING");
    assert_eq!(meta["name"], name.as_str());
    assert_eq!(
        meta["batchStats"],
        json!({"requestCount": "2", "pendingRequestCount": "2"})
    );
    assert!(meta["createTime"].as_str().unwrap().ends_with('Z'));
    assert!(
        op.get("done").is_none() && op.get("response").is_none(),
        "{op}"
    );

    let started = Instant::now();
    let mut states = vec![];
    let done = loop {
        let r = get(&mock, "b", &name).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let op = r.json();
        let state = op["metadata"]["state"].as_str().unwrap().to_owned();
        if states.last() != Some(&state) {
            states.push(state.clone());
        }
        if state == "BATCH_STATE_SUCCEEDED" {
            break op;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "{states:?}");
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        states,
        [
            "BATCH_STATE_PENDING",
            "BATCH_STATE_RUNNING",
            "BATCH_STATE_SUCCEEDED"
        ]
    );
    assert_eq!(done["done"], true);
    assert_eq!(
        done["response"]["@type"],
        "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatchOutput"
    );
    assert!(done["metadata"]["endTime"].is_string());
    assert_eq!(
        done["metadata"]["batchStats"]["successfulRequestCount"],
        "2"
    );
    let items = done["metadata"]["output"]["inlinedResponses"]["inlinedResponses"]
        .as_array()
        .unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(
        items,
        done["response"]["inlinedResponses"]["inlinedResponses"]
            .as_array()
            .unwrap()
    );
    let first = &items[0];
    assert_eq!(first["metadata"], json!({"key": "r1"}));
    let response = &first["response"];
    assert_eq!(
        response["candidates"][0]["content"]["parts"][0]["text"],
        "echo: hello batch"
    );
    assert_eq!(response["modelVersion"], "gemini-2.5-flash");
    let usage = &response["usageMetadata"];
    assert_eq!(usage["promptTokenCount"], 2);
    assert_eq!(usage["totalTokenCount"], 5);
    assert_eq!(
        items[1]["response"]["candidates"][0]["content"]["parts"][0]["text"],
        "echo: second"
    );
    let records = mock.batches();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].name, name);
    assert_eq!(
        (records[0].key.as_str(), records[0].project.as_str()),
        ("a", "p1")
    );
    assert_eq!(records[0].state, BatchState::Succeeded);
    mock.stop().await;
}

#[actix_rt::test]
async fn snake_case_bodies_file_input_and_bad_requests() {
    let mock = start(Duration::ZERO).await;
    let key = [("x-goog-api-key", "k")];
    let snake = json!({"batch": {"display_name": "s", "input_config": {"requests": {"requests": [
        {"request": {"contents": [{"parts": [{"text": "x"}]}]}},
        {"request": {"contents": []}}
    ]}}}})
    .to_string();
    for version in ["v1", "v1beta", "v1alpha"] {
        let path = format!("/{version}/models/gemini-2.5-flash:batchGenerateContent");
        let r = call(&mock, "POST", &path, &key, Some(&snake)).await;
        assert_eq!(r.status, 200, "{version}: {}", r.text());
        let op = r.json();
        // With no delay the batch is done at creation; the empty request failed alone.
        assert_eq!(op["metadata"]["state"], "BATCH_STATE_SUCCEEDED");
        let items = &op["response"]["inlinedResponses"]["inlinedResponses"];
        assert_eq!(
            items[0]["response"]["candidates"][0]["content"]["parts"][0]["text"],
            "echo: x"
        );
        assert_eq!(items[1]["error"]["code"], 3);
        assert_eq!(op["metadata"]["batchStats"]["failedRequestCount"], "1");
    }
    // A file the project does not hold is refused as a prompt naming it would be.
    let unheld = json!({"batch": {"inputConfig": {"fileName": "files/abc-123"}}}).to_string();
    let refused = call(&mock, "POST", CREATE, &key, Some(&unheld)).await;
    assert_eq!(refused.status, 403, "{}", refused.text());
    let uploaded = super::files::upload(&mock, "k", b"{\"key\": \"r1\"}\n", 1024).await;
    let name = uploaded["name"].as_str().unwrap().to_owned();
    let file = json!({"batch": {"inputConfig": {"fileName": name}}}).to_string();
    let op = call(&mock, "POST", CREATE, &key, Some(&file)).await.json();
    let id = op["name"]
        .as_str()
        .unwrap()
        .strip_prefix("batches/")
        .unwrap();
    assert_eq!(
        op["response"]["responsesFile"],
        format!("files/batch-{id}").as_str()
    );

    let unknown = call(
        &mock,
        "POST",
        "/v1/models/nope-1:batchGenerateContent",
        &key,
        Some(&file),
    )
    .await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.json()["error"]["status"], "NOT_FOUND");
    for body in [
        "{not json",
        "{}",
        r#"{"batch": {}}"#,
        r#"{"batch": {"inputConfig": {"requests": {"requests": []}}}}"#,
        r#"{"batch": {"inputConfig": {"fileName": "files/a", "requests": {"requests": [{}]}}}}"#,
    ] {
        let r = call(&mock, "POST", CREATE, &key, Some(body)).await;
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        assert_eq!(r.json()["error"]["status"], "INVALID_ARGUMENT");
    }
    let anonymous = call(&mock, "POST", CREATE, &[], Some(&file)).await;
    assert_eq!(anonymous.status, 403);
    mock.stop().await;
}

#[actix_rt::test]
async fn embedding_batches_answer_embeddings() {
    let mock = start(Duration::ZERO).await;
    let body = json!({"batch": {"displayName": "e", "inputConfig": {"requests": {"requests": [
        {"request": {"content": {"parts": [{"text": "one"}]}}}
    ]}}}})
    .to_string();
    let path = "/v1beta/models/gemini-embedding-001:asyncBatchEmbedContent";
    let r = call(&mock, "POST", path, &[("x-goog-api-key", "k")], Some(&body)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let op = r.json();
    let item = &op["response"]["inlinedResponses"]["inlinedResponses"][0];
    assert_eq!(
        item["response"]["embedding"]["values"]
            .as_array()
            .unwrap()
            .len(),
        8
    );
    mock.stop().await;
}

#[actix_rt::test]
async fn list_shows_the_callers_project_only_a_page_at_a_time() {
    let mock = start(Duration::from_secs(60)).await;
    let mine = [create(&mock, "a").await, create(&mock, "b").await];
    let theirs = create(&mock, "c").await;
    let names: Vec<&str> = mine.iter().map(|op| op["name"].as_str().unwrap()).collect();

    let list = |key: &'static str, query: String| {
        let mock = &mock;
        async move {
            let path = format!("/v1beta/batches{query}");
            let r = call(mock, "GET", &path, &[("x-goog-api-key", key)], None).await;
            assert_eq!(r.status, 200, "{}", r.text());
            r.json()
        }
    };
    let all = list("a", String::new()).await;
    let listed: Vec<&str> = all["operations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|op| op["name"].as_str().unwrap())
        .collect();
    assert_eq!(listed, names);
    assert!(all.get("nextPageToken").is_none());

    let first = list("b", "?pageSize=1".into()).await;
    assert_eq!(first["operations"][0]["name"], names[0]);
    let token = first["nextPageToken"].as_str().unwrap().to_owned();
    let second = list("b", format!("?pageSize=1&pageToken={token}")).await;
    assert_eq!(second["operations"][0]["name"], names[1]);
    assert!(second.get("nextPageToken").is_none());

    let other = list("c", String::new()).await;
    assert_eq!(other["operations"].as_array().unwrap().len(), 1);
    assert_eq!(other["operations"][0]["name"], theirs["name"]);
    let nobody = list("z", String::new()).await;
    assert_eq!(nobody, json!({"operations": []}));
    mock.stop().await;
}

#[actix_rt::test]
async fn cancel_and_delete_answer_empty_objects() {
    let mock = start(Duration::from_secs(60)).await;
    let name = create(&mock, "a").await["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let key = [("x-goog-api-key", "b")];
    let cancel = format!("/v1beta/{name}:cancel");
    let r = call(&mock, "POST", &cancel, &key, None).await;
    assert_eq!((r.status, r.text().as_str()), (200, "{}\n"));
    let op = get(&mock, "a", &name).await.json();
    assert_eq!(op["metadata"]["state"], "BATCH_STATE_CANCELLED");
    assert_eq!(op["done"], true);
    assert!(op.get("response").is_none());
    let again = call(&mock, "POST", &cancel, &key, None).await;
    assert_eq!(again.status, 400);
    assert_eq!(again.json()["error"]["status"], "FAILED_PRECONDITION");

    let path = format!("/v1beta/{name}");
    let r = call(&mock, "DELETE", &path, &key, None).await;
    assert_eq!((r.status, r.text().as_str()), (200, "{}\n"));
    assert_eq!(get(&mock, "a", &name).await.text(), NOT_FOUND);
    assert_eq!(call(&mock, "DELETE", &path, &key, None).await.status, 404);
    assert!(mock.batches()[0].deleted);
    mock.stop().await;
}

#[actix_rt::test]
async fn another_projects_batch_is_not_found_on_every_route() {
    let mock = start(Duration::from_secs(60)).await;
    let name = create(&mock, "a").await["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let key = [("x-goog-api-key", "c")];
    let routes = [
        ("GET", format!("/v1beta/{name}")),
        ("POST", format!("/v1beta/{name}:cancel")),
        ("DELETE", format!("/v1beta/{name}")),
    ];
    for (method, path) in &routes {
        let r = call(&mock, method, path, &key, None).await;
        assert_eq!(
            (r.status, r.text().as_str()),
            (404, NOT_FOUND),
            "{method} {path}"
        );
    }
    // Nothing was changed by the refused calls.
    let op = get(&mock, "a", &name).await.json();
    assert_eq!(op["metadata"]["state"], "BATCH_STATE_PENDING");
    let never = get(&mock, "a", "batches/doesnotexist").await;
    assert_eq!((never.status, never.text().as_str()), (404, NOT_FOUND));
    mock.stop().await;
}

#[actix_rt::test]
async fn an_exhausted_quota_refuses_the_batch_with_429() {
    let mut config = MockConfig::default();
    config.exhausted_keys.insert("spent".into());
    let mock = MockGemini::start(config).await.unwrap();
    let r = call(
        &mock,
        "POST",
        CREATE,
        &[("x-goog-api-key", "spent")],
        Some(&two_requests()),
    )
    .await;
    assert_eq!(r.status, 429);
    assert_eq!(r.json()["error"]["status"], "RESOURCE_EXHAUSTED");
    assert!(mock.batches().is_empty());
    mock.stop().await;
}
