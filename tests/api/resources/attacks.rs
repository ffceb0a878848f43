//! Attacks a client holding a valid key could try on another's resources
//! through the shared server keys, each shut.

use super::files::{chunk, file_id, local_path, start, upload};
use super::*;
use serde_json::json;

/// Starts an upload for `client` whose start body names the file `name`
/// (a bare id, without `files/`).
async fn start_named(app: &TestApp, client: &str, name: &str, size: usize) -> TestResponse {
    let size = size.to_string();
    app.request(
        Method::POST,
        "/upload/v1beta/files",
        &[
            ("x-goog-api-key", client),
            JSON,
            ("X-Goog-Upload-Protocol", "resumable"),
            ("X-Goog-Upload-Command", "start"),
            ("X-Goog-Upload-Header-Content-Length", &size),
            ("X-Goog-Upload-Header-Content-Type", "text/plain"),
        ],
        json!({"file": {"name": name, "mime_type": "text/plain"}}).to_string(),
    )
    .await
}

/// A bare `name` in an upload start would reach Gemini, whose answer (taken,
/// or free) tells whether A's file exists: names are refused alike on the
/// shared keys, before Gemini is asked.
#[actix_rt::test]
async fn a_chosen_file_name_says_nothing_about_anothers_files() {
    let app = spawn_resources(&[]).await;
    let id = file_id(&upload(&app, A, b"A's secret notes", 1024).await);
    let before = app.mock.request_count();
    let probe = start_named(&app, B, &id, 3).await;
    let fresh = start_named(&app, B, "no-such-file-here", 3).await;
    for response in [&probe, &fresh] {
        assert_eq!(response.status, 400, "{}", response.text());
        assert_eq!(code_of(response).as_deref(), Some("INVALID_REQUEST"));
        assert_eq!(response.header("x-goog-upload-status"), Some("final"));
    }
    assert_eq!(
        probe.json()["error"]["message"],
        fresh.json()["error"]["message"]
    );
    assert_eq!(app.mock.request_count(), before, "Gemini was not asked");
}

/// A list shows B none of A's files, and its pages do not count them
/// either: with `pageSize=1`, pages without B's items are read through in
/// one request, and page tokens are sealed (Gemini's own may name a file).
#[actix_rt::test]
async fn list_pages_do_not_count_other_clients_files() {
    let app = spawn_resources(&[]).await;
    for n in 0..4u8 {
        upload(&app, A, &[n; 10], 1024).await;
    }
    let mut pages = 0;
    let mut token: Option<String> = None;
    loop {
        let path = match &token {
            Some(t) => format!("/v1beta/files?pageSize=1&pageToken={t}"),
            None => "/v1beta/files?pageSize=1".to_owned(),
        };
        let page = call(&app, B, Method::GET, &path, "").await;
        assert_eq!(page.status, 200, "{}", page.text());
        assert!(page.json()["files"].is_null());
        pages += 1;
        match page.json()["nextPageToken"].as_str() {
            Some(t) => token = Some(t.to_owned()),
            None => break,
        }
        assert!(pages < 50);
    }
    assert_eq!(pages, 1, "B walked {pages} empty pages");
    // A sees its four, one a page; the tokens are opaque.
    let mut names = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..20 {
        let path = match &token {
            Some(t) => format!("/v1beta/files?pageSize=1&pageToken={t}"),
            None => "/v1beta/files?pageSize=1".to_owned(),
        };
        let page = call(&app, A, Method::GET, &path, "").await;
        assert_eq!(page.status, 200, "{}", page.text());
        let body = page.json();
        names.extend(
            body["files"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|f| f["name"].clone()),
        );
        match body["nextPageToken"].as_str() {
            Some(t) => {
                assert!(t.starts_with("gp2."), "{t}");
                token = Some(t.to_owned());
            }
            None => break,
        }
    }
    assert_eq!(names.len(), 4, "{names:?}");
    let forged = call(
        &app,
        A,
        Method::GET,
        "/v1beta/files?pageToken=gp2.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "",
    )
    .await;
    assert_eq!(
        code_of(&forged).as_deref(),
        Some("INVALID_REQUEST"),
        "{}",
        forged.text()
    );
}

/// A chunk without a key is admitted as the client whose upload it is: it
/// cannot get past that client's spent rate limit.
#[actix_rt::test]
async fn keyless_upload_chunks_are_admitted_as_their_client() {
    let keys = keys_file(
        "review-rate",
        &format!(
            "[defaults]\nrequests_per_minute = 1\nburst = 1\n\n\
             [[client]]\nname = \"a\"\nkey = \"{A}\"\n\n[[client]]\nname = \"b\"\nkey = \"{B}\"\n"
        ),
    );
    let app = spawn_app_with(move |settings| {
        settings.insert("GEMINI_API_KEY".into(), KEYS.join(","));
        settings.insert("API_KEYS".into(), String::new());
        settings.insert("KEYS_FILE".into(), keys);
    })
    .await;
    let started = start(&app, B, "/upload/v1beta/files", 1_000_000).await;
    assert_eq!(started.status, 200, "{}", started.text());
    let path = local_path(
        &app,
        started.header("x-goog-upload-url").unwrap(),
        &app.address,
    );
    // B's budget is spent: a keyed call is refused.
    let refused = call(&app, B, Method::GET, "/v1beta/files", "").await;
    assert_eq!(refused.status, 429, "{}", refused.text());
    let before = app.mock.request_count();
    let mut passed = 0;
    for _ in 0..20 {
        let answer = chunk(&app, &path, "query", 0, b"", None).await;
        if answer.status == 200 {
            passed += 1;
        } else {
            assert_eq!(answer.status, 429, "{}", answer.text());
            assert_eq!(answer.header("x-goog-upload-status"), Some("final"));
        }
    }
    assert_eq!(
        passed,
        0,
        "{} keyless chunk requests reached Gemini past a spent rate limit",
        app.mock.request_count() - before
    );
}

