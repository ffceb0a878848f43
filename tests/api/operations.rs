//! Operations (docs/api.md#request-ids-and-ratelimit-headers, docs/metrics.md): `/health`, `/metrics` and its label bounds,
//! secrets kept out of metrics and error bodies, `X-Request-Id`, the `RateLimit-*`
//! headers and CORS.

use crate::helpers::*;
use awc::http::Method;
use serde_json::json;
use std::net::TcpListener;

/// A client's own Gemini key, sent as `api_key`; must never come back out.
const OWN_GEMINI_KEY: &str = "AIzaOwnClientKeyQwErTyUiOpAsDfGhJkLzXcV";
const ALLOWED_ORIGIN: &str = "https://app.example";
const EVIL_ORIGIN: &str = "https://evil.example";

/// A loopback URL where nothing listens: the port was bound, then released.
fn closed_loopback_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

fn assert_no_secret(text: &str, what: &str) {
    for secret in [CLIENT_KEY, SERVER_KEY, OWN_GEMINI_KEY] {
        let leaked = leaked_fragments(text, secret);
        assert!(leaked.is_empty(), "{what} leaks {leaked:?}:\n{text}");
    }
}

/// The `api_requests_total` series of an exposition.
fn request_series(exposition: &str) -> Vec<&str> {
    exposition
        .lines()
        .filter(|l| l.starts_with("api_requests_total{"))
        .collect()
}

fn is_valid_request_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

// ---------------------------------------------------------------- /health

#[actix_rt::test]
async fn health_answers_ok_with_the_version_and_never_calls_gemini() {
    let app = spawn_app().await;
    let response = app.request(Method::GET, "/health", &[], "").await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(
        response.json(),
        json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")})
    );
    assert_eq!(app.mock.request_count(), 0);
}

#[actix_rt::test]
async fn health_answers_ok_while_gemini_is_unreachable() {
    let app = spawn_app_with(|s| {
        s.insert("GEMINI_BASE_URL".into(), closed_loopback_url());
    })
    .await;
    let response = app.request(Method::GET, "/health", &[], "").await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.json()["status"], "ok");
    // The upstream really is down: a proxied prompt cannot get through.
    let proxied = app.proxy(&json!({"prompt": "hello"})).await;
    assert_eq!(proxied.status, 503, "{}", proxied.text());
    assert_eq!(proxied.error_code(), "UPSTREAM_UNAVAILABLE");
}

// ---------------------------------------------------------------- /metrics

