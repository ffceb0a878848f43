//! One client's limit shared by replicas: the count two replicas admit, the
//! script against governor, the keys Redis holds, reloads.

use super::server::RedisServer;
use super::{
    allowance, alternate, client_bucket, limits, send, wait_for_backend, with_keys, with_redis,
    KeysFile, BACKEND_UP, BURST, CLIENT, RPM,
};
use crate::helpers::{metric_value, spawn_app_with};
use gemini_proxy::keys::limiter::{ClientLimiter, Decision};
use gemini_proxy::keys::redis_limiter::{bucket_key, gcra_script, take};
use governor::clock::FakeRelativeClock;
use redis::AsyncCommands;
use serde_json::json;
use std::time::Duration;

#[actix_rt::test]
async fn two_replicas_admit_one_clients_limit_between_them_through_redis() {
    let Some(redis) = RedisServer::start("two-replicas").await else {
        return;
    };
    let keys = KeysFile::new("two-replicas", RPM, BURST);
    let a = spawn_app_with(|s| with_redis(s, &redis.url(), &keys)).await;
    let b = spawn_app_with(|s| with_redis(s, &redis.url(), &keys)).await;
    wait_for_backend(&a.address, 1.0).await;
    wait_for_backend(&b.address, 1.0).await;

    let (each, elapsed) = alternate(&[&a, &b]).await;
    let (admitted, expected) = (each.iter().sum::<u32>(), allowance(elapsed));
    eprintln!("redis backend, two replicas: {admitted} admitted ({each:?}) over {elapsed:?}; one bucket allows {expected}");
    assert!(
        admitted.abs_diff(expected) <= 1,
        "two replicas sharing Redis admitted {admitted} ({each:?}), one bucket allows {expected} over {elapsed:?}"
    );
    assert!(
        each.iter().all(|n| *n > 0),
        "both replicas served: {each:?}"
    );
    // Both replicas asked Redis: neither fell back on its own bucket.
    for app in [&a, &b] {
        assert_eq!(metric_value(&app.metrics().await, BACKEND_UP), Some(1.0));
    }
}

#[actix_rt::test]
async fn two_replicas_with_the_memory_backend_each_admit_the_whole_limit() {
    let keys = KeysFile::new("two-memory", RPM, BURST);
    let a = spawn_app_with(|s| with_keys(s, &keys)).await;
    let b = spawn_app_with(|s| with_keys(s, &keys)).await;

    let (each, elapsed) = alternate(&[&a, &b]).await;
    let (admitted, expected) = (each.iter().sum::<u32>(), allowance(elapsed));
    eprintln!("memory backend, two replicas: {admitted} admitted ({each:?}) over {elapsed:?}; one bucket allows {expected}");
    // Each replica has its own bucket: about twice what one allows.
    assert!(
        admitted.abs_diff(2 * expected) <= 2,
        "two memory replicas admitted {admitted} ({each:?}), two buckets allow {}",
        2 * expected
    );
    // The memory backend has no Redis to report on.
    assert_eq!(metric_value(&a.metrics().await, BACKEND_UP), None);
}

#[actix_rt::test]
async fn the_lua_gcra_admits_exactly_what_governor_admits() {
    let Some(redis) = RedisServer::start("gcra").await else {
        return;
    };
    let mut conn = redis.connection().await;
    let script = gcra_script();
    let mut random = fastrand::Rng::with_seed(7);
    // Emission intervals of a second or more, so no key can expire (in real
    // time) while the test moves its own clock by less.
    for (rpm, burst) in [(60, 1), (60, 5), (40, 3), (1, 2), (12, 10)] {
        let limits = limits(rpm, burst);
        let interval_us = 60_000_000 / u64::from(rpm);
        let clock = FakeRelativeClock::default();
        let governor = ClientLimiter::new(limits, clock.clone());
        let key = format!("gcra-test:{rpm}:{burst}");
        let mut now_us: u64 = 1_000_000_000;
        let (mut admitted, mut refused) = (0, 0);
        for step in 0..300 {
            // Mostly bursts (no time passes), sometimes part of an interval,
            // sometimes several.
            let advance = match random.u8(0..10) {
                0..=4 => 0,
                5..=8 => random.u64(0..interval_us),
                _ => random.u64(0..4 * interval_us),
            };
            now_us += advance;
            clock.advance(Duration::from_micros(advance));
            let expected = governor.take();
            let found = take(&mut conn, &script, &key, limits, Some(now_us))
                .await
                .expect("script runs");
            assert_eq!(found, expected, "{rpm}/min burst {burst}, step {step}");
            match found {
                Decision::Allowed(_) => admitted += 1,
                Decision::Limited { .. } => refused += 1,
            }
        }
        assert!(admitted > 0 && refused > 0, "both outcomes were tried");
    }
}

