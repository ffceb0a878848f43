//! Upstream resilience (docs/upstream.md): the server key pool, retries inside one
//! deadline, the retry budget, answers that break the API's promises, and
//! cancellation. Each test counts the calls Gemini received (from the mock's
//! record), checks the status and the error code, and times the request against
//! its deadline. Single-key codes are pinned in `errors.rs`; this file adds what
//! only a fault, a pool or a clock can show.

use crate::helpers::*;
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The deadline most tests run under: long enough for two backoffs (at most
/// 0.2 s + 0.4 s), short enough that a hang fails the test quickly.
const DEADLINE_SECS: u64 = 2;
/// What a request may take past its deadline: scheduling, not waiting.
const MARGIN: Duration = Duration::from_millis(500);
/// How long a test waits for the mock to see a connection closed.
const SETTLE: Duration = Duration::from_secs(3);
/// A client's own Gemini key, sent as `api_key`.
const OWN_KEY: &str = "AIzaClientOwnKey0123456789abcdefghijklm";

fn settings(
    deadline_secs: u64,
    server_keys: &str,
) -> impl FnOnce(&mut HashMap<String, String>) + '_ {
    move |s| {
        s.insert("UPSTREAM_TIMEOUT_SECS".into(), deadline_secs.to_string());
        s.insert("GEMINI_API_KEY".into(), server_keys.into());
    }
}

/// An app with one server key and the default test deadline.
async fn spawn() -> TestApp {
    spawn_app_with(settings(DEADLINE_SECS, SERVER_KEY)).await
}

fn deadline() -> Duration {
    Duration::from_secs(DEADLINE_SECS)
}

fn prompt(text: &str) -> Value {
    json!({ "prompt": text })
}

async fn timed<T>(work: impl Future<Output = T>) -> (T, Duration) {
    let started = Instant::now();
    let out = work.await;
    (out, started.elapsed())
}

/// Checks the status and the error code of an error envelope.
fn assert_error(response: &TestResponse, status: u16, code: &str) {
    assert_eq!(response.status, status, "{}", response.text());
    assert_eq!(response.error_code(), code, "{}", response.text());
}

fn assert_ok(response: &TestResponse) {
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.json()["result"], "OK", "{}", response.text());
}

fn assert_within(elapsed: Duration, limit: Duration) {
    assert!(elapsed < limit, "took {elapsed:?}, limit {limit:?}");
}

fn retry_after(response: &TestResponse) -> u64 {
    let value = response
        .header("retry-after")
        .expect("a Retry-After header");
    value
        .parse()
        .unwrap_or_else(|_| panic!("Retry-After is not whole seconds: {value:?}"))
}

/// The `x-goog-api-key` of every call Gemini received, oldest first.
fn keys_used(app: &TestApp) -> Vec<String> {
    app.upstream_requests()
        .iter()
        .map(|r| r.header("x-goog-api-key").unwrap_or("<none>").to_owned())
        .collect()
}

/// Polls `condition` every 10 ms until it holds, for at most `limit`.
async fn wait_until(what: &str, limit: Duration, condition: impl Fn() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(started.elapsed() < limit, "timed out waiting until {what}");
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
}

/// No connection to the mock is left open: every abandoned call was closed.
async fn assert_no_leaked_connection(app: &TestApp) {
    wait_until("the mock has no call in flight", SETTLE, || {
        app.mock.in_flight() == 0
    })
    .await;
}

async fn key_available(app: &TestApp, index: usize) -> Option<f64> {
    let series = format!("gemini_proxy_upstream_key_available{{key=\"{index}\"}}");
    metric_value(&app.metrics().await, &series)
}

/// How many models the key at `index` rests for now.
async fn key_resting_models(app: &TestApp, index: usize) -> Option<f64> {
    let series = format!("gemini_proxy_upstream_key_resting_models{{key=\"{index}\"}}");
    metric_value(&app.metrics().await, &series)
}

// ---------------------------------------------------------------- bad answers

#[actix_rt::test]
async fn a_trickling_body_is_cut_at_the_deadline_and_its_connection_closed() {
    let app = spawn_app_with(settings(1, SERVER_KEY)).await;
    let (response, elapsed) = timed(app.proxy(&prompt("[mock:trickle] hello"))).await;
    assert_error(&response, 504, "UPSTREAM_TIMEOUT");
    assert!(
        elapsed >= Duration::from_millis(900),
        "cut before the deadline: {elapsed:?}"
    );
    assert_within(elapsed, Duration::from_millis(1_500));
    assert_eq!(app.mock.request_count(), 1, "a timeout is not retried");
    assert_no_leaked_connection(&app).await;
}

