//! The real `gemini-proxy` binary as a child process (the mock Gemini runs in this
//! test): what operators see in its logs, start-up refusals, graceful shutdown on
//! SIGTERM, and the demo command.

use crate::helpers::*;
use awc::http::Method;
use gemini_mock::{MockConfig, MockGemini};
use serde_json::json;
use std::collections::HashMap;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

/// A client's own Gemini key, sent as `api_key`.
const OWN_GEMINI_KEY: &str = "AIzaOwnClientKeyQwErTyUiOpAsDfGhJkLzXcV";
/// A client key the service does not know.
const WRONG_CLIENT_KEY: &str = "wrong-client-key-ZyXwVuTsRqPoNm";
/// A prompt, which the logs must not hold either (docs/operations.md#logs).
const PROMPT: &str = "Tell me about PromptMarker-Kq7Wz3 please";

async fn mock() -> MockGemini {
    MockGemini::start(MockConfig::default())
        .await
        .expect("mock starts")
}

/// `POST /gemini-proxy` with a client key, a request id and a JSON body.
async fn proxy(
    address: &str,
    key: &str,
    request_id: &str,
    body: serde_json::Value,
) -> TestResponse {
    send_to(
        address,
        Method::POST,
        "/gemini-proxy",
        &[
            ("X-API-KEY", key),
            ("Content-Type", "application/json"),
            ("X-Request-Id", request_id),
        ],
        body.to_string(),
    )
    .await
}

/// Waits (a few seconds at most) until the captured logs satisfy `ready`.
async fn logs_when(app: &BinaryApp, ready: impl Fn(&str) -> bool) -> String {
    let started = Instant::now();
    loop {
        let logs = app.logs();
        if ready(&logs) {
            return logs;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the logs never got there:\n{logs}"
        );
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Access-log lines (text format) of the request with this id.
fn access_lines<'a>(logs: &'a str, request_id: &str) -> Vec<&'a str> {
    let field = format!("request_id={request_id}");
    logs.lines()
        .filter(|l| l.contains("gemini_proxy::access"))
        .filter(|l| l.split_whitespace().any(|word| word == field))
        .collect()
}

fn assert_no_fragment_of(text: &str, secrets: &[&str]) {
    for secret in secrets {
        let leaked = leaked_fragments(text, secret);
        assert!(leaked.is_empty(), "leaks {leaked:?} of a secret:\n{text}");
    }
}

/// Runs the binary to its exit (at most `limit`), returning its status, its
/// stdout+stderr and how long it ran. For settings that must stop start-up.
fn run_to_exit(env: &HashMap<String, String>, limit: Duration) -> (ExitStatus, String, Duration) {
    let run = run_binary_in(
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")),
        &[],
        env,
        "",
    );
    assert!(
        run.elapsed <= limit,
        "the binary was still running after {limit:?}"
    );
    (run.status, run.stdout + &run.stderr, run.elapsed)
}

// ---------------------------------------------------------------- logs

#[actix_rt::test]
async fn logs_at_trace_level_hold_no_key_nor_prompt_and_one_access_line_per_request() {
    let mock = mock().await;
    let mut env = binary_env(&mock);
    // Trace includes everything debug logs, and the dependencies' chatter too.
    env.insert("LOG_LEVEL".into(), "trace".into());
    let app = BinaryApp::start(&[], &env);
    let address = app.address.clone();

    let success = proxy(
        &address,
        CLIENT_KEY,
        "log-success",
        json!({"prompt": PROMPT}),
    )
    .await;
    assert_eq!(success.status, 200, "{}", success.text());
    let refused = proxy(
        &address,
        WRONG_CLIENT_KEY,
        "log-unauthorized",
        json!({"prompt": PROMPT}),
    )
    .await;
    assert_eq!(refused.status, 401, "{}", refused.text());
    let own_key = proxy(
        &address,
        CLIENT_KEY,
        "log-own-key",
        json!({"prompt": PROMPT, "model": "mock-400-badkey", "api_key": OWN_GEMINI_KEY}),
    )
    .await;
    assert_eq!(own_key.error_code(), "INVALID_GEMINI_KEY");
    let own_key_failure = proxy(
        &address,
        CLIENT_KEY,
        "log-own-key-500",
        json!({"prompt": PROMPT, "model": "mock-500", "api_key": OWN_GEMINI_KEY}),
    )
    .await;
    assert_eq!(own_key_failure.error_code(), "UPSTREAM_UNAVAILABLE");
    // A broken connection is logged at debug level, with its cause.
    let own_key_reset = proxy(
        &address,
        CLIENT_KEY,
        "log-own-key-reset",
        json!({"prompt": PROMPT, "model": "mock-reset-before-headers", "api_key": OWN_GEMINI_KEY}),
    )
    .await;
    assert_eq!(own_key_reset.error_code(), "UPSTREAM_UNAVAILABLE");
    let invalid = proxy(
        &address,
        CLIENT_KEY,
        "log-invalid",
        json!({"prompt": PROMPT, "api_key": OWN_GEMINI_KEY}),
    )
    .await;
    assert_eq!(invalid.error_code(), "MODEL_AND_KEY_REQUIRED");
    // The own-key calls really carried the key to Gemini.
    assert!(mock
        .requests()
        .iter()
        .any(|r| r.header("x-goog-api-key") == Some(OWN_GEMINI_KEY)));

    let ids = [
        "log-success",
        "log-unauthorized",
        "log-own-key",
        "log-own-key-500",
        "log-own-key-reset",
        "log-invalid",
    ];
    let logs = logs_when(&app, |logs| {
        ids.iter().all(|id| !access_lines(logs, id).is_empty())
    })
    .await;
    for id in ids {
        assert_eq!(access_lines(&logs, id).len(), 1, "{id}:\n{logs}");
    }
    assert!(
        access_lines(&logs, "log-success")[0].contains("client=env-1"),
        "{logs}"
    );
    assert!(
        logs.contains(" DEBUG "),
        "debug logging was not on:\n{logs}"
    );
    assert_no_fragment_of(
        &logs,
        &[
            CLIENT_KEY,
            SERVER_KEY,
            OWN_GEMINI_KEY,
            WRONG_CLIENT_KEY,
            PROMPT,
        ],
    );
}

