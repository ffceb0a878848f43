//! Redis down at start-up, paused, killed and back: requests are answered
//! without waiting, by the local limit, and shared limits return.

use super::server::RedisServer;
use super::{
    client_bucket, closed_port_url, median, metrics_at, send, wait_for_backend, with_redis,
    KeysFile, BACKEND_UP, BURST, RPM,
};
use crate::helpers::{binary_env, leaked_fragments, metric_value, spawn_app_with, BinaryApp};
use gemini_mock::{MockConfig, MockGemini};
use redis::AsyncCommands;
use std::time::{Duration, Instant};

#[actix_rt::test]
async fn a_redis_down_at_start_up_leaves_the_local_limit_in_force() {
    let keys = KeysFile::new("down-at-start", 1, BURST);
    let app = spawn_app_with(|s| with_redis(s, &closed_port_url(), &keys)).await;
    wait_for_backend(&app.address, 0.0).await;

    let mut statuses = Vec::new();
    let mut slowest = Duration::ZERO;
    for _ in 0..BURST + 3 {
        let (status, took) = send(&app.address).await;
        statuses.push(status);
        slowest = slowest.max(took);
    }
    let admitted = statuses.iter().filter(|s| **s == 200).count();
    assert_eq!(
        admitted, BURST as usize,
        "the in-process burst: {statuses:?}"
    );
    assert_eq!(statuses.last(), Some(&429));
    assert!(
        slowest < Duration::from_millis(500),
        "no request waits for a Redis that is down: {slowest:?}"
    );
    assert_eq!(metric_value(&app.metrics().await, BACKEND_UP), Some(0.0));
}

#[actix_rt::test]
async fn a_paused_redis_is_waited_for_only_the_timeout() {
    let Some(redis) = RedisServer::start("paused").await else {
        return;
    };
    let keys = KeysFile::new("paused", 6000, 1000);
    let app = spawn_app_with(|s| {
        with_redis(s, &redis.url(), &keys);
        s.insert("REDIS_TIMEOUT_MS".into(), "20".into());
    })
    .await;
    wait_for_backend(&app.address, 1.0).await;
    let mut conn = redis.connection().await;
    // Redis holds every command for 1.5 s: slow, not gone.
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(1500)
        .arg("ALL")
        .query_async(&mut conn)
        .await
        .expect("CLIENT PAUSE");
    let paused_at = Instant::now();
    for _ in 0..5 {
        let (status, took) = send(&app.address).await;
        assert_eq!(status, 200);
        assert!(
            took < Duration::from_millis(500),
            "a request waited {took:?} for a paused Redis (timeout 20 ms)"
        );
    }
    assert!(
        paused_at.elapsed() < Duration::from_millis(1500),
        "still paused"
    );
    assert_eq!(metric_value(&app.metrics().await, BACKEND_UP), Some(0.0));
    // Redis answers again after the pause, and the replica notices.
    wait_for_backend(&app.address, 1.0).await;
}

/// Lines of the binary's log that report a change of the Redis backend.
fn transitions(logs: &str) -> (usize, usize) {
    let up = logs
        .lines()
        .filter(|l| l.contains("rate limits: Redis at") && l.contains("answers; limits are shared"))
        .count();
    let down = logs
        .lines()
        .filter(|l| l.contains("rate limits: Redis at") && l.contains("is unavailable"))
        .count();
    (up, down)
}

