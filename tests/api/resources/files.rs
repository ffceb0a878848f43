//! Files: the resumable upload through the service (the upload URL rewritten
//! to point at it, keyless chunks authorised by the upload id for the client
//! that started it, streamed on the key that started it), then the file used,
//! listed, downloaded and deleted on that key, by that client only.

use super::*;
use serde_json::json;

/// Starts an upload of `size` bytes as the python SDK does; answers the upload URL.
pub async fn start(app: &TestApp, client: &str, path: &str, size: usize) -> TestResponse {
    let size = size.to_string();
    app.request(
        Method::POST,
        path,
        &[
            ("x-goog-api-key", client),
            JSON,
            ("X-Goog-Upload-Protocol", "resumable"),
            ("X-Goog-Upload-Command", "start"),
            ("X-Goog-Upload-Header-Content-Length", &size),
            ("X-Goog-Upload-Header-Content-Type", "text/plain"),
        ],
        json!({"file": {"display_name": "notes.txt", "mime_type": "text/plain"}}).to_string(),
    )
    .await
}

/// The path and query of an upload URL the service handed out, after
/// checking that it points at the service and carries no key.
pub fn local_path(app: &TestApp, url: &str, origin: &str) -> String {
    let rest = url
        .strip_prefix(origin)
        .unwrap_or_else(|| panic!("{url} points at {origin}"));
    assert!(!url.contains("key="), "{url}");
    assert!(rest.starts_with("/upload/"), "{url}");
    let _ = app;
    rest.to_owned()
}

/// Sends one chunk as the python SDK does (no key at all).
pub async fn chunk(
    app: &TestApp,
    path: &str,
    command: &str,
    offset: usize,
    data: &[u8],
    key: Option<&str>,
) -> TestResponse {
    let offset = offset.to_string();
    let mut headers = vec![
        ("X-Goog-Upload-Command", command),
        ("X-Goog-Upload-Offset", offset.as_str()),
        JSON,
    ];
    if let Some(key) = key {
        headers.push(("x-goog-api-key", key));
    }
    app.request(Method::POST, path, &headers, data.to_vec())
        .await
}

/// A file's bare id (`files/<id>` without the prefix).
pub fn file_id(file: &serde_json::Value) -> String {
    let name = file["name"].as_str().expect("a file name");
    name.strip_prefix("files/").expect("files/<id>").to_owned()
}

/// Uploads `data` in chunks of `chunk_size` for `client`; answers the file.
pub async fn upload(
    app: &TestApp,
    client: &str,
    data: &[u8],
    chunk_size: usize,
) -> serde_json::Value {
    let started = start(app, client, "/upload/v1beta/files", data.len()).await;
    assert_eq!(started.status, 200, "{}", started.text());
    let url = started
        .header("x-goog-upload-url")
        .expect("an upload URL")
        .to_owned();
    let path = local_path(app, &url, &app.address);
    let mut offset = 0;
    loop {
        let end = (offset + chunk_size).min(data.len());
        let last = end == data.len();
        let command = if last { "upload, finalize" } else { "upload" };
        let answer = chunk(app, &path, command, offset, &data[offset..end], None).await;
        assert_eq!(answer.status, 200, "{}", answer.text());
        if last {
            assert_eq!(answer.header("x-goog-upload-status"), Some("final"));
            return answer.json()["file"].clone();
        }
        assert_eq!(answer.header("x-goog-upload-status"), Some("active"));
        offset = end;
    }
}

fn generate_with_file(uri: &str) -> String {
    json!({"contents": [{"role": "user", "parts": [
        {"fileData": {"fileUri": uri, "mimeType": "text/plain"}},
        {"text": "what does it say?"}
    ]}]})
    .to_string()
}

const GENERATE: &str = "/v1beta/models/gemini-2.5-flash:generateContent";

