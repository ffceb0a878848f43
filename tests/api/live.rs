//! The Live API's WebSocket (docs/api.md#the-live-api): refusals before the
//! upgrade, in Google's error shape.

use crate::helpers::{code_of, spawn_app, CLIENT_KEY};
use awc::http::Method;

const PATH: &str = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent";

fn upgrade_headers<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut headers = vec![
        ("connection", "Upgrade"),
        ("upgrade", "websocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];
    headers.extend_from_slice(extra);
    headers
}

/// A path, its headers, and the status and code it must get.
type Case<'a> = (String, Vec<(&'a str, &'a str)>, u16, &'a str);

#[actix_rt::test]
async fn refusals_before_the_upgrade_come_in_googles_shape() {
    let app = spawn_app().await;
    let cases: Vec<Case> = vec![
        (PATH.into(), upgrade_headers(&[]), 401, "UNAUTHORIZED"),
        (
            PATH.into(),
            upgrade_headers(&[("x-goog-api-key", "not-a-client-key")]),
            401,
            "UNAUTHORIZED",
        ),
        // An ephemeral token is never a client key, wherever it comes.
        (
            PATH.into(),
            upgrade_headers(&[("x-goog-api-key", "auth_tokens/abc")]),
            401,
            "UNAUTHORIZED",
        ),
        (
            format!("{PATH}?access_token=auth_tokens/abc"),
            upgrade_headers(&[("x-goog-api-key", CLIENT_KEY)]),
            401,
            "UNAUTHORIZED",
        ),
        (
            PATH.replace("BidiGenerateContent", "BidiGenerateContentConstrained"),
            upgrade_headers(&[("x-goog-api-key", CLIENT_KEY)]),
            401,
            "UNAUTHORIZED",
        ),
        (
            PATH.replace("v1beta", "v9"),
            upgrade_headers(&[("x-goog-api-key", CLIENT_KEY)]),
            404,
            "NOT_FOUND",
        ),
        // A plain GET with a valid key, without the upgrade.
        (
            PATH.into(),
            vec![("x-goog-api-key", CLIENT_KEY)],
            400,
            "INVALID_REQUEST",
        ),
    ];
    for (path, headers, status, code) in cases {
        let response = app.request(Method::GET, &path, &headers, "").await;
        assert_eq!(response.status, status, "{path}: {}", response.text());
        assert_eq!(code_of(&response).as_deref(), Some(code), "{path}");
        let body = response.json();
        assert_eq!(body["error"]["code"], status, "Google's shape: {body}");
    }
    assert!(app.upstream_requests().is_empty(), "nothing reached Gemini");
}

#[actix_rt::test]
async fn the_js_sdks_double_slash_reaches_the_same_route() {
    let app = spawn_app().await;
    let response = app
        .request(Method::GET, &format!("/{PATH}"), &upgrade_headers(&[]), "")
        .await;
    assert_eq!(response.status, 401, "{}", response.text());
    assert_eq!(code_of(&response).as_deref(), Some("UNAUTHORIZED"));
}
