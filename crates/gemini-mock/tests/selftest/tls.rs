//! The mock over TLS: its CA is the only thing a client needs to trust it, ALPN
//! picks the protocol (or refuses a client), and the record says which one each
//! request came in.

use actix_web::http::Version;
use futures_util::StreamExt;
use gemini_mock::testing::tls_client;
use gemini_mock::{Alpn, MockConfig, MockGemini};

use crate::helpers::{BODY, STREAM_PATH};

const GENERATE: &str = "/v1beta/models/gemini-2.5-flash:generateContent";
const BOTH: &[&[u8]] = &[b"h2", b"http/1.1"];

async fn start(alpn: Alpn) -> MockGemini {
    MockGemini::start_tls(MockConfig::default(), alpn)
        .await
        .expect("the TLS mock starts")
}

/// A generateContent over `client`: the status and the HTTP version of the answer.
async fn generate(mock: &MockGemini, client: &awc::Client) -> Result<(u16, Version), String> {
    let mut response = client
        .post(format!("{}{GENERATE}", mock.base_url()))
        .insert_header(("x-goog-api-key", "test-key"))
        .insert_header(("content-type", "application/json"))
        .send_body(BODY)
        .await
        .map_err(|e| e.to_string())?;
    let body = response.body().await.map_err(|e| e.to_string())?;
    let json: serde_json::Value = serde_json::from_slice(&body).expect("a JSON answer");
    assert!(
        json["candidates"][0]["content"]["parts"][0]["text"].is_string(),
        "{json}"
    );
    Ok((response.status().as_u16(), response.version()))
}

#[actix_rt::test]
async fn each_alpn_choice_answers_in_its_protocol_and_the_record_says_which() {
    for (alpn, offered, version) in [
        (Alpn::Both, BOTH, Version::HTTP_2),
        (Alpn::H2, BOTH, Version::HTTP_2),
        (Alpn::Http1, BOTH, Version::HTTP_11),
        (Alpn::Both, &[&b"http/1.1"[..]][..], Version::HTTP_11),
    ] {
        let mock = start(alpn).await;
        let base = mock.base_url();
        assert_eq!(base, format!("https://{}", mock.addr()));
        let ca = mock.ca_pem().expect("a CA with TLS");
        assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"), "{ca}");
        let got = generate(&mock, &tls_client(ca, offered)).await;
        assert_eq!(got, Ok((200, version)), "{alpn:?} offered {offered:?}");
        let recorded = mock.requests();
        assert_eq!(recorded.len(), 1);
        assert_eq!(recorded[0].version, version, "{alpn:?}");
        assert_eq!(recorded[0].path_and_query, GENERATE);
        assert_eq!(recorded[0].api_key(), Some("test-key"));
        mock.stop().await;
    }
}

#[actix_rt::test]
async fn an_h2_only_mock_refuses_a_client_that_offers_http1_only() {
    let mock = start(Alpn::H2).await;
    let client = tls_client(mock.ca_pem().unwrap(), &[b"http/1.1"]);
    let got = generate(&mock, &client).await;
    assert!(got.is_err(), "{got:?}");
    assert_eq!(mock.request_count(), 0);
}

#[actix_rt::test]
async fn a_client_that_does_not_trust_the_mocks_ca_is_refused() {
    let mock = start(Alpn::Both).await;
    let other = start(Alpn::Both).await;
    let client = tls_client(other.ca_pem().unwrap(), BOTH);
    let got = generate(&mock, &client).await;
    let error = got.expect_err("an untrusted certificate");
    assert!(error.to_lowercase().contains("certificate"), "{error}");
    assert_eq!(mock.request_count(), 0);
}

#[actix_rt::test]
async fn a_stream_reads_to_its_end_over_http2() {
    let mock = start(Alpn::Both).await;
    let client = tls_client(mock.ca_pem().unwrap(), BOTH);
    let mut response = client
        .post(format!("{}{STREAM_PATH}?alt=sse", mock.base_url()))
        .insert_header(("x-goog-api-key", "k"))
        .send_body(BODY)
        .await
        .unwrap();
    assert_eq!(response.version(), Version::HTTP_2);
    let mut body = Vec::new();
    while let Some(chunk) = response.next().await {
        body.extend_from_slice(&chunk.unwrap());
    }
    let text = String::from_utf8(body).unwrap();
    assert_eq!(text.matches("data: ").count(), 3, "{text}");
    assert!(text.contains("\"finishReason\": \"STOP\""), "{text}");
    assert_eq!(mock.streams_completed(), 1);
    assert!(mock.ca_pem().is_some());
    assert!(
        crate::helpers::start().await.ca_pem().is_none(),
        "cleartext has no CA"
    );
}
