//! The non-HTTP upstream: a port that answers with another protocol's bytes and closes.

use std::time::Duration;

use gemini_mock::start_not_http;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::BODY;

fn addr_of(base_url: &str) -> String {
    base_url.trim_start_matches("http://").to_owned()
}

#[actix_rt::test]
async fn it_answers_each_connection_with_an_ssh_banner_and_binary_then_closes() {
    let upstream = start_not_http().await.unwrap();
    let base = upstream.base_url();
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");
    assert_eq!(upstream.connections(), 0);
    for n in 1..=2 {
        let mut tcp = tokio::net::TcpStream::connect(addr_of(&base))
            .await
            .unwrap();
        let request = format!(
            "POST /v1beta/models/gemini-2.5-flash:generateContent HTTP/1.1\r\nhost: x\r\n\
             content-length: {}\r\n\r\n{BODY}",
            BODY.len()
        );
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut got = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(2), tcp.read_to_end(&mut got));
        read.await.expect("the connection is closed").unwrap();
        assert!(got.starts_with(b"SSH-2.0-OpenSSH_9.6\r\n"), "{got:?}");
        assert!(
            got.len() > 21 && got.contains(&0),
            "binary follows the banner"
        );
        assert!(!got.windows(5).any(|w| w == b"HTTP/"));
        assert_eq!(upstream.connections(), n);
    }
    upstream.stop().await;
}

#[actix_rt::test]
async fn an_http_client_gets_an_error_and_one_connection_is_counted() {
    let upstream = start_not_http().await.unwrap();
    let url = format!(
        "{}/v1beta/models/gemini-2.5-flash:generateContent",
        upstream.base_url()
    );
    let res = awc::Client::builder()
        .timeout(Duration::from_secs(5))
        .finish()
        .post(url)
        .insert_header(("x-goog-api-key", "k"))
        .send_body(BODY)
        .await;
    assert!(res.is_err(), "{:?}", res.map(|r| r.status()));
    assert_eq!(upstream.connections(), 1);
    upstream.stop().await;
}

#[actix_rt::test]
async fn stopping_or_dropping_it_closes_the_port() {
    let upstream = start_not_http().await.unwrap();
    let addr = addr_of(&upstream.base_url());
    upstream.stop().await;
    assert!(tokio::net::TcpStream::connect(&addr).await.is_err());

    let upstream = start_not_http().await.unwrap();
    let addr = addr_of(&upstream.base_url());
    drop(upstream);
    // The accept task ends at its next poll, once this task yields.
    let mut refused = false;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(&addr).await.is_err() {
            refused = true;
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(refused, "the port is still open after drop");
}