#[actix_rt::test]
async fn an_upload_in_chunks_makes_a_file_used_on_the_key_that_holds_it() {
    let app = spawn_resources(&[]).await;
    for round in 0..3 {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8 + round).collect();
        let before = app.upstream_requests().len();
        let file = upload(&app, A, &data, 128 * 1024).await;
        let name = file["name"].as_str().unwrap().to_owned();
        let id = name.strip_prefix("files/").unwrap().to_owned();
        let held = app
            .mock
            .files()
            .into_iter()
            .find(|f| f.id == id)
            .expect("the mock holds the file");
        assert_eq!(held.size, data.len() as u64);
        let key = held.project.strip_prefix("key:").unwrap().to_owned();
        // The start and every chunk of this upload went out with its key.
        let upload_calls: Vec<_> = app.upstream_requests().split_off(before);
        let chunks = upload_calls
            .iter()
            .filter(|r| r.path_and_query.contains("upload_id="))
            .count();
        assert_eq!(chunks, 3, "300,000 bytes in chunks of 128 KiB");
        assert_eq!(upload_calls.len(), chunks + 1, "the start and its chunks");
        assert!(
            upload_calls.iter().all(|r| r.api_key() == Some(&key)),
            "every request of this upload carried its key"
        );
        let uri = file["uri"].as_str().unwrap().to_owned();
        for (what, body) in [
            ("the uri", generate_with_file(&uri)),
            ("the name, snake_case", json!({"contents": [{"parts": [{"file_data": {"file_uri": name, "mime_type": "text/plain"}}, {"text": "hi"}]}]}).to_string()),
        ] {
            let generated = call(&app, A, Method::POST, GENERATE, body).await;
            assert_eq!(generated.status, 200, "{what}: {}", generated.text());
            let last = app.upstream_requests().pop().unwrap();
            assert_eq!(last.api_key(), Some(key.as_str()), "{what}: generateContent went out with the file's key");
        }
        let got = call(&app, A, Method::GET, &format!("/v1beta/{name}"), "").await;
        assert_eq!(got.status, 200, "{}", got.text());
        assert_eq!(got.json()["name"], name.as_str());
        assert_eq!(
            app.upstream_requests().pop().unwrap().api_key(),
            Some(key.as_str())
        );
        let downloaded = call(
            &app,
            A,
            Method::GET,
            &format!("/v1beta/{name}:download?alt=media"),
            "",
        )
        .await;
        assert_eq!(downloaded.status, 200, "{}", downloaded.text());
        assert_eq!(
            downloaded.body.as_ref(),
            data.as_slice(),
            "the bytes came back whole"
        );
    }
    // The list shows A's three files, whichever keys hold them.
    let listed = call(&app, A, Method::GET, "/v1beta/files?pageSize=100", "").await;
    let mut names = Vec::new();
    let mut page = listed;
    for _ in 0..10 {
        assert_eq!(page.status, 200, "{}", page.text());
        let body = page.json();
        names.extend(
            body["files"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|f| f["name"].as_str().unwrap().to_owned()),
        );
        let Some(next) = body["nextPageToken"].as_str() else {
            break;
        };
        page = call(
            &app,
            A,
            Method::GET,
            &format!("/v1beta/files?pageSize=100&pageToken={next}"),
            "",
        )
        .await;
    }
    assert_eq!(names.len(), 3, "{names:?}");
    let gone = call(
        &app,
        A,
        Method::DELETE,
        &format!("/v1beta/{}", names[0]),
        "",
    )
    .await;
    assert_eq!(gone.status, 200, "{}", gone.text());
    assert_not_found(
        "a deleted file",
        &call(&app, A, Method::GET, &format!("/v1beta/{}", names[0]), "").await,
    );
}

