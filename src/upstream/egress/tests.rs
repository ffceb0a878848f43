use super::*;
use secrecy::ExposeSecret;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[test]
fn parses_each_kind_of_proxy_url() {
    let cases = [
        (
            "http://proxy.corp:3128",
            Kind::HttpConnect,
            "proxy.corp",
            3128,
            None,
        ),
        (
            "proxy.corp:3128",
            Kind::HttpConnect,
            "proxy.corp",
            3128,
            None,
        ),
        (
            "socks5://10.0.0.1:1080",
            Kind::Socks5,
            "10.0.0.1",
            1080,
            None,
        ),
        ("SOCKS5H://[::1]:1080/", Kind::Socks5h, "[::1]", 1080, None),
        (
            "http://me:s%40cret@p:8080",
            Kind::HttpConnect,
            "p",
            8080,
            Some(("me", "s@cret")),
        ),
        (
            "socks5://me:pw:with:colons@p:1",
            Kind::Socks5,
            "p",
            1,
            Some(("me", "pw:with:colons")),
        ),
    ];
    for (raw, kind, host, port, credentials) in cases {
        let proxy = Proxy::parse(raw).unwrap_or_else(|e| panic!("{raw}: {e}"));
        assert_eq!(proxy.kind, kind, "{raw}");
        assert_eq!(proxy.host, host, "{raw}");
        assert_eq!(proxy.port, port, "{raw}");
        let got = proxy
            .credentials
            .as_ref()
            .map(|c| (c.user.as_str(), c.password.expose_secret()));
        assert_eq!(got, credentials, "{raw}");
    }
}

#[test]
fn refuses_bad_proxy_urls_without_quoting_them() {
    let cases = [
        ("socks4://u:hunter2@p:1080", "unknown proxy scheme"),
        ("https://u:hunter2@p:443", "not supported"),
        ("http://u:hunter2@p", "needs a port"),
        ("http://u:hunter2@p:0", "1 to 65535"),
        ("http://u:hunter2@p:99999", "1 to 65535"),
        ("http://u:hunter2@:8080", "needs a host"),
        ("http://u:hunter2@p:8080/path", "no path"),
        ("http://:hunter2@p:8080", "needs a user"),
        ("http://u:hunter2%zz@p:8080", "percent-encoded"),
    ];
    for (raw, expected) in cases {
        let error = Proxy::parse(raw)
            .err()
            .unwrap_or_else(|| panic!("{raw} parsed"));
        assert!(error.contains(expected), "{raw}: {error}");
        assert!(!error.contains("hunter2"), "{raw}: {error}");
    }
}

#[test]
fn a_proxy_prints_itself_with_its_password_masked() {
    let proxy = Proxy::parse("socks5h://me:hunter2@p:1080").unwrap();
    assert_eq!(proxy.to_string(), "socks5h://me:***@p:1080");
    assert_eq!(format!("{proxy:?}"), "socks5h://me:***@p:1080");
    let egress = Egress::through(vec![proxy, Proxy::parse("http://q:3128").unwrap()]);
    assert_eq!(egress.describe(), "socks5h://me:***@p:1080,http://q:3128");
    assert!(!format!("{egress:?}").contains("hunter2"));
}

#[test]
fn no_proxy_matches_hosts_suffixes_ips_and_star() {
    let cases = [
        (
            "generativelanguage.googleapis.com",
            "generativelanguage.googleapis.com",
            true,
        ),
        ("googleapis.com", "generativelanguage.googleapis.com", true),
        (".googleapis.com", "generativelanguage.googleapis.com", true),
        ("apis.com", "generativelanguage.googleapis.com", false),
        ("localhost, 127.0.0.1", "127.0.0.1", true),
        ("127.0.0.1:8080", "127.0.0.1", true),
        ("::1", "[::1]", true),
        ("[::1]:80", "[::1]", true),
        ("*", "anything.example", true),
        ("", "anything.example", false),
        ("other.example", "anything.example", false),
        ("GOOGLEAPIS.COM", "generativelanguage.googleapis.com", true),
    ];
    for (list, host, expected) in cases {
        assert_eq!(
            exempts(list, host),
            expected,
            "NO_PROXY={list:?} host={host}"
        );
    }
}

