//! Running in production (docs/operations.md#signals-and-drain): readiness,
//! the drain on SIGTERM and SIGINT (a second signal stops at once), the
//! drain's time limit, a private metrics listener, and the container's health
//! check without curl.

use crate::helpers::*;
use awc::http::Method;
use gemini_mock::{MockConfig, MockGemini};
use serde_json::json;
use std::process::Command;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

async fn slow_mock(first_byte: Duration) -> MockGemini {
    MockGemini::start(MockConfig {
        first_byte_delay: first_byte,
        ..MockConfig::default()
    })
    .await
    .expect("mock starts")
}

/// A `/gemini-proxy` call held by the mock's first-byte delay.
async fn held_call(address: String) -> TestResponse {
    send_to(
        &address,
        Method::POST,
        "/gemini-proxy",
        &[
            ("X-API-KEY", CLIENT_KEY),
            ("Content-Type", "application/json"),
        ],
        json!({"prompt": "[mock:slow-first-byte] still there?"}).to_string(),
    )
    .await
}

/// Waits until the mock holds `count` calls (5 s at most).
async fn until_held(mock: &MockGemini, count: usize) {
    let started = Instant::now();
    while mock.in_flight() < count {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the calls never arrived"
        );
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
}

#[actix_rt::test]
async fn ready_says_ready_while_the_service_takes_work() {
    let app = spawn_app().await;
    let response = app.request(Method::GET, "/ready", &[], "").await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.json(), json!({"status": "ready"}));
    let response = app.request(Method::POST, "/ready", &[], "").await;
    assert_eq!(response.status, 405);
}

#[actix_rt::test]
async fn ready_says_draining_once_the_drain_has_begun() {
    let app = spawn_app().await;
    app.control.set_draining();
    let response = app.request(Method::GET, "/ready", &[], "").await;
    assert_eq!(response.status, 503, "{}", response.text());
    assert_eq!(response.json(), json!({"status": "draining"}));
    // Liveness is another question: the process still serves.
    assert_eq!(
        app.request(Method::GET, "/health", &[], "").await.status,
        200
    );
}

#[actix_rt::test]
async fn sigint_drains_like_sigterm_and_closes_idle_connections() {
    let mock = slow_mock(Duration::from_millis(1500)).await;
    let mut app = BinaryApp::start(&[], &binary_env(&mock));
    let port: u16 = app
        .address
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    // A keep-alive connection opened before the signal.
    let mut open = connect(port).await;
    let ask_ready = b"GET /ready HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    open.write_all(ask_ready).await.expect("write");
    let mut received = Vec::new();
    let (status, _, _) = read_response(&mut open, &mut received)
        .await
        .expect("an answer");
    assert_eq!(status, 200);

    let held = actix_rt::spawn(held_call(app.address.clone()));
    until_held(&mock, 1).await;
    app.signal("INT");
    app.logs_with("SIGINT: draining").await;
    actix_rt::time::sleep(Duration::from_millis(100)).await;
    // An idle keep-alive connection is closed (or, at the latest, hears
    // "draining"): a load balancer reusing it learns the replica is going away.
    open.write_all(ask_ready).await.ok();
    let mut received = Vec::new();
    let after = tokio::time::timeout(
        Duration::from_secs(2),
        read_response(&mut open, &mut received),
    )
    .await;
    assert!(
        matches!(after, Ok(None) | Ok(Some((503, _, _)))),
        "the idle connection was still served as ready: {:?}",
        after.map(|a| a.map(|r| r.0))
    );
    let response = held.await.expect("the held call");
    assert_eq!(
        response.status,
        200,
        "the call in flight finished: {}",
        response.text()
    );
    let status = app.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "exited {status}:\n{}", app.logs());
    assert!(app.logs().contains("SIGINT: draining"), "{}", app.logs());
}

#[actix_rt::test]
async fn a_second_signal_stops_at_once() {
    let mock = slow_mock(Duration::from_secs(20)).await;
    let mut app = BinaryApp::start(&[], &binary_env(&mock));
    let held = actix_rt::spawn(held_call(app.address.clone()));
    until_held(&mock, 1).await;
    app.signal("TERM");
    actix_rt::time::sleep(Duration::from_millis(300)).await;
    let second = Instant::now();
    app.signal("TERM");
    app.wait_exit(Duration::from_secs(5));
    assert!(
        second.elapsed() < Duration::from_secs(3),
        "took {:?}",
        second.elapsed()
    );
    assert!(
        app.logs().contains("again: stopping at once"),
        "{}",
        app.logs()
    );
    held.abort();
}

#[actix_rt::test]
async fn the_drain_ends_at_drain_timeout_secs() {
    let mock = slow_mock(Duration::from_secs(20)).await;
    let mut env = binary_env(&mock);
    env.insert("DRAIN_TIMEOUT_SECS".into(), "1".into());
    let mut app = BinaryApp::start(&[], &env);
    let held = actix_rt::spawn(held_call(app.address.clone()));
    until_held(&mock, 1).await;
    let signalled = Instant::now();
    app.signal("TERM");
    let status = app.wait_exit(Duration::from_secs(10));
    let took = signalled.elapsed();
    assert!(took < Duration::from_secs(4), "the drain took {took:?}");
    assert!(
        took >= Duration::from_millis(900),
        "the drain took {took:?}"
    );
    assert!(status.success(), "exited {status}");
    held.abort();
}

