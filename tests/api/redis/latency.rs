//! What the Redis check adds to a request, printed with `--nocapture`.

use super::server::RedisServer;
use super::{limits, median, send, wait_for_backend, with_keys, with_redis, KeysFile, BACKEND_UP};
use crate::helpers::{metric_value, spawn_app_with};
use gemini_proxy::keys::redis_limiter::{gcra_script, take};
use std::time::{Duration, Instant};

/// Percentiles of a sample, for the printed figures.
fn summary(mut times: Vec<Duration>) -> String {
    times.sort();
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    let mean = times.iter().sum::<Duration>() / times.len() as u32;
    format!(
        "mean {:>7.1} µs  p50 {:>7.1} µs  p99 {:>7.1} µs",
        mean.as_secs_f64() * 1e6,
        at(0.5).as_secs_f64() * 1e6,
        at(0.99).as_secs_f64() * 1e6
    )
}

/// The added latency of the Redis check: the Lua call alone, and whole
/// requests with each backend. Run with `--nocapture` to see the figures.
#[actix_rt::test]
async fn measures_the_added_latency_of_the_redis_check() {
    const N: usize = 500;
    let Some(redis) = RedisServer::start("latency").await else {
        return;
    };
    // Limits no request reaches: every one is admitted on both backends.
    let keys = KeysFile::new("latency", 1_000_000, 1_000_000);
    let large = limits(1_000_000, 1_000_000);

    let mut conn = redis.connection().await;
    let script = gcra_script();
    let mut lua = Vec::with_capacity(N);
    for _ in 0..N {
        let started = Instant::now();
        take(&mut conn, &script, "latency-test", large, None)
            .await
            .expect("script runs");
        lua.push(started.elapsed());
    }

    // The same client with all three quotas (too high to refuse): the quota
    // script replaces the bucket's, and a charge follows each answer.
    let quota_keys = KeysFile::new("latency-quota", 1_000_000, 1_000_000);
    quota_keys.write(
        1_000_000,
        1_000_000,
        "tokens_per_minute = 1000000000000\nrequests_per_day = 1000000000000\ntokens_per_day = 1000000000000",
    );

    let memory = spawn_app_with(|s| with_keys(s, &keys)).await;
    let shared = spawn_app_with(|s| with_redis(s, &redis.url(), &keys)).await;
    let quotas = spawn_app_with(|s| with_redis(s, &redis.url(), &quota_keys)).await;
    wait_for_backend(&shared.address, 1.0).await;
    wait_for_backend(&quotas.address, 1.0).await;
    for app in [&memory, &shared, &quotas] {
        for _ in 0..50 {
            send(&app.address).await; // warm up connections
        }
    }
    // Interleaved, so every backend sees the same machine load.
    let (mut memory_times, mut redis_times, mut quota_times) = (
        Vec::with_capacity(N),
        Vec::with_capacity(N),
        Vec::with_capacity(N),
    );
    for _ in 0..N {
        for (app, times) in [
            (&memory, &mut memory_times),
            (&shared, &mut redis_times),
            (&quotas, &mut quota_times),
        ] {
            let (status, took) = send(&app.address).await;
            assert_eq!(status, 200);
            times.push(took);
        }
    }
    assert_eq!(metric_value(&shared.metrics().await, BACKEND_UP), Some(1.0));

    let lua_p50 = median(lua.clone());
    let added = median(redis_times.clone()).saturating_sub(median(memory_times.clone()));
    let quota_added = median(quota_times.clone()).saturating_sub(median(redis_times.clone()));
    eprintln!("Redis check latency, {N} sequential calls each:");
    eprintln!("  Lua GCRA call alone      {}", summary(lua));
    eprintln!("  request, memory backend  {}", summary(memory_times));
    eprintln!("  request, redis backend   {}", summary(redis_times));
    eprintln!("  request, redis + quotas  {}", summary(quota_times));
    eprintln!(
        "  added per request (p50)  {:.1} µs by Redis, {:.1} µs more by the quotas",
        added.as_secs_f64() * 1e6,
        quota_added.as_secs_f64() * 1e6
    );
    // The check must fit well inside the default 5 ms timeout, or the backend
    // would keep falling back.
    assert!(lua_p50 < Duration::from_millis(5), "{lua_p50:?}");
}
