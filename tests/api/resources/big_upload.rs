//! The real binary with resources: a 1 GiB upload keeps its memory flat (the
//! bytes are streamed to Gemini as they arrive, at the pace Gemini takes
//! them), and a key Gemini refuses is logged with what it holds.

use super::*;
use crate::helpers::{binary_env, BinaryApp};
use actix_web::body::SizedStream;
use futures_util::stream;

const GIB: u64 = 1024 * 1024 * 1024;
const PIECE: usize = 1024 * 1024;

fn status_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

async fn send_upload(address: &str, size: u64) -> serde_json::Value {
    let client = awc::Client::builder().disable_timeout().finish();
    let mut started = client
        .post(format!("{address}/upload/v1beta/files"))
        .insert_header(("x-goog-api-key", CLIENT_KEY))
        .insert_header(("X-Goog-Upload-Protocol", "resumable"))
        .insert_header(("X-Goog-Upload-Command", "start"))
        .insert_header(("X-Goog-Upload-Header-Content-Length", size.to_string()))
        .insert_header(("Content-Type", "application/json"))
        .send_body(r#"{"file": {"display_name": "big.bin"}}"#)
        .await
        .expect("start answered");
    assert_eq!(started.status(), 200, "{:?}", started.body().await);
    let url = started
        .headers()
        .get("x-goog-upload-url")
        .and_then(|v| v.to_str().ok())
        .expect("an upload URL")
        .to_owned();
    let piece = bytes::Bytes::from(vec![0x5a; PIECE]);
    let pieces = size.div_ceil(PIECE as u64);
    let body = stream::iter((0..pieces).map(move |n| {
        let len = PIECE.min((size - n * PIECE as u64) as usize);
        Ok::<_, actix_web::Error>(piece.slice(..len))
    }));
    let mut finished = client
        .post(url)
        .insert_header(("X-Goog-Upload-Command", "upload, finalize"))
        .insert_header(("X-Goog-Upload-Offset", "0"))
        .send_body(SizedStream::new(size, body))
        .await
        .expect("the upload answered");
    let answer = finished.body().limit(1 << 20).await.expect("a body");
    assert_eq!(
        finished.status(),
        200,
        "{}",
        String::from_utf8_lossy(&answer)
    );
    serde_json::from_slice(&answer).expect("JSON")
}

#[actix_rt::test]
async fn a_one_gib_upload_keeps_the_services_memory_flat() {
    let mock = gemini_mock::MockGemini::start(gemini_mock::MockConfig {
        record: false,
        ..Default::default()
    })
    .await
    .expect("mock");
    let service = BinaryApp::start(&["serve"], &binary_env(&mock));
    let pid = service.child.id();
    // A small upload first, so what the first request allocates is counted before.
    send_upload(&service.address, 4 * PIECE as u64).await;
    let before = status_kb(pid, "VmHWM:");
    let file = send_upload(&service.address, GIB).await;
    let after = status_kb(pid, "VmHWM:");
    assert_eq!(
        file["file"]["sizeBytes"],
        GIB.to_string().as_str(),
        "{file}"
    );
    let id = file["file"]["name"]
        .as_str()
        .unwrap()
        .strip_prefix("files/")
        .unwrap();
    let held = mock
        .files()
        .into_iter()
        .find(|f| f.id == id)
        .expect("the mock got it");
    assert_eq!(held.size, GIB);
    eprintln!(
        "1 GiB upload: the service's peak RSS went from {} MB to {} MB",
        before / 1024,
        after / 1024
    );
    assert!(
        after < before + 64 * 1024,
        "peak RSS grew from {before} kB to {after} kB during a 1 GiB upload"
    );
}

#[actix_rt::test]
async fn a_refused_key_is_logged_with_the_resources_it_holds() {
    let mock = gemini_mock::MockGemini::start(gemini_mock::MockConfig::default())
        .await
        .expect("mock");
    let service = BinaryApp::start(&["serve"], &binary_env(&mock));
    let file = send_upload(&service.address, 4).await;
    let name = file["file"]["name"].as_str().expect("a file").to_owned();
    mock.update_config(|c| {
        c.key_refusals
            .insert(SERVER_KEY.to_owned(), gemini_mock::KeyRefusal::Suspended);
    });
    let body = serde_json::json!({"contents": [{"parts": [
        {"fileData": {"fileUri": name, "mimeType": "text/plain"}}, {"text": "hi"}]}]});
    let mut used = awc::Client::default()
        .post(format!(
            "{}/v1beta/models/gemini-2.5-flash:generateContent",
            service.address
        ))
        .insert_header(("x-goog-api-key", CLIENT_KEY))
        .send_json(&body)
        .await
        .expect("an answer");
    let answer = used.body().await.expect("a body");
    let answer = String::from_utf8_lossy(&answer);
    assert_eq!(used.status(), 502, "{answer}");
    assert!(answer.contains("UPSTREAM_AUTH_ERROR"), "{answer}");
    let started = std::time::Instant::now();
    while !service.logs().contains("while it holds 1 resources") {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{}",
            service.logs()
        );
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !service.logs().contains(SERVER_KEY),
        "the key is never logged"
    );
}
