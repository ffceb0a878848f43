//! The official SDKs through the service (docs/api.md#the-native-gemini-surface, docs/gemini-wire.md#what-the-sdks-send): the real
//! google-genai and openai Python packages and @google/genai for Node, each run as a
//! child process against the service started here, with the client key as the SDK's
//! API key. The scripts in `tests/sdk/` print one line per check.
//!
//! The SDKs come from `scripts/sdk-setup.sh`. Without them these tests say so and pass,
//! unless `REQUIRE_SDK_TESTS=1` is set, as it should be wherever the setup has run (CI).

use crate::helpers::*;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Far above what a script needs (a few seconds), but bounded.
const SCRIPT_LIMIT: Duration = Duration::from_secs(120);

pub(crate) fn sdk_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk")
}

/// Whether the SDKs at `marker` are installed; if not, fails when they are required,
/// else prints why the test does nothing.
pub(crate) fn installed(marker: &Path, what: &str) -> bool {
    if marker.exists() {
        return true;
    }
    let required = std::env::var("REQUIRE_SDK_TESTS").is_ok_and(|v| v == "1");
    assert!(
        !required,
        "REQUIRE_SDK_TESTS=1 but {what} is not installed ({} is missing): run scripts/sdk-setup.sh",
        marker.display()
    );
    eprintln!(
        "NOTICE: skipped: {what} is not installed ({} is missing); run scripts/sdk-setup.sh",
        marker.display()
    );
    false
}

/// The service with limits the scripts stay under (each makes about twenty calls),
/// and quota rests of zero, so one check's 429 does not bench the server key for
/// the checks after it.
async fn spawn_app_for_sdks(sdk: &str) -> TestApp {
    // One file per test: tests run in parallel, and a half-written file would parse.
    let keys = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("sdk-keys-{sdk}-{}.toml", std::process::id()));
    std::fs::write(
        &keys,
        "[defaults]\nrequests_per_minute = 6000\nburst = 500\n",
    )
    .expect("keys file written");
    let app = spawn_app_with(|settings| {
        settings.insert("KEYS_FILE".into(), keys.display().to_string());
    })
    .await;
    app.mock
        .update_config(|c| c.retry_delay = Some("0s".into()));
    app
}

/// Runs `program script` in `tests/sdk` against the service, with a clean environment,
/// and returns how it exited and what it printed.
async fn run_script(app: &TestApp, program: &Path, script: &str) -> (ExitStatus, String) {
    run_script_at(app, &app.address, &[], program, script).await
}

/// As [`run_script`], with the service at `url` and extra variables.
pub(crate) async fn run_script_at(
    app: &TestApp,
    url: &str,
    env: &[(&str, &str)],
    program: &Path,
    script: &str,
) -> (ExitStatus, String) {
    let log_path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "sdk-{script}-{}-{}.log",
        std::process::id(),
        app.port
    ));
    let log = File::create(&log_path).expect("log file");
    let mut child = Command::new(program)
        .arg(script)
        .current_dir(sdk_dir())
        // Nothing from the developer's environment (GEMINI_API_KEY, GOOGLE_GEMINI_BASE_URL,
        // proxies) may steer the SDKs away from the service.
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("PROXY_URL", url)
        .env("PROXY_KEY", CLIENT_KEY)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log handle"))
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("{} does not start: {e}", program.display()));
    // Polled, not waited on: the service and the mock run on this test's runtime.
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if started.elapsed() > SCRIPT_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{script} ran over {SCRIPT_LIMIT:?}:\n{}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
        }
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    };
    let output = std::fs::read_to_string(&log_path).unwrap_or_default();
    let _ = std::fs::remove_file(&log_path);
    // Shown with `--nocapture`: which checks ran, and the SDK versions.
    eprintln!("{script}:\n{output}");
    (status, output)
}

/// What the mock received shows the SDKs' calls went where docs/api.md#what-is-forwarded says, with the
/// server key and never a key in a URL.
fn assert_upstream_calls(app: &TestApp, expected_prefixes: &[&str]) {
    let sent = app.upstream_requests();
    for prefix in expected_prefixes {
        assert!(
            sent.iter().any(|r| r.path_and_query.starts_with(prefix)),
            "no call to {prefix}: {:?}",
            sent.iter().map(|r| &r.path_and_query).collect::<Vec<_>>()
        );
    }
    let bearer = format!("Bearer {SERVER_KEY}");
    for request in &sent {
        assert!(
            !request.path_and_query.contains("key="),
            "{}",
            request.path_and_query
        );
        let key = if request.path_and_query.contains("/openai/") {
            request.header("authorization") == Some(bearer.as_str())
        } else {
            request.header("x-goog-api-key") == Some(SERVER_KEY)
                && request.header("authorization").is_none()
        };
        assert!(key, "not the server key: {request:?}");
        assert_eq!(request.header("x-server-timeout"), None);
    }
}