#[actix_rt::test]
async fn a_redis_killed_mid_run_costs_requests_nothing_and_shared_limits_return() {
    let Some(mut redis) = RedisServer::start("killed").await else {
        return;
    };
    let mock = MockGemini::start(MockConfig::default())
        .await
        .expect("mock");
    let keys = KeysFile::new("killed", RPM, BURST);
    let mut env = binary_env(&mock);
    with_redis(&mut env, &redis.url(), &keys);
    let app = BinaryApp::start(&[], &env);
    wait_for_backend(&app.address, 1.0).await;
    assert_eq!(transitions(&app.logs()), (1, 0), "{}", app.logs());

    // Up: the bucket is the one in Redis.
    let mut conn = redis.connection().await;
    let mut before = Vec::new();
    for _ in 0..BURST {
        let (status, took) = send(&app.address).await;
        assert_eq!(status, 200);
        before.push(took);
    }
    assert_eq!(
        send(&app.address).await.0,
        429,
        "the shared bucket is empty"
    );
    let ttl: i64 = conn.pttl(client_bucket()).await.expect("PTTL");
    assert!(ttl > 0, "{ttl}");

    // Killed: every request is answered, by the local bucket (still full, as
    // Redis did the counting), without waiting for Redis.
    redis.kill();
    let mut statuses = Vec::new();
    let mut after = Vec::new();
    for _ in 0..BURST + 2 {
        let (status, took) = send(&app.address).await;
        statuses.push(status);
        after.push(took);
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        BURST as usize,
        "{statuses:?}"
    );
    let (median_before, median_after) = (median(before), median(after.clone()));
    let slowest_after = after.iter().max().copied().unwrap_or_default();
    eprintln!(
        "Redis killed: median request {median_before:?} before, {median_after:?} after (slowest {slowest_after:?})"
    );
    assert!(
        median_after < median_before + Duration::from_millis(20),
        "requests slowed from {median_before:?} to {median_after:?} without Redis"
    );
    assert!(
        slowest_after < Duration::from_millis(500),
        "{slowest_after:?}"
    );
    wait_for_backend(&app.address, 0.0).await;
    // Probes keep failing meanwhile; the change is still logged once.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(transitions(&app.logs()), (1, 1), "{}", app.logs());

    // Back: the replica uses the shared bucket again.
    redis.restart().await;
    wait_for_backend(&app.address, 1.0).await;
    assert_eq!(transitions(&app.logs()), (2, 1), "{}", app.logs());
    let mut conn = redis.connection().await;
    // Empty the shared bucket behind the replica's back (its TAT ten minutes
    // ahead): the next request is refused though the local bucket has refilled.
    let (seconds, micros): (u64, u64) = redis::cmd("TIME")
        .query_async(&mut conn)
        .await
        .expect("TIME");
    let full_at = seconds * 1_000_000 + micros + 600_000_000;
    let _: () = conn
        .set_ex(client_bucket(), full_at, 600)
        .await
        .expect("SET");
    assert_eq!(send(&app.address).await.0, 429, "Redis decides again");
    let _: () = conn.del(client_bucket()).await.expect("DEL");
    assert_eq!(send(&app.address).await.0, 200, "a fresh shared bucket");
}

#[actix_rt::test]
async fn a_redis_password_never_appears_in_logs_metrics_or_check_config() {
    const PASSWORD: &str = "redis-PASSWORD-4f1c9e";
    const WRONG: &str = "wrong-PASSWORD-77ab3d";
    let Some(redis) = RedisServer::start_with_password("password", Some(PASSWORD)).await else {
        return;
    };
    let mock = MockGemini::start(MockConfig::default())
        .await
        .expect("mock");
    let keys = KeysFile::new("password", RPM, BURST);

    let mut env = binary_env(&mock);
    with_redis(&mut env, &redis.url().replace(PASSWORD, WRONG), &keys);
    let wrong = BinaryApp::start(&[], &env);
    wait_for_backend(&wrong.address, 0.0).await;
    // The refusal is logged (as a category), the password is not.
    let started = Instant::now();
    while transitions(&wrong.logs()).1 == 0 && started.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(
        send(&wrong.address).await.0,
        200,
        "served by the local limit"
    );

    with_redis(&mut env, &redis.url(), &keys);
    let right = BinaryApp::start(&[], &env);
    wait_for_backend(&right.address, 1.0).await;
    assert_eq!(send(&right.address).await.0, 200);

    let check = std::process::Command::new(env!("CARGO_BIN_EXE_gemini-proxy"))
        .arg("check-config")
        .env_clear()
        .envs(&env)
        .output()
        .expect("check-config runs");
    let check_output = format!(
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(check.status.success(), "{check_output}");
    assert!(check_output.contains("(password masked)"), "{check_output}");

    let wrong_logs = wrong.logs();
    assert!(
        wrong_logs.contains("authentication failed"),
        "why Redis was refused: {wrong_logs}"
    );
    for (text, what) in [
        (wrong_logs, "logs with the wrong password"),
        (wrong.logs(), "logs"),
        (right.logs(), "logs with the right password"),
        (metrics_at(&wrong.address).await, "metrics"),
        (metrics_at(&right.address).await, "metrics"),
        (check_output, "check-config"),
    ] {
        for secret in [PASSWORD, WRONG] {
            let leaks = leaked_fragments(&text, secret);
            assert!(leaks.is_empty(), "{what} show {leaks:?}:\n{text}");
        }
    }
}
