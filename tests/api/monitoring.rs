//! Monitoring (docs/metrics.md): the exposition as Prometheus reads it, a real Prometheus
//! scraping the service, counters that match the traffic exactly, series that
//! random traffic cannot multiply, no secret in `/metrics`, and the artefacts
//! under `config/` (the scrape config, the alert rules and the Grafana dashboard).
//!
//! `promtool` and `prometheus` come from the `prometheus` package. Without them
//! these tests print a notice and pass, unless `REQUIRE_MONITORING_TESTS=1` (as
//! in CI), when a missing tool fails them.

use crate::helpers::*;
use awc::http::Method;
use futures_util::StreamExt;
use governor::clock::FakeRelativeClock;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Set to `1` where the tools must be present (CI): then a missing one fails.
const REQUIRE_VARIABLE: &str = "REQUIRE_MONITORING_TESTS";
/// A client's own Gemini key, sent as `api_key` or `x-goog-api-key`.
const OWN_KEY: &str = "AIzaClientOwnKey0123456789abcdefghijklm";
/// Prometheus starts in about a second; CI machines can be slow.
const PROMETHEUS_START_LIMIT: Duration = Duration::from_secs(15);
/// Scrapes run every second, so the values are in well within this.
const SCRAPE_LIMIT: Duration = Duration::from_secs(20);

fn manifest_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// The path of a tool, or `None` after a notice when it is absent and not
/// required. Panics when it is absent and `REQUIRE_MONITORING_TESTS=1`.
fn tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|path| path.is_file())
    });
    if found.is_none() {
        let required = std::env::var(REQUIRE_VARIABLE).is_ok_and(|v| v.trim() == "1");
        assert!(
            !required,
            "`{name}` is not installed and {REQUIRE_VARIABLE}=1 \
             (install it: apt-get install prometheus)"
        );
        // Straight to stderr, past the test harness's capture, so the skip is seen.
        let _ = writeln!(
            std::io::stderr(),
            "NOTICE: skipping a monitoring check: `{name}` is not installed \
             (apt-get install prometheus; set {REQUIRE_VARIABLE}=1 to make this an error)"
        );
    }
    found
}

/// A private directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "gemini-proxy-monitoring-{test}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------- exposition parsing

/// Every sample of an exposition: `name{labels}` → value.
fn samples(exposition: &str) -> BTreeMap<String, f64> {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            Some((series.to_owned(), value.trim().parse().ok()?))
        })
        .collect()
}

/// Every family of an exposition (from its `# TYPE` lines): name → type.
fn families(exposition: &str) -> BTreeMap<String, String> {
    exposition
        .lines()
        .filter_map(|line| {
            let mut words = line.strip_prefix("# TYPE ")?.split_whitespace();
            Some((words.next()?.to_owned(), words.next()?.to_owned()))
        })
        .collect()
}

// ---------------------------------------------------------------- a known mix of traffic

/// What [`send_known_mix`] sent, as the series it must leave behind.
struct Expected {
    /// `name{labels}` (labels in exposition order, which is also valid PromQL) → value.
    series: Vec<(String, f64)>,
    /// Families that must have no series at all.
    empty_families: Vec<&'static str>,
    /// Tokens of every kind the successes used.
    tokens: u64,
}

fn usage_sum(responses: &[TestResponse], field: &str) -> u64 {
    responses
        .iter()
        .map(|r| r.json()["data"]["usage"][field].as_u64().expect("usage"))
        .sum()
}

