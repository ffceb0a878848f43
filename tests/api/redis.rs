//! `RATE_LIMIT_BACKEND=redis`: one client's limit shared by every replica
//! through a real Redis, and what happens when Redis is down, slow, killed and
//! back (docs/operations.md#several-replicas-shared-limits-in-redis). Each test starts its own `redis-server` (see
//! [`server`]); without one installed they print a NOTICE and pass, unless
//! `REQUIRE_REDIS_TESTS=1`.

mod latency;
mod outage;
mod quotas;
mod resources;
mod server;
mod shared;

use self::server::free_port;
use crate::helpers::{metric_value, TestApp, CLIENT_KEY};
use gemini_proxy::keys::redis_limiter::bucket_key;
use gemini_proxy::keys::Limits;
use serde_json::json;
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const CLIENT: &str = "shared-client";
/// One token a second, five at once: small enough that a two-second window
/// tells one shared bucket (5 at once, then one a second: 6 or 7) from two
/// (12 to 14).
const RPM: u32 = 60;
const BURST: u32 = 5;
const BACKEND_UP: &str = r#"gemini_proxy_rate_limit_backend_up{backend="redis"}"#;
/// How long the two-replica tests send traffic.
const WINDOW: Duration = Duration::from_secs(2);
/// Time between two requests of those tests: many requests per token.
const PACE: Duration = Duration::from_millis(20);

fn limits(rpm: u32, burst: u32) -> Limits {
    Limits {
        requests_per_minute: NonZeroU32::new(rpm).expect("rpm"),
        burst: NonZeroU32::new(burst).expect("burst"),
    }
}

/// The Redis key of the test client's bucket.
fn client_bucket() -> String {
    bucket_key(CLIENT, limits(RPM, BURST))
}

/// A keys file with the one test client, in a directory removed on drop.
struct KeysFile {
    dir: PathBuf,
}

impl KeysFile {
    fn new(test: &str, rpm: u32, burst: u32) -> KeysFile {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "redis-keys-{test}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("keys dir");
        let keys = KeysFile { dir };
        keys.write(rpm, burst, "");
        keys
    }

    /// Gives the test client these limits; `extra` goes in as it is.
    fn write(&self, rpm: u32, burst: u32, extra: &str) {
        std::fs::write(
            self.dir.join("keys.toml"),
            format!(
                "[[client]]\nname = \"{CLIENT}\"\nkey = \"{CLIENT_KEY}\"\n\
                 requests_per_minute = {rpm}\nburst = {burst}\n{extra}"
            ),
        )
        .expect("keys file");
    }

    fn path(&self) -> String {
        self.dir.join("keys.toml").display().to_string()
    }
}

impl Drop for KeysFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Settings for the test client from `keys`, limits kept in Redis at `url`.
/// The timeout is generous: these tests are about sharing, and a loaded CI
/// machine must not turn them into tests of the fallback (which have their own).
fn with_redis(settings: &mut HashMap<String, String>, url: &str, keys: &KeysFile) {
    with_keys(settings, keys);
    settings.insert("RATE_LIMIT_BACKEND".into(), "redis".into());
    settings.insert("REDIS_URL".into(), url.into());
    settings.insert("REDIS_TIMEOUT_MS".into(), "1000".into());
}

/// Settings for the test client from `keys` (and no `API_KEYS` client).
fn with_keys(settings: &mut HashMap<String, String>, keys: &KeysFile) {
    settings.insert("API_KEYS".into(), String::new());
    settings.insert("KEYS_FILE".into(), keys.path());
}

fn closed_port_url() -> String {
    format!("redis://127.0.0.1:{}", free_port())
}

/// Waits until the service's gauge for Redis shows `value`.
async fn wait_for_backend(address: &str, value: f64) {
    let started = Instant::now();
    loop {
        let exposition = metrics_at(address).await;
        if metric_value(&exposition, BACKEND_UP) == Some(value) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{BACKEND_UP} never became {value}:\n{exposition}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn metrics_at(address: &str) -> String {
    let mut response = crate::helpers::client()
        .get(format!("{address}/metrics"))
        .send()
        .await
        .expect("metrics");
    let body = response.body().limit(1 << 20).await.expect("metrics body");
    String::from_utf8_lossy(&body).into_owned()
}

/// One `POST /gemini-proxy` as the test client: its status, and how long it took.
async fn send(address: &str) -> (u16, Duration) {
    let started = Instant::now();
    let response = crate::helpers::client()
        .post(format!("{address}/gemini-proxy"))
        .insert_header(("X-API-KEY", CLIENT_KEY))
        .insert_header(("Content-Type", "application/json"))
        .send_body(json!({"prompt": "hi"}).to_string())
        .await
        .expect("request");
    let status = response.status().as_u16();
    assert!(matches!(status, 200 | 429), "unexpected status {status}");
    (status, started.elapsed())
}

/// Sends one request every [`PACE`] for [`WINDOW`], to each app in turn;
/// returns how many each admitted and the time from the first to the last.
async fn alternate(apps: &[&TestApp]) -> (Vec<u32>, Duration) {
    let started = Instant::now();
    let mut admitted = vec![0; apps.len()];
    let mut last = Duration::ZERO;
    for (index, app) in apps.iter().enumerate().cycle() {
        if started.elapsed() >= WINDOW {
            break;
        }
        last = started.elapsed();
        if send(&app.address).await.0 == 200 {
            admitted[index] += 1;
        }
        tokio::time::sleep(PACE).await;
    }
    (admitted, last)
}

/// What one bucket admits over `elapsed` when asked often: the burst at once,
/// then one token per emission interval.
fn allowance(elapsed: Duration) -> u32 {
    BURST + (elapsed.as_secs_f64() * f64::from(RPM) / 60.0).floor() as u32
}

/// The middle of a sample.
fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}
