//! Streams with a fixed text size per event, up to tens of megabytes, for tests of
//! clients that stop reading or go away mid-way.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{
    call, chat_body, client, eventually, sse_events, start, stream, BODY, STREAM_PATH,
};

fn texts(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            e["candidates"][0]["content"]["parts"][0]["text"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

#[actix_rt::test]
async fn each_sse_event_carries_the_asked_text_length_starting_with_the_answer() {
    let mock = start().await;
    let headers = [("x-mock-chunks", "4"), ("x-mock-chunk-text-bytes", "100")];
    let r = stream(&mock, "?alt=sse", &headers).await;
    assert_eq!(r.status, 200);
    let events = sse_events(&r.text(), "\r\n\r\n");
    let texts = texts(&events);
    assert_eq!(texts.iter().map(String::len).collect::<Vec<_>>(), [100; 4]);
    let whole = texts.concat();
    assert!(
        whole.starts_with("echo: hello brave new world lorem ipsum"),
        "{whole}"
    );
    let words = u64::try_from(whole.split_whitespace().count()).unwrap();
    let last = &events[3];
    assert_eq!(last["candidates"][0]["finishReason"], "STOP");
    assert_eq!(last["usageMetadata"]["candidatesTokenCount"], words);
    assert_eq!(last["usageMetadata"]["totalTokenCount"], words + 4);
    assert!(events[..3]
        .iter()
        .all(|e| e["candidates"][0].get("finishReason").is_none()));
    mock.stop().await;
}

#[actix_rt::test]
async fn the_json_array_and_openai_streams_take_the_configured_text_length_too() {
    let mock = start().await;
    mock.update_config(|c| {
        c.chunk_text_bytes = Some(64);
        c.chunks = 5;
    });
    let array = stream(&mock, "", &[]).await;
    let elements = array.json().as_array().unwrap().clone();
    assert_eq!(
        texts(&elements).iter().map(String::len).collect::<Vec<_>>(),
        [64; 5]
    );

    let body = chat_body("gemini-2.5-flash", "hi").replacen('{', r#"{"stream":true,"#, 1);
    let r = call(
        &mock,
        "POST",
        "/v1beta/openai/chat/completions",
        &[("authorization", "Bearer k")],
        Some(&body),
    )
    .await;
    assert!(r.text().ends_with("data: [DONE]\n\n"));
    let deltas: Vec<usize> = r
        .text()
        .split_terminator("\n\n")
        .filter(|e| *e != "data: [DONE]")
        .map(|e| {
            let v: Value = serde_json::from_str(e.strip_prefix("data: ").unwrap()).unwrap();
            v["choices"][0]["delta"]["content"].as_str().unwrap().len()
        })
        .collect();
    assert_eq!(deltas, [64; 5]);

    let header = stream(&mock, "?alt=sse", &[("x-mock-chunk-text-bytes", "10")]).await;
    let events = sse_events(&header.text(), "\r\n\r\n");
    assert_eq!(
        texts(&events).iter().map(String::len).collect::<Vec<_>>(),
        [10; 5]
    );
    mock.stop().await;
}

#[actix_rt::test]
async fn a_large_stream_arrives_whole_when_the_client_reads_it_all() {
    let mock = start().await;
    let url = format!("{}{STREAM_PATH}?alt=sse", mock.base_url());
    let mut res = client()
        .post(url)
        .insert_header(("x-goog-api-key", "k"))
        .insert_header(("x-mock-chunks", "200"))
        .insert_header(("x-mock-chunk-text-bytes", "16384"))
        .send_body(BODY)
        .await
        .unwrap();
    let mut received = 0usize;
    let mut tail = Vec::new();
    while let Some(chunk) = res.next().await {
        let chunk = chunk.unwrap();
        received += chunk.len();
        tail = chunk.to_vec();
    }
    assert!(received > 200 * 16384, "{received}");
    let last = String::from_utf8(tail).unwrap();
    assert!(
        last.contains("\"finishReason\": \"STOP\""),
        "{}",
        &last[last.len() - 200..]
    );
    eventually("stream completed", || mock.streams_completed() == 1).await;
    assert_eq!(mock.streams_cancelled(), 0);
    mock.stop().await;
}

#[actix_rt::test]
async fn an_80_mb_stream_waits_for_a_client_that_stops_reading_and_counts_its_drop_as_cancelled() {
    let mock = start().await;
    let mut tcp = tokio::net::TcpStream::connect(mock.addr()).await.unwrap();
    let head = format!(
        "POST {STREAM_PATH}?alt=sse HTTP/1.1\r\nhost: 127.0.0.1\r\nx-goog-api-key: k\r\n\
         x-mock-chunks: 5000\r\nx-mock-chunk-text-bytes: 16384\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{BODY}",
        BODY.len()
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let mut received = 0usize;
    while received < 1024 * 1024 {
        let n = tcp.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed after {received} bytes");
        received += n;
    }
    // The client stops reading: the stream waits for it, neither ending nor failing.
    actix_rt::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(mock.in_flight(), 1);
    assert_eq!((mock.streams_completed(), mock.streams_cancelled()), (0, 0));
    drop(tcp);
    eventually("stream cancelled", || mock.streams_cancelled() == 1).await;
    assert_eq!(mock.in_flight(), 0);
    assert_eq!(mock.streams_completed(), 0);
    mock.stop().await;
}

#[actix_rt::test]
async fn the_text_length_can_be_set_and_cleared_through_the_control_route() {
    let mock = start().await;
    let r = call(
        &mock,
        "POST",
        "/__mock/config",
        &[],
        Some(r#"{"chunk_text_bytes":7}"#),
    )
    .await;
    assert_eq!(r.json()["chunk_text_bytes"], 7);
    let events = sse_events(&stream(&mock, "?alt=sse", &[]).await.text(), "\r\n\r\n");
    assert_eq!(
        texts(&events).iter().map(String::len).collect::<Vec<_>>(),
        [7; 3]
    );
    let r = call(
        &mock,
        "POST",
        "/__mock/config",
        &[],
        Some(r#"{"chunk_text_bytes":null}"#),
    )
    .await;
    assert_eq!(r.json()["chunk_text_bytes"], Value::Null);
    let events = sse_events(&stream(&mock, "?alt=sse", &[]).await.text(), "\r\n\r\n");
    assert_eq!(texts(&events).concat(), "echo: hello brave new world");
    mock.stop().await;
}
