//! Client keys (docs/keys-file.md): the keys file, per-client limits and allow-lists,
//! live reload (file edits, rename-replace, SIGHUP), and the `hash-key` and
//! `check-config` commands.
//!
//! Limits run on a fake clock the tests move, so no test waits for a token; a
//! reload is awaited by polling with a deadline, never by a fixed sleep.

use crate::helpers::*;
use awc::http::Method;
use futures_util::StreamExt;
use governor::clock::FakeRelativeClock;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// docs/keys-file.md#reload: a change on disk is in force within this.
const RELOAD_LIMIT: Duration = Duration::from_secs(5);
/// How long the mock holds the "in flight" requests of the reload tests: well
/// past the watcher's 300 ms debounce, so the reload lands while they wait.
const HOLD: Duration = Duration::from_millis(1500);
/// A client's own Gemini key, sent as `api_key`.
const OWN_KEY: &str = "AIzaClientOwnKey0123456789abcdefghijklm";

/// A private directory holding one keys file; removed when dropped.
pub(crate) struct KeysDir {
    dir: PathBuf,
}

impl KeysDir {
    pub(crate) fn new(test: &str) -> KeysDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "gemini-proxy-keys-{test}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        KeysDir { dir }
    }

    pub(crate) fn with_file(test: &str, text: &str) -> KeysDir {
        let keys = KeysDir::new(test);
        keys.write(text);
        keys
    }

    pub(crate) fn path(&self) -> PathBuf {
        self.dir.join("keys.toml")
    }

    fn path_text(&self) -> String {
        self.path().display().to_string()
    }

    /// Rewrites the file in place (truncate, then write), as `cat >` does.
    pub(crate) fn write(&self, text: &str) {
        std::fs::write(self.path(), text).expect("write the keys file");
    }

    /// Writes a new file beside it and renames it over the old one, as editors
    /// and Kubernetes config maps do.
    fn replace(&self, text: &str) {
        let next = self.dir.join(".keys.toml.next");
        std::fs::write(&next, text).expect("write the new keys file");
        std::fs::rename(&next, self.path()).expect("rename over the keys file");
    }
}

impl Drop for KeysDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Points `KEYS_FILE` at `keys`; `API_KEYS` stays, so `env-1` is a client too.
pub(crate) fn keys_file(keys: &KeysDir) -> impl FnOnce(&mut HashMap<String, String>) + '_ {
    move |settings| {
        settings.insert("KEYS_FILE".into(), keys.path_text());
    }
}

/// One `[[client]]` table; `extra` lines go in as they are.
pub(crate) fn client_entry(name: &str, key: &str, extra: &str) -> String {
    format!("[[client]]\nname = \"{name}\"\nkey = \"{key}\"\n{extra}\n")
}

