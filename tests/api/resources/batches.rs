//! Batches: polled, listed, cancelled and deleted on the key that made them,
//! by the client that made them only.

use super::*;
use serde_json::json;

const CREATE: &str = "/v1beta/models/gemini-2.5-flash:batchGenerateContent";

fn inline_batch(texts: &[&str]) -> String {
    let requests: Vec<serde_json::Value> = texts
        .iter()
        .map(|t| json!({"request": {"contents": [{"parts": [{"text": t}]}]}, "metadata": {"key": t}}))
        .collect();
    json!({"batch": {"displayName": "nightly", "inputConfig": {"requests": {"requests": requests}}}})
        .to_string()
}

async fn create(app: &TestApp, client: &str) -> String {
    let made = call(
        app,
        client,
        Method::POST,
        CREATE,
        inline_batch(&["one", "two"]),
    )
    .await;
    assert_eq!(made.status, 200, "{}", made.text());
    made.json()["name"].as_str().unwrap().to_owned()
}

fn key_of(app: &TestApp, name: &str) -> String {
    app.mock
        .batches()
        .into_iter()
        .find(|b| b.name == name)
        .map(|b| b.key)
        .unwrap_or_else(|| panic!("the mock holds no batch {name}"))
}

#[actix_rt::test]
async fn a_batch_is_polled_to_completion_listed_and_deleted_on_its_key() {
    let app = spawn_resources(&[]).await;
    let names = [
        create(&app, A).await,
        create(&app, A).await,
        create(&app, A).await,
    ];
    for name in &names {
        let key = key_of(&app, name);
        let mut done = serde_json::Value::Null;
        for _ in 0..40 {
            let got = call(&app, A, Method::GET, &format!("/v1beta/{name}"), "").await;
            assert_eq!(got.status, 200, "{}", got.text());
            if got.json()["metadata"]["state"] == "BATCH_STATE_SUCCEEDED" {
                done = got.json();
                break;
            }
            actix_rt::time::sleep(Duration::from_millis(25)).await;
        }
        let answers = &done["response"]["inlinedResponses"]["inlinedResponses"];
        assert_eq!(
            answers[0]["response"]["candidates"][0]["content"]["parts"][0]["text"], "echo: one",
            "{done}"
        );
        let id = name.strip_prefix("batches/").unwrap();
        // Every poll went out with the batch's key.
        assert_calls_on_key(&app, id, &key);
    }
    // A's list shows its three batches, whichever keys hold them; B's none.
    let mut listed = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..10 {
        let path = match &token {
            Some(t) => format!("/v1beta/batches?pageSize=2&pageToken={t}"),
            None => "/v1beta/batches?pageSize=2".to_owned(),
        };
        let page = call(&app, A, Method::GET, &path, "").await;
        assert_eq!(page.status, 200, "{}", page.text());
        let body = page.json();
        for op in body["operations"].as_array().into_iter().flatten() {
            listed.push(op["name"].as_str().unwrap().to_owned());
        }
        token = body["nextPageToken"].as_str().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    listed.sort();
    let mut expected = names.to_vec();
    expected.sort();
    assert_eq!(listed, expected);
    let b_list = call(&app, B, Method::GET, "/v1beta/batches", "").await;
    assert_eq!(b_list.status, 200, "{}", b_list.text());
    assert!(b_list.json()["operations"].is_null(), "{}", b_list.text());

    let deleted = call(
        &app,
        A,
        Method::DELETE,
        &format!("/v1beta/{}", names[0]),
        "",
    )
    .await;
    assert_eq!(deleted.status, 200, "{}", deleted.text());
    assert_not_found(
        "a deleted batch",
        &call(&app, A, Method::GET, &format!("/v1beta/{}", names[0]), "").await,
    );
}

#[actix_rt::test]
async fn another_client_cannot_poll_cancel_or_delete_a_batch() {
    let app = spawn_resources(&[]).await;
    app.mock
        .update_config(|c| c.batch_delay = Duration::from_secs(30));
    let name = create(&app, A).await;
    let before = app.mock.request_count();
    for (what, method, path) in [
        ("get", Method::GET, format!("/v1beta/{name}")),
        ("cancel", Method::POST, format!("/v1beta/{name}:cancel")),
        ("delete", Method::DELETE, format!("/v1beta/{name}")),
        ("get on v1", Method::GET, format!("/v1/{name}")),
    ] {
        assert_not_found(what, &call(&app, B, method, &path, "").await);
    }
    assert_eq!(
        app.mock.request_count(),
        before,
        "none of B's calls reached Gemini"
    );
    let cancelled = call(&app, A, Method::POST, &format!("/v1beta/{name}:cancel"), "").await;
    assert_eq!(cancelled.status, 200, "{}", cancelled.text());
    let state = app
        .mock
        .batches()
        .into_iter()
        .find(|b| b.name == name)
        .unwrap()
        .state;
    assert_eq!(format!("{state:?}"), "Cancelled");
}

#[actix_rt::test]
async fn malformed_batch_names_are_refused_before_gemini() {
    let app = spawn_resources(&[]).await;
    for path in [
        "/v1beta/batches/a%2Fb",
        "/v1beta/batches/has%20space",
        "/v1beta/batches/x:explode",
    ] {
        let response = call(&app, A, Method::GET, path, "").await;
        assert_eq!(response.status, 404, "{path}: {}", response.text());
        assert_eq!(response.json()["error"]["status"], "NOT_FOUND", "{path}");
    }
    assert_eq!(app.mock.request_count(), 0);
}

#[actix_rt::test]
async fn a_file_batch_runs_on_its_files_key_and_its_answers_file_is_its_clients() {
    let app = spawn_resources(&[]).await;
    let input = super::files::upload(
        &app,
        A,
        b"{\"key\": \"r1\", \"request\": {\"contents\": [{\"parts\": [{\"text\": \"hi\"}]}]}}\n",
        1024,
    )
    .await;
    let input_name = input["name"].as_str().unwrap().to_owned();
    let input_key = app
        .upstream_requests()
        .pop()
        .unwrap()
        .api_key()
        .unwrap()
        .to_owned();
    let body = json!({"batch": {"inputConfig": {"fileName": input_name}}}).to_string();
    let made = call(&app, A, Method::POST, CREATE, body.clone()).await;
    assert_eq!(made.status, 200, "{}", made.text());
    let name = made.json()["name"].as_str().unwrap().to_owned();
    assert_eq!(
        key_of(&app, &name),
        input_key,
        "the batch went out with its input file's key"
    );
    assert_not_found(
        "B's batch on A's file",
        &call(&app, B, Method::POST, CREATE, body).await,
    );
    let mut output = None;
    for _ in 0..40 {
        let got = call(&app, A, Method::GET, &format!("/v1beta/{name}"), "").await;
        assert_eq!(got.status, 200, "{}", got.text());
        if let Some(file) = got.json()["response"]["responsesFile"].as_str() {
            output = Some(file.to_owned());
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(25)).await;
    }
    let output = output.expect("the batch finished with a responses file");
    let downloaded = call(
        &app,
        A,
        Method::GET,
        &format!("/download/v1beta/{output}:download?alt=media"),
        "",
    )
    .await;
    assert_eq!(downloaded.status, 200, "{}", downloaded.text());
    assert!(!downloaded.body.is_empty());
    assert_eq!(
        app.upstream_requests().pop().unwrap().api_key(),
        Some(input_key.as_str())
    );
    assert_not_found(
        "B's download",
        &call(
            &app,
            B,
            Method::GET,
            &format!("/v1beta/{output}:download?alt=media"),
            "",
        )
        .await,
    );
}
