//! The Files API: the resumable upload (start, chunks at offsets, query, finalize), the
//! file it makes, and the per-project reads, lists, downloads and deletes.

use std::time::Duration;

use base64::Engine as _;
use gemini_mock::{FileState, MockConfig, MockGemini};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::helpers::{call, send_to, start, Resp, JSON_UTF8};

const GENERATE: &str = "/v1beta/models/gemini-2.5-flash:generateContent";

/// The path and query of an upload URL the mock handed out, for `call`.
fn path_of(url: &str) -> String {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let at = after_scheme.find('/').unwrap();
    after_scheme[at..].to_owned()
}

/// A start request with `headers`, as the SDKs send it.
async fn start_upload(
    mock: &MockGemini,
    path: &str,
    headers: &[(&str, &str)],
    size: usize,
) -> Resp {
    let size = size.to_string();
    let mut all = vec![
        ("x-goog-upload-protocol", "resumable"),
        ("x-goog-upload-command", "start"),
        ("x-goog-upload-header-content-length", size.as_str()),
        ("x-goog-upload-header-content-type", "text/plain"),
        ("content-type", "application/json"),
    ];
    all.extend_from_slice(headers);
    let body = r#"{"file": {"display_name": "notes", "mime_type": "text/plain"}}"#;
    call(mock, "POST", path, &all, Some(body)).await
}

