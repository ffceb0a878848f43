//! Gemini's native REST paths through the service (docs/api.md#the-native-gemini-surface): the request goes upstream
//! as the client wrote it, with a server key in `x-goog-api-key` instead of the client's,
//! and Gemini's answer comes back as Gemini wrote it.
//!
//! "As Gemini wrote it" is checked against the mock answering the same request directly:
//! its answers are deterministic except `responseId`, which the comparison maps across.
//!
//! Split by topic: `streaming` (SSE, JSON arrays, timing, cuts), `errors` (Gemini's
//! errors passed through, the service's own in Google's and OpenAI's shapes), and
//! `routes` (models, countTokens, embeddings, the OpenAI-compatible paths).

mod errors;
mod routes;
mod streaming;

use crate::helpers::*;
use awc::http::Method;
use gemini_mock::RecordedRequest;

/// The usual generateContent path, on the version most SDKs use.
const GENERATE: &str = "/v1beta/models/gemini-2.5-flash:generateContent";
/// A client's own Gemini key, sent beside `X-API-KEY`.
const OWN_KEY: &str = "AIzaClientOwnKey0123456789abcdefghijklm";
/// A request body as an SDK writes it (spacing, non-ASCII, escapes), so "unchanged"
/// means unchanged to the byte, not merely the same JSON.
const BODY: &str = "{\"contents\": [{\"parts\": [{\"text\": \"Say \\\"hi\\\" \u{2014} \u{65e5}\u{672c}\u{8a9e}\"}], \"role\": \"user\"}], \"generationConfig\": {\"temperature\": 0.2, \"maxOutputTokens\": 64}}";

/// What an SDK sends besides its key.
const JSON_TYPE: (&str, &str) = ("Content-Type", "application/json");

/// What the mock answers this request when called directly with the server key. The
/// call is left out of the mock's record, so tests see only what the service sent.
async fn mock_answer(app: &TestApp, method: Method, path: &str, body: &str) -> TestResponse {
    let before = app.upstream_requests().len();
    let answer = send_to(
        &app.mock.base_url(),
        method,
        path,
        &[("x-goog-api-key", SERVER_KEY), JSON_TYPE],
        body.to_owned(),
    )
    .await;
    assert_eq!(
        app.upstream_requests().len(),
        before + 1,
        "the direct call is recorded"
    );
    app.mock.reset();
    answer
}

/// The first `responseId` in a body (SSE events and pretty JSON both write `": "`).
fn response_id(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let marker = "\"responseId\": \"";
    let start = text.find(marker)? + marker.len();
    let end = text[start..].find('"')? + start;
    Some(text[start..end].to_owned())
}

/// Asserts two answers are the same bytes once the (random) `responseId` is mapped
/// from one to the other.
fn assert_same_answer(through: &[u8], direct: &[u8]) {
    let through = String::from_utf8(through.to_vec()).expect("UTF-8 answer");
    let direct = String::from_utf8(direct.to_vec()).expect("UTF-8 answer");
    let mapped = match (
        response_id(through.as_bytes()),
        response_id(direct.as_bytes()),
    ) {
        (Some(ours), Some(theirs)) => through.replace(&ours, &theirs),
        _ => through,
    };
    assert_eq!(mapped, direct, "the answer changed on its way through");
}

/// The one request the mock received.
fn only_request(app: &TestApp) -> RecordedRequest {
    let mut sent = app.upstream_requests();
    assert_eq!(sent.len(), 1, "{sent:#?}");
    sent.remove(0)
}

/// docs/api.md#what-is-forwarded: `key` never goes upstream in a URL, whatever the client sent.
fn assert_no_key_in_any_url(app: &TestApp) {
    for sent in app.upstream_requests() {
        assert!(
            !sent.path_and_query.contains("key="),
            "a key in an upstream URL: {}",
            sent.path_and_query
        );
    }
}

/// The client's credentials and the headers the service keeps to itself never go upstream.
fn assert_nothing_private_forwarded(sent: &RecordedRequest) {
    for name in ["authorization", "cookie", "x-server-timeout", "x-api-key"] {
        assert_eq!(sent.header(name), None, "`{name}` went upstream");
    }
    assert!(
        !sent.path_and_query.contains("key="),
        "{}",
        sent.path_and_query
    );
}