#[actix_rt::test]
async fn metrics_expose_every_family_of_the_spec() {
    let app = spawn_app().await;
    let exposition = app.metrics().await;
    for family in [
        "api_requests_total",
        "api_request_duration_seconds",
        "gemini_proxy_client_requests_total",
        "gemini_proxy_rate_limited_total",
        "gemini_proxy_tokens_total",
        "gemini_proxy_upstream_requests_total",
        "gemini_proxy_upstream_duration_seconds",
        "gemini_proxy_stream_first_byte_seconds",
        "gemini_proxy_in_flight_requests",
        "gemini_proxy_upstream_key_available",
        "gemini_proxy_config_reloads_total",
        "gemini_proxy_build_info",
    ] {
        assert!(
            exposition.contains(&format!("# TYPE {family} ")),
            "no {family} in:\n{exposition}"
        );
    }
    let build_info = format!(
        "gemini_proxy_build_info{{version=\"{}\"}}",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(metric_value(&exposition, &build_info), Some(1.0));
    assert_eq!(
        metric_value(
            &exposition,
            "gemini_proxy_upstream_key_available{key=\"0\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        metric_value(&exposition, "gemini_proxy_in_flight_requests"),
        Some(1.0),
        "the scrape itself is the only request in flight"
    );
}

#[actix_rt::test]
async fn the_in_flight_gauge_counts_requests_waiting_on_gemini() {
    let app = spawn_app().await;
    app.mock
        .update_config(|c| c.first_byte_delay = std::time::Duration::from_millis(800));
    let prompt = json!({"prompt": "hello"});
    let held = (0..3).map(|_| app.proxy(&prompt));
    let scrape = async {
        let started = std::time::Instant::now();
        while app.mock.in_flight() < 3 {
            assert!(
                started.elapsed().as_secs() < 5,
                "requests never reached Gemini"
            );
            actix_rt::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        app.metrics().await
    };
    let (responses, during) =
        futures_util::future::join(futures_util::future::join_all(held), scrape).await;
    for response in responses {
        assert_eq!(response.status, 200, "{}", response.text());
    }
    assert_eq!(
        metric_value(&during, "gemini_proxy_in_flight_requests"),
        Some(4.0),
        "three held requests and the scrape:\n{during}"
    );
    assert_eq!(
        metric_value(&app.metrics().await, "gemini_proxy_in_flight_requests"),
        Some(1.0)
    );
}

#[actix_rt::test]
async fn metrics_count_a_success_by_route_pattern_client_and_upstream_outcome() {
    let app = spawn_app().await;
    let response = app.proxy(&json!({"prompt": "hello"})).await;
    assert_eq!(response.status, 200, "{}", response.text());

    let exposition = app.metrics().await;
    let labels = r#"{endpoint="/gemini-proxy",method="POST",status="200"}"#;
    assert_eq!(
        metric_value(&exposition, &format!("api_requests_total{labels}")),
        Some(1.0),
        "{exposition}"
    );
    assert_eq!(
        metric_value(
            &exposition,
            &format!("api_request_duration_seconds_count{labels}")
        ),
        Some(1.0),
        "{exposition}"
    );
    let bucket_120 = r#"api_request_duration_seconds_bucket{endpoint="/gemini-proxy",method="POST",status="200",le="120"}"#;
    assert_eq!(
        metric_value(&exposition, bucket_120),
        Some(1.0),
        "{exposition}"
    );
    assert_eq!(
        metric_value(
            &exposition,
            r#"gemini_proxy_client_requests_total{client="env-1",code="OK"}"#
        ),
        Some(1.0),
        "{exposition}"
    );
    let upstream_ok = exposition
        .lines()
        .filter(|l| l.starts_with("gemini_proxy_upstream_requests_total{"))
        .filter(|l| l.contains(r#"outcome="ok""#))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>();
    assert_eq!(upstream_ok, 1.0, "{exposition}");
    let upstream_120 = exposition
        .lines()
        .filter(|l| l.starts_with("gemini_proxy_upstream_duration_seconds_bucket{"))
        .find(|l| l.contains(r#"le="120""#));
    assert!(
        upstream_120.is_some_and(|l| l.ends_with(" 1")),
        "{exposition}"
    );
}

#[actix_rt::test]
async fn unknown_paths_share_one_series_and_never_appear_in_metrics() {
    let app = spawn_app().await;
    // Twice, so the scrape's own series exists before the baseline.
    app.metrics().await;
    let before = app.metrics().await;

    let mut paths = Vec::new();
    for i in 0..50 {
        let path = format!("/probe-{i}-{:016x}", fastrand::u64(..));
        let response = app.request(Method::GET, &path, &[], "").await;
        assert_eq!(response.status, 404, "{path}: {}", response.text());
        paths.push(path);
    }

    let after = app.metrics().await;
    let (before_count, after_count) = (request_series(&before).len(), request_series(&after).len());
    assert!(
        after_count <= before_count + 1,
        "{before_count} series became {after_count}:\n{after}"
    );
    assert_eq!(
        metric_value(
            &after,
            r#"api_requests_total{endpoint="UNMATCHED",method="GET",status="404"}"#
        ),
        Some(50.0),
        "{after}"
    );
    for path in &paths {
        assert!(!after.contains(path.as_str()), "{path} in:\n{after}");
    }
}

#[actix_rt::test]
async fn an_invented_http_method_is_labelled_other() {
    let app = spawn_app().await;
    let foo = Method::from_bytes(b"FOO").expect("a valid token");
    let response = app.request(foo.clone(), "/health", &[], "").await;
    assert!(response.status >= 400, "{}", response.text());
    let response = app.request(foo, "/no-such-route", &[], "").await;
    assert!(response.status >= 400, "{}", response.text());

    let exposition = app.metrics().await;
    let series = request_series(&exposition);
    assert!(
        series.iter().any(|l| l.contains(r#"method="OTHER""#)),
        "{exposition}"
    );
    assert!(!exposition.contains("FOO"), "{exposition}");
}

// ---------------------------------------------------------------- secrets

#[actix_rt::test]
async fn no_key_appears_in_metrics_or_in_any_error_body() {
    let app = spawn_app().await;
    let mut bodies = Vec::new();

    let success = app.proxy(&json!({"prompt": "hello"})).await;
    assert_eq!(success.status, 200, "{}", success.text());
    // A wrong client key that is a fragment-twin of the real one.
    let wrong = app
        .request(
            Method::POST,
            "/gemini-proxy",
            &[
                ("X-API-KEY", &format!("{CLIENT_KEY}-wrong")),
                ("Content-Type", "application/json"),
            ],
            json!({"prompt": "hello"}).to_string(),
        )
        .await;
    assert_eq!(wrong.status, 401);
    bodies.push(wrong);
    // The client's own key, rejected or refused by Gemini in every way it can be.
    for scenario in ["400-badkey", "400", "403", "404", "429", "500"] {
        let response = app
            .proxy(&json!({
                "prompt": "hello",
                "model": format!("mock-{scenario}"),
                "api_key": OWN_GEMINI_KEY,
            }))
            .await;
        assert!(response.status >= 400, "{scenario}: {}", response.text());
        response.error_code();
        bodies.push(response);
    }
    // A server-key call Gemini refuses, and validation errors that echo input.
    for body in [
        json!({"prompt": "[mock:403] hello"}),
        json!({"prompt": "[mock:400-badkey] hello"}),
        json!({"prompt": "hello", "api_key": OWN_GEMINI_KEY}),
        json!({"prompt": "hello", "model": OWN_GEMINI_KEY, "api_key": OWN_GEMINI_KEY}),
        json!({"prompt": "hello", "api_key": OWN_GEMINI_KEY, "extra": CLIENT_KEY}),
    ] {
        let response = app.proxy(&body).await;
        assert!(response.status >= 400, "{body}: {}", response.text());
        response.error_code();
        bodies.push(response);
    }

    // The own-key calls really reached Gemini with that key.
    assert!(app
        .upstream_requests()
        .iter()
        .any(|r| r.headers.iter().any(|(_, v)| v == OWN_GEMINI_KEY)));
    for response in &bodies {
        assert_no_secret(&response.text(), "an error body");
    }
    assert_no_secret(&app.metrics().await, "/metrics");
}

// ---------------------------------------------------------------- X-Request-Id

#[actix_rt::test]
async fn a_well_formed_request_id_is_echoed_on_success_errors_and_404s() {
    let app = spawn_app().await;
    let id = "req-1.A_b";
    let success = app
        .request(
            Method::POST,
            "/gemini-proxy",
            &[
                ("X-API-KEY", CLIENT_KEY),
                ("Content-Type", "application/json"),
                ("X-Request-Id", id),
            ],
            json!({"prompt": "hello"}).to_string(),
        )
        .await;
    assert_eq!(success.status, 200, "{}", success.text());
    assert_eq!(success.header("x-request-id"), Some(id));

    let unauthorized = app
        .request(Method::POST, "/gemini-proxy", &[("X-Request-Id", id)], "")
        .await;
    assert_eq!(unauthorized.status, 401);
    assert_eq!(unauthorized.header("x-request-id"), Some(id));

    let not_found = app
        .request(Method::GET, "/nowhere", &[("X-Request-Id", id)], "")
        .await;
    assert_eq!(not_found.status, 404);
    assert_eq!(not_found.header("x-request-id"), Some(id));

    let longest = "a".repeat(128);
    let health = app
        .request(Method::GET, "/health", &[("X-Request-Id", &longest)], "")
        .await;
    assert_eq!(health.header("x-request-id"), Some(longest.as_str()));
}

#[actix_rt::test]
async fn a_malformed_request_id_is_replaced_by_a_generated_one() {
    let app = spawn_app().await;
    let too_long = "a".repeat(129);
    let mut seen = Vec::new();
    for (sent, path) in [
        (too_long.as_str(), "/health"),
        ("has space", "/health"),
        ("semi;colon", "/nowhere"),
        ("", "/gemini-proxy"),
    ] {
        let response = app
            .request(Method::GET, path, &[("X-Request-Id", sent)], "")
            .await;
        let id = response
            .header("x-request-id")
            .unwrap_or_else(|| panic!("no X-Request-Id for {sent:?} on {path}"))
            .to_owned();
        assert_ne!(id, sent);
        assert!(is_valid_request_id(&id), "{id:?}");
        seen.push(id);
    }
    let none = app.request(Method::GET, "/health", &[], "").await;
    let generated = none.header("x-request-id").expect("a generated id");
    assert!(is_valid_request_id(generated), "{generated:?}");
    seen.push(generated.to_owned());
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 5, "generated ids repeat: {seen:?}");
}

// ---------------------------------------------------------------- RateLimit-*

fn rate_headers(response: &TestResponse) -> (u64, u64, u64) {
    let number = |name: &str| {
        response
            .header(name)
            .unwrap_or_else(|| panic!("no {name}: {:?}", response.headers))
            .parse::<u64>()
            .unwrap_or_else(|e| panic!("{name} is not a whole number: {e}"))
    };
    (
        number("ratelimit-limit"),
        number("ratelimit-remaining"),
        number("ratelimit-reset"),
    )
}

#[actix_rt::test]
async fn rate_limit_headers_are_on_authenticated_answers_and_not_on_a_401() {
    let app = spawn_app().await;
    let success = app.proxy(&json!({"prompt": "hello"})).await;
    assert_eq!(success.status, 200, "{}", success.text());
    let (limit, remaining, reset) = rate_headers(&success);
    // The default burst (docs/keys-file.md#fields), one token taken.
    assert_eq!((limit, remaining), (10, 9));
    assert!((1..=60).contains(&reset), "RateLimit-Reset {reset}");

    let invalid = app.proxy_raw("{not json").await;
    assert_eq!(invalid.status, 400);
    assert_eq!(invalid.error_code(), "INVALID_JSON");
    let (limit, remaining, _) = rate_headers(&invalid);
    assert_eq!((limit, remaining), (10, 8));

    let unauthorized = app
        .request(
            Method::POST,
            "/gemini-proxy",
            &[
                ("X-API-KEY", "not-a-client"),
                ("Content-Type", "application/json"),
            ],
            json!({"prompt": "hello"}).to_string(),
        )
        .await;
    assert_eq!(unauthorized.status, 401);
    for name in ["ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"] {
        assert_eq!(unauthorized.header(name), None, "{name} on a 401");
    }
}

// ---------------------------------------------------------------- CORS

async fn preflight(app: &TestApp, origin: &str) -> TestResponse {
    app.request(
        Method::OPTIONS,
        "/gemini-proxy",
        &[
            ("Origin", origin),
            ("Access-Control-Request-Method", "POST"),
            ("Access-Control-Request-Headers", "x-api-key, content-type"),
        ],
        "",
    )
    .await
}

async fn post_from(app: &TestApp, origin: &str) -> TestResponse {
    app.request(
        Method::POST,
        "/gemini-proxy",
        &[
            ("Origin", origin),
            ("X-API-KEY", CLIENT_KEY),
            ("Content-Type", "application/json"),
        ],
        json!({"prompt": "hello"}).to_string(),
    )
    .await
}

/// A refusal is in the error envelope, whatever its status.
fn assert_refused_in_the_envelope(response: &TestResponse) {
    assert!(response.status >= 400, "{}", response.text());
    response.error_code();
}

#[actix_rt::test]
async fn cors_allows_a_configured_origin_for_preflight_and_post() {
    let app = spawn_app_with(|s| {
        s.insert("CORS_ALLOWED_ORIGINS".into(), ALLOWED_ORIGIN.into());
    })
    .await;
    let response = preflight(&app, ALLOWED_ORIGIN).await;
    assert!(response.status < 300, "{}", response.text());
    assert_eq!(
        response.header("access-control-allow-origin"),
        Some(ALLOWED_ORIGIN)
    );
    let allowed_headers = response
        .header("access-control-allow-headers")
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(allowed_headers.contains("x-api-key"), "{allowed_headers}");

    let response = post_from(&app, ALLOWED_ORIGIN).await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(
        response.header("access-control-allow-origin"),
        Some(ALLOWED_ORIGIN)
    );
}

#[actix_rt::test]
async fn cors_never_reflects_an_origin_outside_the_list() {
    let app = spawn_app_with(|s| {
        s.insert("CORS_ALLOWED_ORIGINS".into(), ALLOWED_ORIGIN.into());
    })
    .await;
    let refused = preflight(&app, EVIL_ORIGIN).await;
    // The refusal is in the envelope, not actix-cors's plain text.
    assert_refused_in_the_envelope(&refused);
    for response in [refused, post_from(&app, EVIL_ORIGIN).await] {
        let allow = response.header("access-control-allow-origin");
        assert!(
            allow.is_none() || allow == Some(ALLOWED_ORIGIN),
            "allow-origin {allow:?}"
        );
        if response.status >= 400 {
            assert_refused_in_the_envelope(&response);
        }
        assert!(response.header("x-request-id").is_some());
    }
}

#[actix_rt::test]
async fn cors_allows_no_origin_when_none_is_configured() {
    let app = spawn_app().await;
    let refused = preflight(&app, ALLOWED_ORIGIN).await;
    assert_refused_in_the_envelope(&refused);
    for response in [refused, post_from(&app, ALLOWED_ORIGIN).await] {
        assert_eq!(
            response.header("access-control-allow-origin"),
            None,
            "{:?}",
            response.headers
        );
        if response.status >= 400 {
            assert_refused_in_the_envelope(&response);
        }
    }
}

#[actix_rt::test]
async fn a_cors_refusal_on_a_native_path_is_in_googles_error_shape() {
    let app = spawn_app_with(|s| {
        s.insert("CORS_ALLOWED_ORIGINS".into(), ALLOWED_ORIGIN.into());
    })
    .await;
    let response = app
        .request(
            Method::OPTIONS,
            "/v1beta/models/gemini-2.5-flash:generateContent",
            &[
                ("Origin", EVIL_ORIGIN),
                ("Access-Control-Request-Method", "POST"),
            ],
            "",
        )
        .await;
    assert!(response.status >= 400, "{}", response.text());
    assert_eq!(response.header("access-control-allow-origin"), None);
    let body = response.json();
    assert_eq!(body["error"]["code"], response.status, "{body}");
    assert!(body["error"]["status"].is_string(), "{body}");
}

#[actix_rt::test]
async fn a_request_its_client_abandons_is_still_counted() {
    let app = spawn_app().await;
    let abandoned = awc::Client::builder()
        .timeout(std::time::Duration::from_millis(300))
        .finish()
        .post(format!("{}/gemini-proxy", app.address))
        .insert_header(("X-API-KEY", CLIENT_KEY))
        .insert_header(("Content-Type", "application/json"))
        .send_body(json!({"prompt": "[mock:hang] hi"}).to_string())
        .await;
    assert!(abandoned.is_err(), "the client gave up before an answer");
    let series = "gemini_proxy_client_requests_total{client=\"env-1\",code=\"CANCELLED\"}";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    loop {
        let metrics = app.metrics().await;
        if metric_value(&metrics, series) == Some(1.0) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not counted (mock in flight: {}):\n{}",
            app.mock.in_flight(),
            metrics
                .lines()
                .filter(|l| l.contains("client_requests"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        actix_rt::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // The mock sees its connection close a moment after the service drops it.
    while app.mock.in_flight() != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the upstream call was not abandoned"
        );
        actix_rt::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
