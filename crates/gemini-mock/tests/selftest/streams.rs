//! Streams: SSE and JSON-array framing, pacing, mid-stream failures, cancellation.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::helpers::{
    client, eventually, raw_exchange, sse_events, start, stream, BODY, JSON_UTF8, STREAM_PATH,
};

#[actix_rt::test]
async fn sse_stream_frames_every_event_with_crlf_and_sends_no_done() {
    let mock = start().await;
    let r = stream(&mock, "?alt=sse", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert!(!r.text().contains("[DONE]"));
    assert!(r
        .text()
        .starts_with("data: {\"candidates\": [{\"content\": {\"parts\": "));
    let events = sse_events(&r.text(), "\r\n\r\n");
    assert_eq!(events.len(), 3);
    let text: String = events
        .iter()
        .map(|e| {
            e["candidates"][0]["content"]["parts"][0]["text"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(text, "echo: hello brave new world");
    let reasons: Vec<&Value> = events
        .iter()
        .map(|e| &e["candidates"][0]["finishReason"])
        .collect();
    assert_eq!(reasons, [&Value::Null, &Value::Null, &json!("STOP")]);
    let last = &events[2]["usageMetadata"];
    assert_eq!(
        (
            last["candidatesTokenCount"].clone(),
            last["totalTokenCount"].clone()
        ),
        (json!(5), json!(9))
    );
    let ids: HashSet<&str> = events
        .iter()
        .map(|e| e["responseId"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 1);
    let five = stream(&mock, "?alt=sse", &[("x-mock-chunks", "5")]).await;
    assert_eq!(sse_events(&five.text(), "\r\n\r\n").len(), 5);
    let lf = stream(&mock, "?alt=sse", &[("x-mock-scenario", "lf-framing")]).await;
    assert!(!lf.text().contains('\r'));
    assert_eq!(sse_events(&lf.text(), "\n\n").len(), 3);
    mock.stop().await;
}

#[actix_rt::test]
async fn sse_events_arrive_as_separate_chunks_with_the_chunk_delay() {
    let mock = start().await;
    let url = format!("{}{STREAM_PATH}?alt=sse", mock.base_url());
    let started = Instant::now();
    let mut res = client()
        .post(url)
        .insert_header(("x-goog-api-key", "k"))
        .insert_header(("x-mock-chunk-delay-ms", "60"))
        .send_body(BODY)
        .await
        .unwrap();
    let first = res.next().await.unwrap().unwrap();
    assert!(first.starts_with(b"data: ") && first.ends_with(b"\r\n\r\n"));
    assert_eq!(first.windows(4).filter(|w| w == b"\r\n\r\n").count(), 1);
    while let Some(chunk) = res.next().await {
        chunk.unwrap();
    }
    assert!(started.elapsed() >= Duration::from_millis(120));
    eventually("stream completion", || mock.streams_completed() == 1).await;
    assert_eq!(mock.streams_cancelled(), 0);
    mock.stop().await;
}

#[actix_rt::test]
async fn without_alt_sse_the_stream_is_a_json_array() {
    let mock = start().await;
    let r = stream(&mock, "", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some(JSON_UTF8));
    assert!(r.text().starts_with("[{\n  \"candidates\""));
    assert!(r.text().contains("}\n,\n{"));
    assert!(r.text().ends_with("}\n]"));
    assert_eq!(r.json().as_array().unwrap().len(), 3);
    let err = stream(&mock, "", &[("x-mock-scenario", "503")]).await;
    assert_eq!(err.status, 503);
    assert_eq!(err.json()[0]["error"]["status"], "UNAVAILABLE");
    mock.stop().await;
}

#[actix_rt::test]
async fn stream_midway_error_sends_two_events_then_an_error_event() {
    let mock = start().await;
    let r = stream(
        &mock,
        "?alt=sse",
        &[("x-mock-scenario", "stream-midway-error")],
    )
    .await;
    assert_eq!(r.status, 200);
    let events = sse_events(&r.text(), "\r\n\r\n");
    assert_eq!(events.len(), 3);
    assert_eq!(events[2]["error"]["status"], "INTERNAL");
    assert!(r
        .text()
        .contains("data: {\"error\":{\"code\":500,\"message\":\"An internal error"));
    mock.stop().await;
}

#[actix_rt::test]
async fn stream_drop_closes_the_connection_without_the_last_chunk() {
    let mock = start().await;
    let path = format!("{STREAM_PATH}?alt=sse");
    let (head, body) = raw_exchange(&mock, &path, "none").await;
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    assert!(
        body.ends_with(b"\r\n0\r\n\r\n"),
        "a normal stream ends with the last chunk"
    );

    let (head, body) = raw_exchange(&mock, &path, "stream-drop").await;
    assert!(head.starts_with("http/1.1 200 ok"), "{head}");
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    let body = String::from_utf8(body).unwrap();
    assert_eq!(body.matches("data: ").count(), 2, "{body}");
    assert!(
        body.ends_with("\r\n\r\n\r\n"),
        "cut after a whole event: {body:?}"
    );
    assert!(!body.ends_with("0\r\n\r\n"), "{body:?}");
    eventually("stream counted", || mock.streams_completed() == 2).await;
    mock.stop().await;
}

#[actix_rt::test]
async fn a_stream_the_client_abandons_counts_as_cancelled() {
    let mock = start().await;
    let url = format!("{}{STREAM_PATH}?alt=sse", mock.base_url());
    let mut res = client()
        .post(url)
        .insert_header(("x-goog-api-key", "k"))
        .insert_header(("x-mock-chunk-delay-ms", "300"))
        .send_body(BODY)
        .await
        .unwrap();
    res.next().await.unwrap().unwrap();
    assert_eq!(mock.in_flight(), 1);
    drop(res);
    eventually("stream cancelled", || mock.streams_cancelled() == 1).await;
    assert_eq!(mock.in_flight(), 0);
    assert_eq!(mock.streams_completed(), 0);
    mock.stop().await;
}

#[actix_rt::test]
async fn the_query_is_percent_decoded_so_an_encoded_alt_sse_still_streams_sse() {
    let mock = start().await;
    for query in ["?alt=%73se", "?%61lt=sse", "?alt=sse&key=%6B"] {
        let r = stream(&mock, query, &[]).await;
        assert_eq!(
            r.header("content-type"),
            Some("text/event-stream"),
            "{query}"
        );
        assert_eq!(sse_events(&r.text(), "\r\n\r\n").len(), 3, "{query}");
    }
    for query in [
        "",
        "?alt=json",
        "?%24alt=json%3Benum-encoding%3Dint",
        "?alt=ss%65x",
    ] {
        let r = stream(&mock, query, &[]).await;
        assert_eq!(r.header("content-type"), Some(JSON_UTF8), "{query}");
        assert_eq!(r.json().as_array().map(Vec::len), Some(3), "{query}");
    }
    mock.stop().await;
}