fn sha256_hex(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

fn prompt() -> Value {
    json!({"prompt": "What is the capital of France?"})
}

/// A body naming the client's own model and Gemini key.
fn own(model: &str) -> Value {
    json!({"prompt": "Hello", "model": model, "api_key": OWN_KEY})
}

/// `POST /gemini-proxy` as the holder of `key`.
async fn ask(app: &TestApp, key: &str, body: &Value) -> TestResponse {
    app.request(
        Method::POST,
        "/gemini-proxy",
        &[("X-API-KEY", key), ("Content-Type", "application/json")],
        body.to_string(),
    )
    .await
}

fn header_number(response: &TestResponse, name: &str) -> u64 {
    let value = response
        .header(name)
        .unwrap_or_else(|| panic!("no {name} header: {:?}", response.headers));
    value
        .parse()
        .unwrap_or_else(|_| panic!("{name} is not a whole number: {value:?}"))
}

/// Status and `RateLimit-Limit`, `-Remaining`, `-Reset` of an authenticated answer.
fn rate(response: &TestResponse) -> (u16, u64, u64, u64) {
    (
        response.status,
        header_number(response, "ratelimit-limit"),
        header_number(response, "ratelimit-remaining"),
        header_number(response, "ratelimit-reset"),
    )
}

/// A 429 `RATE_LIMITED` with this `Retry-After`, and the client's bucket empty.
fn assert_rate_limited(response: &TestResponse, retry_after: u64, limit: u64) {
    assert_eq!(response.status, 429, "{}", response.text());
    assert_eq!(response.error_code(), "RATE_LIMITED");
    assert_eq!(header_number(response, "retry-after"), retry_after);
    assert_eq!(header_number(response, "ratelimit-limit"), limit);
    assert_eq!(header_number(response, "ratelimit-remaining"), 0);
}

fn assert_refused(response: &TestResponse, status: u16, code: &str) {
    assert_eq!(response.status, status, "{}", response.text());
    assert_eq!(response.error_code(), code, "{}", response.text());
}

/// The value of one series on `/metrics`, 0 when absent.
async fn metric(app: &TestApp, series: &str) -> f64 {
    metric_value(&app.metrics().await, series).unwrap_or(0.0)
}

const RELOAD_SUCCESS: &str = r#"gemini_proxy_config_reloads_total{result="success"}"#;
const RELOAD_FAILURE: &str = r#"gemini_proxy_config_reloads_total{result="failure"}"#;

/// Runs `attempt` every 50 ms until `done` accepts its answer; panics after `limit`.
async fn poll_until<T, F: Future<Output = T>>(
    what: &str,
    limit: Duration,
    mut attempt: impl FnMut() -> F,
    done: impl Fn(&T) -> bool,
) -> T {
    let started = Instant::now();
    loop {
        let answer = attempt().await;
        if done(&answer) {
            return answer;
        }
        assert!(started.elapsed() < limit, "timed out waiting until {what}");
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}

// --- Authentication ---------------------------------------------------------

#[actix_rt::test]
async fn a_client_from_the_keys_file_authenticates_by_key_hash_or_key_and_is_counted_by_name() {
    const HASHED_KEY: &str = "hashed-client-key-0123456789";
    const PLAIN_KEY: &str = "plain-client-key-0123456789";
    let keys = KeysDir::with_file(
        "auth",
        &format!(
            "[[client]]\nname = \"hashed\"\nkey_sha256 = \"{}\"\n\n{}",
            sha256_hex(HASHED_KEY),
            client_entry("plain", PLAIN_KEY, ""),
        ),
    );
    let app = spawn_app_with(keys_file(&keys)).await;

    for (key, name) in [
        (HASHED_KEY, "hashed"),
        (PLAIN_KEY, "plain"),
        (CLIENT_KEY, "env-1"),
    ] {
        let response = ask(&app, key, &prompt()).await;
        assert_eq!(response.status, 200, "{name}: {}", response.text());
    }
    // The hash is what the file holds, not a key anyone may present.
    let response = ask(&app, &sha256_hex(HASHED_KEY), &prompt()).await;
    assert_refused(&response, 401, "UNAUTHORIZED");

    let metrics = app.metrics().await;
    for name in ["hashed", "plain", "env-1"] {
        let series = format!(r#"gemini_proxy_client_requests_total{{client="{name}",code="OK"}}"#);
        assert_eq!(metric_value(&metrics, &series), Some(1.0), "{series}");
    }
    let anonymous = r#"gemini_proxy_client_requests_total{client="anonymous",code="UNAUTHORIZED"}"#;
    assert_eq!(metric_value(&metrics, anonymous), Some(1.0));
    for secret in [HASHED_KEY, PLAIN_KEY, CLIENT_KEY, &sha256_hex(HASHED_KEY)] {
        assert!(!metrics.contains(secret), "a key is on /metrics");
    }
}

// --- Limits -----------------------------------------------------------------

#[actix_rt::test]
async fn a_client_gets_its_burst_then_is_rate_limited_until_its_bucket_refills() {
    const BURSTY_KEY: &str = "bursty-key-0123456789";
    const OTHER_KEY: &str = "bystander-key-0123456789";
    let limits = "requests_per_minute = 60\nburst = 3";
    let keys = KeysDir::with_file(
        "burst",
        &(client_entry("bursty", BURSTY_KEY, limits)
            + &client_entry("bystander", OTHER_KEY, limits)),
    );
    let clock = FakeRelativeClock::default();
    let app = spawn_app_with_clock(keys_file(&keys), Some(clock.clone())).await;

    // A full bucket admits exactly the burst; Reset is when it is full again.
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(rate(&ask(&app, BURSTY_KEY, &prompt()).await));
    }
    assert_eq!(seen, [(200, 3, 2, 1), (200, 3, 1, 2), (200, 3, 0, 3)]);
    let upstream = app.mock.request_count();
    let limited = ask(&app, BURSTY_KEY, &prompt()).await;
    assert_rate_limited(&limited, 1, 3);
    assert_eq!(header_number(&limited, "ratelimit-reset"), 3);
    assert_eq!(
        app.mock.request_count(),
        upstream,
        "a limited request reached Gemini"
    );
    assert_eq!(
        rate(&ask(&app, OTHER_KEY, &prompt()).await),
        (200, 3, 2, 1),
        "another client has its own bucket"
    );

    // One second brings back one token (60 a minute), no more.
    clock.advance(Duration::from_secs(1));
    assert_eq!(
        rate(&ask(&app, BURSTY_KEY, &prompt()).await),
        (200, 3, 0, 3)
    );
    assert_rate_limited(&ask(&app, BURSTY_KEY, &prompt()).await, 1, 3);

    // The whole refill period brings back the whole burst.
    clock.advance(Duration::from_secs(3));
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(rate(&ask(&app, BURSTY_KEY, &prompt()).await));
    }
    assert_eq!(seen, [(200, 3, 2, 1), (200, 3, 1, 2), (200, 3, 0, 3)]);
    let upstream = app.mock.request_count();
    assert_rate_limited(&ask(&app, BURSTY_KEY, &prompt()).await, 1, 3);
    assert_eq!(
        app.mock.request_count(),
        upstream,
        "a limited request reached Gemini"
    );
    assert_eq!(rate(&ask(&app, OTHER_KEY, &prompt()).await), (200, 3, 2, 1));

    let metrics = app.metrics().await;
    let limited = r#"gemini_proxy_rate_limited_total{client="bursty"}"#;
    assert_eq!(metric_value(&metrics, limited), Some(3.0));
    let bystander = r#"gemini_proxy_rate_limited_total{client="bystander"}"#;
    assert_eq!(metric_value(&metrics, bystander).unwrap_or(0.0), 0.0);
    let by_code = r#"gemini_proxy_client_requests_total{client="bursty",code="RATE_LIMITED"}"#;
    assert_eq!(metric_value(&metrics, by_code), Some(3.0));
}

#[actix_rt::test]
async fn retry_after_rounds_a_fractional_refill_up_to_whole_seconds() {
    const SLOW_KEY: &str = "slow-key-0123456789";
    // 40 a minute: one token every 1.5 s.
    let keys = KeysDir::with_file(
        "fraction",
        &client_entry("slow", SLOW_KEY, "requests_per_minute = 40\nburst = 1"),
    );
    let clock = FakeRelativeClock::default();
    let app = spawn_app_with_clock(keys_file(&keys), Some(clock.clone())).await;

    assert_eq!(
        rate(&ask(&app, SLOW_KEY, &prompt()).await),
        (200, 1, 0, 2),
        "1.5 s until full, rounded up"
    );
    // (clock moved before the request, Retry-After expected, why)
    let cases = [
        (Duration::ZERO, 2, "1.5 s left rounds up to 2"),
        (Duration::from_millis(500), 1, "exactly 1 s left stays 1"),
        (Duration::from_millis(900), 1, "0.1 s left rounds up to 1"),
    ];
    for (advance, retry_after, description) in cases {
        clock.advance(advance);
        let response = ask(&app, SLOW_KEY, &prompt()).await;
        assert_eq!(response.status, 429, "{description}");
        assert_eq!(
            header_number(&response, "retry-after"),
            retry_after,
            "{description}"
        );
    }
    clock.advance(Duration::from_millis(100));
    let response = ask(&app, SLOW_KEY, &prompt()).await;
    assert_eq!(response.status, 200, "the token is back at exactly 1.5 s");
}

#[actix_rt::test]
async fn ratelimit_reset_says_when_a_partly_refilled_bucket_is_full_again() {
    const KEY: &str = "patient-key-0123456789";
    let keys = KeysDir::with_file(
        "reset",
        &client_entry("patient", KEY, "requests_per_minute = 1\nburst = 2"),
    );
    let clock = FakeRelativeClock::default();
    let app = spawn_app_with_clock(keys_file(&keys), Some(clock.clone())).await;

    assert_eq!(rate(&ask(&app, KEY, &prompt()).await), (200, 2, 1, 60));
    clock.advance(Duration::from_secs(30));
    // Half a token is back: one whole token at 60 s, the second at 120 s,
    // so the bucket is full 90 s from now.
    assert_eq!(rate(&ask(&app, KEY, &prompt()).await), (200, 2, 0, 90));
    let limited = ask(&app, KEY, &prompt()).await;
    assert_rate_limited(&limited, 30, 2);
    assert_eq!(header_number(&limited, "ratelimit-reset"), 90);
}

#[actix_rt::test]
async fn a_request_refused_for_its_key_takes_no_token_but_one_refused_later_does() {
    const KEY: &str = "counted-key-0123456789";
    let keys = KeysDir::with_file(
        "tokens",
        &client_entry("counted", KEY, "requests_per_minute = 60\nburst = 3"),
    );
    let clock = FakeRelativeClock::default();
    let app = spawn_app_with_clock(keys_file(&keys), Some(clock.clone())).await;
    let body = prompt().to_string();

    // (description, headers) of requests refused for their key
    let unauthorized: [(&str, Vec<(&str, &str)>); 3] = [
        ("an unknown key", vec![("X-API-KEY", "not-a-known-key")]),
        ("no key", vec![]),
        (
            "the client's key twice (ambiguous)",
            vec![("X-API-KEY", KEY), ("X-API-KEY", KEY)],
        ),
    ];
    for (description, mut headers) in unauthorized {
        headers.push(("Content-Type", "application/json"));
        for _ in 0..5 {
            let response = app
                .request(Method::POST, "/gemini-proxy", &headers, body.clone())
                .await;
            assert_refused(&response, 401, "UNAUTHORIZED");
            assert!(
                response.header("ratelimit-remaining").is_none(),
                "{description}: not authenticated, no bucket to report"
            );
        }
    }
    assert_eq!(
        rate(&ask(&app, KEY, &prompt()).await),
        (200, 3, 2, 1),
        "fifteen refused keys took nothing"
    );

    // Authenticated, then refused: each still takes its token.
    let blank = ask(&app, KEY, &json!({"prompt": "  "})).await;
    assert_refused(&blank, 400, "INVALID_REQUEST");
    assert_eq!(header_number(&blank, "ratelimit-remaining"), 1);
    let not_json = app
        .request(
            Method::POST,
            "/gemini-proxy",
            &[("X-API-KEY", KEY), ("Content-Type", "application/json")],
            "{not json",
        )
        .await;
    assert_refused(&not_json, 400, "INVALID_JSON");
    assert_eq!(header_number(&not_json, "ratelimit-remaining"), 0);
    assert_rate_limited(&ask(&app, KEY, &prompt()).await, 1, 3);
}

// --- Permissions ------------------------------------------------------------

#[actix_rt::test]
async fn a_model_outside_the_clients_allow_list_is_refused_without_calling_gemini() {
    const FLASH_KEY: &str = "flash-only-key-0123456789";
    const PRO_KEY: &str = "pro-only-key-0123456789";
    let keys = KeysDir::with_file(
        "models",
        &(client_entry("flash-only", FLASH_KEY, r#"models = ["gemini-2.5-flash"]"#)
            + &client_entry("pro-only", PRO_KEY, r#"models = ["models/gemini-2.5-pro"]"#)),
    );
    let app = spawn_app_with(|settings| {
        keys_file(&keys)(settings);
        settings.insert("DEFAULT_MODEL".into(), "models/gemini-2.5-flash".into());
    })
    .await;

    // (description, client key, body, expected status)
    let cases = [
        (
            "the default model, listed without `models/`",
            FLASH_KEY,
            prompt(),
            200,
        ),
        ("the default model, not listed", PRO_KEY, prompt(), 403),
        ("a listed model", PRO_KEY, own("gemini-2.5-pro"), 200),
        (
            "a listed model with `models/`",
            PRO_KEY,
            own("models/gemini-2.5-pro"),
            200,
        ),
        ("an unlisted model", PRO_KEY, own("gemini-2.5-flash"), 403),
        (
            "an unlisted model with `models/`",
            FLASH_KEY,
            own("models/gemini-2.5-pro"),
            403,
        ),
    ];
    for (description, key, body, status) in cases {
        let upstream = app.mock.request_count();
        let response = ask(&app, key, &body).await;
        assert_eq!(
            response.status,
            status,
            "{description}: {}",
            response.text()
        );
        if status == 403 {
            assert_eq!(response.error_code(), "MODEL_NOT_ALLOWED", "{description}");
            assert_eq!(
                app.mock.request_count(),
                upstream,
                "{description}: Gemini was called"
            );
        } else {
            assert_eq!(app.mock.request_count(), upstream + 1, "{description}");
        }
    }
}

#[actix_rt::test]
async fn a_client_refused_its_own_gemini_key_gets_own_key_not_allowed() {
    const BOUND_KEY: &str = "server-key-only-0123456789";
    const FREE_KEY: &str = "may-bring-own-0123456789";
    let keys = KeysDir::with_file(
        "own-key",
        &format!(
            "[defaults]\nallow_own_key = false\n\n{}{}",
            client_entry("bound", BOUND_KEY, r#"models = ["gemini-2.5-flash"]"#),
            client_entry("free", FREE_KEY, "allow_own_key = true"),
        ),
    );
    let app = spawn_app_with(keys_file(&keys)).await;

    // (description, body) of requests refused for bringing their own key
    let refused = [
        ("its own key and a listed model", own("gemini-2.5-flash")),
        (
            "its own key and an unlisted model: the own-key check comes first",
            own("gemini-2.5-pro"),
        ),
    ];
    for (description, body) in refused {
        let response = ask(&app, BOUND_KEY, &body).await;
        assert_refused(&response, 403, "OWN_KEY_NOT_ALLOWED");
        assert_eq!(
            app.mock.request_count(),
            0,
            "{description}: Gemini was called"
        );
        assert!(!response.text().contains(OWN_KEY));
    }
    let response = ask(&app, BOUND_KEY, &prompt()).await;
    assert_eq!(
        response.status,
        200,
        "the server's key: {}",
        response.text()
    );

    let response = ask(&app, FREE_KEY, &own("gemini-2.5-flash")).await;
    assert_eq!(response.status, 200, "{}", response.text());
    let calls = app.upstream_requests();
    assert_eq!(
        calls.last().and_then(|c| c.header("x-goog-api-key")),
        Some(OWN_KEY),
        "the client's own key went to Gemini"
    );
}

// --- Reload -----------------------------------------------------------------

const STAYS_KEY: &str = "stays-key-0123456789";
const LEAVES_KEY: &str = "leaves-key-0123456789";
const CHANGES_KEY: &str = "changes-key-0123456789";
const ARRIVES_KEY: &str = "arrives-key-0123456789";

fn before_reload() -> String {
    client_entry("stays", STAYS_KEY, "burst = 10")
        + &client_entry("leaves", LEAVES_KEY, "burst = 10")
        + &client_entry(
            "changes",
            CHANGES_KEY,
            "requests_per_minute = 60\nburst = 2",
        )
}

fn after_reload() -> String {
    client_entry("stays", STAYS_KEY, "burst = 10")
        + &client_entry(
            "changes",
            CHANGES_KEY,
            "requests_per_minute = 60\nburst = 4",
        )
        + &client_entry("arrives", ARRIVES_KEY, "burst = 10")
}

/// Edits the keys file with `edit` while four requests wait on Gemini, and
/// checks that the new set of clients is in force and the four still succeed.
async fn reloads_while_requests_are_in_flight(test: &str, edit: impl FnOnce(&KeysDir)) {
    let keys = KeysDir::with_file(test, &before_reload());
    let clock = FakeRelativeClock::default();
    let app = spawn_app_with_clock(keys_file(&keys), Some(clock)).await;
    let reloads = metric(&app, RELOAD_SUCCESS).await;
    assert_refused(
        &ask(&app, ARRIVES_KEY, &prompt()).await,
        401,
        "UNAUTHORIZED",
    );

    app.mock.update_config(|c| c.first_byte_delay = HOLD);
    let slow = json!({"prompt": "[mock:slow-first-byte] take your time"});
    let held_keys = [STAYS_KEY, LEAVES_KEY, CHANGES_KEY, STAYS_KEY];
    let held = futures_util::future::join_all(held_keys.map(|key| ask(&app, key, &slow)));
    let hello = prompt();
    let reload = async {
        poll_until(
            "the held requests reach the mock",
            RELOAD_LIMIT,
            || async { app.mock.in_flight() },
            |n| *n == held_keys.len(),
        )
        .await;
        // Requests read the delay when they arrive: the held ones keep theirs.
        app.mock
            .update_config(|c| c.first_byte_delay = Duration::ZERO);
        edit(&keys);
        poll_until(
            "the new client is accepted",
            RELOAD_LIMIT,
            || ask(&app, ARRIVES_KEY, &hello),
            |r| r.status == 200,
        )
        .await;
        let still_held = app.mock.in_flight();

        assert_refused(&ask(&app, LEAVES_KEY, &prompt()).await, 401, "UNAUTHORIZED");
        // New limits, new bucket: a burst of 4, though one of 2 was taken before.
        let mut remaining = Vec::new();
        for _ in 0..4 {
            let (status, limit, left, _) = rate(&ask(&app, CHANGES_KEY, &prompt()).await);
            assert_eq!((status, limit), (200, 4));
            remaining.push(left);
        }
        assert_eq!(remaining, [3, 2, 1, 0]);
        assert_rate_limited(&ask(&app, CHANGES_KEY, &prompt()).await, 1, 4);
        still_held
    };
    let (answers, still_held) = tokio::join!(held, reload);

    assert!(
        still_held > 0,
        "the reload landed only after the held requests finished"
    );
    for (key, answer) in held_keys.iter().zip(&answers) {
        assert_eq!(
            answer.status,
            200,
            "a request in flight during the reload ({}): {}",
            key.split('-').next().unwrap_or_default(),
            answer.text()
        );
    }
    assert!(metric(&app, RELOAD_SUCCESS).await > reloads);
}

#[actix_rt::test]
async fn an_edit_in_place_adds_removes_and_changes_clients_without_dropping_requests() {
    reloads_while_requests_are_in_flight("edit", |keys| keys.write(&after_reload())).await;
}

#[actix_rt::test]
async fn a_file_renamed_over_the_keys_file_is_reloaded_without_dropping_requests() {
    reloads_while_requests_are_in_flight("rename", |keys| keys.replace(&after_reload())).await;
}

#[actix_rt::test]
async fn a_kubernetes_config_map_update_is_reloaded() {
    // What the kubelet does: the file is a symlink through `..data`, and an
    // update renames a new `..data` over the old one; `keys.toml` itself
    // never changes.
    const BEFORE: &str = "before-key-0123456789";
    const AFTER: &str = "after-key-0123456789";
    let keys = KeysDir::new("configmap");
    let publish = |version: u32, text: &str| {
        let data = format!("..2026_12_02_{version}");
        std::fs::create_dir_all(keys.dir.join(&data)).expect("data dir");
        std::fs::write(keys.dir.join(&data).join("keys.toml"), text).expect("keys file");
        let staged = keys.dir.join("..data_tmp");
        std::os::unix::fs::symlink(&data, &staged).expect("symlink");
        std::fs::rename(&staged, keys.dir.join("..data")).expect("swap ..data");
    };
    publish(1, &client_entry("before", BEFORE, ""));
    std::os::unix::fs::symlink("..data/keys.toml", keys.path()).expect("keys.toml link");
    let app = spawn_app_with(keys_file(&keys)).await;
    assert_eq!(ask(&app, BEFORE, &prompt()).await.status, 200);

    publish(2, &client_entry("after", AFTER, ""));
    let hello = prompt();
    poll_until(
        "the config map's new client is accepted",
        RELOAD_LIMIT,
        || ask(&app, AFTER, &hello),
        |r| r.status == 200,
    )
    .await;
    assert_refused(&ask(&app, BEFORE, &prompt()).await, 401, "UNAUTHORIZED");
}

#[actix_rt::test]
async fn a_reload_keeps_the_bucket_of_a_client_whose_limits_did_not_change() {
    const STEADY_KEY: &str = "steady-key-0123456789";
    const TUNED_KEY: &str = "tuned-key-0123456789";
    let limits = "requests_per_minute = 60\nburst = 2";
    let keys = KeysDir::with_file(
        "buckets",
        &(client_entry("steady", STEADY_KEY, limits) + &client_entry("tuned", TUNED_KEY, limits)),
    );
    let clock = FakeRelativeClock::default();
    let app = spawn_app_with_clock(keys_file(&keys), Some(clock.clone())).await;
    for key in [STEADY_KEY, TUNED_KEY] {
        for _ in 0..2 {
            assert_eq!(ask(&app, key, &prompt()).await.status, 200);
        }
        assert_rate_limited(&ask(&app, key, &prompt()).await, 1, 2);
    }

    // `steady` gets an allow-list but the same limits; `tuned` a bigger burst.
    keys.write(
        &(client_entry(
            "steady",
            STEADY_KEY,
            &format!("{limits}\nmodels = [\"gemini-2.5-flash\"]"),
        ) + &client_entry("tuned", TUNED_KEY, "requests_per_minute = 60\nburst = 3")),
    );
    assert_eq!(app.control.reload().await, Ok(3), "steady, tuned and env-1");

    assert_rate_limited(&ask(&app, STEADY_KEY, &prompt()).await, 1, 2);
    let (status, limit, remaining, _) = rate(&ask(&app, TUNED_KEY, &prompt()).await);
    assert_eq!((status, limit, remaining), (200, 3, 2), "a fresh bucket");
    assert_eq!(app.control.bucket_count().await, 3);
    // The kept bucket serves the new policy: its allow-list is in force.
    clock.advance(Duration::from_secs(1));
    let response = ask(&app, STEADY_KEY, &own("gemini-2.5-pro")).await;
    assert_refused(&response, 403, "MODEL_NOT_ALLOWED");
    assert_eq!(header_number(&response, "ratelimit-remaining"), 0);
}

#[actix_rt::test]
async fn a_bad_reload_keeps_the_clients_in_force_and_says_why_without_the_key() {
    const GOOD_KEY: &str = "good-key-0123456789";
    const NEW_KEY: &str = "newcomer-key-0123456789";
    let good = client_entry("good", GOOD_KEY, "burst = 100");
    let keys = KeysDir::with_file("bad-reload", &good);
    let app = spawn_app_with(keys_file(&keys)).await;

    // (description, file text, what the error must say)
    let cases = [
        (
            "a syntax error (an unterminated string)",
            format!("{good}\n[[client]]\nname = \"newcomer\"\nkey = \"{NEW_KEY}\n"),
            "line 8",
        ),
        (
            "a key used twice",
            format!("{good}\n{}", client_entry("newcomer", GOOD_KEY, "")),
            "same key as client `good`",
        ),
        (
            "a burst of 0",
            format!("{good}\n{}", client_entry("newcomer", NEW_KEY, "burst = 0")),
            "`burst` must be a whole number from 1",
        ),
        (
            "a key pasted on the burst line",
            format!(
                "{good}\n{}",
                client_entry("newcomer", "k", &format!("burst = \"{NEW_KEY}\""))
            ),
            "line 9: invalid type: string, expected i64",
        ),
        (
            "a bucket too big for the limiter's clock",
            format!(
                "{good}\n{}",
                client_entry(
                    "newcomer",
                    NEW_KEY,
                    "requests_per_minute = 1\nburst = 4294967295"
                )
            ),
            "(`newcomer`): a `burst` of 4294967295",
        ),
    ];
    for (description, text, problem) in cases {
        let failures = metric(&app, RELOAD_FAILURE).await;
        keys.write(&text);
        let error = app
            .control
            .reload()
            .await
            .expect_err(description)
            .to_string();
        assert!(error.contains(&keys.path_text()), "{description}: {error}");
        assert!(error.contains(problem), "{description}: {error}");
        assert!(
            !error.contains(GOOD_KEY) && !error.contains(NEW_KEY),
            "{description}: the error shows a key: {error}"
        );
        assert!(
            metric(&app, RELOAD_FAILURE).await > failures,
            "{description}"
        );
        let response = ask(&app, GOOD_KEY, &prompt()).await;
        assert_eq!(response.status, 200, "{description}: {}", response.text());
        let response = ask(&app, NEW_KEY, &prompt()).await;
        assert_refused(&response, 401, "UNAUTHORIZED");
    }
}

#[actix_rt::test]
async fn a_refused_edit_is_counted_once_and_not_retried_until_the_file_changes_again() {
    const KEY: &str = "patient-key-0123456789";
    let keys = KeysDir::with_file("refused-once", &client_entry("patient", KEY, ""));
    let app = spawn_app_with(keys_file(&keys)).await;
    let failures = metric(&app, RELOAD_FAILURE).await;
    let hello = prompt();

    keys.write("[[client]\n");
    poll_until(
        "the watcher refuses the edit",
        RELOAD_LIMIT,
        || metric(&app, RELOAD_FAILURE),
        |n| *n > failures,
    )
    .await;
    // Several debounce periods: reading the file must not wake the watcher.
    actix_rt::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(metric(&app, RELOAD_FAILURE).await, failures + 1.0);
    assert_eq!(ask(&app, KEY, &prompt()).await.status, 200);

    keys.write(&client_entry("patient", KEY, "burst = 3"));
    let response = poll_until(
        "the corrected file is in force",
        RELOAD_LIMIT,
        || ask(&app, KEY, &hello),
        |r| r.header("ratelimit-limit") == Some("3"),
    )
    .await;
    assert_eq!(response.status, 200);
}

#[actix_rt::test]
async fn a_directory_that_is_never_quiet_does_not_hold_back_a_reload() {
    const KEY: &str = "busy-key-0123456789";
    let keys = KeysDir::with_file("busy", "");
    let app = spawn_app_with(keys_file(&keys)).await;
    let done = std::cell::Cell::new(false);
    let hello = prompt();
    // Another file in the directory changes more often than the debounce period.
    let noise = async {
        let mut n = 0;
        while !done.get() {
            n += 1;
            std::fs::write(keys.dir.join("noise.log"), format!("{n}\n")).expect("noise");
            actix_rt::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let reload = async {
        keys.write(&client_entry("busy", KEY, ""));
        let started = Instant::now();
        poll_until(
            "the new client is accepted",
            RELOAD_LIMIT,
            || ask(&app, KEY, &hello),
            |r| r.status == 200,
        )
        .await;
        done.set(true);
        started.elapsed()
    };
    let ((), took) = tokio::join!(noise, reload);
    assert!(took < RELOAD_LIMIT, "took {took:?}");
}

#[actix_rt::test]
async fn ten_thousand_unknown_keys_are_refused_and_create_no_rate_limit_state() {
    const UNKNOWN: usize = 10_000;
    const AT_ONCE: usize = 50;
    let app = spawn_app().await;
    let before = app.control.bucket_count().await;
    // One pooled client, so the test reuses a few connections.
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(10))
        .finish();
    let url = format!("{}/gemini-proxy", app.address);
    let started = Instant::now();
    let statuses: Vec<u16> = futures_util::stream::iter(0..UNKNOWN)
        .map(|i| {
            let request = client
                .post(&url)
                .insert_header(("X-API-KEY", format!("unknown-key-{i:05}")));
            async move {
                let mut response = request.send().await.expect("an answer");
                let _ = response.body().await;
                response.status().as_u16()
            }
        })
        .buffer_unordered(AT_ONCE)
        .collect()
        .await;
    let elapsed = started.elapsed();

    assert_eq!(statuses.len(), UNKNOWN);
    assert!(statuses.iter().all(|s| *s == 401), "all refused");
    assert_eq!(app.control.bucket_count().await, before);
    assert!(elapsed < Duration::from_secs(30), "took {elapsed:?}");
    assert_eq!(
        app.proxy(&prompt()).await.status,
        200,
        "clients still served"
    );
}

// --- The binary -------------------------------------------------------------

fn assert_no_key(text: &str, keys: &[&str]) {
    for key in keys {
        assert!(!text.contains(key), "a key was printed: {text}");
    }
}

#[test]
fn the_binary_refuses_to_start_with_a_bad_keys_file_naming_the_file_and_the_problem() {
    const SECRET: &str = "secret-client-key-0123456789";
    const NUMBER: &str = "31415926535897";
    let keys = KeysDir::new("bad-start");
    // (description, file text or None for no file, what stderr must say)
    let cases = [
        (
            "a syntax error",
            Some(format!("[[client]]\nname = \"a\"\nkey = \"{SECRET}\n")),
            "line 3",
        ),
        (
            "a key used twice",
            Some(client_entry("a", SECRET, "") + &client_entry("b", SECRET, "")),
            "same key as client `a`",
        ),
        (
            "a burst of 0",
            Some(client_entry("a", SECRET, "burst = 0")),
            "`burst` must be a whole number from 1",
        ),
        (
            "a key written as a number",
            Some(format!("[[client]]\nname = \"a\"\nkey = {NUMBER}\n")),
            "line 3: invalid type: integer, expected a string",
        ),
        (
            "a bucket too big for the limiter's clock",
            Some(client_entry(
                "a",
                SECRET,
                "requests_per_minute = 1\nburst = 4294967295",
            )),
            "a `burst` of 4294967295",
        ),
        (
            "an empty allow-list",
            Some(client_entry("a", SECRET, "models = []")),
            "models = []",
        ),
        (
            "the API_KEYS key again",
            Some(client_entry("a", CLIENT_KEY, "")),
            "API_KEYS entry 1 has the same key as client `a`",
        ),
        ("a named file that is missing", None, "cannot read the file"),
    ];
    for (description, text, problem) in cases {
        let _ = std::fs::remove_file(keys.path());
        if let Some(text) = &text {
            keys.write(text);
        }
        let mut env = offline_env();
        env.insert("KEYS_FILE".into(), keys.path_text());
        let run = run_binary_in(&keys.dir, &[], &env, "");
        assert!(!run.status.success(), "{description}: it started");
        assert!(
            run.stderr.contains(&keys.path_text()) && run.stderr.contains(problem),
            "{description}: {}",
            run.stderr
        );
        assert!(!run.stderr.contains("listening on"), "{description}");
        assert_no_key(
            &format!("{}{}", run.stdout, run.stderr),
            &[SECRET, NUMBER, CLIENT_KEY, SERVER_KEY],
        );
    }
}

#[test]
fn the_binary_starts_without_the_default_keys_file() {
    let dir = KeysDir::new("no-default");
    let mut env = offline_env();
    env.remove("KEYS_FILE");
    // `start_in` panics unless the binary logs that it listens.
    let app = BinaryApp::start_in(&dir.dir, &[], &env);
    assert!(
        app.logs().contains("keys_file=config/keys.toml (default)"),
        "{}",
        app.logs()
    );
}

#[actix_rt::test]
async fn sighup_reloads_the_keys_file_of_the_running_binary() {
    const FIRST_KEY: &str = "first-key-0123456789";
    const SECOND_KEY: &str = "second-key-0123456789";
    let mock = gemini_mock::MockGemini::start(Default::default())
        .await
        .expect("mock starts");
    let keys = KeysDir::with_file("sighup", &client_entry("first", FIRST_KEY, ""));
    let mut env = binary_env(&mock);
    env.insert("KEYS_FILE".into(), keys.path_text());
    let binary = BinaryApp::start_in(&keys.dir, &[], &env);
    let ask_binary = |key: &'static str| {
        let request = client()
            .post(format!("{}/gemini-proxy", binary.address))
            .insert_header(("X-API-KEY", key))
            .insert_header(("Content-Type", "application/json"));
        async move {
            let response = request.send_body(prompt().to_string()).await;
            response.expect("an answer").status().as_u16()
        }
    };
    assert_eq!(ask_binary(FIRST_KEY).await, 200);
    assert_eq!(ask_binary(SECOND_KEY).await, 401);

    keys.write(&(client_entry("first", FIRST_KEY, "") + &client_entry("second", SECOND_KEY, "")));
    binary.signal("HUP");
    poll_until(
        "the SIGHUP reload is logged",
        RELOAD_LIMIT,
        || async { binary.logs() },
        |logs| logs.contains("keys reloaded (SIGHUP)"),
    )
    .await;
    assert_eq!(ask_binary(SECOND_KEY).await, 200);
    assert_eq!(ask_binary(FIRST_KEY).await, 200);
    assert_no_key(
        &binary.logs(),
        &[FIRST_KEY, SECOND_KEY, CLIENT_KEY, SERVER_KEY],
    );
}

#[actix_rt::test]
async fn hash_key_prints_the_key_sha256_line_that_authenticates_the_key() {
    const KEY: &str = "a-client-key-to-hash-0123456789";
    let keys = KeysDir::new("hash-key");
    let env = HashMap::from([("PATH".into(), std::env::var("PATH").unwrap_or_default())]);
    let expected = format!("key_sha256 = \"{}\"\n", sha256_hex(KEY));
    // (description, stdin)
    for (description, stdin) in [
        ("as printf sends it", KEY.to_owned()),
        ("as echo sends it", format!("{KEY}\n")),
        ("from Windows", format!("{KEY}\r\n")),
    ] {
        let run = run_binary_in(&keys.dir, &["hash-key"], &env, &stdin);
        assert!(run.status.success(), "{description}: {}", run.stderr);
        assert_eq!(run.stdout, expected, "{description}");
    }
    let run = run_binary_in(&keys.dir, &["hash-key"], &env, "");
    assert!(!run.status.success(), "an empty key has no hash to print");

    // The printed line, pasted into the keys file, lets the key in.
    keys.write(&format!("[[client]]\nname = \"pasted\"\n{expected}"));
    let app = spawn_app_with(keys_file(&keys)).await;
    assert_eq!(ask(&app, KEY, &prompt()).await.status, 200);
}

#[test]
fn check_config_lists_clients_and_limits_without_keys_and_fails_on_a_bad_file() {
    const ALPHA_KEY: &str = "alpha-key-0123456789";
    const BETA_KEY: &str = "beta-key-0123456789";
    let keys = KeysDir::with_file(
        "check-config",
        &format!(
            "[defaults]\nrequests_per_minute = 30\nburst = 5\nrequests_per_day = 5000\n\n{}\
             [[client]]\nname = \"beta\"\nkey_sha256 = \"{}\"\n\
             models = [\"gemini-2.5-pro\", \"gemini-2.5-flash\"]\n\
             tokens_per_minute = 400000\ntokens_per_day = 20000000\n\
             [[client.quota]]\nmodels = [\"models/gemini-2.5-pro\"]\n\
             requests_per_day = 500\ntokens_per_day = 2000000\n",
            client_entry("alpha", ALPHA_KEY, "requests_per_minute = 120\nburst = 7"),
            sha256_hex(BETA_KEY),
        ),
    );
    let mut env = offline_env();
    env.insert("KEYS_FILE".into(), keys.path_text());
    let secrets = [
        ALPHA_KEY,
        BETA_KEY,
        &sha256_hex(BETA_KEY),
        CLIENT_KEY,
        SERVER_KEY,
    ];

    let run = run_binary_in(&keys.dir, &["check-config"], &env, "");
    assert!(run.status.success(), "{}", run.stderr);
    for line in [
        "alpha: 120/min, burst 7, requests/day 5000, models: any",
        "  beta: 30/min, burst 5, tokens/min 400000, requests/day 5000, tokens/day 20000000, \
         models: gemini-2.5-flash, gemini-2.5-pro, own Gemini key: allowed\n\
         \x20   quota group gemini-2.5-pro (gemini-2.5-pro): requests/day 500, tokens/day 2000000\n",
        "env-1: 30/min, burst 5, requests/day 5000, models: any",
    ] {
        assert!(run.stdout.contains(line), "{line:?} in {}", run.stdout);
    }
    assert_no_key(&format!("{}{}", run.stdout, run.stderr), &secrets);

    keys.write(&client_entry("alpha", ALPHA_KEY, "burst = 0"));
    let run = run_binary_in(&keys.dir, &["check-config"], &env, "");
    assert!(!run.status.success(), "a bad file passed: {}", run.stdout);
    assert!(
        run.stderr.contains(&keys.path_text()) && run.stderr.contains("`burst`"),
        "{}",
        run.stderr
    );
    assert_no_key(&format!("{}{}", run.stdout, run.stderr), &secrets);

    keys.write(&client_entry(
        "alpha",
        ALPHA_KEY,
        "[[client.quota]]\nmodels = [\"gemini-2.5-pro\"]",
    ));
    let run = run_binary_in(&keys.dir, &["check-config"], &env, "");
    assert!(!run.status.success(), "a group without a limit passed");
    assert!(
        run.stderr
            .contains("[[client]] #1 (`alpha`): quota group #1: gives no limit"),
        "{}",
        run.stderr
    );
    assert_no_key(&format!("{}{}", run.stdout, run.stderr), &secrets);
}
