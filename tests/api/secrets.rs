//! Secret hygiene: the real binary at `LOG_LEVEL=trace`, driven through every
//! error code (docs/errors.md#error-codes) the mock can provoke and every way a key can arrive
//! (`X-API-KEY`, `?key=`, `x-goog-api-key`, `Authorization: Bearer`, a client's
//! own Gemini key, keys-file clients by key and by hash, a keys-file reload that
//! fails), then swept: no client key, server key or client Gemini key — nor any
//! 8-character piece of one — may appear in the logs, in any response (status
//! line, headers or body), in `/metrics` or in `/health`.
//!
//! The keys are random per run, so a piece found is a leak, not a coincidence;
//! the mock's record proves they really travelled, so a clean sweep is not an
//! empty one.

use crate::helpers::*;
use awc::http::Method;
use gemini_mock::{MockConfig, MockGemini};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A random key: `prefix` then 36 random letters and digits, so every
/// 8-character window of it is its own.
fn random_key(prefix: &str) -> String {
    let random: String = std::iter::repeat_with(fastrand::alphanumeric)
        .take(36)
        .collect();
    format!("{prefix}{random}")
}

/// Every key of one run.
struct Keys {
    /// `API_KEYS` (client `env-1`).
    env: String,
    /// A keys-file client given by its key.
    file: String,
    /// A keys-file client given by `key_sha256`, which may not send its own key.
    hashed: String,
    /// A keys-file client whose allow-list leaves out the default model.
    allow_list: String,
    /// A keys-file client with a burst of 1.
    limited: String,
    /// The two server keys (`GEMINI_API_KEY`).
    server: [String; 2],
    /// A client's own Gemini key.
    own: String,
    /// A client key nobody configured.
    unknown: String,
}

impl Keys {
    fn new() -> Keys {
        Keys {
            env: random_key("cli-"),
            file: random_key("cli-"),
            hashed: random_key("cli-"),
            allow_list: random_key("cli-"),
            limited: random_key("cli-"),
            server: [random_key("AIza"), random_key("AIza")],
            own: random_key("AIza"),
            unknown: random_key("cli-"),
        }
    }

    fn all(&self) -> Vec<(&'static str, &str)> {
        vec![
            ("the API_KEYS client key", &self.env),
            ("the keys-file client key", &self.file),
            ("the hashed keys-file client key", &self.hashed),
            ("the allow-list client key", &self.allow_list),
            ("the limited client key", &self.limited),
            ("server key 0", &self.server[0]),
            ("server key 1", &self.server[1]),
            ("the client's own Gemini key", &self.own),
            ("the unknown client key", &self.unknown),
        ]
    }

    fn keys_file(&self) -> String {
        let sha = hex::encode(Sha256::digest(self.hashed.as_bytes()));
        format!(
            "[defaults]\nrequests_per_minute = 60000\nburst = 10000\n\n\
             [[client]]\nname = \"sweep-file\"\nkey = \"{}\"\n\n\
             [[client]]\nname = \"sweep-hashed\"\nkey_sha256 = \"{sha}\"\nallow_own_key = false\n\n\
             [[client]]\nname = \"sweep-allow-list\"\nkey = \"{}\"\nmodels = [\"gemini-2.5-pro\"]\n\n\
             [[client]]\nname = \"sweep-limited\"\nkey = \"{}\"\nrequests_per_minute = 1\nburst = 1\n",
            self.file, self.allow_list, self.limited
        )
    }

    /// A file the service must refuse, holding keys in the lines it complains about.
    fn bad_keys_file(&self) -> String {
        format!(
            "{}\n[[client]]\nname = \"sweep-duplicate\"\nkey = \"{}\"\n\n\
             [[client]]\nname = \"sweep-both\"\nkey = \"{}\"\nkey_sha256 = \"{}\"\n",
            self.keys_file(),
            self.file,
            self.own,
            self.server[0]
        )
    }
}

/// A private directory for the keys file; removed when dropped.
struct SweepDir(PathBuf);

impl SweepDir {
    fn new() -> SweepDir {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "secrets-{}-{}",
            std::process::id(),
            fastrand::u32(..)
        ));
        std::fs::create_dir_all(&dir).expect("sweep dir");
        SweepDir(dir)
    }

    fn keys_path(&self) -> PathBuf {
        self.0.join("keys.toml")
    }
}