#[actix_rt::test]
async fn a_body_cut_in_the_middle_is_a_bad_answer_and_not_retried() {
    let app = spawn().await;
    let (response, elapsed) = timed(app.proxy(&prompt("[mock:reset-mid-body] hello"))).await;
    assert_error(&response, 502, "UPSTREAM_ERROR");
    assert_within(elapsed, deadline() + MARGIN);
    assert_eq!(
        app.mock.request_count(),
        1,
        "a call that broke after bytes arrived is not retried"
    );
    assert_no_leaked_connection(&app).await;
}

#[actix_rt::test]
async fn a_connection_reset_before_any_byte_is_retried_twice_inside_the_deadline() {
    let app = spawn().await;
    let (response, elapsed) = timed(app.proxy(&prompt("[mock:reset-before-headers] hello"))).await;
    assert_error(&response, 503, "UPSTREAM_UNAVAILABLE");
    assert_within(elapsed, deadline() + MARGIN);
    assert_eq!(app.mock.request_count(), 3, "one call and two retries");
    assert_eq!(keys_used(&app), [SERVER_KEY; 3]);
}

#[actix_rt::test]
async fn an_oversize_body_is_refused_as_a_bad_answer_without_a_hang() {
    // A deadline far longer than reading 33 MiB from loopback: a 504 would mean
    // the limit did not stop the read.
    let app = spawn_app_with(settings(20, SERVER_KEY)).await;
    let (response, elapsed) = timed(app.proxy(&prompt("[mock:oversize] hello"))).await;
    assert_error(&response, 502, "UPSTREAM_ERROR");
    assert_within(elapsed, Duration::from_secs(10));
    assert_eq!(app.mock.request_count(), 1, "a bad answer is not retried");
    assert_no_leaked_connection(&app).await;
}

// ---------------------------------------------------------------- the key pool

#[actix_rt::test]
async fn a_key_out_of_quota_rests_and_the_request_moves_on_to_the_next_key() {
    let app = spawn_app_with(settings(DEADLINE_SECS, "key-a,key-b")).await;
    app.mock
        .update_config(|c| c.exhausted_keys = HashSet::from(["key-a".to_owned()]));

    let (response, elapsed) = timed(app.proxy(&prompt("hello"))).await;
    assert_ok(&response);
    assert_within(elapsed, deadline() + MARGIN);
    assert_eq!(keys_used(&app), ["key-a", "key-b"], "key-a 429, then key-b");

    // key-a rests for its RetryInfo delay (26 s): the next request skips it.
    let response = app.proxy(&prompt("hello again")).await;
    assert_ok(&response);
    assert_eq!(keys_used(&app), ["key-a", "key-b", "key-b"]);

    assert_eq!(key_resting_models(&app, 0).await, Some(1.0), "key-a rests");
    assert_eq!(
        key_available(&app, 0).await,
        Some(1.0),
        "for one model only"
    );
    assert_eq!(
        key_resting_models(&app, 1).await,
        Some(0.0),
        "key-b is in use"
    );
}

#[actix_rt::test]
async fn when_every_key_rests_the_client_gets_the_shortest_rest_without_a_call() {
    let app = spawn_app_with(settings(DEADLINE_SECS, "key-a,key-b")).await;
    // key-a runs out first, with a long rest.
    app.mock.update_config(|c| {
        c.exhausted_keys = HashSet::from(["key-a".to_owned()]);
        c.retry_delay = Some("40s".into());
    });
    assert_ok(&app.proxy(&prompt("first")).await);
    assert_eq!(keys_used(&app), ["key-a", "key-b"]);

    // Then key-b, with a shorter one.
    app.mock.update_config(|c| {
        c.exhausted_keys = HashSet::from(["key-a".to_owned(), "key-b".to_owned()]);
        c.retry_delay = Some("20s".into());
    });
    let (response, elapsed) = timed(app.proxy(&prompt("second"))).await;
    assert_error(&response, 429, "QUOTA_ERROR");
    assert_within(elapsed, deadline() + MARGIN);
    assert_eq!(retry_after(&response), 20, "key-b's rest, the shorter one");
    assert_eq!(
        keys_used(&app),
        ["key-a", "key-b", "key-b"],
        "the resting key-a was not tried"
    );

    // Every key rests: the service answers alone.
    let (response, elapsed) = timed(app.proxy(&prompt("third"))).await;
    assert_error(&response, 429, "QUOTA_ERROR");
    assert_within(elapsed, MARGIN);
    assert_eq!(retry_after(&response), 20);
    assert_eq!(app.mock.request_count(), 3, "no call while every key rests");
    assert_eq!(key_resting_models(&app, 0).await, Some(1.0));
    assert_eq!(key_resting_models(&app, 1).await, Some(1.0));
}

