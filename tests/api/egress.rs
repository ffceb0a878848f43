//! Egress proxies (docs/upstream.md#egress-proxies): calls to the mock go
//! through real proxy servers, `tinyproxy` for HTTP CONNECT and `microsocks`
//! for SOCKS5 (see [`servers`]), with and without credentials; a proxy that
//! refuses, is down or dies gives the codes of an unreachable upstream; keys
//! are pinned to proxies; the password never shows.

mod servers;

use crate::helpers::{code_of, spawn_app_with, TestApp, CLIENT_KEY, SERVER_KEY};
use awc::http::Method;
use futures_util::StreamExt;
use gemini_mock::testing::LiveClient;
use serde_json::json;
use servers::{free_port, ProxyServer};
use std::time::Duration;

const PASSWORD: &str = "hunter2-Secret-Pa55";
const SSE_STREAM: &str = "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse";
const BODY: &str = r#"{"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}"#;

async fn app_through(proxy: &str) -> TestApp {
    let proxy = proxy.to_owned();
    spawn_app_with(move |s| {
        s.insert("UPSTREAM_PROXY".into(), proxy);
    })
    .await
}

/// The mock's `host:port`, as a proxy sees the target.
fn target(app: &TestApp) -> String {
    app.mock.base_url().trim_start_matches("http://").to_owned()
}

/// A `/gemini-proxy` call and a streamed native call both reach the mock.
async fn assert_calls_go_through(app: &TestApp) {
    let answer = app.proxy(&json!({"prompt": "hello"})).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.json()["result"], "OK");
    let stream = app
        .request(
            Method::POST,
            SSE_STREAM,
            &[
                ("x-goog-api-key", CLIENT_KEY),
                ("Content-Type", "application/json"),
            ],
            BODY,
        )
        .await;
    assert_eq!(stream.status, 200, "{}", stream.text());
    assert!(stream.text().starts_with("data: {"), "{}", stream.text());
    assert_eq!(app.mock.request_count(), 2);
}

fn assert_no_password(text: &str) {
    assert!(
        !text.contains(PASSWORD),
        "the proxy password leaked: {text}"
    );
}

#[actix_rt::test]
async fn calls_and_streams_go_through_an_http_connect_proxy() {
    let Some(proxy) = ProxyServer::tinyproxy(None).await else {
        return;
    };
    let app = app_through(&proxy.url("http", None)).await;
    assert_calls_go_through(&app).await;
    assert!(proxy.tunnels_to(&target(&app)) >= 1, "{}", proxy.log());
}

#[actix_rt::test]
async fn basic_auth_to_the_connect_proxy_works_and_a_wrong_password_is_upstream_unavailable() {
    let Some(proxy) = ProxyServer::tinyproxy(Some(("me", PASSWORD))).await else {
        return;
    };
    let app = app_through(&proxy.url("http", Some(("me", PASSWORD)))).await;
    assert_calls_go_through(&app).await;

    let wrong = app_through(&proxy.url("http", Some(("me", "not-the-password")))).await;
    let answer = wrong.proxy(&json!({"prompt": "hello"})).await;
    assert_eq!(answer.status, 503, "{}", answer.text());
    assert_eq!(code_of(&answer).as_deref(), Some("UPSTREAM_UNAVAILABLE"));
    assert!(answer.header("retry-after").is_some());
    assert_no_password(&answer.text());
    assert!(
        !answer.text().contains("not-the-password"),
        "{}",
        answer.text()
    );
    assert_eq!(wrong.mock.request_count(), 0);

    let none = app_through(&proxy.url("http", None)).await;
    let answer = none.proxy(&json!({"prompt": "hello"})).await;
    assert_eq!(code_of(&answer).as_deref(), Some("UPSTREAM_UNAVAILABLE"));
    assert_no_password(&proxy.log());
}

#[actix_rt::test]
async fn calls_and_streams_go_through_socks5_resolved_here_and_by_the_proxy() {
    let auth = Some(("me", PASSWORD));
    let Some(proxy) = ProxyServer::microsocks(auth).await else {
        return;
    };
    // socks5://: the service resolves the host and sends the proxy an IP.
    let app = app_through(&proxy.url("socks5", auth)).await;
    assert_calls_go_through(&app).await;
    assert!(
        proxy.socks_connections_to(&target(&app)) >= 1,
        "{}",
        proxy.log()
    );

    // socks5h://: the proxy gets the host name and resolves it.
    let url = proxy.url("socks5h", auth);
    let app = spawn_app_with(move |s| {
        s.insert("UPSTREAM_PROXY".into(), url);
        let base = s["GEMINI_BASE_URL"].replace("127.0.0.1", "localhost");
        s.insert("GEMINI_BASE_URL".into(), base);
    })
    .await;
    assert_calls_go_through(&app).await;
    let by_name = target(&app).replace("127.0.0.1", "localhost");
    assert!(proxy.socks_connections_to(&by_name) >= 1, "{}", proxy.log());
}