#[actix_rt::test]
async fn the_python_sdks_work_through_the_service() {
    let python = sdk_dir().join(".venv/bin/python");
    if !installed(&python, "the Python SDKs (google-genai, openai)") {
        return;
    }
    let app = spawn_app_for_sdks("python").await;

    let (status, output) = run_script(&app, &python, "check_python.py").await;

    assert!(status.success(), "check_python.py {status}:\n{output}");
    assert!(output.contains("all checks passed"), "{output}");
    assert_upstream_calls(
        &app,
        &[
            "/v1/models/gemini-2.5-flash:generateContent",
            "/v1beta/models/gemini-2.5-flash:generateContent",
            "/v1/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
            "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
            "/v1beta/models/gemini-2.5-flash:countTokens",
            "/v1/models/gemini-embedding-001:batchEmbedContents",
            "/v1beta/models?pageSize=2&pageToken=",
            // Gemini's own 429, each time: a zero rest keeps the server key in rotation.
            "/v1/models/mock-429:generateContent",
            "/v1beta/models/mock-429:generateContent",
            "/v1beta/openai/chat/completions",
        ],
    );
}

#[actix_rt::test]
async fn the_node_sdk_works_through_the_service() {
    let package = sdk_dir().join("node_modules/@google/genai/package.json");
    if !installed(&package, "the Node SDK (@google/genai)") {
        return;
    }
    let app = spawn_app_for_sdks("node").await;

    let (status, output) = run_script(&app, Path::new("node"), "check_js.mjs").await;

    assert!(status.success(), "check_js.mjs {status}:\n{output}");
    assert!(output.contains("all checks passed"), "{output}");
    assert_upstream_calls(
        &app,
        &[
            // 2.x, what Node 20 installs, defaults to v1beta.
            "/v1beta/models/gemini-2.5-flash:generateContent",
            "/v1/models/gemini-2.5-flash:generateContent",
            "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
            "/v1/models/mock-404:generateContent",
        ],
    );
}

#[actix_rt::test]
async fn the_python_sdks_live_api_works_over_the_services_tls_listener() {
    let python = sdk_dir().join(".venv/bin/python");
    if !installed(&python, "the Python SDKs (google-genai, openai)") {
        return;
    }
    // python always dials wss://: the service speaks TLS with a certificate
    // of a CA the script trusts through SSL_CERT_FILE.
    let pki = crate::tls::Pki::new("sdk-live");
    pki.install(&pki.issue());
    let ca = pki.write_ca();
    let keys = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("sdk-keys-live-{}.toml", std::process::id()));
    std::fs::write(
        &keys,
        "[defaults]\nrequests_per_minute = 6000\nburst = 500\nmodels = [\"gemini-2.0-flash-live-001\"]\n",
    )
    .expect("keys file written");
    let tls = pki.settings();
    let app = spawn_app_with(move |settings| {
        settings.extend(tls);
        settings.insert("KEYS_FILE".into(), keys.display().to_string());
    })
    .await;
    let url = format!("https://127.0.0.1:{}", app.port);
    let ca = ca.display().to_string();

    let (status, output) = run_script_at(
        &app,
        &url,
        &[("SSL_CERT_FILE", ca.as_str())],
        &python,
        "check_live.py",
    )
    .await;

    assert!(status.success(), "check_live.py {status}:\n{output}");
    assert!(output.contains("all checks passed"), "{output}");
    // python 3.x's default version is v1; the model outside the allow-list never went upstream.
    let paths: Vec<String> = app
        .mock
        .live_sessions()
        .iter()
        .map(|s| s.path_and_query.clone())
        .collect();
    assert!(
        paths.iter().any(|p| p.contains(".v1.GenerativeService")),
        "{paths:?}"
    );
    assert!(
        paths
            .iter()
            .any(|p| p.contains(".v1beta.GenerativeService")),
        "{paths:?}"
    );
    assert_eq!(paths.len(), 2, "{paths:?}");
    assert_upstream_calls(&app, &[]);
}