/// Any path ending in `/files/<id>` is checked, whatever its host: which of
/// them Gemini resolves is not known, and one it did would read another
/// client's file through a key that holds it. Prose, and file names Gemini
/// could not have made (`report.pdf`), pass.
#[actix_rt::test]
async fn any_path_to_a_file_is_checked_and_prose_passes() {
    let app = spawn_resources(&[]).await;
    let id = file_id(&upload(&app, A, b"A's secret notes", 1024).await);
    let before = app.mock.request_count();
    for uri in [
        format!("/files/{id}"),
        format!("https://example.com/files/{id}"),
        format!("https://generativelanguage.mtls.googleapis.com/files/{id}"),
    ] {
        let body = json!({"contents": [{"parts": [
            {"fileData": {"fileUri": uri, "mimeType": "text/plain"}}, {"text": "hi"}]}]});
        for _ in 0..3 {
            let answer = call(
                &app,
                B,
                Method::POST,
                "/v1beta/models/gemini-2.5-flash:generateContent",
                body.to_string(),
            )
            .await;
            assert_not_found(&uri, &answer);
        }
    }
    assert_eq!(app.mock.request_count(), before, "none reached Gemini");
    for text in [
        "https://example.com/files/report.pdf",
        "the notes are in /home/alice/files/notes",
    ] {
        let body = json!({"contents": [{"role": "user", "parts": [{"text": text}]}]}).to_string();
        let answer = call(
            &app,
            A,
            Method::POST,
            "/v1beta/models/gemini-2.5-flash:generateContent",
            body,
        )
        .await;
        assert_eq!(answer.status, 200, "{text}: {}", answer.text());
    }
}

/// No body is read before the client key is checked: without a key, even an
/// over-long PATCH gets the 401, not a 413 that would mean it was read.
#[actix_rt::test]
async fn a_cache_patch_reads_no_body_before_the_client_key() {
    let app = spawn_resources(&[("MAX_NATIVE_BODY_BYTES", "1000")]).await;
    let answer = app
        .request(
            Method::PATCH,
            "/v1beta/cachedContents/abc",
            &[JSON],
            vec![b' '; 5000],
        )
        .await;
    assert_eq!(answer.status, 401, "{}", answer.text());
}

/// Many of another client's files ahead of none of this one's: the list
/// reads through them (Gemini's largest pages) and never sends the client to
/// an empty page by a token.
#[actix_rt::test]
async fn a_page_reached_by_a_token_is_never_empty() {
    let app = spawn_resources(&[]).await;
    for n in 0..45u8 {
        upload(&app, B, &[n; 4], 1024).await;
    }
    let mut token: Option<String> = None;
    let mut empty_after_token = 0;
    let mut upstream_lists = Vec::new();
    for _ in 0..10 {
        let path = match &token {
            Some(t) => format!("/v1beta/files?pageSize=1&pageToken={t}"),
            None => "/v1beta/files?pageSize=1".to_owned(),
        };
        let before = app.mock.request_count();
        let page = call(&app, A, Method::GET, &path, "").await;
        upstream_lists.push(app.mock.request_count() - before);
        assert_eq!(page.status, 200, "{}", page.text());
        if token.is_some() && page.json()["files"].is_null() {
            empty_after_token += 1;
        }
        match page.json()["nextPageToken"].as_str() {
            Some(t) => token = Some(t.to_owned()),
            None => break,
        }
    }
    assert_eq!(
        empty_after_token, 0,
        "Gemini lists per request: {upstream_lists:?}"
    );
    assert!(upstream_lists.iter().all(|n| *n <= 3), "{upstream_lists:?}");
}

/// Opening uploads costs nothing at Gemini: a client may hold 1,000 open,
/// and past that its starts are refused, while another client's still go.
#[actix_rt::test]
async fn a_client_may_hold_a_thousand_uploads_open() {
    let app = spawn_resources(&[]).await;
    for n in 0..1_000 {
        let started = start(&app, B, "/upload/v1beta/files", 10).await;
        assert_eq!(started.status, 200, "start {n}: {}", started.text());
    }
    let refused = start(&app, B, "/upload/v1beta/files", 10).await;
    assert_eq!(refused.status, 429, "{}", refused.text());
    assert_eq!(code_of(&refused).as_deref(), Some("RATE_LIMITED"));
    assert_eq!(refused.header("x-goog-upload-status"), Some("final"));
    let other = start(&app, A, "/upload/v1beta/files", 10).await;
    assert_eq!(other.status, 200, "{}", other.text());
}