#[actix_rt::test]
async fn a_wrong_socks5_password_is_upstream_unavailable_and_never_shown() {
    let Some(proxy) = ProxyServer::microsocks(Some(("me", PASSWORD))).await else {
        return;
    };
    let app = app_through(&proxy.url("socks5h", Some(("me", "not-the-password")))).await;
    let answer = app.proxy(&json!({"prompt": "hello"})).await;
    assert_eq!(answer.status, 503, "{}", answer.text());
    assert_eq!(code_of(&answer).as_deref(), Some("UPSTREAM_UNAVAILABLE"));
    assert!(
        !answer.text().contains("not-the-password"),
        "{}",
        answer.text()
    );
    assert_eq!(app.mock.request_count(), 0);
}

#[actix_rt::test]
async fn a_proxy_that_is_down_is_an_unreachable_upstream() {
    let down = format!("http://me:{PASSWORD}@127.0.0.1:{}", free_port());
    let app = app_through(&down).await;
    let answer = app.proxy(&json!({"prompt": "hello"})).await;
    assert_eq!(answer.status, 503, "{}", answer.text());
    assert_eq!(code_of(&answer).as_deref(), Some("UPSTREAM_UNAVAILABLE"));
    assert_no_password(&answer.text());
    // Refused before any byte: retried like a refused upstream.
    let metrics = app.metrics().await;
    assert!(
        metrics.contains(r#"gemini_proxy_upstream_retries_total{reason="UPSTREAM_UNAVAILABLE"}"#),
        "{metrics}"
    );
    assert_eq!(app.mock.request_count(), 0);
}

#[actix_rt::test]
async fn https_proxy_is_honoured_and_no_proxy_for_the_upstream_host_bypasses_it() {
    let Some(proxy) = ProxyServer::tinyproxy(None).await else {
        return;
    };
    let url = proxy.url("http", None);
    let app = spawn_app_with(move |s| {
        s.insert("HTTPS_PROXY".into(), url);
        s.insert("NO_PROXY".into(), "localhost,.example.com".into());
    })
    .await;
    assert_calls_go_through(&app).await;
    assert!(proxy.tunnels_to(&target(&app)) >= 1, "{}", proxy.log());

    // A proxy that is down, exempted for the mock's host: calls go straight there.
    let down = format!("http://127.0.0.1:{}", free_port());
    let app = spawn_app_with(move |s| {
        s.insert("https_proxy".into(), down);
        s.insert("no_proxy".into(), "example.com, 127.0.0.1".into());
    })
    .await;
    assert_calls_go_through(&app).await;
}

#[actix_rt::test]
async fn each_server_key_leaves_through_its_own_proxy() {
    let (Some(first), Some(second)) = (
        ProxyServer::tinyproxy(None).await,
        ProxyServer::tinyproxy(None).await,
    ) else {
        return;
    };
    let proxies = format!("{},{}", first.url("http", None), second.url("http", None));
    let app = spawn_app_with(move |s| {
        s.insert(
            "GEMINI_API_KEY".into(),
            format!("{SERVER_KEY}0,{SERVER_KEY}1"),
        );
        s.insert("UPSTREAM_PROXY".into(), proxies);
    })
    .await;
    for _ in 0..4 {
        let answer = app.proxy(&json!({"prompt": "hello"})).await;
        assert_eq!(answer.status, 200, "{}", answer.text());
    }
    let keys: Vec<String> = app
        .upstream_requests()
        .iter()
        .filter_map(|r| r.header("x-goog-api-key").map(str::to_owned))
        .collect();
    assert_eq!(
        keys.iter().filter(|k| k.ends_with('0')).count(),
        2,
        "{keys:?}"
    );
    assert_eq!(
        keys.iter().filter(|k| k.ends_with('1')).count(),
        2,
        "{keys:?}"
    );
    // Each key's pool holds its connections through its proxy: both carried some.
    assert!(first.tunnels_to(&target(&app)) >= 1, "{}", first.log());
    assert!(second.tunnels_to(&target(&app)) >= 1, "{}", second.log());
}

#[actix_rt::test]
async fn a_key_whose_proxy_is_down_never_leaves_through_another() {
    let Some(proxy) = ProxyServer::tinyproxy(None).await else {
        return;
    };
    let down = format!("http://127.0.0.1:{}", free_port());
    for (proxies, working_key) in [
        (format!("{},{down}", proxy.url("http", None)), '0'),
        (format!("{down},{}", proxy.url("http", None)), '1'),
    ] {
        let app = spawn_app_with(move |s| {
            s.insert(
                "GEMINI_API_KEY".into(),
                format!("{SERVER_KEY}0,{SERVER_KEY}1"),
            );
            s.insert("UPSTREAM_PROXY".into(), proxies);
        })
        .await;
        for _ in 0..4 {
            // A refused connection is retried, and the retry takes the next key.
            let answer = app.proxy(&json!({"prompt": "hello"})).await;
            assert_eq!(answer.status, 200, "{}", answer.text());
        }
        let keys: Vec<String> = app
            .upstream_requests()
            .iter()
            .filter_map(|r| r.header("x-goog-api-key").map(str::to_owned))
            .collect();
        assert_eq!(keys.len(), 4);
        assert!(keys.iter().all(|k| k.ends_with(working_key)), "{keys:?}");
    }
}

#[actix_rt::test]
async fn a_proxy_that_dies_mid_stream_cuts_the_stream_without_a_clean_end() {
    let Some(mut proxy) = ProxyServer::microsocks(None).await else {
        return;
    };
    let app = app_through(&proxy.url("socks5", None)).await;
    app.mock.update_config(|c| {
        c.chunks = 10;
        c.chunk_delay = Duration::from_millis(200);
    });
    let mut response = gemini_mock::testing::client()
        .post(format!("{}{SSE_STREAM}", app.address))
        .insert_header(("x-goog-api-key", CLIENT_KEY))
        .insert_header(("Content-Type", "application/json"))
        .send_body(BODY)
        .await
        .expect("the stream starts");
    assert_eq!(response.status(), 200);
    let mut received = Vec::new();
    let mut killed = false;
    while let Some(chunk) = response.next().await {
        match chunk {
            Ok(bytes) => received.extend_from_slice(&bytes),
            Err(_) => break,
        }
        if !killed {
            proxy.kill();
            killed = true;
        }
    }
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("data: {"), "{text}");
    assert!(
        text.matches("data: ").count() < 10,
        "the stream went on: {text}"
    );
}