#[actix_rt::test]
async fn json_logs_are_one_object_a_line_with_the_access_fields() {
    let mock = mock().await;
    let mut env = binary_env(&mock);
    env.insert("LOG_FORMAT".into(), "json".into());
    let app = BinaryApp::start(&[], &env);

    let success = proxy(
        &app.address,
        CLIENT_KEY,
        "json-success",
        json!({"prompt": PROMPT}),
    )
    .await;
    assert_eq!(success.status, 200, "{}", success.text());
    let refused = proxy(
        &app.address,
        WRONG_CLIENT_KEY,
        "json-unauthorized",
        json!({"prompt": "x"}),
    )
    .await;
    assert_eq!(refused.status, 401);

    let logs = logs_when(&app, |logs| {
        logs.contains("json-success") && logs.contains("json-unauthorized")
    })
    .await;
    let lines: Vec<serde_json::Value> = logs
        .lines()
        .map(|line| {
            let value: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            assert!(value.is_object(), "not an object: {line}");
            value
        })
        .collect();
    let access = |id: &str| {
        let found: Vec<_> = lines.iter().filter(|l| l["request_id"] == id).collect();
        assert_eq!(found.len(), 1, "{id}:\n{logs}");
        found[0].clone()
    };
    let line = access("json-success");
    assert_eq!(line["client"], "env-1", "{line}");
    assert_eq!(line["route"], "/gemini-proxy", "{line}");
    assert_eq!(line["status"], 200, "{line}");
    assert_eq!(line["code"], "OK", "{line}");
    assert_eq!(line["attempts"], 1, "{line}");
    assert!(line["latency_ms"].is_u64(), "{line}");
    assert!(line["tokens"].as_u64().is_some_and(|t| t > 0), "{line}");
    let line = access("json-unauthorized");
    assert_eq!(line["client"], "anonymous", "{line}");
    assert_eq!(line["status"], 401, "{line}");
    assert_eq!(line["code"], "UNAUTHORIZED", "{line}");
    assert_eq!(line["attempts"], 0, "{line}");
}

#[actix_rt::test]
async fn the_start_up_log_shows_the_settings_with_keys_masked() {
    let mock = mock().await;
    let app = BinaryApp::start(&[], &binary_env(&mock));
    let logs = logs_when(&app, |logs| logs.contains("starting")).await;
    let starting = logs
        .lines()
        .find(|l| l.contains("starting"))
        .expect("a start-up line");
    for setting in [
        "port=0",
        "gemini_api_keys=1 key (masked)",
        "api_keys=1 key (masked)",
        "default_model=gemini-2.5-flash",
        "max_prompt_chars=10000",
    ] {
        assert!(starting.contains(setting), "no {setting} in: {starting}");
    }
    assert!(starting.contains(&mock.base_url()), "{starting}");
    assert_no_fragment_of(&logs, &[CLIENT_KEY, SERVER_KEY]);
}

// ---------------------------------------------------------------- start-up

