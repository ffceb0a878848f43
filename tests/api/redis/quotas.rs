//! Quota windows kept in Redis: two replicas share every window, and with
//! Redis down each replica keeps to its own windows.

use super::server::RedisServer;
use super::{closed_port_url, wait_for_backend, with_redis, KeysFile};
use crate::helpers::{code_of, spawn_app_with, TestApp, CLIENT_KEY};
use awc::http::Method;
use serde_json::{json, Value};
use std::time::Duration;

const QUOTAS: &str = "models = [\"gemini-2.5-flash\", \"gemini-2.5-pro\"]\n\
    requests_per_day = 6\ntokens_per_day = 1000000\n\
    [[client.quota]]\nmodels = [\"gemini-2.5-pro\"]\nrequests_per_day = 2";

async fn generate(app: &TestApp, model: &str) -> u16 {
    let response = app
        .request(
            Method::POST,
            &format!("/v1beta/models/{model}:generateContent"),
            &[
                ("x-goog-api-key", CLIENT_KEY),
                ("content-type", "application/json"),
            ],
            json!({"contents": [{"parts": [{"text": "hi"}]}]}).to_string(),
        )
        .await;
    if response.status == 429 {
        assert_eq!(
            code_of(&response).as_deref(),
            Some("RATE_LIMITED"),
            "{}",
            response.text()
        );
    }
    // Charges go to Redis just after the answer; the next request follows a
    // moment later, as a real client's would.
    tokio::time::sleep(Duration::from_millis(30)).await;
    response.status
}

async fn usage(app: &TestApp) -> Value {
    app.request(Method::GET, "/usage", &[("X-API-KEY", CLIENT_KEY)], "")
        .await
        .json()
}

#[actix_rt::test]
async fn two_replicas_share_every_quota_window_through_redis() {
    let Some(redis) = RedisServer::start("quota-replicas").await else {
        return;
    };
    let keys = KeysFile::new("quota-replicas", 6000, 1000);
    keys.write(6000, 1000, QUOTAS);
    let a = spawn_app_with(|s| with_redis(s, &redis.url(), &keys)).await;
    let b = spawn_app_with(|s| with_redis(s, &redis.url(), &keys)).await;
    wait_for_backend(&a.address, 1.0).await;
    wait_for_backend(&b.address, 1.0).await;

    // The group's two requests, one through each replica; a third is refused by either.
    assert_eq!(generate(&a, "gemini-2.5-pro").await, 200);
    assert_eq!(generate(&b, "gemini-2.5-pro").await, 200);
    assert_eq!(generate(&a, "gemini-2.5-pro").await, 429);
    assert_eq!(generate(&b, "gemini-2.5-pro").await, 429);
    // The client's total: six between them, the two pro requests included.
    let mut admitted = 2;
    for app in [&a, &b].into_iter().cycle().take(12) {
        if generate(app, "gemini-2.5-flash").await == 200 {
            admitted += 1;
        }
    }
    assert_eq!(
        admitted, 6,
        "two replicas admitted one client's daily limit between them"
    );

    // Both replicas read the same windows.
    let (seen_a, seen_b) = (usage(&a).await, usage(&b).await);
    assert_eq!(seen_a["windows"]["requests_per_day"]["used"], 6, "{seen_a}");
    assert_eq!(
        seen_a["windows"]["tokens_per_day"],
        seen_b["windows"]["tokens_per_day"]
    );
    assert!(seen_a["windows"]["tokens_per_day"]["used"].as_u64() > Some(0));
    assert_eq!(
        seen_b["quota"][0]["windows"]["requests_per_day"]["used"], 2,
        "{seen_b}"
    );
}

#[actix_rt::test]
async fn with_redis_down_each_replica_keeps_to_its_own_windows() {
    let keys = KeysFile::new("quota-down", 6000, 1000);
    keys.write(6000, 1000, "requests_per_day = 2");
    let a = spawn_app_with(|s| with_redis(s, &closed_port_url(), &keys)).await;
    let b = spawn_app_with(|s| with_redis(s, &closed_port_url(), &keys)).await;
    wait_for_backend(&a.address, 0.0).await;
    wait_for_backend(&b.address, 0.0).await;
    for app in [&a, &b] {
        assert_eq!(generate(app, "gemini-2.5-flash").await, 200);
        assert_eq!(generate(app, "gemini-2.5-flash").await, 200);
        assert_eq!(
            generate(app, "gemini-2.5-flash").await,
            429,
            "its own window is full"
        );
    }
    assert_eq!(usage(&a).await["windows"]["requests_per_day"]["used"], 2);
}