#[actix_rt::test]
async fn a_live_api_session_goes_through_the_proxy() {
    let Some(proxy) = ProxyServer::tinyproxy(None).await else {
        return;
    };
    let app = app_through(&proxy.url("http", None)).await;
    let url = format!(
        "ws://127.0.0.1:{}/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent",
        app.port
    );
    let mut live = LiveClient::connect(&url, &[("x-goog-api-key", CLIENT_KEY)]).await;
    assert_eq!(
        live.setup("models/gemini-2.0-flash-live-001").await,
        json!({"setupComplete": {}})
    );
    live.say("through the proxy").await;
    assert!(!live.turn().await.is_empty());
    assert!(proxy.tunnels_to(&target(&app)) >= 1, "{}", proxy.log());
}

#[actix_rt::test]
async fn the_binary_logs_what_the_proxy_did_at_trace_level_but_never_its_password() {
    let Some(proxy) = ProxyServer::tinyproxy(Some(("me", PASSWORD))).await else {
        return;
    };
    let mock = gemini_mock::MockGemini::start(gemini_mock::MockConfig::default())
        .await
        .expect("mock starts");
    let mut env = crate::helpers::binary_env(&mock);
    env.insert("LOG_LEVEL".into(), "trace".into());
    let wrong = format!("me:{PASSWORD}-wrong");
    env.insert(
        "UPSTREAM_PROXY".into(),
        format!("http://{wrong}@127.0.0.1:{}", proxy.port),
    );
    let app = crate::helpers::BinaryApp::start(&[], &env);
    let answer = crate::helpers::send_to(
        &app.address,
        Method::POST,
        "/gemini-proxy",
        &[
            ("X-API-KEY", CLIENT_KEY),
            ("Content-Type", "application/json"),
        ],
        json!({"prompt": "hello"}).to_string(),
    )
    .await;
    assert_eq!(code_of(&answer).as_deref(), Some("UPSTREAM_UNAVAILABLE"));
    let logs = app.logs_with("gemini_proxy::access").await;
    assert!(
        logs.contains("upstream_proxy=http://me:***@127.0.0.1:"),
        "{logs}"
    );
    // tinyproxy answers a wrong password with 401 rather than 407.
    assert!(logs.contains("asked for authentication (401)"), "{logs}");
    // Credentials the proxy refused once are not tried again.
    assert!(logs.contains("attempts=1 "), "{logs}");
    assert_no_password(&logs);
    assert!(!logs.contains(&wrong), "{logs}");
    // base64 of the credentials, as the Proxy-Authorization header carries them.
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(&wrong);
    assert!(!logs.contains(&encoded), "{logs}");
}