#[actix_rt::test]
async fn a_server_key_gemini_rejects_leaves_the_rotation() {
    let app = spawn_app_with(settings(DEADLINE_SECS, "bad-key,good-key")).await;
    app.mock
        .update_config(|c| c.accepted_keys = Some(HashSet::from(["good-key".to_owned()])));

    let (response, elapsed) = timed(app.proxy(&prompt("hello"))).await;
    assert_ok(&response);
    assert_within(elapsed, deadline() + MARGIN);
    assert_eq!(keys_used(&app), ["bad-key", "good-key"]);

    for i in 0..4 {
        assert_ok(&app.proxy(&prompt(&format!("later {i}"))).await);
    }
    assert_eq!(
        keys_used(&app),
        ["bad-key", "good-key", "good-key", "good-key", "good-key", "good-key"],
        "bad-key is never used again"
    );
    assert_eq!(key_available(&app, 0).await, Some(0.0), "bad-key is out");
    assert_eq!(key_available(&app, 1).await, Some(1.0));
}

#[actix_rt::test]
async fn a_bad_request_is_not_retried_on_another_key() {
    let app = spawn_app_with(settings(DEADLINE_SECS, "key-a,key-b")).await;
    let (response, elapsed) = timed(app.proxy(&prompt("[mock:400] hello"))).await;
    assert_error(&response, 400, "UPSTREAM_BAD_REQUEST");
    assert_within(elapsed, deadline() + MARGIN);
    assert_eq!(keys_used(&app), ["key-a"], "one call: a 400 is final");
    assert_eq!(
        key_available(&app, 0).await,
        Some(1.0),
        "key-a is not blamed"
    );
}

#[actix_rt::test]
async fn a_clients_own_key_is_never_swapped_for_a_server_key() {
    let app = spawn_app_with(settings(DEADLINE_SECS, "key-a,key-b")).await;
    let own =
        |prompt: &str| json!({"prompt": prompt, "model": "gemini-2.5-flash", "api_key": OWN_KEY});

    // Out of quota: answered as it is, though two server keys are free.
    let (response, elapsed) = timed(app.proxy(&own("[mock:429] hello"))).await;
    assert_error(&response, 429, "QUOTA_ERROR");
    assert_within(elapsed, deadline() + MARGIN);
    assert_eq!(keys_used(&app), [OWN_KEY]);

    // Unavailable: retried, with the client's key every time.
    app.mock.reset();
    let response = app.proxy(&own("[mock:503] hello")).await;
    assert_error(&response, 503, "UPSTREAM_UNAVAILABLE");
    assert_eq!(keys_used(&app), [OWN_KEY; 3]);

    // The server keys were never touched.
    assert_eq!(key_available(&app, 0).await, Some(1.0));
    assert_eq!(key_available(&app, 1).await, Some(1.0));
}

// ---------------------------------------------------------------- retries

#[actix_rt::test]
async fn two_unavailable_answers_then_a_success_is_a_success_after_three_calls() {
    let app = spawn().await;
    let (response, elapsed) = timed(app.proxy(&prompt("[mock:flaky-2] hello"))).await;
    assert_ok(&response);
    assert_within(elapsed, deadline() + MARGIN);
    assert_eq!(app.mock.request_count(), 3);
}

/// Call start times, seen by polling the mock's counter every 2 ms while `work` runs.
async fn call_starts<T>(app: &TestApp, work: impl Future<Output = T>) -> (T, Vec<Instant>) {
    let starts = Arc::new(Mutex::new(Vec::new()));
    let done = Arc::new(AtomicBool::new(false));
    let watch = async {
        let mut seen = 0;
        while !done.load(Ordering::Relaxed) {
            let count = app.mock.request_count();
            if count > seen {
                let now = Instant::now();
                starts
                    .lock()
                    .expect("lock")
                    .extend((seen..count).map(|_| now));
                seen = count;
            }
            actix_rt::time::sleep(Duration::from_millis(2)).await;
        }
    };
    let work = async {
        let out = work.await;
        done.store(true, Ordering::Relaxed);
        out
    };
    let (out, ()) = tokio::join!(work, watch);
    let starts = starts.lock().expect("lock").clone();
    (out, starts)
}