impl Drop for SweepDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One request of the sweep.
struct Call {
    method: Method,
    path: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Call {
    fn new(method: Method, path: impl Into<String>) -> Call {
        Call {
            method,
            path: path.into(),
            headers: Vec::new(),
            body: String::new(),
        }
    }

    fn header(mut self, name: &str, value: impl Into<String>) -> Call {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    fn json(mut self, body: impl ToString) -> Call {
        self.body = body.to_string();
        self.header("Content-Type", "application/json")
    }

    /// `POST /gemini-proxy` with `key` (if any) and a JSON body.
    fn proxy(key: Option<&str>, body: Value) -> Call {
        let call = Call::new(Method::POST, "/gemini-proxy").json(body);
        match key {
            Some(key) => call.header("X-API-KEY", key),
            None => call,
        }
    }
}

/// A response with everything a leak could hide in, as one text.
fn response_text(response: &TestResponse) -> String {
    let mut text = format!("{}\n", response.status);
    for (name, value) in &response.headers {
        text.push_str(&format!(
            "{name}: {}\n",
            String::from_utf8_lossy(value.as_bytes())
        ));
    }
    text.push_str(&response.text());
    text
}

async fn send(address: &str, id: &str, call: &Call) -> TestResponse {
    let mut headers: Vec<(&str, &str)> = vec![("X-Request-Id", id)];
    headers.extend(call.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())));
    send_to(
        address,
        call.method.clone(),
        &call.path,
        &headers,
        call.body.clone(),
    )
    .await
}

/// Sends `calls` all at once, numbering their request ids from `first`.
async fn send_all(address: &str, first: usize, calls: &[Call]) -> Vec<TestResponse> {
    futures_util::future::join_all(
        calls.iter().enumerate().map(|(i, call)| async move {
            send(address, &format!("sweep-{}", first + i), call).await
        }),
    )
    .await
}

/// The expected outcome of a call whose two runs race (a burst of 1): checked
/// only by the set of codes the sweep reached.
const EITHER: &str = "*";

/// The code of each answer, the `code=` of its access line and the
/// per-client counter all say the same: the service's own errors carry their
/// code, successes are `OK`, and a Gemini answer relayed as it came is logged
/// and counted under the one code the pipeline gave it.
fn assert_codes_agree(responses: &[TestResponse], logs: &str, exposition: &str) {
    let mut logged_codes: BTreeMap<String, u64> = BTreeMap::new();
    for (i, response) in responses.iter().enumerate() {
        let id = format!("request_id=sweep-{i} ");
        let line = logs
            .lines()
            .find(|line| line.contains(&id) && line.contains(" code="))
            .unwrap_or_else(|| panic!("no access line for sweep-{i}"));
        let logged = line
            .split(' ')
            .find_map(|field| field.strip_prefix("code="))
            .expect("a code field")
            .to_owned();
        match code_of(response) {
            Some(code) => assert_eq!(logged, code, "sweep-{i}: {}", response.text()),
            None if response.status < 400 => assert_eq!(logged, "OK", "sweep-{i}"),
            None => assert!(
                gemini_proxy::errors::ErrorCode::ALL
                    .iter()
                    .any(|c| c.as_str() == logged
                        && c.status().as_u16() / 100 == response.status / 100),
                "sweep-{i}: a relayed {} logged as {logged}",
                response.status
            ),
        }
        *logged_codes.entry(logged).or_default() += 1;
    }
    let mut counted: BTreeMap<String, u64> = BTreeMap::new();
    for line in exposition.lines() {
        let Some(rest) = line.strip_prefix("gemini_proxy_client_requests_total{") else {
            continue;
        };
        let code = rest
            .split("code=\"")
            .nth(1)
            .and_then(|c| c.split('"').next())
            .expect("a code label");
        let value: f64 = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .expect("a value");
        // The metrics are read right after the sweep, before the tail's
        // requests are all counted only if they are; compare what both saw.
        *counted.entry(code.to_owned()).or_default() += value as u64;
    }
    for (code, count) in &logged_codes {
        assert!(
            counted.get(code).copied().unwrap_or(0) >= *count,
            "{code}: {count} logged, {:?} counted",
            counted.get(code)
        );
    }
    for (code, count) in &counted {
        assert!(
            logged_codes.contains_key(code),
            "{code} counted {count} times but never logged"
        );
    }
}

