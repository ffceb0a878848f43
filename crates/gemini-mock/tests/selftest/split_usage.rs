//! `split_usage`: every usage object cut across two body chunks, the bytes unchanged.
//!
//! Each surface is read twice, with and without the knob. The two bodies must be equal
//! byte for byte once the values that change per request are masked, and with the knob
//! the client must see a read that ends right after the usage object's first key.

use std::time::{Duration, Instant};

use awc::http::header::HeaderMap;
use bytes::Bytes;
use futures_util::StreamExt;
use gemini_mock::{MockConfig, MockGemini};
use serde_json::Value;

use crate::helpers::{call, chat_body, client, start, BODY, STREAM_PATH};

const GENERATE: &str = "/v1beta/models/gemini-2.5-flash:generateContent";
const CHAT: &str = "/v1beta/openai/chat/completions";
const SPLIT: (&str, &str) = ("x-mock-split-usage", "1");
/// Where a native usage object is cut: its first key, `promptTokenCount`.
const NATIVE_CUT: &str = "\"promptTokenCount\": ";
/// Where an OpenAI usage object is cut.
const OPENAI_CUT: &str = "\"usage\":{\"prompt_tokens\":";

/// A response read as the client receives it, one body chunk at a time.
struct Reads {
    headers: HeaderMap,
    chunks: Vec<Bytes>,
}