#[actix_rt::test]
async fn metrics_addr_moves_metrics_off_the_public_port() {
    let app = spawn_app_with(|s| {
        s.insert("METRICS_ADDR".into(), "127.0.0.1:0".into());
    })
    .await;
    assert_eq!(app.proxy(&json!({"prompt": "hello"})).await.status, 200);
    let public = app.request(Method::GET, "/metrics", &[], "").await;
    assert_eq!(public.status, 404, "{}", public.text());
    assert_eq!(public.error_code(), "NOT_FOUND");

    let origin = format!(
        "http://127.0.0.1:{}",
        app.metrics_port.expect("a metrics port")
    );
    let private = send_to(&origin, Method::GET, "/metrics", &[], "").await;
    assert_eq!(private.status, 200);
    let text = private.text();
    assert!(
        text.contains(r#"gemini_proxy_client_requests_total{client="env-1",code="OK"} 1"#),
        "{text}"
    );
    assert!(text.contains("api_requests_total"), "{text}");
    for path in ["/gemini-proxy", "/health", "/v1beta/models"] {
        let other = send_to(&origin, Method::GET, path, &[], "").await;
        assert_eq!(other.status, 404, "{path} on the metrics listener");
    }
}

#[actix_rt::test]
async fn the_healthcheck_command_asks_the_running_service() {
    let mock = slow_mock(Duration::ZERO).await;
    let app = BinaryApp::start(&[], &binary_env(&mock));
    let port = app.address.rsplit(':').next().expect("port").to_owned();
    let check = |port: &str| {
        Command::new(env!("CARGO_BIN_EXE_gemini-proxy"))
            .arg("healthcheck")
            .env_clear()
            .env("PORT", port)
            .output()
            .expect("healthcheck runs")
    };
    let healthy = check(&port);
    assert!(
        healthy.status.success(),
        "{}",
        String::from_utf8_lossy(&healthy.stderr)
    );
    // A service that answers, but not 200.
    let unready = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let unready_port = unready.local_addr().expect("address").port();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        if let Ok((mut stream, _)) = unready.accept() {
            let _ = stream.read(&mut [0u8; 1024]);
            let _ =
                stream.write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n");
        }
    });
    let wrong = check(&unready_port.to_string());
    assert!(!wrong.status.success());
    let said = String::from_utf8_lossy(&wrong.stderr).into_owned();
    assert!(said.contains("/health answered HTTP/1.1 503"), "{said}");
    let closed = check("9");
    assert!(!closed.status.success());
}

#[actix_rt::test]
async fn sighup_brings_refused_keys_back_and_keeps_rests() {
    use crate::shared_keys::{contents, suspend_key_0_and_exhaust_key_1_for_pro, KEYS};
    let mock = slow_mock(Duration::ZERO).await;
    let mut env = binary_env(&mock);
    env.insert("GEMINI_API_KEY".into(), KEYS[..2].join(","));
    let app = BinaryApp::start(&[], &env);
    suspend_key_0_and_exhaust_key_1_for_pro(&mock);
    let pro = "/v1beta/models/gemini-2.5-pro:generateContent";
    let native = [
        ("x-goog-api-key", CLIENT_KEY),
        ("Content-Type", "application/json"),
    ];
    let response = send_to(&app.address, Method::POST, pro, &native, contents("hi")).await;
    assert_eq!(
        code_of(&response).as_deref(),
        Some("QUOTA_ERROR"),
        "{}",
        response.text()
    );
    let gauges = || async {
        let text = send_to(&app.address, Method::GET, "/metrics", &[], "")
            .await
            .text();
        [
            metric_value(&text, r#"gemini_proxy_upstream_key_available{key="0"}"#),
            metric_value(
                &text,
                r#"gemini_proxy_upstream_key_resting_models{key="1"}"#,
            ),
        ]
    };
    assert_eq!(
        gauges().await,
        [Some(0.0), Some(1.0)],
        "key 0 refused, key 1 rests"
    );

    // The operator fixes key 0's project and sends SIGHUP.
    mock.update_config(|c| c.key_refusals.clear());
    app.signal("HUP");
    let started = Instant::now();
    while gauges().await[0] != Some(1.0) {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "SIGHUP did not restore key 0"
        );
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(gauges().await[1], Some(1.0), "SIGHUP ended key 1's rest");
    mock.reset();
    for _ in 0..3 {
        let response = send_to(&app.address, Method::POST, pro, &native, contents("hi")).await;
        assert_eq!(response.status, 200, "{}", response.text());
    }
    let keys: Vec<String> = mock
        .requests()
        .iter()
        .filter_map(|r| r.api_key().map(str::to_owned))
        .collect();
    assert_eq!(keys, [KEYS[0]; 3], "key 1 still rests for pro");
}