#[test]
fn server_keys_are_spread_over_the_proxies_and_client_keys_stick_to_one() {
    let direct = Egress::direct();
    assert_eq!(direct.routes(), 1);
    assert_eq!(direct.route_of_server_key(5), 0);
    assert_eq!(direct.route_of_client_key(b"k"), 0);
    assert!(direct.proxy(0).is_none());

    let proxies = (1..=3)
        .map(|i| Proxy::parse(&format!("http://p{i}:3128")).unwrap())
        .collect();
    let egress = Egress::through(proxies);
    let routes: Vec<usize> = (0..6).map(|i| egress.route_of_server_key(i)).collect();
    assert_eq!(routes, [0, 1, 2, 0, 1, 2]);
    let first = egress.route_of_client_key(b"client-own-key");
    assert!(first < 3);
    assert_eq!(egress.route_of_client_key(b"client-own-key"), first);
    let spread: std::collections::BTreeSet<usize> = (0..64)
        .map(|i| egress.route_of_client_key(format!("key-{i}").as_bytes()))
        .collect();
    assert_eq!(spread.len(), 3, "client keys use every proxy");
}

/// A one-shot fake CONNECT proxy: answers `answer`, then echoes the tunnel.
async fn fake_connect_proxy(answer: &'static str) -> (u16, tokio::task::JoinHandle<String>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            socket.read_exact(&mut byte).await.unwrap();
            head.push(byte[0]);
        }
        // The answer and the tunnel's first bytes in one write: the
        // handshake must leave the latter for whoever reads next.
        socket.write_all(answer.as_bytes()).await.unwrap();
        String::from_utf8(head).unwrap()
    });
    (port, handle)
}

#[actix_rt::test]
async fn connect_asks_for_a_tunnel_with_basic_auth_and_leaves_the_tunnel_bytes_unread() {
    let (port, head) =
        fake_connect_proxy("HTTP/1.1 200 Connection established\r\nVia: fake\r\n\r\nTLS!").await;
    let proxy = Proxy::parse(&format!("http://me:hunter2@127.0.0.1:{port}")).unwrap();
    let mut stream = connect(&proxy, "gemini.example", 443, Duration::from_secs(5))
        .await
        .unwrap();
    let mut first = [0u8; 4];
    stream.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"TLS!");
    let head = head.await.unwrap();
    assert!(
        head.starts_with("CONNECT gemini.example:443 HTTP/1.1\r\n"),
        "{head}"
    );
    // base64("me:hunter2")
    assert!(
        head.contains("Proxy-Authorization: Basic bWU6aHVudGVyMg==\r\n"),
        "{head}"
    );
}

#[actix_rt::test]
async fn a_407_or_another_refusal_says_what_the_proxy_did_without_the_password() {
    for (answer, expected, kind) in [
        (
            "HTTP/1.1 407 Proxy Authentication Required\r\n\r\n",
            "asked for authentication (407)",
            std::io::ErrorKind::PermissionDenied,
        ),
        (
            "HTTP/1.0 403 Forbidden\r\n\r\n",
            "with status 403",
            std::io::ErrorKind::Other,
        ),
        (
            "SSH-2.0-nope\r\n\r\n",
            "not HTTP",
            std::io::ErrorKind::InvalidData,
        ),
    ] {
        let (port, _) = fake_connect_proxy(answer).await;
        let proxy = Proxy::parse(&format!("http://me:hunter2@127.0.0.1:{port}")).unwrap();
        let error = connect(&proxy, "gemini.example", 443, Duration::from_secs(5))
            .await
            .unwrap_err();
        let text = error.to_string();
        assert!(text.contains(expected), "{text}");
        assert_eq!(error.kind(), kind, "{text}");
        assert!(!text.contains("hunter2") && !text.contains("me:"), "{text}");
    }
}

#[actix_rt::test]
async fn a_proxy_that_is_down_is_a_refused_connection() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let proxy = Proxy::parse(&format!("socks5://127.0.0.1:{port}")).unwrap();
    let error = connect(&proxy, "127.0.0.1", 443, Duration::from_secs(5))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::ConnectionRefused);
    assert!(
        error.to_string().contains("egress proxy 127.0.0.1:"),
        "{error}"
    );
}