#[actix_rt::test]
async fn retries_of_a_slow_failing_gemini_stay_inside_one_deadline() {
    let app = spawn_app_with(settings(1, SERVER_KEY)).await;
    app.mock
        .update_config(|c| c.first_byte_delay = Duration::from_millis(400));
    let started = Instant::now();
    let (response, starts) = call_starts(&app, app.proxy(&prompt("[mock:flaky-5] hello"))).await;
    let elapsed = started.elapsed();

    // Two slow 503s fill most of the second; whether a third call fits depends
    // on the jitter, and if it starts it is cut at the deadline.
    match response.status {
        503 => assert_error(&response, 503, "UPSTREAM_UNAVAILABLE"),
        _ => assert_error(&response, 504, "UPSTREAM_TIMEOUT"),
    }
    assert_within(elapsed, Duration::from_millis(1_500));
    let deadline = started + Duration::from_secs(1);
    // The watcher sees a call up to 2 ms (plus scheduling) after it starts; a
    // retry that ignored the deadline would start up to 400 ms after it.
    let resolution = Duration::from_millis(100);
    for (i, start) in starts.iter().enumerate() {
        assert!(
            *start < deadline + resolution,
            "call {} started {:?} after the deadline",
            i + 1,
            start.duration_since(deadline)
        );
    }
    assert!((2..=3).contains(&starts.len()), "{} calls", starts.len());
    assert_no_leaked_connection(&app).await;
    assert_eq!(
        app.mock.request_count(),
        starts.len(),
        "no call after the answer"
    );
}

/// A keys file whose default limits never get in the way of a load test.
struct GenerousKeysFile(PathBuf);

impl GenerousKeysFile {
    fn new() -> Self {
        let path = std::env::temp_dir().join(format!(
            "gemini-proxy-resilience-keys-{}.toml",
            std::process::id()
        ));
        std::fs::write(
            &path,
            "[defaults]\nrequests_per_minute = 1000000\nburst = 100000\n",
        )
        .expect("write the keys file");
        GenerousKeysFile(path)
    }
}

impl Drop for GenerousKeysFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[actix_rt::test]
async fn the_retry_budget_bounds_calls_when_half_of_them_fail() {
    const REQUESTS: usize = 400;
    const CONCURRENCY: usize = 20;
    let keys = GenerousKeysFile::new();
    let app = spawn_app_with(|s| {
        settings(DEADLINE_SECS, SERVER_KEY)(s);
        s.insert("KEYS_FILE".into(), keys.0.display().to_string());
    })
    .await;
    app.mock.update_config(|c| c.record = false);

    let started = Instant::now();
    let statuses: Vec<u16> = futures_util::stream::iter(0..REQUESTS)
        .map(|i| {
            let app = &app;
            async move {
                let (response, elapsed) =
                    timed(app.proxy(&prompt(&format!("[mock:fail-half] request {i}")))).await;
                assert_within(elapsed, deadline() + MARGIN);
                if response.status != 200 {
                    assert_error(&response, 503, "UPSTREAM_UNAVAILABLE");
                }
                response.status
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let elapsed = started.elapsed();

    let calls = app.mock.request_count();
    let ratio = calls as f64 / REQUESTS as f64;
    let succeeded = statuses.iter().filter(|s| **s == 200).count();
    eprintln!(
        "retry budget at 50% upstream 503: {calls} calls for {REQUESTS} requests \
         (ratio {ratio:.3}), {succeeded} succeeded, in {elapsed:?}"
    );
    assert!(ratio <= 1.5, "{calls} calls for {REQUESTS} requests");
    assert!(ratio > 1.0, "no retry at all: {calls} calls");
}

// ---------------------------------------------------------------- cancellation

#[actix_rt::test]
async fn a_client_that_goes_away_cancels_its_upstream_call() {
    // A deadline far away: only the client's departure can end the call in time.
    let app = spawn_app_with(settings(60, SERVER_KEY)).await;
    app.proxy_and_give_up(&prompt("[mock:hang] hello"), Duration::from_millis(200))
        .await;
    assert_eq!(app.mock.request_count(), 1, "the call reached Gemini");
    assert_no_leaked_connection(&app).await;
}