#[test]
fn a_bad_setting_stops_start_up_with_a_message_naming_it() {
    let cases = [
        ("PORT", "eighty", "a port that is not a number"),
        ("PORT", "70000", "a port out of range"),
        ("LOG_LEVEL", "loud", "an unknown log level"),
        ("LOG_FORMAT", "xml", "an unknown log format"),
        ("GEMINI_BASE_URL", "ftp://x", "a URL that is not http(s)"),
        ("MAX_PROMPT_CHARS", "0", "a zero limit"),
        ("MAX_BODY_BYTES", "-1", "a negative limit"),
        (
            "UPSTREAM_TIMEOUT_SECS",
            "soon",
            "a timeout that is not a number",
        ),
        (
            "CORS_ALLOWED_ORIGINS",
            "app.example",
            "an origin without a scheme",
        ),
    ];
    for (variable, value, description) in cases {
        let mut env = offline_env();
        env.insert(variable.into(), value.into());
        let (status, output, elapsed) = run_to_exit(&env, Duration::from_secs(10));
        assert!(
            !status.success(),
            "{description}: exited {status}\n{output}"
        );
        assert!(
            output.contains(variable),
            "{description}: the message does not name {variable}:\n{output}"
        );
        assert!(
            elapsed < Duration::from_secs(3),
            "{description}: took {elapsed:?}"
        );
        assert!(
            !output.contains("listening on"),
            "{description}: it started:\n{output}"
        );
    }
}

#[test]
fn a_missing_keys_file_that_was_named_stops_start_up() {
    let mut env = offline_env();
    env.insert("KEYS_FILE".into(), "/nonexistent/keys.toml".into());
    let (status, output, elapsed) = run_to_exit(&env, Duration::from_secs(10));
    assert!(!status.success(), "exited {status}\n{output}");
    assert!(output.contains("/nonexistent/keys.toml"), "{output}");
    assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}");
    assert!(!output.contains("listening on"), "it started:\n{output}");
}

#[test]
fn a_bad_key_list_names_the_variable_without_printing_a_key() {
    let first = "AIzaFirstPoolKey-Mn8Bv7Cx6Zl5";
    let second = "AIzaSecondPoolKey-Qa1Ws2Ed3Rf4";
    let client = "client-key-repeated-Tg5Yh6Uj7";
    let cases = [
        (
            "GEMINI_API_KEY",
            format!("{first},,{second}"),
            "an empty entry",
        ),
        (
            "GEMINI_API_KEY",
            format!("{first},{first}"),
            "a repeated key",
        ),
        (
            "GEMINI_API_KEY",
            format!("{first} {second}"),
            "a space inside an entry",
        ),
        (
            "API_KEYS",
            format!("{client},,{client}"),
            "an empty client entry",
        ),
        (
            "API_KEYS",
            format!("{client},{client}"),
            "a repeated client key",
        ),
    ];
    for (variable, value, description) in cases {
        let mut env = offline_env();
        env.insert(variable.into(), value);
        let (status, output, _) = run_to_exit(&env, Duration::from_secs(10));
        assert!(
            !status.success(),
            "{description}: exited {status}\n{output}"
        );
        assert!(
            output.contains(variable),
            "{description}: the message does not name {variable}:\n{output}"
        );
        assert_no_fragment_of(&output, &[first, second, client]);
    }
}

// ---------------------------------------------------------------- shutdown

/// Requests in flight when SIGTERM arrives in the shutdown test.
const IN_FLIGHT_AT_SIGTERM: usize = 100;