/// Waits (10 s at most) until the binary has written an access line for
/// every request id in `ids`.
async fn wait_for_access_lines(app: &BinaryApp, ids: impl Iterator<Item = String>) -> String {
    let ids: Vec<String> = ids.map(|id| format!("request_id={id} ")).collect();
    let started = Instant::now();
    loop {
        let logs = app.logs();
        let missing: Vec<&String> = ids
            .iter()
            .filter(|id| !logs.contains(id.as_str()))
            .collect();
        if missing.is_empty() {
            return logs;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no access line for {missing:?}"
        );
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `/metrics` (5 s at most) until `series` reaches `value`.
async fn wait_for_metric(address: &str, series: &str, value: f64) {
    let started = Instant::now();
    loop {
        let metrics = send(address, "sweep-poll", &Call::new(Method::GET, "/metrics"))
            .await
            .text();
        if metric_value(&metrics, series) == Some(value) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{series} never reached {value}:\n{}",
            metrics
                .lines()
                .filter(|l| l.starts_with(series.split('{').next().unwrap_or(series)))
                .collect::<Vec<_>>()
                .join("\n")
        );
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The calls that need nothing but a running service, each with the error code
/// it should end in (`None`: a success, or an answer passed through from Gemini).
fn sweep_calls(keys: &Keys) -> Vec<(Call, Option<&'static str>)> {
    let native = "/v1beta/models/gemini-2.5-flash";
    let own = |model: &str, prompt: &str| own_key_body(keys, model, prompt);
    let generate = json!({"contents": [{"parts": [{"text": "hello"}]}]});
    let chat =
        |model: &str| json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});
    let env = Some(keys.env.as_str());
    vec![
        // ---- /gemini-proxy, every code the service decides alone
        (Call::proxy(env, json!({"prompt": "hello"})), None),
        (
            Call::proxy(Some(&keys.file), json!({"prompt": "hello"})),
            None,
        ),
        (
            Call::proxy(Some(&keys.hashed), json!({"prompt": "hello"})),
            None,
        ),
        (
            Call::proxy(None, json!({"prompt": "hello"})),
            Some("UNAUTHORIZED"),
        ),
        (
            Call::proxy(Some(&keys.unknown), json!({"prompt": "hello"})),
            Some("UNAUTHORIZED"),
        ),
        (
            Call::proxy(None, json!({"prompt": "hello"}))
                .header("Authorization", format!("Bearer {}", keys.env)),
            Some("UNAUTHORIZED"),
        ),
        (
            Call::new(Method::POST, "/gemini-proxy")
                .json("{\"prompt\":")
                .header("X-API-KEY", &keys.env),
            Some("INVALID_JSON"),
        ),
        (
            // A key sent as a field name: serde names unknown fields.
            Call::proxy(env, json!({"prompt": "hello", keys.own.clone(): true})),
            Some("INVALID_REQUEST"),
        ),
        (
            // A key with a space in it, which the service refuses.
            Call::proxy(
                env,
                json!({"prompt": "hello", "model": "gemini-2.5-flash", "api_key": format!("{} x", keys.own)}),
            ),
            Some("INVALID_REQUEST"),
        ),
        (
            // A key sent with the wrong type.
            Call::proxy(
                env,
                json!({"prompt": "hello", "model": "gemini-2.5-flash", "api_key": [keys.own]}),
            ),
            Some("INVALID_REQUEST"),
        ),
        (
            Call::proxy(env, json!({"prompt": "p".repeat(101)})),
            Some("PROMPT_TOO_LONG"),
        ),
        (
            // Model and key swapped.
            Call::proxy(
                env,
                json!({"prompt": "hello", "model": keys.own, "api_key": "gemini-2.5-flash"}),
            ),
            Some("INVALID_MODEL"),
        ),
        (
            Call::proxy(env, json!({"prompt": "hello", "api_key": keys.own})),
            Some("MODEL_AND_KEY_REQUIRED"),
        ),
        (
            Call::proxy(Some(&keys.allow_list), json!({"prompt": "hello"})),
            Some("MODEL_NOT_ALLOWED"),
        ),
        (
            Call::proxy(Some(&keys.hashed), own("gemini-2.5-flash", "hello")),
            Some("OWN_KEY_NOT_ALLOWED"),
        ),
        (
            // The filler quotes the client key: a refused head is not logged either.
            Call::proxy(env, json!({"prompt": "hello"}))
                .header("X-Filler", format!("{}{}", keys.env, "a".repeat(33 * 1024))),
            Some("HEADERS_TOO_LARGE"),
        ),
        (
            Call::proxy(env, json!({"prompt": "a".repeat(300_000)})),
            Some("PAYLOAD_TOO_LARGE"),
        ),
        (
            Call::new(Method::POST, "/gemini-proxy")
                .header("X-API-KEY", &keys.env)
                .header("Content-Type", "text/plain"),
            Some("UNSUPPORTED_MEDIA_TYPE"),
        ),
        // One is served and the other RATE_LIMITED, whichever comes first.
        (
            Call::proxy(Some(&keys.limited), json!({"prompt": "hello"})),
            Some(EITHER),
        ),
        (
            Call::proxy(Some(&keys.limited), json!({"prompt": "hello"})),
            Some(EITHER),
        ),
        (
            Call::new(Method::GET, "/gemini-proxy").header("X-API-KEY", &keys.env),
            Some("METHOD_NOT_ALLOWED"),
        ),
        (
            Call::new(Method::GET, format!("/nope?key={}", keys.env)),
            Some("NOT_FOUND"),
        ),
        // ---- /gemini-proxy, what Gemini answers
        (Call::proxy(env, own("gemini-2.5-flash", "hello")), None),
        (
            Call::proxy(env, own("gemini-2.5-flash", "[mock:429] hello")),
            Some("QUOTA_ERROR"),
        ),
        (
            Call::proxy(env, json!({"prompt": "[mock:404] hello"})),
            Some("MODEL_NOT_FOUND"),
        ),
        (
            Call::proxy(env, own("mock-400-badkey", "hello")),
            Some("INVALID_GEMINI_KEY"),
        ),
        (
            Call::proxy(env, own("mock-403", "hello")),
            Some("UPSTREAM_FORBIDDEN"),
        ),
        (
            Call::proxy(env, json!({"prompt": "[mock:blocked] hello"})),
            Some("PROMPT_BLOCKED"),
        ),
        (
            Call::proxy(env, json!({"prompt": "[mock:400] hello"})),
            Some("UPSTREAM_BAD_REQUEST"),
        ),
        (
            Call::proxy(env, json!({"prompt": "[mock:400-geo] hello"})),
            Some("LOCATION_NOT_SUPPORTED"),
        ),
        (
            Call::proxy(env, json!({"prompt": "[mock:503] hello"})),
            Some("UPSTREAM_UNAVAILABLE"),
        ),
        (
            Call::proxy(env, own("mock-reset-before-headers", "hello")),
            Some("UPSTREAM_UNAVAILABLE"),
        ),
        (
            Call::proxy(env, json!({"prompt": "[mock:504] hello"})),
            Some("UPSTREAM_TIMEOUT"),
        ),
        (
            Call::proxy(env, own("mock-hang", "hello")),
            Some("UPSTREAM_TIMEOUT"),
        ),
        (
            Call::proxy(env, json!({"prompt": "[mock:non-json] hello"})),
            Some("UPSTREAM_ERROR"),
        ),
        (
            Call::proxy(env, json!({"prompt": "[mock:truncated-json] hello"})),
            Some("UPSTREAM_ERROR"),
        ),
        (
            Call::proxy(env, json!({"prompt": "[mock:redirect] hello"})),
            Some("UPSTREAM_ERROR"),
        ),
        // ---- the native surface: every way an SDK sends its key
        (
            Call::new(
                Method::POST,
                format!("{native}:generateContent?key={}", keys.env),
            )
            .json(&generate),
            None,
        ),
        (
            Call::new(Method::POST, format!("{native}:generateContent"))
                .json(&generate)
                .header("x-goog-api-key", &keys.file),
            None,
        ),
        (
            Call::new(Method::POST, format!("{native}:generateContent"))
                .json(&generate)
                .header("X-API-KEY", &keys.env)
                .header("x-goog-api-key", &keys.own),
            None,
        ),
        (
            Call::new(
                Method::POST,
                format!("{native}:streamGenerateContent?alt=sse&key={}", keys.env),
            )
            .json(&generate),
            None,
        ),
        (
            Call::new(Method::POST, format!("{native}:countTokens"))
                .json(&generate)
                .header("x-goog-api-key", &keys.env),
            None,
        ),
        (
            Call::new(Method::GET, format!("/v1beta/models?key={}", keys.env)),
            None,
        ),
        (
            Call::new(Method::GET, native).header("x-goog-api-key", &keys.env),
            None,
        ),
        (
            Call::new(
                Method::POST,
                format!("{native}:generateContent?key={}", keys.unknown),
            )
            .json(&generate),
            Some("UNAUTHORIZED"),
        ),
        (
            Call::new(
                Method::POST,
                format!("{native}:generateContent?key={}", keys.allow_list),
            )
            .json(&generate),
            Some("MODEL_NOT_ALLOWED"),
        ),
        (
            Call::new(
                Method::POST,
                format!("/v1beta/models/mock-503:generateContent?key={}", keys.env),
            )
            .json(&generate),
            None,
        ),
        (
            Call::new(
                Method::POST,
                "/v1beta/models/mock-400-badkey:generateContent",
            )
            .json(&generate)
            .header("X-API-KEY", &keys.env)
            .header("x-goog-api-key", &keys.own),
            None,
        ),
        (
            Call::new(Method::DELETE, format!("{native}?key={}", keys.env)),
            Some("METHOD_NOT_ALLOWED"),
        ),
        (
            Call::new(Method::GET, format!("/v1beta/corpora?key={}", keys.env)),
            Some("NOT_FOUND"),
        ),
        // ---- the OpenAI-compatible surface
        (
            Call::new(Method::POST, "/v1beta/openai/chat/completions")
                .json(chat("gemini-2.5-flash"))
                .header("Authorization", format!("Bearer {}", keys.env)),
            None,
        ),
        (
            Call::new(Method::POST, "/v1beta/openai/chat/completions")
                .json(chat("gemini-2.5-flash"))
                .header("X-API-KEY", &keys.env)
                .header("Authorization", format!("Bearer {}", keys.own)),
            None,
        ),
        (
            Call::new(Method::POST, "/v1beta/openai/chat/completions")
                .json(chat("gemini-2.5-flash"))
                .header("Authorization", format!("Bearer {}", keys.unknown)),
            Some("UNAUTHORIZED"),
        ),
        (
            Call::new(Method::POST, "/v1beta/openai/chat/completions")
                .json(chat("mock-503"))
                .header("Authorization", format!("Bearer {}", keys.env)),
            None,
        ),
        (
            Call::new(Method::POST, "/v1beta/openai/embeddings")
                .json(json!({"model": "text-embedding-004", "input": "hi"}))
                .header("Authorization", format!("Bearer {}", keys.file)),
            None,
        ),
        (
            Call::new(Method::GET, "/v1beta/openai/models")
                .header("Authorization", format!("Bearer {}", keys.env)),
            None,
        ),
    ]
}

#[actix_rt::test]
async fn no_key_or_piece_of_one_leaks_into_logs_responses_metrics_or_health_at_trace_level() {
    let keys = Keys::new();
    let dir = SweepDir::new();
    std::fs::write(dir.keys_path(), keys.keys_file()).expect("keys file");
    let mock = MockGemini::start(MockConfig::default())
        .await
        .expect("mock starts");
    let mut env = binary_env(&mock);
    env.extend(HashMap::from([
        ("LOG_LEVEL".to_owned(), "trace".to_owned()),
        ("API_KEYS".to_owned(), keys.env.clone()),
        ("GEMINI_API_KEY".to_owned(), keys.server.join(",")),
        (
            "KEYS_FILE".to_owned(),
            dir.keys_path().display().to_string(),
        ),
        ("MAX_PROMPT_CHARS".to_owned(), "100".to_owned()),
        ("UPSTREAM_TIMEOUT_SECS".to_owned(), "1".to_owned()),
    ]));
    let app = BinaryApp::start(&[], &env);
    let address = app.address.clone();

    let (calls, expected): (Vec<Call>, Vec<Option<&str>>) = sweep_calls(&keys).into_iter().unzip();
    let mut responses = send_all(&address, 0, &calls).await;
    for ((call, expected), response) in calls.iter().zip(&expected).zip(&responses) {
        if *expected == Some(EITHER) {
            continue;
        }
        if let Some(code) = expected {
            assert_eq!(
                code_of(response).as_deref(),
                Some(*code),
                "{} {}: {}",
                call.method,
                call.path,
                response.text()
            );
        } else if !call.path.contains("mock-") && !call.body.contains("mock-") {
            assert_eq!(response.status, 200, "{}: {}", call.path, response.text());
        }
    }

    // A reload that fails on lines holding keys, then one that works.
    std::fs::write(dir.keys_path(), keys.bad_keys_file()).expect("bad keys file");
    wait_for_metric(
        &address,
        "gemini_proxy_config_reloads_total{result=\"failure\"}",
        1.0,
    )
    .await;
    // (Other bytes than the file in force: the same bytes would be no change.)
    let good_again = format!("{}# reloaded\n", keys.keys_file());
    std::fs::write(dir.keys_path(), good_again).expect("keys file");
    wait_for_metric(
        &address,
        "gemini_proxy_config_reloads_total{result=\"success\"}",
        1.0,
    )
    .await;

    // Server keys leave the rotation (rejected), come back on SIGHUP, then
    // rest (quota): the last codes, since each spoils the keys for the rest.
    let env_key = Some(keys.env.as_str());
    let tail = [
        (
            Call::proxy(env_key, json!({"prompt": "[mock:400-badkey] hello"})),
            "UPSTREAM_AUTH_ERROR",
        ),
        (
            Call::proxy(env_key, json!({"prompt": "[mock:429] hello"})),
            "QUOTA_ERROR",
        ),
    ];
    let first = calls.len();
    let rejected = send(&address, &format!("sweep-{first}"), &tail[0].0).await;
    assert_eq!(
        code_of(&rejected).as_deref(),
        Some(tail[0].1),
        "{}",
        rejected.text()
    );
    app.signal("HUP");
    wait_for_metric(
        &address,
        "gemini_proxy_upstream_key_available{key=\"1\"}",
        1.0,
    )
    .await;
    let rested = send(&address, &format!("sweep-{}", first + 1), &tail[1].0).await;
    assert_eq!(
        code_of(&rested).as_deref(),
        Some(tail[1].1),
        "{}",
        rested.text()
    );
    responses.extend([rejected, rested]);
    let sent = first + tail.len();

    // Every code of docs/errors.md#error-codes the service can give with a server key was given.
    let codes: BTreeSet<String> = responses.iter().filter_map(code_of).collect();
    let all_but: BTreeSet<String> = gemini_proxy::errors::ErrorCode::ALL
        .iter()
        .map(|c| c.as_str().to_owned())
        .filter(|c| !["INTERNAL_ERROR", "NO_SERVER_KEY"].contains(&c.as_str()))
        .collect();
    assert_eq!(codes, all_but, "codes reached");

    let metrics = send(
        &address,
        "sweep-metrics",
        &Call::new(Method::GET, "/metrics"),
    )
    .await;
    let health = send(&address, "sweep-health", &Call::new(Method::GET, "/health")).await;
    let logs = wait_for_access_lines(&app, (0..sent).map(|i| format!("sweep-{i}"))).await;
    assert!(logs.contains(" TRACE "), "trace logging was not on");
    assert_codes_agree(&responses, &logs, &response_text(&metrics));
    assert!(
        logs.contains("sweep-hashed"),
        "the keys file was not in force"
    );

    // The keys really travelled: server keys and the own key reached Gemini.
    let upstream_keys: BTreeSet<String> = mock
        .requests()
        .iter()
        .filter_map(|r| r.api_key().map(str::to_owned))
        .collect();
    for key in [&keys.server[0], &keys.server[1], &keys.own] {
        assert!(upstream_keys.contains(key), "a key never reached the mock");
    }

    let mut sources = vec![
        ("the logs".to_owned(), logs),
        ("/metrics".to_owned(), response_text(&metrics)),
        ("/health".to_owned(), response_text(&health)),
    ];
    sources.extend(
        responses
            .iter()
            .enumerate()
            .map(|(i, r)| (format!("the response to sweep-{i}"), response_text(r))),
    );
    assert_no_leak(&keys, &sources);

    // NO_SERVER_KEY, and a connection refused, from a service with no server key.
    let mut env = env_without_server_key(&keys, &dir);
    env.insert("PATH".into(), std::env::var("PATH").unwrap_or_default());
    let keyless = BinaryApp::start(&[], &env);
    let calls = [
        Call::proxy(env_key, json!({"prompt": "hello"})),
        Call::proxy(env_key, own_key_body(&keys, "gemini-2.5-flash", "hello")),
        Call::new(
            Method::POST,
            "/v1beta/models/gemini-2.5-flash:generateContent",
        )
        .json(json!({"contents": [{"parts": [{"text": "hello"}]}]}))
        .header("x-goog-api-key", &keys.env),
    ];
    let responses = send_all(&keyless.address, 0, &calls).await;
    assert_eq!(code_of(&responses[0]).as_deref(), Some("NO_SERVER_KEY"));
    assert_eq!(
        code_of(&responses[1]).as_deref(),
        Some("UPSTREAM_UNAVAILABLE")
    );
    assert_eq!(code_of(&responses[2]).as_deref(), Some("NO_SERVER_KEY"));
    let metrics = send(
        &keyless.address,
        "k-metrics",
        &Call::new(Method::GET, "/metrics"),
    )
    .await;
    let logs =
        wait_for_access_lines(&keyless, (0..calls.len()).map(|i| format!("sweep-{i}"))).await;
    let mut sources = vec![
        ("the key-less service's logs".to_owned(), logs),
        (
            "the key-less service's /metrics".to_owned(),
            response_text(&metrics),
        ),
    ];
    sources.extend(responses.iter().enumerate().map(|(i, r)| {
        (
            format!("the key-less service's response {i}"),
            response_text(r),
        )
    }));
    assert_no_leak(&keys, &sources);
}

/// A `/gemini-proxy` body naming a model and the client's own Gemini key.
fn own_key_body(keys: &Keys, model: &str, prompt: &str) -> Value {
    json!({"prompt": prompt, "model": model, "api_key": keys.own})
}

/// The settings of a service with no server key whose upstream refuses connections.
fn env_without_server_key(keys: &Keys, dir: &SweepDir) -> HashMap<String, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let closed = format!("http://{}", listener.local_addr().expect("address"));
    drop(listener);
    HashMap::from([
        ("HOST".to_owned(), "127.0.0.1".to_owned()),
        ("PORT".to_owned(), "0".to_owned()),
        ("LOG_LEVEL".to_owned(), "trace".to_owned()),
        ("API_KEYS".to_owned(), keys.env.clone()),
        (
            "KEYS_FILE".to_owned(),
            dir.keys_path().display().to_string(),
        ),
        ("GEMINI_BASE_URL".to_owned(), closed),
        ("WORKERS".to_owned(), "1".to_owned()),
        ("UPSTREAM_ACTORS".to_owned(), "1".to_owned()),
    ])
}

