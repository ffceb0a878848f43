//! Cleartext HTTP/2 from clients (docs/api.md#http2): an application server
//! may speak HTTP/2 with prior knowledge on the same port as HTTP/1.1 and
//! multiplex its calls over one connection. The client here is the `h2`
//! crate, a complete HTTP/2 implementation.

use crate::helpers::{spawn_app, CLIENT_KEY};
use bytes::Bytes;
use serde_json::{json, Value};

#[actix_rt::test]
async fn one_http2_connection_carries_many_calls_at_once() {
    let app = spawn_app().await;
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", app.port))
        .await
        .expect("connect");
    let (client, connection) = h2::client::handshake(tcp).await.expect("HTTP/2 handshake");
    actix_rt::spawn(async move {
        let _ = connection.await;
    });
    let mut pending = Vec::new();
    for n in 0..10 {
        let mut client = client.clone().ready().await.expect("a stream slot");
        let request = http::Request::post(format!("http://127.0.0.1:{}/gemini-proxy", app.port))
            .header("x-api-key", CLIENT_KEY)
            .header("content-type", "application/json")
            .body(())
            .expect("request");
        let (response, mut body) = client.send_request(request, false).expect("send");
        let prompt = json!({"prompt": format!("call number {n}")}).to_string();
        body.send_data(Bytes::from(prompt), true).expect("body");
        pending.push((n, response));
    }
    // All ten were in flight on one connection before any answer was read.
    for (n, response) in pending {
        let response = response.await.expect("a response");
        assert_eq!(response.status(), 200);
        assert_eq!(response.version(), http::Version::HTTP_2);
        let mut body = response.into_body();
        let mut bytes = Vec::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.expect("data");
            let _ = body.flow_control().release_capacity(chunk.len());
            bytes.extend_from_slice(&chunk);
        }
        let answer: Value = serde_json::from_slice(&bytes).expect("JSON");
        assert_eq!(
            answer["data"]["response"],
            format!("echo: call number {n}"),
            "{answer}"
        );
    }
    // HTTP/1.1 still works on the same port.
    let health = app
        .request(awc::http::Method::GET, "/health", &[], "")
        .await;
    assert_eq!(health.status, 200);
}