#[actix_rt::test]
async fn bucket_keys_are_namespaced_and_expire_by_themselves() {
    let Some(redis) = RedisServer::start("keys").await else {
        return;
    };
    // Ten tokens a second, two at once: a full bucket again 200 ms after use.
    let keys = KeysFile::new("keys", 600, 2);
    let app = spawn_app_with(|s| with_redis(s, &redis.url(), &keys)).await;
    wait_for_backend(&app.address, 1.0).await;
    let mut conn = redis.connection().await;

    // An unknown key writes nothing.
    let response = app
        .request(
            awc::http::Method::POST,
            "/gemini-proxy",
            &[("X-API-KEY", "not-a-client-key-at-all")],
            "{}",
        )
        .await;
    assert_eq!(response.status, 401);
    let found: Vec<String> = conn.keys("*").await.expect("KEYS");
    assert!(found.is_empty(), "{found:?}");

    assert_eq!(send(&app.address).await.0, 200);
    let found: Vec<String> = conn.keys("*").await.expect("KEYS");
    let key = bucket_key(CLIENT, limits(600, 2));
    assert_eq!(found, vec![key.clone()]);
    assert_eq!(key, "gemini-proxy:rl:shared-client:600:2");
    let ttl_ms: i64 = conn.pttl(&key).await.expect("PTTL");
    assert!(
        (1..=200).contains(&ttl_ms),
        "expires when the bucket is full again (at most 200 ms): {ttl_ms}"
    );
    let ttl_s: i64 = conn.ttl(&key).await.expect("TTL");
    assert!(ttl_s >= 0, "TTL {ttl_s}: the key has an expiry");

    tokio::time::sleep(Duration::from_millis(400)).await;
    let left: bool = conn.exists(&key).await.expect("EXISTS");
    assert!(!left, "the key expired by itself");
}

#[actix_rt::test]
async fn a_reload_keeps_the_shared_bucket_of_a_client_whose_limits_did_not_change() {
    let Some(redis) = RedisServer::start("reload").await else {
        return;
    };
    // One token a minute: nothing refills during the test.
    let keys = KeysFile::new("reload", 1, 2);
    let app = spawn_app_with(|s| with_redis(s, &redis.url(), &keys)).await;
    wait_for_backend(&app.address, 1.0).await;
    for expected in [200, 200, 429] {
        assert_eq!(send(&app.address).await.0, expected);
    }

    keys.write(
        1,
        2,
        "\n[[client]]\nname = \"newcomer\"\nkey = \"another-client-key-0123456789\"\n",
    );
    app.control.reload().await.expect("reload");
    assert_eq!(
        send(&app.address).await.0,
        429,
        "same name and limits: same bucket"
    );

    keys.write(1, 3, "");
    app.control.reload().await.expect("reload");
    assert_eq!(
        send(&app.address).await.0,
        200,
        "new limits: a new, full bucket"
    );
    let mut conn = redis.connection().await;
    let mut found: Vec<String> = conn.keys("gemini-proxy:rl:*").await.expect("KEYS");
    found.sort();
    assert_eq!(
        found,
        [
            "gemini-proxy:rl:shared-client:1:2",
            "gemini-proxy:rl:shared-client:1:3"
        ],
        "the old bucket is left to expire"
    );
}

#[actix_rt::test]
async fn a_foreign_value_at_a_bucket_key_is_replaced_rather_than_failing_checks() {
    let Some(redis) = RedisServer::start("foreign").await else {
        return;
    };
    let keys = KeysFile::new("foreign", RPM, BURST);
    let app = spawn_app_with(|s| with_redis(s, &redis.url(), &keys)).await;
    wait_for_backend(&app.address, 1.0).await;
    let mut conn = redis.connection().await;
    let _: () = conn
        .rpush(client_bucket(), "not a time")
        .await
        .expect("RPUSH");
    let response = app.proxy(&json!({"prompt": "hi"})).await;
    assert_eq!(response.status, 200);
    assert_eq!(
        response.header("ratelimit-remaining"),
        Some((BURST - 1).to_string().as_str()),
        "a full bucket"
    );
    let kind: String = redis::cmd("TYPE")
        .arg(client_bucket())
        .query_async(&mut conn)
        .await
        .expect("TYPE");
    assert_eq!(kind, "string");
    assert_eq!(metric_value(&app.metrics().await, BACKEND_UP), Some(1.0));
}
