//! Ownership shared by replicas through Redis: an upload started on one
//! replica takes its chunks on another, and the file it makes is used, and
//! refused to other clients, on both — each replica given the server keys in
//! a different order, since records name keys by fingerprint, not position.

use super::server::RedisServer;
use crate::helpers::{spawn_app_with, TestApp};
use crate::resources::files::{chunk, local_path, start};
use crate::resources::{assert_not_found, call, keys_file, A, B, KEYS};
use awc::http::Method;
use serde_json::json;

async fn replica(
    redis: &RedisServer,
    keys: &str,
    server_keys: String,
    mock_url: Option<String>,
) -> TestApp {
    let keys = keys.to_owned();
    spawn_app_with(move |settings| {
        settings.insert("GEMINI_API_KEY".into(), server_keys);
        settings.insert("API_KEYS".into(), String::new());
        settings.insert("KEYS_FILE".into(), keys);
        settings.insert("RATE_LIMIT_BACKEND".into(), "redis".into());
        settings.insert("REDIS_URL".into(), redis.url());
        settings.insert("REDIS_TIMEOUT_MS".into(), "1000".into());
        if let Some(url) = mock_url {
            settings.insert("GEMINI_BASE_URL".into(), url);
        }
    })
    .await
}

#[actix_rt::test]
async fn a_file_uploaded_through_one_replica_is_usable_through_the_other() {
    let Some(redis) = RedisServer::start("resources").await else {
        return;
    };
    let keys = keys_file(
        "redis-resources",
        &format!(
            "[defaults]\nrequests_per_minute = 60000\nburst = 5000\n\n\
             [[client]]\nname = \"a\"\nkey = \"{A}\"\n\n[[client]]\nname = \"b\"\nkey = \"{B}\"\n"
        ),
    );
    let one = replica(&redis, &keys, KEYS.join(","), None).await;
    let mut reversed = KEYS;
    reversed.reverse();
    // The second replica calls the first one's Gemini.
    let two = replica(&redis, &keys, reversed.join(","), Some(one.mock.base_url())).await;

    let data: Vec<u8> = (0..50_000u32).map(|i| (i % 253) as u8).collect();
    let started = start(&one, A, "/upload/v1beta/files", data.len()).await;
    assert_eq!(started.status, 200, "{}", started.text());
    let path = local_path(
        &one,
        started.header("x-goog-upload-url").unwrap(),
        &one.address,
    );
    // Keyless chunks, alternating replicas.
    let first = chunk(&two, &path, "upload", 0, &data[..20_000], None).await;
    assert_eq!(first.status, 200, "{}", first.text());
    let second = chunk(&one, &path, "upload", 20_000, &data[20_000..40_000], None).await;
    assert_eq!(second.status, 200, "{}", second.text());
    let last = chunk(
        &two,
        &path,
        "upload, finalize",
        40_000,
        &data[40_000..],
        None,
    )
    .await;
    assert_eq!(last.status, 200, "{}", last.text());
    let name = last.json()["file"]["name"].as_str().unwrap().to_owned();
    let id = name.strip_prefix("files/").unwrap().to_owned();
    let held = one
        .mock
        .files()
        .into_iter()
        .find(|f| f.id == id)
        .expect("the file exists");
    assert_eq!(held.size, data.len() as u64);
    let key = held.project.strip_prefix("key:").unwrap().to_owned();
    let upload_keys: Vec<String> = one
        .upstream_requests()
        .iter()
        .filter(|r| r.path_and_query.starts_with("/upload/"))
        .map(|r| r.api_key().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(upload_keys.len(), 4);
    assert!(upload_keys.iter().all(|k| *k == key), "{upload_keys:?}");

    for app in [&one, &two] {
        let got = call(app, A, Method::GET, &format!("/v1beta/{name}"), "").await;
        assert_eq!(got.status, 200, "{}", got.text());
        let body = json!({"contents": [{"parts": [{"fileData": {"fileUri": name, "mimeType": "text/plain"}}, {"text": "hi"}]}]});
        let used = call(
            app,
            A,
            Method::POST,
            "/v1beta/models/gemini-2.5-flash:generateContent",
            body.to_string(),
        )
        .await;
        assert_eq!(used.status, 200, "{}", used.text());
        assert_eq!(
            one.upstream_requests().pop().unwrap().api_key(),
            Some(key.as_str())
        );
        assert_not_found(
            "B's get",
            &call(app, B, Method::GET, &format!("/v1beta/{name}"), "").await,
        );
    }
    // An interaction started on one replica continues on the other.
    let made = call(
        &one,
        A,
        Method::POST,
        "/v1/interactions",
        json!({"model": "gemini-2.5-flash", "input": "hi"}).to_string(),
    )
    .await;
    assert_eq!(made.status, 200, "{}", made.text());
    let previous = made.json()["id"].as_str().unwrap().to_owned();
    let next = call(
        &two,
        A,
        Method::POST,
        "/v1/interactions",
        json!({"model": "gemini-2.5-flash", "input": "more", "previous_interaction_id": previous})
            .to_string(),
    )
    .await;
    assert_eq!(next.status, 200, "{}", next.text());
    assert_not_found(
        "B continuing it",
        &call(
            &two,
            B,
            Method::POST,
            "/v1/interactions",
            json!({"model": "gemini-2.5-flash", "input": "x", "previous_interaction_id": previous})
                .to_string(),
        )
        .await,
    );
}