#[actix_rt::test]
async fn a_clients_own_key_always_leaves_through_the_proxy_its_hash_picks() {
    use gemini_proxy::upstream::egress::{Egress, Proxy};
    let Some(proxy) = ProxyServer::tinyproxy(None).await else {
        return;
    };
    let good = proxy.url("http", None);
    let down = format!("http://127.0.0.1:{}", free_port());
    let egress = Egress::through(vec![
        Proxy::parse(&good).unwrap(),
        Proxy::parse(&down).unwrap(),
    ]);
    // One own key the hash sends through the working proxy, one through the dead one.
    let keys: Vec<String> = (0..)
        .map(|i| format!("AIzaClientOwnKey{i:0>23}"))
        .take(64)
        .collect();
    let through_good = keys
        .iter()
        .find(|k| egress.route_of_client_key(k.as_bytes()) == 0)
        .expect("a key for proxy 0")
        .clone();
    let through_down = keys
        .iter()
        .find(|k| egress.route_of_client_key(k.as_bytes()) == 1)
        .expect("a key for proxy 1")
        .clone();
    let app = app_through(&format!("{good},{down}")).await;
    for _ in 0..3 {
        let body = json!({"prompt": "hi", "model": "gemini-2.5-flash", "api_key": through_good});
        assert_eq!(app.proxy(&body).await.status, 200);
        let body = json!({"prompt": "hi", "model": "gemini-2.5-flash", "api_key": through_down});
        let answer = app.proxy(&body).await;
        assert_eq!(code_of(&answer).as_deref(), Some("UPSTREAM_UNAVAILABLE"));
        assert!(!answer.text().contains(&through_down), "{}", answer.text());
    }
    let sent: Vec<String> = app
        .upstream_requests()
        .iter()
        .filter_map(|r| r.header("x-goog-api-key").map(str::to_owned))
        .collect();
    assert_eq!(sent, vec![through_good; 3]);
}

#[actix_rt::test]
async fn a_proxy_that_refuses_the_tunnel_is_an_unreachable_upstream() {
    // Tunnels to port 443 only: the mock's port is refused (403).
    let Some(proxy) = ProxyServer::tinyproxy_with(None, "ConnectPort 443\n").await else {
        return;
    };
    let app = app_through(&proxy.url("http", None)).await;
    let answer = app.proxy(&json!({"prompt": "hello"})).await;
    assert_eq!(answer.status, 503, "{}", answer.text());
    assert_eq!(code_of(&answer).as_deref(), Some("UPSTREAM_UNAVAILABLE"));
    assert_eq!(app.mock.request_count(), 0);
    assert!(proxy.tunnels_to(&target(&app)) >= 1, "{}", proxy.log());
}

#[actix_rt::test]
async fn http2_calls_to_a_tls_upstream_share_their_tunnels_through_the_proxy() {
    let Some(proxy) = ProxyServer::tinyproxy(None).await else {
        return;
    };
    let mock = gemini_mock::MockGemini::start_tls(
        gemini_mock::MockConfig::default(),
        gemini_mock::Alpn::H2,
    )
    .await
    .expect("TLS mock");
    let ca = std::env::temp_dir().join(format!("egress-h2-ca-{}.pem", std::process::id()));
    std::fs::write(&ca, mock.ca_pem().expect("a CA")).expect("write the CA");
    let target = mock.base_url().trim_start_matches("https://").to_owned();
    let proxy_url = proxy.url("http", None);
    let ca_path = ca.display().to_string();
    let app = crate::helpers::spawn_app_against(mock, move |s| {
        s.insert("UPSTREAM_PROXY".into(), proxy_url);
        s.insert("UPSTREAM_CA_FILE".into(), ca_path);
    })
    .await;
    for n in 0..5 {
        let answer = app.proxy(&json!({"prompt": format!("over h2 {n}")})).await;
        assert_eq!(answer.status, 200, "{}", answer.text());
    }
    let seen = app.upstream_requests();
    assert_eq!(seen.len(), 5);
    assert!(
        seen.iter().all(|r| r.version == awc::http::Version::HTTP_2),
        "{:?}",
        seen.iter().map(|r| r.version).collect::<Vec<_>>()
    );
    // The HTTP/2 path went through the proxy too: five calls, at most one
    // tunnel for each HTTP worker's pool (two here), never one a call.
    let tunnels = proxy.tunnels_to(&target);
    assert!(
        (1..=2).contains(&tunnels),
        "{tunnels} tunnels: {}",
        proxy.log()
    );
    let _ = std::fs::remove_file(&ca);
}