#[actix_rt::test]
async fn another_client_cannot_get_use_list_delete_or_continue_a_file() {
    let app = spawn_resources(&[]).await;
    let data = vec![7u8; 10_000];
    let file = upload(&app, A, &data, 4096).await;
    let name = file["name"].as_str().unwrap().to_owned();
    let id = name.strip_prefix("files/").unwrap().to_owned();
    let uri = file["uri"].as_str().unwrap().to_owned();
    // A second upload of A's, left open, for B to push chunks into.
    let open = start(&app, A, "/upload/v1beta/files", 100).await;
    let open_path = local_path(
        &app,
        open.header("x-goog-upload-url").unwrap(),
        &app.address,
    );
    let before = app.mock.request_count();
    let escaped = format!(
        r#"{{"contents":[{{"parts":[{{"fileData":{{"fileUri":"\u0066iles/{id}","mimeType":"text/plain"}}}}]}}]}}"#
    );
    for (what, response) in [
        (
            "get",
            call(&app, B, Method::GET, &format!("/v1beta/{name}"), "").await,
        ),
        (
            "get on v1",
            call(&app, B, Method::GET, &format!("/v1/{name}"), "").await,
        ),
        (
            "delete",
            call(&app, B, Method::DELETE, &format!("/v1beta/{name}"), "").await,
        ),
        (
            "download",
            call(
                &app,
                B,
                Method::GET,
                &format!("/v1beta/{name}:download?alt=media"),
                "",
            )
            .await,
        ),
        (
            "download path",
            call(
                &app,
                B,
                Method::GET,
                &format!("/download/v1beta/{name}:download?alt=media"),
                "",
            )
            .await,
        ),
        (
            "generate with its uri",
            call(&app, B, Method::POST, GENERATE, generate_with_file(&uri)).await,
        ),
        (
            "generate with its name",
            call(&app, B, Method::POST, GENERATE, generate_with_file(&name)).await,
        ),
        (
            "generate, the name escaped",
            call(&app, B, Method::POST, GENERATE, escaped).await,
        ),
        (
            "generate, percent-encoded",
            call(
                &app,
                B,
                Method::POST,
                GENERATE,
                generate_with_file(&format!("%66iles/{id}")),
            )
            .await,
        ),
        (
            "count tokens",
            call(
                &app,
                B,
                Method::POST,
                "/v1beta/models/gemini-2.5-flash:countTokens",
                generate_with_file(&name),
            )
            .await,
        ),
        (
            "a chunk into A's upload with B's key",
            chunk(&app, &open_path, "upload, finalize", 0, &[1; 100], Some(B)).await,
        ),
    ] {
        assert_not_found(what, &response);
    }
    assert_eq!(
        app.mock.request_count(),
        before,
        "none of B's calls reached Gemini"
    );
    let b_list = call(&app, B, Method::GET, "/v1beta/files", "").await;
    assert_eq!(b_list.status, 200, "{}", b_list.text());
    assert!(
        b_list.json()["files"].is_null(),
        "B sees none of A's files: {}",
        b_list.text()
    );
    // A finishes its upload.
    let finished = chunk(&app, &open_path, "upload, finalize", 0, &[1; 100], None).await;
    assert_eq!(finished.status, 200, "{}", finished.text());
}

#[actix_rt::test]
async fn upload_urls_point_at_the_service_and_never_carry_a_key() {
    let app = spawn_resources(&[]).await;
    app.mock.update_config(|c| c.upload_url_google = true);
    // A start with `?key=`: Gemini's URL then carries the key.
    let started = app
        .request(
            Method::POST,
            &format!("/upload/v1/files?key={A}"),
            &[
                JSON,
                ("X-Goog-Upload-Protocol", "resumable"),
                ("X-Goog-Upload-Command", "start"),
                ("X-Goog-Upload-Header-Content-Length", "5"),
            ],
            json!({"file": {}}).to_string(),
        )
        .await;
    assert_eq!(started.status, 200, "{}", started.text());
    let url = started.header("x-goog-upload-url").unwrap().to_owned();
    let path = local_path(&app, &url, &app.address);
    assert!(path.starts_with("/upload/v1/files?upload_id="), "{path}");
    assert!(path.ends_with("&upload_protocol=resumable"), "{path}");
    assert_eq!(started.header("x-goog-upload-status"), Some("active"));
    let done = chunk(&app, &path, "upload, finalize", 0, b"hello", None).await;
    assert_eq!(done.status, 200, "{}", done.text());
    // Gemini's own upload id never reaches the client (with it, chunks could
    // go to Gemini directly, past the service's limits): it is sealed.
    let upstream = app
        .upstream_requests()
        .into_iter()
        .rfind(|r| r.path_and_query.contains("upload_id="))
        .unwrap();
    let theirs = upstream.path_and_query.split("upload_id=").nth(1).unwrap();
    let theirs = theirs.split('&').next().unwrap();
    assert!(!path.contains(theirs), "{path} shows Gemini's {theirs}");
    // A token the service did not seal is no upload.
    let forged = path.replace("upload_id=gp2.", "upload_id=gp2.A");
    assert_not_found(
        "a forged upload token",
        &chunk(&app, &forged, "query", 0, b"", None).await,
    );

    let public = spawn_resources(&[("PUBLIC_BASE_URL", "https://gemini.example.com/")]).await;
    let started = start(&public, A, "/upload/v1beta/files", 5).await;
    let url = started.header("x-goog-upload-url").unwrap();
    assert!(
        url.starts_with("https://gemini.example.com/upload/v1beta/files?upload_id="),
        "{url}"
    );
}