/// Opens an upload with `key` (as `x-goog-api-key`) and answers the URL's path.
async fn open(mock: &MockGemini, key: &str, size: usize) -> String {
    let r = start_upload(
        mock,
        "/upload/v1beta/files",
        &[("x-goog-api-key", key)],
        size,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    path_of(r.header("x-goog-upload-url").unwrap())
}

/// One request to an upload URL, with no key (as python sends chunks).
async fn send(
    mock: &MockGemini,
    url: &str,
    command: &str,
    offset: Option<usize>,
    data: &[u8],
) -> Resp {
    let offset = offset.map(|o| o.to_string());
    let mut headers = vec![("x-goog-upload-command", command)];
    if let Some(o) = &offset {
        headers.push(("x-goog-upload-offset", o.as_str()));
    }
    let method = awc::http::Method::POST;
    send_to(&mock.base_url(), method, url, &headers, data.to_vec()).await
}

/// Uploads `data` in chunks of `chunk` bytes with `key`; answers the final `file`.
pub(crate) async fn upload(mock: &MockGemini, key: &str, data: &[u8], chunk: usize) -> Value {
    let url = open(mock, key, data.len()).await;
    let mut offset = 0;
    loop {
        let end = (offset + chunk).min(data.len());
        let last = end == data.len();
        let command = if last { "upload, finalize" } else { "upload" };
        let r = send(mock, &url, command, Some(offset), &data[offset..end]).await;
        assert_eq!(r.status, 200, "{}", r.text());
        if last {
            assert_eq!(r.header("x-goog-upload-status"), Some("final"));
            return r.json()["file"].clone();
        }
        assert_eq!(r.header("x-goog-upload-status"), Some("active"));
        offset = end;
    }
}

fn file_denied(id: &str) -> String {
    format!(
        "{{\n  \"error\": {{\n    \"code\": 403,\n    \"message\": \"You do not have permission to \
         access the File {id} or it may not exist.\",\n    \"status\": \"PERMISSION_DENIED\"\n  }}\n}}\n"
    )
}

fn id_of(file: &Value) -> String {
    file["name"]
        .as_str()
        .unwrap()
        .strip_prefix("files/")
        .unwrap()
        .to_owned()
}

fn with_file(id: &str) -> String {
    json!({"contents": [{"parts": [
        {"text": "describe"},
        {"fileData": {"file_uri": format!("files/{id}"), "mime_type": "text/plain"}}
    ]}]})
    .to_string()
}

fn with_projects(pairs: &[(&str, &str)]) -> MockConfig {
    MockConfig {
        projects: pairs
            .iter()
            .map(|(k, p)| ((*k).to_owned(), (*p).to_owned()))
            .collect(),
        ..MockConfig::default()
    }
}

#[actix_rt::test]
async fn a_chunked_upload_makes_a_file_with_its_size_and_hash() {
    let mock = start().await;
    let data: Vec<u8> = (0..2500u32).map(|i| (i % 251) as u8).collect();
    let url = open(&mock, "k", data.len()).await;
    assert!(url.starts_with("/upload/v1beta/files?upload_id="), "{url}");
    assert!(url.ends_with("&upload_protocol=resumable"), "{url}");
    let r = send(&mock, &url, "upload", Some(0), &data[..1000]).await;
    assert_eq!(
        (r.status, r.header("x-goog-upload-status")),
        (200, Some("active"))
    );
    let q = send(&mock, &url, "query", None, b"").await;
    assert_eq!(q.status, 200);
    assert_eq!(q.header("x-goog-upload-status"), Some("active"));
    assert_eq!(q.header("x-goog-upload-size-received"), Some("1000"));
    let r = send(&mock, &url, "upload", Some(1000), &data[1000..2000]).await;
    assert_eq!(r.header("x-goog-upload-status"), Some("active"));
    let r = send(&mock, &url, "upload, finalize", Some(2000), &data[2000..]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-goog-upload-status"), Some("final"));
    assert_eq!(r.header("content-type"), Some(JSON_UTF8));
    let file = r.json()["file"].clone();
    let id = id_of(&file);
    assert_eq!(id.len(), 12);
    assert!(id
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
    let hex: String = Sha256::digest(&data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let b64 = base64::engine::general_purpose::STANDARD.encode(hex.as_bytes());
    assert_eq!(file["sizeBytes"], "2500");
    assert_eq!(file["displayName"], "notes");
    assert_eq!(file["mimeType"], "text/plain");
    assert_eq!(file["state"], "ACTIVE");
    assert_eq!(file["source"], "UPLOADED");
    assert_eq!(file["sha256Hash"], b64.as_str());
    assert_eq!(
        file["uri"],
        format!("{}/v1beta/files/{id}", mock.base_url())
    );
    for field in ["createTime", "updateTime", "expirationTime"] {
        assert!(file[field].as_str().unwrap().ends_with('Z'), "{field}");
    }
    let held = mock.files();
    assert_eq!(held.len(), 1);
    assert_eq!((held[0].id.as_str(), held[0].size), (id.as_str(), 2500));
    assert_eq!(
        (held[0].sha256.as_str(), held[0].state),
        (hex.as_str(), FileState::Active)
    );
    assert_eq!(held[0].project, "key:k");

    let got = call(
        &mock,
        "GET",
        &format!("/v1beta/files/{id}"),
        &[("x-goog-api-key", "k")],
        None,
    )
    .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.json(), file);
    let v1 = call(
        &mock,
        "GET",
        &format!("/v1/files/{id}"),
        &[("x-goog-api-key", "k")],
        None,
    )
    .await;
    assert_eq!(
        v1.json()["uri"],
        format!("{}/v1/files/{id}", mock.base_url())
    );
    for path in [
        format!("/v1beta/files/{id}:download?alt=media"),
        format!("/download/v1beta/files/{id}:download?alt=media"),
    ] {
        let d = call(&mock, "GET", &path, &[("x-goog-api-key", "k")], None).await;
        assert_eq!(d.status, 200, "{path}");
        assert_eq!(d.header("content-type"), Some("text/plain"));
        assert_eq!(d.body.as_ref(), data.as_slice());
    }
    let r = call(
        &mock,
        "POST",
        GENERATE,
        &[("x-goog-api-key", "k")],
        Some(&with_file(&id)),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());

    // Chunks are recorded without their bytes, and python's carry no key.
    let chunks: Vec<_> = mock
        .requests()
        .into_iter()
        .filter(|r| r.path_and_query.contains("upload_id="))
        .collect();
    assert_eq!(chunks.len(), 4);
    assert!(chunks
        .iter()
        .all(|c| c.body.is_empty() && c.api_key().is_none()));
    mock.stop().await;
}

#[actix_rt::test]
async fn the_start_answers_the_session_url_and_the_protocol_headers() {
    let mock = start().await;
    let r = start_upload(&mock, "/upload/v1/files", &[("x-goog-api-key", "k")], 10).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-goog-upload-status"), Some("active"));
    assert_eq!(r.header("x-goog-upload-chunk-granularity"), Some("8388608"));
    let url = r.header("x-goog-upload-url").unwrap();
    let prefix = format!("{}/upload/v1/files?upload_id=", mock.base_url());
    assert!(url.starts_with(&prefix), "{url}");
    assert!(!url.contains("key="), "{url}");
    // A start authorised by `?key=` gets the key back in the URL.
    let r = start_upload(&mock, "/upload/v1beta/files?key=a%2Bb", &[], 10).await;
    let url = r.header("x-goog-upload-url").unwrap();
    assert!(
        url.ends_with("&upload_protocol=resumable&key=a%2Bb"),
        "{url}"
    );
    mock.update_config(|c| c.upload_url_google = true);
    let r = start_upload(
        &mock,
        "/upload/v1alpha/files",
        &[("x-goog-api-key", "k")],
        10,
    )
    .await;
    let url = r.header("x-goog-upload-url").unwrap();
    assert!(
        url.starts_with(
            "https://generativelanguage.googleapis.com/upload/v1alpha/files?upload_id="
        ),
        "{url}"
    );
    // The session answers on the mock all the same, and the file's uri is Google's.
    let path = path_of(url);
    let r = send(&mock, &path, "upload, finalize", Some(0), b"0123456789").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let uri = r.json()["file"]["uri"].as_str().unwrap().to_owned();
    assert!(
        uri.starts_with("https://generativelanguage.googleapis.com/v1alpha/files/"),
        "{uri}"
    );
    mock.stop().await;
}

#[actix_rt::test]
async fn a_start_follows_the_auth_rules_and_the_protocol() {
    let mock = start().await;
    let r = start_upload(&mock, "/upload/v1beta/files", &[], 10).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["error"]["status"], "PERMISSION_DENIED");
    let r = start_upload(
        &mock,
        "/upload/v1beta/files",
        &[("authorization", "Bearer t")],
        10,
    )
    .await;
    assert_eq!(r.status, 401);
    let r = call(
        &mock,
        "POST",
        "/upload/v1beta/files",
        &[
            ("x-goog-api-key", "k"),
            ("x-goog-upload-protocol", "multipart"),
        ],
        Some("{}"),
    )
    .await;
    assert_eq!(r.status, 400);
    let r = start_upload(&mock, "/upload/v2/files", &[("x-goog-api-key", "k")], 10).await;
    assert_eq!(r.status, 404);
    assert!(mock.files().is_empty());
    mock.stop().await;
}

#[actix_rt::test]
async fn a_wrong_offset_is_refused_and_the_session_goes_on() {
    let mock = start().await;
    let url = open(&mock, "k", 6).await;
    let r = send(&mock, &url, "upload", Some(0), b"abc").await;
    assert_eq!(r.status, 200);
    let r = send(&mock, &url, "upload", Some(1), b"xyz").await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["status"], "INVALID_ARGUMENT");
    assert_eq!(r.header("x-goog-upload-status"), Some("active"));
    assert_eq!(r.header("x-goog-upload-size-received"), Some("3"));
    let r = send(&mock, &url, "upload", None, b"xyz").await;
    assert_eq!(r.status, 400);
    let r = send(&mock, &url, "upload, finalize", Some(3), b"def").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["file"]["sizeBytes"], "6");
    // A repeated finalize gets the final answer again; more bytes do not fit.
    let again = send(&mock, &url, "finalize", None, b"").await;
    assert_eq!(
        (again.status, again.header("x-goog-upload-status")),
        (200, Some("final"))
    );
    assert_eq!(again.json(), r.json());
    let late = send(&mock, &url, "upload", Some(6), b"g").await;
    assert_eq!(
        (late.status, late.header("x-goog-upload-status")),
        (400, Some("final"))
    );
    mock.stop().await;
}