/// With the limiter's clock stopped (so "at once" is exact), the client `env-1`
/// sends 3 successes, 1 success after one retried 503, 1 upstream 404
/// (`MODEL_NOT_FOUND`), 1 upstream 429 on its own key (`QUOTA_ERROR`), then 5
/// requests at once, of which the 4 tokens left of its burst of 10 admit 4 (one
/// `RATE_LIMITED`); and one request comes with an unknown key.
async fn send_known_mix(app: &TestApp) -> Expected {
    let mut successes = Vec::new();
    for i in 0..3 {
        let response = app.proxy(&json!({"prompt": format!("hello {i}")})).await;
        assert_eq!(response.status, 200, "{}", response.text());
        successes.push(response);
    }
    let response = app
        .proxy(&json!({"prompt": "[mock:flaky-1] once more"}))
        .await;
    assert_eq!(response.status, 200, "after a retry: {}", response.text());
    successes.push(response);

    let response = app.proxy(&json!({"prompt": "[mock:404] where"})).await;
    assert_eq!(response.status, 404, "{}", response.text());
    assert_eq!(response.error_code(), "MODEL_NOT_FOUND");

    let response = app
        .proxy(&json!({"prompt": "quota", "model": "mock-429", "api_key": OWN_KEY}))
        .await;
    assert_eq!(response.status, 429, "{}", response.text());
    assert_eq!(response.error_code(), "QUOTA_ERROR");

    let bodies: Vec<Value> = (0..5)
        .map(|i| json!({"prompt": format!("burst {i}")}))
        .collect();
    let burst = futures_util::future::join_all(bodies.iter().map(|body| app.proxy(body))).await;
    let (ok, refused): (Vec<TestResponse>, Vec<TestResponse>) =
        burst.into_iter().partition(|r| r.status == 200);
    assert_eq!(refused.len(), 1, "one of the five is over the burst");
    assert_eq!(refused[0].status, 429, "{}", refused[0].text());
    assert_eq!(refused[0].error_code(), "RATE_LIMITED");
    successes.extend(ok);

    let response = app
        .request(
            Method::POST,
            "/gemini-proxy",
            &[
                ("X-API-KEY", "not-a-client-key-0000"),
                ("Content-Type", "application/json"),
            ],
            r#"{"prompt": "hi"}"#,
        )
        .await;
    assert_eq!(response.status, 401, "{}", response.text());

    assert_eq!(successes.len(), 8);
    assert_eq!(
        app.mock.request_count(),
        11,
        "8 successes, 1 retried 503, 1 404, 1 429 reached Gemini"
    );
    let prompt = usage_sum(&successes, "prompt_tokens");
    let response_tokens = usage_sum(&successes, "response_tokens");
    let thoughts = usage_sum(&successes, "total_tokens") - prompt - response_tokens;

    let flash = "gemini-2.5-flash";
    let http = |status: u16| {
        format!(r#"api_requests_total{{endpoint="/gemini-proxy",method="POST",status="{status}"}}"#)
    };
    let client = |name: &str, code: &str| {
        format!(r#"gemini_proxy_client_requests_total{{client="{name}",code="{code}"}}"#)
    };
    let upstream = |model: &str, outcome: &str| {
        format!(r#"gemini_proxy_upstream_requests_total{{model="{model}",outcome="{outcome}"}}"#)
    };
    let tokens = |kind: &str| {
        format!(r#"gemini_proxy_tokens_total{{client="env-1",kind="{kind}",model="{flash}"}}"#)
    };
    let mut series = vec![
        (client("env-1", "OK"), 8.0),
        (client("env-1", "MODEL_NOT_FOUND"), 1.0),
        (client("env-1", "QUOTA_ERROR"), 1.0),
        (client("env-1", "RATE_LIMITED"), 1.0),
        (client("anonymous", "UNAUTHORIZED"), 1.0),
        (
            r#"gemini_proxy_rate_limited_total{client="env-1"}"#.into(),
            1.0,
        ),
        (upstream(flash, "ok"), 8.0),
        (upstream(flash, "UPSTREAM_UNAVAILABLE"), 1.0),
        (upstream(flash, "MODEL_NOT_FOUND"), 1.0),
        (upstream("other", "QUOTA_ERROR"), 1.0),
        (
            format!(r#"gemini_proxy_upstream_duration_seconds_count{{model="{flash}"}}"#),
            10.0,
        ),
        (
            r#"gemini_proxy_upstream_duration_seconds_count{model="other"}"#.into(),
            1.0,
        ),
        (
            r#"gemini_proxy_upstream_retries_total{reason="UPSTREAM_UNAVAILABLE"}"#.into(),
            1.0,
        ),
        (http(200), 8.0),
        (http(401), 1.0),
        (http(404), 1.0),
        (http(429), 2.0),
        (
            r#"api_request_duration_seconds_count{endpoint="/gemini-proxy",method="POST",status="200"}"#
                .into(),
            8.0,
        ),
        (tokens("prompt"), prompt as f64),
        (tokens("response"), response_tokens as f64),
        (
            r#"gemini_proxy_upstream_key_available{key="0"}"#.into(),
            1.0,
        ),
        (
            r#"gemini_proxy_config_reloads_total{result="success"}"#.into(),
            0.0,
        ),
        (
            r#"gemini_proxy_config_reloads_total{result="failure"}"#.into(),
            0.0,
        ),
        (
            format!(
                r#"gemini_proxy_build_info{{version="{}"}}"#,
                env!("CARGO_PKG_VERSION")
            ),
            1.0,
        ),
    ];
    if thoughts > 0 {
        series.push((tokens("thoughts"), thoughts as f64));
    }
    Expected {
        series,
        empty_families: vec!["gemini_proxy_stream_first_byte_seconds"],
        tokens: prompt + response_tokens + thoughts,
    }
}

/// Limits high enough that no test traffic is rate limited.
const HIGH_LIMITS: &str = "[defaults]\nrequests_per_minute = 1000000\nburst = 100000\n";

/// The service with this keys file (and `configure`'s other settings); keep
/// the directory until the test ends.
async fn spawn_app_with_keys_file(
    text: &str,
    configure: impl FnOnce(&mut HashMap<String, String>),
) -> (TestApp, TempDir) {
    let dir = TempDir::new("keys");
    let keys_file = dir.path().join("keys.toml");
    std::fs::write(&keys_file, text).expect("keys file");
    let app = spawn_app_with(|settings| {
        settings.insert("KEYS_FILE".into(), keys_file.display().to_string());
        configure(settings);
    })
    .await;
    (app, dir)
}

/// The service with the limiter's clock stopped.
async fn spawn_app_with_stopped_clock() -> TestApp {
    spawn_app_with_clock(|_| {}, Some(FakeRelativeClock::default())).await
}

#[actix_rt::test]
async fn counters_match_a_known_mix_of_traffic_exactly() {
    let app = spawn_app_with_stopped_clock().await;
    let expected = send_known_mix(&app).await;

    let exposition = app.metrics().await;
    let found = samples(&exposition);
    let mut wrong = Vec::new();
    for (series, value) in &expected.series {
        if found.get(series) != Some(value) {
            wrong.push(format!(
                "{series}: expected {value}, found {:?}",
                found.get(series)
            ));
        }
    }
    assert!(wrong.is_empty(), "{}\n\n{exposition}", wrong.join("\n"));

    // Nothing else was counted: no other client outcome, upstream outcome or retry.
    for (family, expected_total) in [
        ("gemini_proxy_client_requests_total{", 12.0),
        ("gemini_proxy_upstream_requests_total{", 11.0),
        ("gemini_proxy_upstream_retries_total{", 1.0),
        ("gemini_proxy_rate_limited_total{", 1.0),
        (r#"api_requests_total{endpoint="/gemini-proxy","#, 12.0),
        ("gemini_proxy_tokens_total{", expected.tokens as f64),
    ] {
        let total: f64 = found
            .iter()
            .filter(|(series, _)| series.starts_with(family))
            .map(|(_, value)| value)
            .sum();
        assert_eq!(total, expected_total, "{family}…}}\n\n{exposition}");
    }
    for family in expected.empty_families {
        assert!(
            !found.keys().any(|s| s.starts_with(family)),
            "{family} has series without a stream:\n{exposition}"
        );
        assert!(
            exposition.contains(&format!("# TYPE {family} ")),
            "{family} is not announced:\n{exposition}"
        );
    }
}

// ---------------------------------------------------------------- promtool check metrics

/// A mix of everything that records metrics: successes, each kind of failure,
/// a retry, a resting server key, streams, the native and OpenAI surfaces.
async fn send_varied_traffic(app: &TestApp) {
    let json_headers = [
        ("X-API-KEY", CLIENT_KEY),
        ("Content-Type", "application/json"),
    ];
    for body in [
        json!({"prompt": "hello"}),
        json!({"prompt": "[mock:thoughts] think"}),
        json!({"prompt": "[mock:flaky-1] again"}),
        json!({"prompt": "[mock:blocked] no"}),
        json!({"prompt": "[mock:404] none"}),
        json!({"prompt": "hi", "model": "mock-429", "api_key": OWN_KEY}),
        json!({"prompt": "hi", "model": "gemini-2.5-pro", "api_key": OWN_KEY}),
        json!({"prompt": "hi", "model": "Not/A/Model", "api_key": OWN_KEY}),
        json!({"prompt": ""}),
    ] {
        app.proxy(&body).await;
    }
    let content = r#"{"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}"#;
    for path in [
        "/v1beta/models/gemini-2.5-flash:generateContent",
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
        "/v1/models/gemini-2.5-flash:streamGenerateContent",
        "/v1beta/models/gemini-2.5-flash:countTokens",
        "/v1beta/models/unknown-model-x:generateContent",
    ] {
        app.request(Method::POST, path, &json_headers, content)
            .await;
    }
    app.request(Method::GET, "/v1beta/models", &json_headers, "")
        .await;
    app.request(
        Method::POST,
        "/v1beta/openai/chat/completions",
        &[
            ("Authorization", &format!("Bearer {CLIENT_KEY}")),
            ("Content-Type", "application/json"),
        ],
        r#"{"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "hi"}]}"#,
    )
    .await;
    app.request(Method::GET, "/no/such/route", &[], "").await;
    app.request(Method::DELETE, "/gemini-proxy", &json_headers, "")
        .await;
    app.request(Method::GET, "/health", &[], "").await;
    // Last: the server key rests after this 429, so the pool gauge shows a 0.
    app.proxy(&json!({"prompt": "[mock:429-day] last"})).await;
}

#[actix_rt::test]
async fn the_exposition_passes_promtool_check_metrics_after_varied_traffic() {
    let Some(promtool) = tool("promtool") else {
        return;
    };
    let (app, _keys) = spawn_app_with_keys_file(HIGH_LIMITS, |_| {}).await;
    send_varied_traffic(&app).await;

    let exposition = app.metrics().await;
    assert!(
        exposition.contains(r#"gemini_proxy_upstream_key_resting_models{key="0"} 1"#),
        "the traffic rested the server key:\n{exposition}"
    );

    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool starts");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(exposition.as_bytes())
        .expect("exposition written to promtool");
    let output = child.wait_with_output().expect("promtool finishes");
    assert!(
        output.status.success(),
        "promtool check metrics: {}\n{}{}\n\n{exposition}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

// ---------------------------------------------------------------- a real Prometheus

/// A Prometheus server this test started; stopped by its PID when dropped,
/// also when the test fails.
struct PrometheusServer {
    child: Child,
    address: String,
    log: PathBuf,
    // Declared last so the directory goes after the process has stopped.
    _dir: TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl PrometheusServer {
    /// Starts Prometheus scraping `target` (`host:port`) every second, and
    /// waits until it is ready.
    async fn start(binary: &Path, target: &str) -> PrometheusServer {
        PrometheusServer::start_with_rules(binary, target, &[]).await
    }

    /// The same, evaluating the rules of `rule_files` every second.
    async fn start_with_rules(
        binary: &Path,
        target: &str,
        rule_files: &[PathBuf],
    ) -> PrometheusServer {
        let dir = TempDir::new("prometheus");
        let config = dir.path().join("prometheus.yml");
        let rule_files: String = rule_files
            .iter()
            .map(|path| format!("  - {:?}\n", path.display().to_string()))
            .collect();
        let rule_files = if rule_files.is_empty() {
            String::new()
        } else {
            format!("rule_files:\n{rule_files}")
        };
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 {rule_files}\
                 scrape_configs:\n  - job_name: gemini-proxy\n    static_configs:\n      \
                 - targets: [\"{target}\"]\n"
            ),
        )
        .expect("config written");
        let log = dir.path().join("prometheus.log");
        let address = format!("127.0.0.1:{}", free_port());
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={address}"))
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::from(std::fs::File::create(&log).expect("log file")))
            .stderr(Stdio::from(
                std::fs::OpenOptions::new()
                    .append(true)
                    .open(&log)
                    .expect("log file"),
            ))
            .spawn()
            .expect("prometheus starts");
        let mut server = PrometheusServer {
            child,
            address: format!("http://{address}"),
            log,
            _dir: dir,
        };
        let started = Instant::now();
        loop {
            let ready = client()
                .get(format!("{}/-/ready", server.address))
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                break;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("prometheus exited with {status}:\n{}", server.logs());
            }
            assert!(
                started.elapsed() < PROMETHEUS_START_LIMIT,
                "prometheus was not ready within {PROMETHEUS_START_LIMIT:?}:\n{}",
                server.logs()
            );
            actix_rt::time::sleep(Duration::from_millis(100)).await;
        }
        server
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs an instant query; the `data` of a successful answer, or the error.
    async fn query(&self, promql: &str) -> Result<Value, String> {
        let query = serde_urlencoded::to_string([("query", promql)]).expect("encodes");
        let mut response = client()
            .get(format!("{}/api/v1/query?{query}", self.address))
            .send()
            .await
            .map_err(|e| format!("query failed: {e}"))?;
        let body: Value = response
            .json()
            .limit(16 * 1024 * 1024)
            .await
            .map_err(|e| format!("not JSON: {e}"))?;
        if body["status"] == "success" {
            Ok(body["data"].clone())
        } else {
            Err(body.to_string())
        }
    }

    /// The single value an instant query returns, if it returns exactly one.
    async fn value(&self, promql: &str) -> Result<f64, String> {
        let data = self.query(promql).await?;
        let result = data["result"].as_array().cloned().unwrap_or_default();
        match result.as_slice() {
            [one] => one["value"][1]
                .as_str()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("no value in {one}")),
            _ => Err(format!("{} series: {data}", result.len())),
        }
    }
}

impl Drop for PrometheusServer {
    fn drop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        // SIGTERM to this PID (the process this test started), then SIGKILL.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(5) {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[actix_rt::test]
async fn a_real_prometheus_scrapes_the_counts_of_a_known_mix() {
    let Some(binary) = tool("prometheus") else {
        return;
    };
    let app = spawn_app_with_stopped_clock().await;
    let expected = send_known_mix(&app).await;
    let prometheus = PrometheusServer::start(&binary, &format!("127.0.0.1:{}", app.port)).await;

    let mut checks = expected.series.clone();
    checks.push((r#"up{job="gemini-proxy"}"#.into(), 1.0));
    let started = Instant::now();
    loop {
        let mut wrong = Vec::new();
        for (promql, value) in &checks {
            match prometheus.value(promql).await {
                Ok(found) if found == *value => {}
                Ok(found) => wrong.push(format!("{promql}: expected {value}, found {found}")),
                Err(e) => wrong.push(format!("{promql}: expected {value}, {e}")),
            }
        }
        if wrong.is_empty() {
            break;
        }
        assert!(
            started.elapsed() < SCRAPE_LIMIT,
            "after {SCRAPE_LIMIT:?} of scrapes:\n{}\n\nprometheus log:\n{}",
            wrong.join("\n"),
            prometheus.logs()
        );
        actix_rt::time::sleep(Duration::from_millis(250)).await;
    }

    // Every dashboard query is valid PromQL to this Prometheus, with Grafana's
    // variables given values.
    let mut invalid = Vec::new();
    for expr in dashboard_exprs(&dashboard()) {
        let promql = expr
            .replace("$__rate_interval", "1m")
            .replace("$__interval", "15s")
            .replace("$__range", "1h");
        if let Err(e) = prometheus.query(&promql).await {
            invalid.push(format!("{expr}: {e}"));
        }
    }
    assert!(invalid.is_empty(), "{}", invalid.join("\n"));
}

// ---------------------------------------------------------------- bounded series

/// One random request of each kind: unknown paths, unknown models, client keys,
/// own keys; `i` picks the kind. Returns the random strings it used.
async fn random_request(app: &TestApp, i: usize) -> Vec<String> {
    let token = format!("{:016x}", fastrand::u64(..));
    let json = ("Content-Type", "application/json");
    match i % 9 {
        0 => {
            let path = format!("/r{token}/{}", fastrand::u32(..));
            app.request(Method::GET, &path, &[], "").await;
            vec![path]
        }
        1 => {
            let key = format!("client-{token}");
            app.request(
                Method::POST,
                "/gemini-proxy",
                &[("X-API-KEY", &key), json],
                r#"{"prompt": "hi"}"#,
            )
            .await;
            vec![key]
        }
        2 => {
            let (model, key) = (format!("unknown-{token}"), format!("AIza{token}"));
            let response = app
                .proxy(&json!({"prompt": "hi", "model": model, "api_key": key}))
                .await;
            assert_eq!(response.status, 404, "{}", response.text());
            vec![model, key]
        }
        3 => {
            let (model, key) = (format!("Bad/{token}"), format!("AIzb{token}"));
            app.proxy(&json!({"prompt": "hi", "model": model, "api_key": key}))
                .await;
            vec![token, key]
        }
        4 => {
            let key = format!("AIzc{token}");
            let response = app
                .proxy(&json!({"prompt": "hi", "model": "gemini-2.5-flash", "api_key": key}))
                .await;
            assert_eq!(response.status, 200, "{}", response.text());
            vec![key]
        }
        5 => {
            let model = format!("unknown-{token}");
            let path = format!("/v1beta/models/{model}:generateContent");
            app.request(
                Method::POST,
                &path,
                &[("X-API-KEY", CLIENT_KEY), json],
                r#"{"contents": [{"parts": [{"text": "hi"}]}]}"#,
            )
            .await;
            vec![model]
        }
        6 => {
            let key = format!("goog{token}");
            let path = format!("/v1beta/models/gemini-2.5-flash:generateContent?key={key}");
            app.request(Method::POST, &path, &[json], r#"{"contents": []}"#)
                .await;
            vec![key]
        }
        7 => {
            let path = format!("/v{token}/models");
            app.request(Method::GET, &path, &[("X-API-KEY", CLIENT_KEY)], "")
                .await;
            vec![token]
        }
        _ => {
            let path = format!("/v1beta/x{token}");
            app.request(Method::GET, &path, &[("X-API-KEY", CLIENT_KEY)], "")
                .await;
            vec![token]
        }
    }
}

#[actix_rt::test]
async fn a_thousand_random_requests_add_at_most_a_handful_of_series() {
    // Limits high enough that the random traffic reaches Gemini.
    let (app, _keys) = spawn_app_with_keys_file(HIGH_LIMITS, |_| {}).await;

    // Each kind once, so the series a kind needs exist before the baseline.
    for i in 0..18 {
        random_request(&app, i).await;
    }
    app.metrics().await;
    let before: BTreeSet<String> = samples(&app.metrics().await).into_keys().collect();

    let used: Vec<Vec<String>> = futures_util::stream::iter(0..1000)
        .map(|i| random_request(&app, i))
        .buffer_unordered(32)
        .collect()
        .await;

    let exposition = app.metrics().await;
    let after: BTreeSet<String> = samples(&exposition).into_keys().collect();
    let new: Vec<&String> = after.difference(&before).collect();
    assert!(
        new.len() <= 5,
        "{} series before, {} new after 1,000 random requests: {new:#?}",
        before.len(),
        new.len()
    );
    for value in used.iter().flatten() {
        assert!(
            !exposition.contains(value.as_str()),
            "`{value}` from a request is in /metrics:\n{exposition}"
        );
    }
}

// ---------------------------------------------------------------- secrets

#[actix_rt::test]
async fn no_client_key_server_key_or_own_key_appears_in_metrics() {
    const FILE_CLIENT_KEY: &str = "fk-7Q2mZ9xV4bN1sR8tW3yL6pK0";
    const SECOND_SERVER_KEY: &str = "AIzaSecondServerKeyZYXWVUTSRQPONMLKJIH";
    const WRONG_KEY: &str = "wrong-client-secret-0a1b2c3d4e5f6789";
    let keys =
        format!("{HIGH_LIMITS}\n[[client]]\nname = \"file-client\"\nkey = \"{FILE_CLIENT_KEY}\"\n");
    let (app, _keys) = spawn_app_with_keys_file(&keys, |settings| {
        settings.insert(
            "GEMINI_API_KEY".into(),
            format!("{SERVER_KEY},{SECOND_SERVER_KEY}"),
        );
    })
    .await;

    let json = ("Content-Type", "application/json");
    let content = r#"{"contents": [{"parts": [{"text": "hi"}]}]}"#;
    let generate = "/v1beta/models/gemini-2.5-flash:generateContent";
    app.proxy(&json!({"prompt": "hi"})).await;
    app.proxy(&json!({"prompt": "hi", "model": "gemini-2.5-pro", "api_key": OWN_KEY}))
        .await;
    app.proxy(&json!({"prompt": "hi", "model": "mock-400-badkey", "api_key": OWN_KEY}))
        .await;
    for headers in [
        vec![("X-API-KEY", FILE_CLIENT_KEY), json],
        vec![("X-API-KEY", WRONG_KEY), json],
        vec![("x-goog-api-key", CLIENT_KEY), json],
        vec![("x-goog-api-key", WRONG_KEY), json],
        vec![("X-API-KEY", CLIENT_KEY), ("x-goog-api-key", OWN_KEY), json],
    ] {
        app.request(Method::POST, generate, &headers, content).await;
    }
    for key in [CLIENT_KEY, WRONG_KEY] {
        app.request(
            Method::POST,
            &format!("{generate}?key={key}"),
            &[json],
            content,
        )
        .await;
        let bearer = format!("Bearer {key}");
        app.request(
            Method::POST,
            "/v1beta/openai/chat/completions",
            &[("Authorization", &bearer), json],
            r#"{"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "hi"}]}"#,
        )
        .await;
    }
    // Last: both server keys rest for the model after this, and show in the pool gauge.
    app.proxy(&json!({"prompt": "[mock:429-day] rest the keys"}))
        .await;

    let exposition = app.metrics().await;
    for key in 0..2 {
        assert!(
            exposition.contains(&format!(
                r#"gemini_proxy_upstream_key_resting_models{{key="{key}"}} 1"#
            )),
            "server key {key} rests:\n{exposition}"
        );
    }
    assert!(
        exposition
            .contains(r#"gemini_proxy_client_requests_total{client="file-client",code="OK"}"#),
        "the file client is named, not keyed:\n{exposition}"
    );
    for secret in [
        CLIENT_KEY,
        FILE_CLIENT_KEY,
        WRONG_KEY,
        SERVER_KEY,
        SECOND_SERVER_KEY,
        OWN_KEY,
    ] {
        let leaked = leaked_fragments(&exposition, secret);
        assert!(
            leaked.is_empty(),
            "parts of a key in /metrics: {leaked:?}\n{exposition}"
        );
    }
}

// ---------------------------------------------------------------- config/ artefacts

fn dashboard() -> Value {
    let path = manifest_path("config/grafana/dashboards/gemini-proxy.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// Every panel, rows' nested panels included.
fn dashboard_panels(dashboard: &Value) -> Vec<Value> {
    let mut panels = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        panels.push(panel.clone());
        if let Some(nested) = panel["panels"].as_array() {
            panels.extend(nested.iter().cloned());
        }
    }
    panels
}

fn dashboard_exprs(dashboard: &Value) -> Vec<String> {
    dashboard_panels(dashboard)
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["expr"].as_str().map(str::to_owned))
        .collect()
}

/// PromQL words that are not metric names: aggregations (which may be
/// followed by `by (…)` rather than `(`), keywords and literal numbers.
const PROMQL_WORDS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "atan2",
    "le",
    "inf",
    "nan",
];

/// Metric names in a PromQL expression: identifiers outside strings, label
/// matchers `{…}`, ranges `[…]` and grouping lists `by (…)`, that are not a
/// function call, a keyword or a Grafana `$variable`.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let chars: Vec<char> = expr.chars().collect();
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    // The index just past the `close` that ends the group opened at `i`,
    // skipping quoted strings inside it.
    let skip_group = |mut i: usize, close: char| {
        let mut quote: Option<char> = None;
        while i < chars.len() {
            match (quote, chars[i]) {
                (Some(_), '\\') => i += 1,
                (Some(q), c) if c == q => quote = None,
                (None, c @ ('"' | '\'' | '`')) => quote = Some(c),
                (None, c) if c == close => return i + 1,
                _ => {}
            }
            i += 1;
        }
        i
    };
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if matches!(c, '"' | '\'' | '`') {
            // A string outside a matcher (e.g. label_replace's arguments).
            let mut j = i + 1;
            while j < chars.len() && chars[j] != c {
                j += if chars[j] == '\\' { 2 } else { 1 };
            }
            i = j + 1;
        } else if c == '{' {
            i = skip_group(i + 1, '}');
        } else if c == '[' {
            i = skip_group(i + 1, ']');
        } else if c == '$' || c.is_ascii_digit() || c == '.' {
            // A Grafana variable, or a number or duration.
            i += 1;
            while i < chars.len() && (is_word(chars[i]) || chars[i] == '.') {
                i += 1;
            }
        } else if is_word(c) {
            let start = i;
            while i < chars.len() && is_word(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut next = i;
            while next < chars.len() && chars[next].is_whitespace() {
                next += 1;
            }
            let called = chars.get(next) == Some(&'(');
            let grouping = matches!(
                word.as_str(),
                "by" | "without" | "on" | "ignoring" | "group_left" | "group_right"
            );
            if called && grouping {
                i = skip_group(next + 1, ')');
            } else if !called && !PROMQL_WORDS.contains(&word.to_ascii_lowercase().as_str()) {
                names.insert(word);
            }
        } else {
            i += 1;
        }
    }
    names
}

#[test]
fn the_promql_tokenizer_finds_metric_names_only() {
    let expr = r#"histogram_quantile(0.95, sum by (le, model) (rate(a_seconds_bucket{x="y{z}",code!="OK"}[$__rate_interval]))) / on (job) group_left (version) b_total offset 5m > bool 1e3 or count without (le) (c:recorded)"#;
    assert_eq!(
        metric_names(expr),
        ["a_seconds_bucket", "b_total", "c:recorded"]
            .into_iter()
            .map(String::from)
            .collect()
    );
    assert_eq!(
        metric_names(r#"sum(up{job="gemini-proxy"})"#),
        BTreeSet::from(["up".to_owned()])
    );
}

#[actix_rt::test]
async fn every_dashboard_query_names_only_metrics_the_service_exports() {
    let dashboard = dashboard();
    assert!(
        dashboard["schemaVersion"].as_u64().is_some_and(|v| v >= 36),
        "schemaVersion: {}",
        dashboard["schemaVersion"]
    );
    assert_eq!(dashboard["uid"], "gemini-proxy");
    let text = dashboard.to_string();
    assert!(
        !text.contains("${DS_") && !text.contains("__inputs"),
        "an import-only datasource placeholder breaks provisioning"
    );

    let panels = dashboard_panels(&dashboard);
    let mut ids = BTreeSet::new();
    for panel in &panels {
        let title = panel["title"].as_str().unwrap_or_default();
        assert!(
            ids.insert(panel["id"].as_u64().expect("panel id")),
            "duplicate panel id in {title}"
        );
        assert!(panel["gridPos"]["w"].as_u64().is_some(), "{title}: gridPos");
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(
            panel["datasource"]["uid"], "prometheus",
            "{title}: datasource by uid"
        );
        let targets = panel["targets"].as_array().cloned().unwrap_or_default();
        assert!(!targets.is_empty(), "{title} has no query");
        for target in &targets {
            assert!(
                target["expr"]
                    .as_str()
                    .is_some_and(|e| !e.trim().is_empty()),
                "{title}: a target without expr"
            );
            assert!(
                target["datasource"].is_null() || target["datasource"]["uid"] == "prometheus",
                "{title}: a target's datasource"
            );
        }
    }

    let app = spawn_app().await;
    let exported = families(&app.metrics().await);
    let mut used = BTreeSet::new();
    for expr in dashboard_exprs(&dashboard) {
        let names = metric_names(&expr);
        assert!(!names.is_empty(), "no metric in `{expr}`");
        for name in names {
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .filter_map(|suffix| name.strip_suffix(suffix))
                .find(|base| exported.get(*base).is_some_and(|t| t == "histogram"))
                .map_or(name.clone(), str::to_owned);
            assert!(
                exported.contains_key(&family),
                "`{name}` in `{expr}` is not exported; the service exports {:?}",
                exported.keys()
            );
            used.insert(family);
        }
    }
    let unused: Vec<&String> = exported.keys().filter(|f| !used.contains(*f)).collect();
    assert!(
        unused.is_empty(),
        "no dashboard panel shows {unused:?}: add one to config/grafana/dashboards/gemini-proxy.json"
    );
}

#[test]
fn the_prometheus_config_passes_promtool_and_scrapes_the_compose_service() {
    let path = manifest_path("config/prometheus/prometheus.yml");
    let text = std::fs::read_to_string(&path).expect("config/prometheus/prometheus.yml");
    for needle in [
        "job_name: gemini-proxy",
        // The metrics listener, METRICS_ADDR in docker-compose.yml.
        "gemini-proxy:9464",
        "scrape_interval: 15s",
        "rule_files:",
        "- alerts.yml",
    ] {
        assert!(text.contains(needle), "`{needle}` not in:\n{text}");
    }
    let Some(promtool) = tool("promtool") else {
        return;
    };
    let output = Command::new(promtool)
        .args(["check", "config"])
        .arg(&path)
        .output()
        .expect("promtool runs");
    assert!(
        output.status.success(),
        "promtool check config: {}\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn grafana_provisioning_points_at_the_prometheus_uid_and_the_dashboard_directory() {
    let datasource = std::fs::read_to_string(manifest_path(
        "config/grafana/provisioning/datasources/prometheus.yml",
    ))
    .expect("datasource provisioning");
    for needle in [
        "apiVersion: 1",
        "type: prometheus",
        "uid: prometheus",
        "url: http://prometheus:9090",
    ] {
        assert!(
            datasource.contains(needle),
            "`{needle}` not in:\n{datasource}"
        );
    }
    let provider = std::fs::read_to_string(manifest_path(
        "config/grafana/provisioning/dashboards/gemini-proxy.yml",
    ))
    .expect("dashboard provisioning");
    let compose = std::fs::read_to_string(manifest_path("docker-compose.yml")).expect("compose");
    let dashboards_dir = provider
        .lines()
        .find_map(|l| l.trim().strip_prefix("path:"))
        .map(str::trim)
        .expect("a provider path");
    assert!(
        compose.contains(&format!("./config/grafana/dashboards:{dashboards_dir}")),
        "compose mounts config/grafana/dashboards at the provider's path {dashboards_dir}"
    );
}

// ---------------------------------------------------------------- alert rules

const ALERTS: &str = "config/prometheus/alerts.yml";
const ALERTS_TEST: &str = "config/prometheus/alerts_test.yml";

fn read_config(relative: &str) -> String {
    std::fs::read_to_string(manifest_path(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

/// The `- alert:` names of alerts.yml, in order.
fn alert_names() -> Vec<String> {
    read_config(ALERTS)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert:"))
        .map(|name| name.trim().to_owned())
        .collect()
}

fn promtool_succeeds(promtool: &Path, args: &[&str]) {
    let output = Command::new(promtool)
        .args(args)
        .current_dir(manifest_path(""))
        .output()
        .expect("promtool runs");
    assert!(
        output.status.success(),
        "promtool {}: {}\n{}{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_alert_rules_pass_promtool_and_their_unit_tests_fire_and_hold_back_every_alert() {
    let names = alert_names();
    assert!(!names.is_empty(), "no alert in {ALERTS}");
    let text = read_config(ALERTS);
    let fors = text
        .lines()
        .filter(|l| l.trim().starts_with("for:"))
        .count();
    assert_eq!(fors, names.len(), "every alert has a `for:`");

    // In alerts_test.yml each alert has a case that fires it (`exp_alerts:`
    // then a list) and one where it must not fire (`exp_alerts: []`).
    let tests = read_config(ALERTS_TEST);
    let lines: Vec<&str> = tests
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let (mut fired, mut held) = (BTreeSet::new(), BTreeSet::new());
    for pair in lines.windows(2) {
        let Some(name) = pair[0].strip_prefix("alertname:") else {
            continue;
        };
        let name = name.trim().to_owned();
        match pair[1] {
            "exp_alerts: []" => held.insert(name),
            "exp_alerts:" => fired.insert(name),
            other => panic!("{ALERTS_TEST}: `alertname: {name}` followed by `{other}`"),
        };
    }
    for name in &names {
        assert!(fired.contains(name), "{ALERTS_TEST} never fires {name}");
        assert!(held.contains(name), "{ALERTS_TEST} never holds {name} back");
    }
    for name in fired.union(&held) {
        assert!(
            names.contains(name),
            "{ALERTS_TEST} tests {name}, which is not an alert"
        );
    }

    let Some(promtool) = tool("promtool") else {
        return;
    };
    promtool_succeeds(&promtool, &["check", "rules", ALERTS]);
    promtool_succeeds(&promtool, &["test", "rules", ALERTS_TEST]);
}

/// The label names of every metric family the service exports (`job` and
/// `instance`, which Prometheus adds, left out), from the service's own
/// metric declarations; histograms under their `_bucket`, `_sum` and
/// `_count` names.
fn metric_labels() -> BTreeMap<String, BTreeSet<String>> {
    use prometheus::core::Collector;
    let metrics = gemini_proxy::metrics::Metrics::new().expect("metrics");
    let mut labels: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut add = |name: &str, names: &[String], histogram: bool| {
        let names: BTreeSet<String> = names.iter().cloned().collect();
        if histogram {
            let mut with_le = names.clone();
            with_le.insert("le".into());
            labels.insert(format!("{name}_bucket"), with_le);
            labels.insert(format!("{name}_sum"), names.clone());
            labels.insert(format!("{name}_count"), names);
        } else {
            labels.insert(name.to_owned(), names);
        }
    };
    let collectors: [(&dyn Collector, bool); 15] = [
        (&metrics.client_requests, false),
        (&metrics.rate_limited, false),
        (&metrics.tokens, false),
        (&metrics.upstream_requests, false),
        (&metrics.upstream_duration, true),
        (&metrics.upstream_retries, false),
        (&metrics.stream_first_byte, true),
        (&metrics.in_flight, false),
        (&metrics.key_available, false),
        (&metrics.key_rests, false),
        (&metrics.key_resting_models, false),
        (&metrics.config_reloads, false),
        (&metrics.rate_limit_backend_up, false),
        (&metrics.client_quota_remaining, false),
        (&metrics.live_sessions, false),
    ];
    for (collector, histogram) in collectors {
        for desc in collector.desc() {
            add(&desc.fq_name, &desc.variable_labels, histogram);
        }
    }
    // actix-web-prom's families and the build info, declared outside the fields.
    let http = ["endpoint".to_owned(), "method".into(), "status".into()];
    add("api_requests_total", &http, false);
    add("api_request_duration_seconds", &http, true);
    add("gemini_proxy_build_info", &["version".to_owned()], false);
    // Prometheus's own series for each target.
    add("up", &[], false);
    labels
}

/// A label matcher: label, operator, value.
type Matcher = (String, String, String);
/// A metric and its label matchers.
type Selector = (String, Vec<Matcher>);

/// What a PromQL expression (as Prometheus prints it) selects: each
/// selector's metric and label matchers `(label, operator, value)`, and the
/// label lists of `by`, `without`, `on`, `ignoring`, `group_left` and
/// `group_right`.
struct Selections {
    selectors: Vec<Selector>,
    grouping: BTreeSet<String>,
}

fn selections(expr: &str) -> Selections {
    let chars: Vec<char> = expr.chars().collect();
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    // A quoted string starting at `i`: its text, and the index past it.
    let quoted = |i: usize| {
        let quote = chars[i];
        let mut text = String::new();
        let mut j = i + 1;
        while j < chars.len() && chars[j] != quote {
            if chars[j] == '\\' {
                j += 1;
            }
            text.push(chars[j]);
            j += 1;
        }
        (text, j + 1)
    };
    let mut found = Selections {
        selectors: Vec::new(),
        grouping: BTreeSet::new(),
    };
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if matches!(c, '"' | '\'' | '`') {
            i = quoted(i).1;
        } else if c == '[' {
            while i < chars.len() && chars[i] != ']' {
                i += 1;
            }
        } else if is_word(c) && !c.is_ascii_digit() {
            let start = i;
            while i < chars.len() && is_word(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut next = i;
            while next < chars.len() && chars[next] == ' ' {
                next += 1;
            }
            let grouping = matches!(
                word.as_str(),
                "by" | "without" | "on" | "ignoring" | "group_left" | "group_right"
            );
            if grouping && chars.get(next) == Some(&'(') {
                let end = next + chars[next..].iter().position(|&c| c == ')').expect("`)`");
                let list: String = chars[next + 1..end].iter().collect();
                found.grouping.extend(
                    list.split(',')
                        .map(str::trim)
                        .filter(|l| !l.is_empty())
                        .map(str::to_owned),
                );
                i = end + 1;
            } else if chars.get(i) == Some(&'{') {
                // A selector: matchers up to the closing brace.
                let mut matchers = Vec::new();
                i += 1;
                loop {
                    while i < chars.len() && matches!(chars[i], ' ' | ',') {
                        i += 1;
                    }
                    if i >= chars.len() || chars[i] == '}' {
                        i += 1;
                        break;
                    }
                    let label_start = i;
                    while is_word(chars[i]) {
                        i += 1;
                    }
                    let label: String = chars[label_start..i].iter().collect();
                    let op_start = i;
                    while matches!(chars[i], '=' | '!' | '~' | ' ') {
                        i += 1;
                    }
                    let op: String = chars[op_start..i].iter().collect();
                    let (value, after) = quoted(i);
                    i = after;
                    matchers.push((label, op.trim().to_owned(), value));
                }
                found.selectors.push((word, matchers));
            } else if chars.get(next) != Some(&'(')
                && !PROMQL_WORDS.contains(&word.to_ascii_lowercase().as_str())
            {
                found.selectors.push((word, Vec::new()));
            }
        } else {
            i += 1;
        }
    }
    found
}

#[test]
fn the_selection_parser_reads_matchers_and_groupings() {
    let found = selections(
        r#"sum by (job, instance) (rate(a_total{code=~"X|Y",le!="1"}[5m])) > 0 and on(job) min(b) == 0"#,
    );
    assert_eq!(
        found.selectors,
        [
            (
                "a_total".to_owned(),
                vec![
                    ("code".to_owned(), "=~".to_owned(), "X|Y".to_owned()),
                    ("le".to_owned(), "!=".to_owned(), "1".to_owned())
                ]
            ),
            ("b".to_owned(), vec![])
        ]
    );
    assert_eq!(
        found.grouping,
        BTreeSet::from(["job".to_owned(), "instance".to_owned()])
    );
}

#[actix_rt::test]
async fn the_alert_rules_select_only_metrics_labels_and_values_the_service_has() {
    let Some(binary) = tool("prometheus") else {
        return;
    };
    let app = spawn_app().await;
    // One request to /gemini-proxy, so its endpoint label is in the exposition.
    app.proxy(&json!({"prompt": "hi"})).await;
    let exposition = app.metrics().await;

    // Every family the service exports has its labels known here.
    let labels = metric_labels();
    for family in families(&exposition).keys() {
        assert!(
            labels.contains_key(family) || labels.contains_key(&format!("{family}_bucket")),
            "{family} is exported: add it to metric_labels()"
        );
    }
    let codes: BTreeSet<&str> = gemini_proxy::errors::ErrorCode::ALL
        .iter()
        .map(|c| c.as_str())
        .chain(["OK", "CANCELLED"])
        .collect();
    let server_error_codes: BTreeSet<&str> = gemini_proxy::errors::ErrorCode::ALL
        .iter()
        .filter(|c| c.status().is_server_error())
        .map(|c| c.as_str())
        .collect();
    let fixed_values: HashMap<&str, &[&str]> = HashMap::from([
        ("scope", &["minute", "day"][..]),
        ("result", &["success", "failure"][..]),
        ("backend", &["redis"][..]),
        ("job", &["gemini-proxy"][..]),
    ]);

    // Prometheus itself loads the rules, evaluates them against the running
    // service, and reports them as it parsed them.
    let prometheus = PrometheusServer::start_with_rules(
        &binary,
        &format!("127.0.0.1:{}", app.port),
        &[manifest_path(ALERTS)],
    )
    .await;
    let started = Instant::now();
    let rules = loop {
        let mut response = client()
            .get(format!("{}/api/v1/rules", prometheus.address))
            .send()
            .await
            .expect("rules answered");
        let body: Value = response.json().limit(4 * 1024 * 1024).await.expect("JSON");
        let rules: Vec<Value> = body["data"]["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .inspect(|group| assert_eq!(group["name"], "gemini-proxy", "the rule group"))
            .flat_map(|group| group["rules"].as_array().cloned().unwrap_or_default())
            .collect();
        let evaluated = !rules.is_empty()
            && rules.iter().all(|r| {
                r["lastEvaluation"]
                    .as_str()
                    .is_some_and(|t| !t.starts_with("0001"))
            });
        if evaluated {
            break rules;
        }
        assert!(
            started.elapsed() < SCRAPE_LIMIT,
            "the rules were not all evaluated within {SCRAPE_LIMIT:?}: {body}\n{}",
            prometheus.logs()
        );
        actix_rt::time::sleep(Duration::from_millis(250)).await;
    };

    let names: Vec<&str> = rules.iter().filter_map(|r| r["name"].as_str()).collect();
    assert_eq!(names, alert_names(), "Prometheus loaded every alert");
    for rule in &rules {
        let name = rule["name"].as_str().unwrap_or_default();
        let query = rule["query"].as_str().expect("query");
        assert_eq!(rule["type"], "alerting", "{name}");
        assert_eq!(
            rule["health"], "ok",
            "{name} evaluates: {}",
            rule["lastError"]
        );
        assert!(
            matches!(
                rule["labels"]["severity"].as_str(),
                Some("critical" | "warning")
            ),
            "{name}: severity critical or warning, not {}",
            rule["labels"]["severity"]
        );
        for annotation in ["summary", "description"] {
            assert!(
                rule["annotations"][annotation]
                    .as_str()
                    .is_some_and(|a| a.len() > 20),
                "{name}: a {annotation} annotation"
            );
        }

        let found = selections(query);
        let mut in_query: BTreeSet<&str> = BTreeSet::from(["job", "instance", "le"]);
        for (metric, matchers) in &found.selectors {
            let known = labels.get(metric).unwrap_or_else(|| {
                panic!("{name}: `{metric}` in `{query}` is not a metric the service exports")
            });
            in_query.extend(known.iter().map(String::as_str));
            for (label, op, value) in matchers {
                assert!(
                    known.contains(label) || label == "job" || label == "instance",
                    "{name}: {metric} has no label `{label}` (it has {known:?})"
                );
                let values: Vec<&str> = match op.as_str() {
                    "=~" | "!~" => value.split('|').collect(),
                    _ => vec![value.as_str()],
                };
                if label == "code" {
                    for value in &values {
                        assert!(
                            codes.contains(value),
                            "{name}: `{value}` is not a code (the codes: {codes:?})"
                        );
                    }
                } else if label == "endpoint" {
                    for value in &values {
                        assert!(
                            exposition.contains(&format!("endpoint=\"{value}\"")),
                            "{name}: no route `{value}` in the exposition"
                        );
                    }
                } else if let Some(allowed) = fixed_values.get(label.as_str()) {
                    for value in &values {
                        assert!(
                            allowed.contains(value),
                            "{name}: {label}=\"{value}\" is not one of {allowed:?}"
                        );
                    }
                }
                if name == "GeminiProxyHighErrorRatio" && label == "code" && op == "=~" {
                    let counted: BTreeSet<&str> = values.iter().copied().collect();
                    assert_eq!(
                        counted, server_error_codes,
                        "{name} counts exactly the codes answered with a 5xx status"
                    );
                }
            }
        }
        for label in &found.grouping {
            assert!(
                in_query.contains(label.as_str()),
                "{name}: grouping by `{label}`, a label none of its metrics has: `{query}`"
            );
        }
    }
}