impl Reads {
    fn body(&self) -> Vec<u8> {
        self.chunks.concat()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Reads that end right after `cut` with the next read going on with the number,
    /// after checking that no read holds a whole usage object (its first key and value).
    fn cuts(&self, cut: &str) -> usize {
        for chunk in &self.chunks {
            let text = String::from_utf8_lossy(chunk);
            let whole = text
                .match_indices(cut)
                .any(|(i, _)| text[i + cut.len()..].starts_with(|c: char| c.is_ascii_digit()));
            assert!(!whole, "a read holds a whole usage object: {text}");
        }
        self.chunks
            .windows(2)
            .filter(|w| w[0].ends_with(cut.as_bytes()) && w[1][0].is_ascii_digit())
            .count()
    }
}

async fn read(mock: &MockGemini, path: &str, headers: &[(&str, &str)], body: &str) -> Reads {
    let mut req = client().post(format!("{}{path}", mock.base_url()));
    for header in headers {
        req = req.insert_header(*header);
    }
    let mut res = req
        .send_body(body.to_owned())
        .await
        .expect("request failed");
    assert_eq!(res.status().as_u16(), 200);
    let mut chunks = Vec::new();
    while let Some(chunk) = res.next().await {
        chunks.push(chunk.expect("body failed"));
    }
    Reads {
        headers: res.headers().clone(),
        chunks,
    }
}

/// `body` with the values that differ between two requests masked: Gemini's
/// `responseId`, OpenAI's `id` and `created`.
fn masked(body: &[u8]) -> String {
    let mut text = String::from_utf8(body.to_vec()).unwrap();
    for (prefix, end) in [
        ("\"responseId\": \"", '"'),
        ("\"id\":\"", '"'),
        ("\"created\":", ','),
    ] {
        let mut out = String::with_capacity(text.len());
        let mut rest = text.as_str();
        while let Some(i) = rest.find(prefix) {
            out.push_str(&rest[..i + prefix.len()]);
            out.push('*');
            rest = &rest[i + prefix.len()..];
            rest = &rest[rest.find(end).unwrap()..];
        }
        out.push_str(rest);
        text = out;
    }
    text
}

/// Reads `path` with and without the knob and checks that the bodies match; returns
/// the read with the knob.
async fn split_and_plain(
    mock: &MockGemini,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reads {
    let plain = call(mock, "POST", path, headers, Some(body)).await;
    let mut with_knob = headers.to_vec();
    with_knob.push(SPLIT);
    let split = read(mock, path, &with_knob, body).await;
    assert_eq!(masked(&split.body()), masked(&plain.body), "{path}");
    assert!(split.chunks.len() >= 2, "{} reads", split.chunks.len());
    split
}

#[actix_rt::test]
async fn a_unary_answer_goes_out_chunked_with_its_usage_metadata_cut_between_two_reads() {
    let mock = start().await;
    let key = [("x-goog-api-key", "k")];
    let r = split_and_plain(&mock, GENERATE, &key, BODY).await;
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert_eq!(r.header("content-length"), None);
    assert_eq!(r.cuts(NATIVE_CUT), 1);
    let plain = call(&mock, "POST", GENERATE, &key, Some(BODY)).await;
    assert!(plain
        .header("content-length")
        .unwrap_or_default()
        .parse::<usize>()
        .is_ok());
    mock.stop().await;
}

#[actix_rt::test]
async fn every_sse_event_is_cut_inside_its_usage_metadata_with_crlf_or_lf_framing() {
    let mock = start().await;
    let path = format!("{STREAM_PATH}?alt=sse");
    let started = Instant::now();
    let crlf = split_and_plain(&mock, &path, &[("x-goog-api-key", "k")], BODY).await;
    assert!(started.elapsed() >= Duration::from_millis(3 * 20));
    assert_eq!(crlf.cuts(NATIVE_CUT), 3);
    assert!(crlf.chunks.last().unwrap().ends_with(b"}\r\n\r\n"));

    let lf = [("x-goog-api-key", "k"), ("x-mock-scenario", "lf-framing")];
    let lf = split_and_plain(&mock, &path, &lf, BODY).await;
    assert!(!lf.body().contains(&b'\r'));
    assert_eq!(lf.cuts(NATIVE_CUT), 3);

    let midway = [
        ("x-goog-api-key", "k"),
        ("x-mock-scenario", "stream-midway-error"),
    ];
    let midway = split_and_plain(&mock, &path, &midway, BODY).await;
    assert_eq!(midway.cuts(NATIVE_CUT), 2, "the error event has no usage");
    mock.stop().await;
}

#[actix_rt::test]
async fn every_element_of_the_json_array_stream_is_cut_inside_its_usage_metadata() {
    let mock = start().await;
    let key = [("x-goog-api-key", "k")];
    for query in ["", "?alt=json"] {
        let path = format!("{STREAM_PATH}{query}");
        let r = split_and_plain(&mock, &path, &key, BODY).await;
        assert_eq!(r.cuts(NATIVE_CUT), 3, "{query}");
        let all: Value = serde_json::from_slice(&r.body()).unwrap();
        assert_eq!(all.as_array().map(Vec::len), Some(3));
    }
    mock.stop().await;
}

#[actix_rt::test]
async fn openai_completions_and_embeddings_go_out_chunked_with_their_usage_cut_in_two() {
    let mock = start().await;
    let bearer = [("authorization", "Bearer k")];
    let body = chat_body("gemini-2.5-flash", "hi there");
    let r = split_and_plain(&mock, CHAT, &bearer, &body).await;
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert_eq!(r.header("content-length"), None);
    assert_eq!(r.cuts(OPENAI_CUT), 1);

    let embeddings = r#"{"model":"gemini-embedding-001","input":["a","b"]}"#;
    let path = "/v1beta/openai/embeddings";
    let r = split_and_plain(&mock, path, &bearer, embeddings).await;
    assert_eq!(r.cuts(OPENAI_CUT), 1);
    mock.stop().await;
}

#[actix_rt::test]
async fn an_openai_stream_cuts_the_usage_of_its_last_chunk_and_leaves_done_whole() {
    let mock = start().await;
    let bearer = [("authorization", "Bearer k")];
    let body = chat_body("gemini-2.5-flash", "hi").replacen('{', r#"{"stream":true,"#, 1);
    let r = split_and_plain(&mock, CHAT, &bearer, &body).await;
    assert_eq!(r.cuts(OPENAI_CUT), 1);
    assert!(r.body().ends_with(b"}\n\ndata: [DONE]\n\n"));
    mock.stop().await;
}

#[actix_rt::test]
async fn split_usage_is_set_by_config_or_control_route_and_a_header_can_turn_it_off() {
    let config = MockConfig {
        split_usage: true,
        ..MockConfig::default()
    };
    let mock = MockGemini::start(config).await.unwrap();
    let key = [("x-goog-api-key", "k")];
    let on = read(&mock, GENERATE, &key, BODY).await;
    assert_eq!(on.cuts(NATIVE_CUT), 1);
    let off = [("x-goog-api-key", "k"), ("x-mock-split-usage", "0")];
    let off = call(&mock, "POST", GENERATE, &off, Some(BODY)).await;
    assert!(off
        .header("content-length")
        .unwrap_or_default()
        .parse::<usize>()
        .is_ok());

    let count = "/v1beta/models/gemini-2.5-flash:countTokens";
    let no_usage = call(&mock, "POST", count, &key, Some(BODY)).await;
    assert!(
        no_usage
            .header("content-length")
            .unwrap_or_default()
            .parse::<usize>()
            .is_ok(),
        "an answer without usage is left whole"
    );

    let set = |patch: &'static str| call(&mock, "POST", "/__mock/config", &[], Some(patch));
    let r = set(r#"{"split_usage":false}"#).await;
    assert_eq!(r.json()["split_usage"], false);
    let plain = call(&mock, "POST", GENERATE, &key, Some(BODY)).await;
    assert!(plain
        .header("content-length")
        .unwrap_or_default()
        .parse::<usize>()
        .is_ok());
    assert_eq!(set(r#"{"split_usage":"yes"}"#).await.status, 400);
    let r = set(r#"{"split_usage":true}"#).await;
    assert_eq!(r.json()["split_usage"], true);
    assert_eq!(read(&mock, GENERATE, &key, BODY).await.cuts(NATIVE_CUT), 1);
    mock.stop().await;
}