#[actix_rt::test]
async fn unknown_sessions_and_short_uploads_are_refused() {
    let mock = start().await;
    let r = send(
        &mock,
        "/upload/v1beta/files?upload_id=nope&upload_protocol=resumable",
        "upload",
        Some(0),
        b"x",
    )
    .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["status"], "NOT_FOUND");
    assert_eq!(r.header("x-goog-upload-status"), Some("final"));
    let url = open(&mock, "k", 10).await;
    let r = send(&mock, &url, "upload, finalize", Some(0), b"short").await;
    assert_eq!(r.status, 400);
    assert_eq!(r.header("x-goog-upload-status"), Some("final"));
    assert_eq!(send(&mock, &url, "query", None, b"").await.status, 404);
    let r = send(&mock, &url, "bogus", Some(0), b"x").await;
    assert_eq!(r.status, 400);
    assert!(mock.files().is_empty());
    mock.stop().await;
}

#[actix_rt::test]
async fn another_projects_file_is_denied_everywhere() {
    let mock = MockGemini::start(with_projects(&[("a1", "pa"), ("a2", "pa"), ("b", "pb")]))
        .await
        .unwrap();
    let file = upload(&mock, "a1", b"hello file", 4).await;
    let id = id_of(&file);
    let other = [("x-goog-api-key", "b")];
    let same = [("x-goog-api-key", "a2")];
    let denied = file_denied(&id);
    for (method, path) in [
        ("GET", format!("/v1beta/files/{id}")),
        ("GET", format!("/v1beta/files/{id}:download?alt=media")),
        ("DELETE", format!("/v1beta/files/{id}")),
    ] {
        let r = call(&mock, method, &path, &other, None).await;
        assert_eq!(
            (r.status, r.text()),
            (403, denied.clone()),
            "{method} {path}"
        );
    }
    let r = call(&mock, "POST", GENERATE, &other, Some(&with_file(&id))).await;
    assert_eq!((r.status, r.text()), (403, denied.clone()));
    assert_eq!(
        call(&mock, "GET", "/v1beta/files", &other, None)
            .await
            .text(),
        "{}\n"
    );

    let r = call(&mock, "POST", GENERATE, &same, Some(&with_file(&id))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let listed = call(&mock, "GET", "/v1beta/files", &same, None)
        .await
        .json();
    assert_eq!(listed["files"].as_array().map(Vec::len), Some(1));
    assert_eq!(listed["files"][0]["name"], file["name"]);
    let r = call(&mock, "DELETE", &format!("/v1beta/files/{id}"), &same, None).await;
    assert_eq!((r.status, r.json()), (200, json!({})));
    let r = call(&mock, "GET", &format!("/v1beta/files/{id}"), &same, None).await;
    assert_eq!((r.status, r.text()), (403, denied));
    assert!(mock.files().is_empty());
    mock.stop().await;
}

#[actix_rt::test]
async fn lists_are_paged() {
    let mock = start().await;
    for _ in 0..3 {
        upload(&mock, "k", b"x", 1).await;
    }
    let key = [("x-goog-api-key", "k")];
    let first = call(&mock, "GET", "/v1/files?pageSize=2", &key, None)
        .await
        .json();
    assert_eq!(first["files"].as_array().map(Vec::len), Some(2));
    let token = first["nextPageToken"].as_str().unwrap();
    let second = call(
        &mock,
        "GET",
        &format!("/v1/files?pageSize=2&pageToken={token}"),
        &key,
        None,
    )
    .await
    .json();
    assert_eq!(second["files"].as_array().map(Vec::len), Some(1));
    assert!(second.get("nextPageToken").is_none());
    mock.stop().await;
}

#[actix_rt::test]
async fn a_processing_file_is_refused_in_prompts_until_it_is_active() {
    let mock = MockGemini::start(MockConfig {
        file_processing: Duration::from_millis(400),
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let file = upload(&mock, "k", b"video bytes", 100).await;
    assert_eq!(file["state"], "PROCESSING");
    let id = id_of(&file);
    assert_eq!(mock.files()[0].state, FileState::Processing);
    let key = [("x-goog-api-key", "k")];
    let r = call(&mock, "POST", GENERATE, &key, Some(&with_file(&id))).await;
    assert_eq!(r.status, 400);
    let expected = format!(
        "{{\n  \"error\": {{\n    \"code\": 400,\n    \"message\": \"The File {id} is not in an \
         ACTIVE state and usage is not allowed.\",\n    \"status\": \"FAILED_PRECONDITION\"\n  }}\n}}\n"
    );
    assert_eq!(r.text(), expected);
    actix_rt::time::sleep(Duration::from_millis(500)).await;
    let got = call(&mock, "GET", &format!("/v1beta/files/{id}"), &key, None)
        .await
        .json();
    assert_eq!(got["state"], "ACTIVE");
    let r = call(&mock, "POST", GENERATE, &key, Some(&with_file(&id))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    mock.stop().await;
}

#[actix_rt::test]
async fn an_expired_file_is_gone() {
    let mock = MockGemini::start(MockConfig {
        file_ttl: Duration::from_millis(300),
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let id = id_of(&upload(&mock, "k", b"short-lived", 100).await);
    assert_eq!(mock.files().len(), 1);
    actix_rt::time::sleep(Duration::from_millis(400)).await;
    let r = call(
        &mock,
        "GET",
        &format!("/v1beta/files/{id}"),
        &[("x-goog-api-key", "k")],
        None,
    )
    .await;
    assert_eq!((r.status, r.text()), (403, file_denied(&id)));
    assert!(mock.files().is_empty());
    mock.stop().await;
}

#[actix_rt::test]
async fn a_file_too_big_to_keep_is_not_downloadable() {
    let mock = start().await;
    let size = usize::try_from(gemini_mock::KEPT_FILE_BYTES).unwrap() + 1;
    let data = vec![7u8; size];
    let file = upload(&mock, "k", &data, 8 * 1024 * 1024).await;
    assert_eq!(file["sizeBytes"], size.to_string());
    let id = id_of(&file);
    let path = format!("/v1beta/files/{id}:download?alt=media");
    let r = call(&mock, "GET", &path, &[("x-goog-api-key", "k")], None).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["status"], "INVALID_ARGUMENT");
    mock.stop().await;
}

#[actix_rt::test]
async fn control_routes_show_the_files_and_set_the_knobs() {
    let mock = start().await;
    let set = r#"{"upload_url_google": true, "file_processing_ms": 60000, "file_ttl_ms": 3600000, "cache_min_tokens": 5}"#;
    let r = call(&mock, "POST", "/__mock/config", &[], Some(set)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = call(
        &mock,
        "POST",
        "/__mock/config",
        &[],
        Some(r#"{"file_ttl_ms": -1}"#),
    )
    .await;
    assert_eq!(r.status, 400);
    let file = upload(&mock, "k", b"abc", 10).await;
    assert_eq!(file["state"], "PROCESSING");
    let listed = call(&mock, "GET", "/__mock/files", &[], None).await.json();
    assert_eq!(listed[0]["id"], id_of(&file).as_str());
    assert_eq!(listed[0]["project"], "key:k");
    assert_eq!(listed[0]["size"], 3);
    assert_eq!(listed[0]["state"], "PROCESSING");
    let caches = call(&mock, "GET", "/__mock/cached-contents", &[], None).await;
    assert_eq!(caches.json(), json!([]));
    mock.stop().await;
}