#[actix_rt::test]
async fn sigterm_with_a_hundred_requests_in_flight_answers_them_all_refuses_new_connections_and_exits_zero(
) {
    let mock = MockGemini::start(MockConfig {
        first_byte_delay: Duration::from_millis(1500),
        ..MockConfig::default()
    })
    .await
    .expect("mock starts");
    // One client sends all of them: its bucket must hold them.
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("shutdown-keys-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("keys dir");
    let keys_file = dir.join("keys.toml");
    std::fs::write(
        &keys_file,
        "[defaults]\nrequests_per_minute = 6000\nburst = 1000\n",
    )
    .expect("keys file");
    let mut env = binary_env(&mock);
    env.insert("KEYS_FILE".into(), keys_file.display().to_string());
    let mut app = BinaryApp::start(&[], &env);
    let address = app.address.clone();
    let socket_address = address.trim_start_matches("http://").to_owned();
    // awc's default pool holds 100 connections; these must not queue behind it.
    let client = awc::Client::builder()
        .connector(awc::Connector::new().limit(0))
        .timeout(Duration::from_secs(30))
        .finish();

    let held = (0..IN_FLIGHT_AT_SIGTERM).map(|i| {
        let request = client
            .post(format!("{address}/gemini-proxy"))
            .insert_header(("X-API-KEY", CLIENT_KEY))
            .insert_header(("X-Request-Id", format!("held-{i}")))
            .insert_header(("Content-Type", "application/json"));
        async move {
            let body = json!({"prompt": "[mock:slow-first-byte] still there?"});
            let mut response = request
                .send_body(body.to_string())
                .await
                .unwrap_or_else(|e| panic!("held-{i}: {e}"));
            let body = response.body().await.expect("body reads");
            TestResponse {
                status: response.status().as_u16(),
                headers: response.headers().clone(),
                body,
            }
        }
    });
    let terminate = async {
        let started = Instant::now();
        while mock.in_flight() < IN_FLIGHT_AT_SIGTERM {
            assert!(
                // Past the mock's 1.5 s hold, some would already be answered.
                started.elapsed() < Duration::from_millis(1400),
                "only {} of the requests reached Gemini together",
                mock.in_flight()
            );
            actix_rt::time::sleep(Duration::from_millis(10)).await;
        }
        app.signal("TERM");
        let signalled = Instant::now();
        // The listener closes at once, while the held requests still wait.
        let refused_after = loop {
            match tokio::net::TcpStream::connect(&socket_address).await {
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    break signalled.elapsed()
                }
                other => {
                    assert!(
                        signalled.elapsed() < Duration::from_millis(500),
                        "a new connection 500 ms after SIGTERM: {other:?}"
                    );
                    actix_rt::time::sleep(Duration::from_millis(10)).await;
                }
            }
        };
        let still_held = mock.in_flight();
        (signalled, refused_after, still_held)
    };
    let (responses, (signalled, refused_after, still_held)) =
        futures_util::future::join(futures_util::future::join_all(held), terminate).await;
    assert!(
        still_held > 0,
        "new connections were refused only after the held requests ended"
    );
    let answered = responses
        .iter()
        .filter(|r| {
            r.status == 200
                && r.json()["data"]["response"]
                    .as_str()
                    .is_some_and(|text| text.starts_with("echo:"))
        })
        .count();
    assert_eq!(
        answered,
        IN_FLIGHT_AT_SIGTERM,
        "not all answered: {:?}",
        responses
            .iter()
            .filter(|r| r.status != 200)
            .map(|r| (r.status, r.text()))
            .collect::<Vec<_>>()
    );

    let status = app.wait_exit(Duration::from_secs(30));
    let exited_after = signalled.elapsed();
    assert!(status.success(), "exited {status}:\n{}", app.logs());
    assert!(
        exited_after < Duration::from_secs(5),
        "exit took {exited_after:?} after SIGTERM"
    );
    println!(
        "refused new connections {refused_after:?} after SIGTERM ({still_held} still held), exited after {exited_after:?}"
    );
    let refused = std::net::TcpStream::connect(&socket_address);
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionRefused),
        "a connection after shutdown: {refused:?}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

// ---------------------------------------------------------------- demo

#[actix_rt::test]
async fn the_demo_prints_a_curl_line_that_works_as_printed() {
    let env = HashMap::from([
        ("PATH".to_owned(), std::env::var("PATH").unwrap_or_default()),
        ("PORT".to_owned(), "0".to_owned()),
    ]);
    let app = BinaryApp::start(&["demo"], &env);
    let logs = logs_when(&app, |logs| logs.contains("curl ")).await;
    let curl = logs
        .lines()
        .find(|l| l.contains("curl "))
        .expect("a curl line");

    let url = curl
        .split_whitespace()
        .find(|word| word.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL in: {curl}"));
    assert_eq!(url, format!("{}/gemini-proxy", app.address), "{curl}");
    assert!(url.starts_with("http://127.0.0.1:"), "{curl}");
    assert!(curl.contains("X-API-KEY: demo-key"), "{curl}");
    let body = curl
        .split_once("-d '")
        .and_then(|(_, rest)| rest.rsplit_once('\''))
        .map(|(body, _)| body)
        .unwrap_or_else(|| panic!("no -d body in: {curl}"));

    let response = send_to(
        &app.address,
        Method::POST,
        "/gemini-proxy",
        &[
            ("X-API-KEY", "demo-key"),
            ("Content-Type", "application/json"),
        ],
        body.to_owned(),
    )
    .await;
    assert_eq!(response.status, 200, "{}", response.text());
    let answer = response.json();
    assert_eq!(answer["result"], "OK", "{answer}");
    assert!(
        answer["data"]["response"]
            .as_str()
            .is_some_and(|r| r.starts_with("echo:")),
        "{answer}"
    );
}