#[actix_rt::test]
async fn passes_generate_content_through_on_every_version_with_the_server_key() {
    let app = spawn_app().await;
    for version in ["v1", "v1beta", "v1alpha"] {
        let path = format!("/{version}/models/gemini-2.5-flash:generateContent");
        let direct = mock_answer(&app, Method::POST, &path, BODY).await;
        assert_eq!(direct.status, 200, "{}", direct.text());

        let response = app
            .request(
                Method::POST,
                &format!("{path}?key={CLIENT_KEY}"),
                &[
                    ("x-goog-api-key", CLIENT_KEY),
                    JSON_TYPE,
                    (
                        "x-goog-api-client",
                        "google-genai-sdk/3.6.1 gl-python/3.11.7",
                    ),
                    ("Authorization", "Bearer client-bearer-token"),
                    ("Cookie", "session=client-cookie"),
                    // Gemini refuses deadlines under 10 s: forwarded, this would fail.
                    ("X-Server-Timeout", "5"),
                ],
                BODY,
            )
            .await;

        assert_eq!(response.status, 200, "{version}: {}", response.text());
        assert_eq!(
            response.header("content-type"),
            direct.header("content-type")
        );
        assert_same_answer(&response.body, &direct.body);
        let sent = only_request(&app);
        assert_eq!(sent.method, "POST");
        assert_eq!(sent.path_and_query, path, "version kept, no query");
        assert_eq!(sent.header("x-goog-api-key"), Some(SERVER_KEY));
        assert_eq!(
            sent.header("x-goog-api-client"),
            Some("google-genai-sdk/3.6.1 gl-python/3.11.7")
        );
        assert_nothing_private_forwarded(&sent);
        assert_eq!(sent.body, BODY.as_bytes(), "the body, byte for byte");
        app.mock.reset();
    }
}

#[actix_rt::test]
async fn a_key_in_the_query_authenticates_the_client_and_never_goes_upstream() {
    let app = spawn_app().await;
    let unary = app
        .request(
            Method::POST,
            &format!("{GENERATE}?key={CLIENT_KEY}"),
            &[JSON_TYPE],
            BODY,
        )
        .await;
    assert_eq!(unary.status, 200, "{}", unary.text());
    let stream = app
        .request(
            Method::POST,
            &format!("/v1/models/gemini-2.5-flash:streamGenerateContent?key={CLIENT_KEY}&alt=sse"),
            &[JSON_TYPE],
            BODY,
        )
        .await;
    assert_eq!(stream.status, 200, "{}", stream.text());
    let listed = app
        .request(
            Method::GET,
            &format!("/v1beta/models?pageSize=1&key={CLIENT_KEY}"),
            &[],
            "",
        )
        .await;
    assert_eq!(listed.status, 200, "{}", listed.text());

    let paths: Vec<_> = app
        .upstream_requests()
        .into_iter()
        .map(|sent| {
            assert_eq!(sent.header("x-goog-api-key"), Some(SERVER_KEY));
            sent.path_and_query
        })
        .collect();
    assert_eq!(
        paths,
        [
            GENERATE,
            "/v1/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
            "/v1beta/models?pageSize=1",
        ]
    );
    assert_no_key_in_any_url(&app);
}

#[actix_rt::test]
async fn a_client_with_x_api_key_sends_its_own_gemini_key_upstream() {
    let app = spawn_app().await;
    let response = app
        .request(
            Method::POST,
            GENERATE,
            &[
                ("X-API-KEY", CLIENT_KEY),
                ("x-goog-api-key", OWN_KEY),
                JSON_TYPE,
            ],
            BODY,
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    let sent = only_request(&app);
    assert_eq!(sent.header("x-goog-api-key"), Some(OWN_KEY));
    assert_nothing_private_forwarded(&sent);
}

#[actix_rt::test]
async fn gemini_refusing_a_clients_own_key_reaches_the_client_as_gemini_wrote_it() {
    let app = spawn_app().await;
    app.mock.update_config(|c| {
        c.accepted_keys = Some([SERVER_KEY.to_owned()].into());
    });
    let refused = send_to(
        &app.mock.base_url(),
        Method::POST,
        GENERATE,
        &[("x-goog-api-key", OWN_KEY), JSON_TYPE],
        BODY,
    )
    .await;
    assert_eq!(refused.status, 400, "{}", refused.text());
    app.mock.reset();

    let response = app
        .request(
            Method::POST,
            GENERATE,
            &[
                ("X-API-KEY", CLIENT_KEY),
                ("x-goog-api-key", OWN_KEY),
                JSON_TYPE,
            ],
            BODY,
        )
        .await;

    assert_eq!(response.status, 400);
    assert_eq!(response.body, refused.body, "Gemini's API_KEY_INVALID body");
    assert_eq!(
        response.header("content-type"),
        refused.header("content-type")
    );
    let sent = only_request(&app);
    assert_eq!(
        sent.header("x-goog-api-key"),
        Some(OWN_KEY),
        "a client's own key is never swapped for a server key"
    );
}