#[actix_rt::test]
async fn bad_uploads_get_clear_errors_that_end_the_sdks_retries() {
    let app = spawn_resources(&[("MAX_UPLOAD_BYTES", "1000")]).await;
    let too_big = start(&app, A, "/upload/v1beta/files", 1001).await;
    assert_eq!(too_big.status, 413, "{}", too_big.text());
    assert_eq!(too_big.header("x-goog-upload-status"), Some("final"));
    assert_eq!(too_big.json()["error"]["status"], "INVALID_ARGUMENT");

    let started = start(&app, A, "/upload/v1beta/files", 900).await;
    let path = local_path(
        &app,
        started.header("x-goog-upload-url").unwrap(),
        &app.address,
    );
    let over = chunk(&app, &path, "upload, finalize", 500, &[0; 600], None).await;
    assert_eq!(over.status, 413, "{}", over.text());
    assert_eq!(over.header("x-goog-upload-status"), Some("final"));

    // Gemini's own answer to a wrong offset comes back as it came.
    let wrong = chunk(&app, &path, "upload", 100, &[0; 10], None).await;
    assert_eq!(wrong.status, 400, "{}", wrong.text());
    assert_eq!(wrong.json()["error"]["status"], "INVALID_ARGUMENT");
    assert!(wrong.header("x-goog-upload-status").is_some());

    for (what, path) in [
        (
            "an unknown upload id",
            "/upload/v1beta/files?upload_id=nobody-knows-this&upload_protocol=resumable",
        ),
        (
            "a malformed upload id",
            "/upload/v1beta/files?upload_id=a%2Fb%3Ac&upload_protocol=resumable",
        ),
    ] {
        let response = chunk(&app, path, "upload", 0, b"x", None).await;
        assert_not_found(what, &response);
        assert_eq!(
            response.header("x-goog-upload-status"),
            Some("final"),
            "{what}"
        );
    }
    let not_resumable = app
        .request(
            Method::POST,
            "/upload/v1beta/files",
            &[("x-goog-api-key", A), JSON],
            "{}",
        )
        .await;
    assert_eq!(not_resumable.status, 400, "{}", not_resumable.text());
    assert_eq!(not_resumable.header("x-goog-upload-status"), Some("final"));
    assert_eq!(code_of(&not_resumable).as_deref(), Some("INVALID_REQUEST"));
    for (what, path) in [
        ("a malformed file id", "/v1beta/files/NOT_VALID!"),
        (
            "a file id too long",
            &format!("/v1beta/files/{}", "a".repeat(41)),
        ),
        (
            "a cached content id with a slash",
            "/v1beta/cachedContents/a%2Fb",
        ),
    ] {
        assert_not_found(what, &call(&app, A, Method::GET, path, "").await);
    }
}

#[actix_rt::test]
async fn a_three_mib_inline_image_goes_through_generate_content() {
    use base64::Engine;
    let app = spawn_resources(&[]).await;
    let image: Vec<u8> = (0..3 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let data = base64::engine::general_purpose::STANDARD.encode(&image);
    let body = json!({"contents": [{"role": "user", "parts": [
        {"inlineData": {"mimeType": "image/png", "data": data}},
        {"text": "describe the picture"}
    ]}]})
    .to_string();
    let answered = call(&app, A, Method::POST, GENERATE, body.clone()).await;
    assert_eq!(answered.status, 200, "{}", answered.text());
    let sent = app.upstream_requests().pop().unwrap();
    assert_eq!(sent.body.len(), body.len(), "the body went upstream whole");
    assert_eq!(sent.body.as_ref(), body.as_bytes());
}

#[actix_rt::test]
async fn gemini_forgetting_a_file_is_the_requests_failure_not_the_keys() {
    let app = spawn_resources(&[]).await;
    let file = upload(&app, A, b"short-lived", 64).await;
    let name = file["name"].as_str().unwrap().to_owned();
    let id = name.strip_prefix("files/").unwrap();
    let held = app.mock.files().into_iter().find(|f| f.id == id).unwrap();
    let key = held.project.strip_prefix("key:").unwrap().to_owned();
    // Deleted behind the service's back (Gemini lost it, or it expired early).
    let deleted = awc::Client::default()
        .delete(format!("{}/v1beta/{name}", app.mock.base_url()))
        .insert_header(("x-goog-api-key", key))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 200);
    // Gemini no longer has it: its 403 comes back, and the key stays in rotation.
    let used = call(&app, A, Method::POST, GENERATE, generate_with_file(&name)).await;
    assert_eq!(used.status, 403, "{}", used.text());
    assert_eq!(used.json()["error"]["status"], "PERMISSION_DENIED");
    let metrics = app.metrics().await;
    for key in 0..KEYS.len() {
        assert_eq!(
            metric_value(
                &metrics,
                &format!("gemini_proxy_upstream_key_available{{key=\"{key}\"}}")
            ),
            Some(1.0),
            "key {key}: {metrics}"
        );
    }
}