/// Fails, naming the key and the place, when any source holds any
/// 8-character piece of any key.
fn assert_no_leak(keys: &Keys, sources: &[(String, String)]) {
    let mut leaks = Vec::new();
    for (place, text) in sources {
        for (name, key) in keys.all() {
            let pieces = leaked_fragments(text, key);
            if !pieces.is_empty() {
                let at = text.find(pieces[0].as_str()).unwrap_or(0);
                let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
                let line_end = text[at..].find('\n').map_or(text.len(), |i| at + i);
                leaks.push(format!(
                    "{name} in {place}: {}",
                    &text[line_start..line_end]
                ));
            }
        }
    }
    assert!(leaks.is_empty(), "leaks:\n{}", leaks.join("\n"));
}

#[actix_rt::test]
async fn an_unknown_field_named_by_a_key_is_refused_without_quoting_it() {
    // serde's `unknown field `…`, expected one of …` quotes the name as the
    // client wrote it; a key pasted as a field name must not come back in the
    // message (nor in the logs, which the sweep above checks).
    let app = spawn_app().await;
    let own = random_key("AIza");
    let response = app
        .proxy(&json!({"prompt": "hello", own.clone(): true}))
        .await;
    assert_eq!(response.error_code(), "INVALID_REQUEST");
    let leaked = leaked_fragments(&response.text(), &own);
    assert!(leaked.is_empty(), "{}", response.text());
}