#[actix_rt::test]
async fn a_file_whose_key_gemini_refuses_answers_the_services_own_error() {
    let app = spawn_resources(&[]).await;
    let file = upload(&app, A, b"held by one key", 64).await;
    let name = file["name"].as_str().unwrap().to_owned();
    let id = name.strip_prefix("files/").unwrap();
    let held = app.mock.files().into_iter().find(|f| f.id == id).unwrap();
    let key = held.project.strip_prefix("key:").unwrap().to_owned();
    app.mock.update_config(|c| {
        c.key_refusals
            .insert(key.clone(), gemini_mock::KeyRefusal::Suspended);
    });
    let calls = app.mock.request_count();
    let used = call(&app, A, Method::POST, GENERATE, generate_with_file(&name)).await;
    assert_eq!(
        code_of(&used).as_deref(),
        Some("UPSTREAM_AUTH_ERROR"),
        "{}",
        used.text()
    );
    assert!(
        !used.text().contains(&key[..12]),
        "Gemini's body quoting the key never comes back"
    );
    // One attempt: no other key could reach the file.
    assert_eq!(app.mock.request_count(), calls + 1);
}

#[actix_rt::test]
async fn a_chunk_without_a_content_length_is_streamed_as_it_comes() {
    let app = spawn_resources(&[("MAX_UPLOAD_BYTES", "100000")]).await;
    let started = start(&app, A, "/upload/v1beta/files", 30_000).await;
    let url = started.header("x-goog-upload-url").unwrap().to_owned();
    let send = |pieces: usize, command: &'static str| {
        let url = url.clone();
        async move {
            let body = futures_util::stream::iter(
                (0..pieces)
                    .map(|_| Ok::<_, actix_web::Error>(bytes::Bytes::from(vec![1u8; 10_000]))),
            );
            let mut response = awc::Client::default()
                .post(url)
                .insert_header(("X-Goog-Upload-Command", command))
                .insert_header(("X-Goog-Upload-Offset", "0"))
                .send_stream(body)
                .await
                .unwrap();
            let body = response.body().await.unwrap();
            (response.status().as_u16(), response.headers().clone(), body)
        }
    };
    let (status, headers, body) = send(3, "upload, finalize").await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(headers.get("x-goog-upload-status").unwrap(), "final");
    let file: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(file["file"]["sizeBytes"], "30000");

    // Past MAX_UPLOAD_BYTES without a declared length: cut when it gets there.
    let started = start(&app, A, "/upload/v1beta/files", 90_000).await;
    let url = started.header("x-goog-upload-url").unwrap().to_owned();
    let body = futures_util::stream::iter(
        (0..20).map(|_| Ok::<_, actix_web::Error>(bytes::Bytes::from(vec![1u8; 10_000]))),
    );
    let files_before = app.mock.files().len();
    let mut over = awc::Client::default()
        .post(url)
        .insert_header(("X-Goog-Upload-Command", "upload, finalize"))
        .insert_header(("X-Goog-Upload-Offset", "0"))
        .send_stream(body)
        .await
        .unwrap();
    assert_eq!(over.status().as_u16(), 413, "{:?}", over.body().await);
    assert_eq!(over.headers().get("x-goog-upload-status").unwrap(), "final");
    // The cut body was not taken for a whole one: no file was made of it.
    actix_rt::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(app.mock.files().len(), files_before);
}
