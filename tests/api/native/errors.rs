//! Errors on the native and OpenAI-compatible paths: Gemini's own passed back as it
//! wrote them (after the retry policy), and the service's own in the shape each
//! surface's SDKs parse (docs/errors.md#the-three-error-shapes).

use super::*;
use serde_json::{json, Value};

/// Checks a body is Google's error shape for this status and error code.
fn assert_google_error(
    what: &str,
    response: &TestResponse,
    status: u16,
    google_status: &str,
    reason: &str,
) {
    assert_eq!(response.status, status, "{what}: {}", response.text());
    assert_eq!(
        response.header("content-type"),
        Some("application/json"),
        "{what}"
    );
    let body = response.json();
    let error = &body["error"];
    assert_eq!(error["code"], status, "{what}: {body}");
    assert_eq!(error["status"], google_status, "{what}: {body}");
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: {body}"
    );
    assert_eq!(
        error["details"],
        json!([{
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": reason,
            "domain": "gemini-proxy",
        }]),
        "{what}: {body}"
    );
}

/// Checks a body is OpenAI's error shape with this error code.
fn assert_openai_error(response: &TestResponse, status: u16, kind: &str, code: &str) {
    assert_eq!(response.status, status, "{}", response.text());
    let body = response.json();
    let error = body["error"].as_object().expect("an error object");
    assert_eq!(
        error.keys().collect::<Vec<_>>(),
        ["code", "message", "type"],
        "{body}"
    );
    assert_eq!(error["code"], code, "{body}");
    assert_eq!(error["type"], kind, "{body}");
    assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
}

#[actix_rt::test]
async fn a_server_keys_quota_answer_is_the_services_own_error_not_geminis() {
    for path in [
        "/v1beta/models/mock-429:generateContent",
        "/v1beta/models/mock-429:streamGenerateContent?alt=sse",
    ] {
        let app = spawn_app().await;
        let response = app
            .request(
                Method::POST,
                &format!("{path}{}key={CLIENT_KEY}", query_joiner(path)),
                &[JSON_TYPE],
                BODY,
            )
            .await;
        assert_google_error(path, &response, 429, "RESOURCE_EXHAUSTED", "QUOTA_ERROR");
        assert_eq!(response.header("retry-after"), Some("26"), "{path}");
        assert_eq!(
            app.upstream_requests().len(),
            1,
            "{path}: one key, one call"
        );
    }
}

#[actix_rt::test]
async fn gemini_errors_before_the_first_byte_come_back_unchanged() {
    struct Case {
        what: &'static str,
        path: &'static str,
        status: u16,
        upstream_calls: usize,
    }
    let cases = [
        Case {
            what: "an unknown model is never retried",
            path: "/v1/models/mock-404:generateContent",
            status: 404,
            upstream_calls: 1,
        },
        Case {
            what: "overloaded: tried three times (two retries), then Gemini's last answer",
            path: "/v1beta/models/mock-503:generateContent",
            status: 503,
            upstream_calls: 3,
        },
        Case {
            what: "a stream overloaded before its first byte is retried like a unary call",
            path: "/v1/models/mock-503:streamGenerateContent?alt=sse",
            status: 503,
            upstream_calls: 3,
        },
        Case {
            what: "a stream that fails before its first byte answers JSON, not SSE",
            path: "/v1beta/models/mock-404:streamGenerateContent?alt=sse",
            status: 404,
            upstream_calls: 1,
        },
    ];
    for case in cases {
        // A fresh service each time: a 429 rests the server key.
        let app = spawn_app().await;
        let direct = mock_answer(&app, Method::POST, case.path, BODY).await;
        assert_eq!(direct.status, case.status, "{}", case.what);

        let response = app
            .request(
                Method::POST,
                &format!("{}{}key={CLIENT_KEY}", case.path, query_joiner(case.path)),
                &[JSON_TYPE],
                BODY,
            )
            .await;

        assert_eq!(response.status, case.status, "{}", case.what);
        assert_eq!(response.body, direct.body, "{}: the body", case.what);
        assert_eq!(
            response.header("content-type"),
            direct.header("content-type"),
            "{}",
            case.what
        );
        assert_eq!(
            app.upstream_requests().len(),
            case.upstream_calls,
            "{}",
            case.what
        );
        assert_no_key_in_any_url(&app);
    }
}

fn query_joiner(path: &str) -> char {
    if path.contains('?') {
        '&'
    } else {
        '?'
    }
}

#[actix_rt::test]
async fn errors_the_service_raises_on_native_paths_use_googles_shape() {
    struct Case {
        what: &'static str,
        method: Method,
        path: &'static str,
        key: &'static str,
        body: String,
        status: u16,
        google_status: &'static str,
        reason: &'static str,
    }
    let case = |what, method, path, key, status, google_status, reason| Case {
        what,
        method,
        path,
        key,
        body: BODY.to_owned(),
        status,
        google_status,
        reason,
    };
    let cases = [
        case(
            "an unknown client key",
            Method::POST,
            GENERATE,
            "not-a-client-key",
            401,
            "UNAUTHENTICATED",
            "UNAUTHORIZED",
        ),
        case(
            "no key at all",
            Method::POST,
            GENERATE,
            "",
            401,
            "UNAUTHENTICATED",
            "UNAUTHORIZED",
        ),
        case(
            "a model id in upper case",
            Method::POST,
            "/v1beta/models/Gemini-2.5-Flash:generateContent",
            CLIENT_KEY,
            400,
            "INVALID_ARGUMENT",
            "INVALID_MODEL",
        ),
        case(
            "a model id with a percent sign",
            Method::POST,
            "/v1beta/models/gemini%2F..:generateContent",
            CLIENT_KEY,
            400,
            "INVALID_ARGUMENT",
            "INVALID_MODEL",
        ),
        case(
            "a method the service does not pass through",
            Method::POST,
            "/v1beta/models/gemini-2.5-flash:deleteModel",
            CLIENT_KEY,
            404,
            "NOT_FOUND",
            "NOT_FOUND",
        ),
        case(
            "an unknown API version",
            Method::POST,
            "/v9/models/gemini-2.5-flash:generateContent",
            CLIENT_KEY,
            404,
            "NOT_FOUND",
            "NOT_FOUND",
        ),
        case(
            "an unknown path under a version",
            Method::GET,
            "/v1beta/corpora",
            CLIENT_KEY,
            404,
            "NOT_FOUND",
            "NOT_FOUND",
        ),
        case(
            "a model call with the wrong HTTP method",
            Method::DELETE,
            GENERATE,
            CLIENT_KEY,
            405,
            "UNIMPLEMENTED",
            "METHOD_NOT_ALLOWED",
        ),
        case(
            "the models list with the wrong HTTP method",
            Method::POST,
            "/v1/models",
            CLIENT_KEY,
            405,
            "UNIMPLEMENTED",
            "METHOD_NOT_ALLOWED",
        ),
        Case {
            body: format!(
                "{{\"contents\": [{{\"parts\": [{{\"text\": \"{}\"}}]}}]}}",
                "a".repeat(21 * 1024 * 1024)
            ),
            ..case(
                "a body over MAX_NATIVE_BODY_BYTES",
                Method::POST,
                GENERATE,
                CLIENT_KEY,
                413,
                "INVALID_ARGUMENT",
                "PAYLOAD_TOO_LARGE",
            )
        },
    ];
    let app = spawn_app().await;
    for case in cases {
        let mut headers = vec![JSON_TYPE];
        if !case.key.is_empty() {
            headers.push(("x-goog-api-key", case.key));
        }
        let response = app
            .request(case.method.clone(), case.path, &headers, case.body)
            .await;
        assert_google_error(
            case.what,
            &response,
            case.status,
            case.google_status,
            case.reason,
        );
        if case.status == 405 {
            assert!(response.header("allow").is_some(), "{}", case.what);
        }
    }
    assert!(app.upstream_requests().is_empty(), "nothing reached Gemini");
}

#[actix_rt::test]
async fn a_client_over_its_rate_limit_gets_googles_resource_exhausted() {
    let app = spawn_app().await;
    let list = format!("/v1beta/models?key={CLIENT_KEY}");
    // API_KEYS clients may send 10 at once (docs/keys-file.md#fields defaults).
    for n in 0..10 {
        let response = app.request(Method::GET, &list, &[], "").await;
        assert_eq!(response.status, 200, "request {n}: {}", response.text());
    }
    let limited = app.request(Method::GET, &list, &[], "").await;

    assert_google_error(
        "the 11th request",
        &limited,
        429,
        "RESOURCE_EXHAUSTED",
        "RATE_LIMITED",
    );
    let retry_after: u64 = limited
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("a Retry-After in whole seconds");
    assert!(retry_after >= 1, "{retry_after}");
    assert_eq!(limited.header("ratelimit-limit"), Some("10"));
    assert_eq!(limited.header("ratelimit-remaining"), Some("0"));
    assert_eq!(app.upstream_requests().len(), 10);
    assert_no_key_in_any_url(&app);
}

#[actix_rt::test]
async fn errors_the_service_raises_on_openai_paths_use_openais_shape() {
    let app = spawn_app().await;
    let chat = "/v1beta/openai/chat/completions";
    let bearer = format!("Bearer {CLIENT_KEY}");
    let chat_body = |model: &str| {
        json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}).to_string()
    };

    let unknown_key = app
        .request(
            Method::POST,
            chat,
            &[("Authorization", "Bearer not-a-client-key"), JSON_TYPE],
            chat_body("gemini-2.5-flash"),
        )
        .await;
    assert_openai_error(&unknown_key, 401, "authentication_error", "UNAUTHORIZED");

    let bad_model = app
        .request(
            Method::POST,
            chat,
            &[("Authorization", &bearer), JSON_TYPE],
            chat_body("../gemini"),
        )
        .await;
    assert_openai_error(&bad_model, 400, "invalid_request_error", "INVALID_MODEL");

    let not_json = app
        .request(
            Method::POST,
            chat,
            &[("Authorization", &bearer), JSON_TYPE],
            "{not json",
        )
        .await;
    assert_openai_error(&not_json, 400, "invalid_request_error", "INVALID_JSON");

    let wrong_method = app
        .request(Method::GET, chat, &[("Authorization", &bearer)], "")
        .await;
    assert_openai_error(
        &wrong_method,
        405,
        "invalid_request_error",
        "METHOD_NOT_ALLOWED",
    );

    let unknown_route = app
        .request(
            Method::GET,
            "/v1beta/openai/files",
            &[("Authorization", &bearer)],
            "",
        )
        .await;
    assert_openai_error(&unknown_route, 404, "not_found_error", "NOT_FOUND");
    assert!(app.upstream_requests().is_empty(), "nothing reached Gemini");
}

#[actix_rt::test]
async fn gemini_errors_on_openai_paths_come_back_unchanged() {
    let app = spawn_app().await;
    let chat = "/v1beta/openai/chat/completions";
    let body =
        json!({"model": "mock-404", "messages": [{"role": "user", "content": "hi"}]}).to_string();
    let direct = send_to(
        &app.mock.base_url(),
        Method::POST,
        chat,
        &[
            ("Authorization", &format!("Bearer {SERVER_KEY}")),
            JSON_TYPE,
        ],
        body.clone(),
    )
    .await;
    app.mock.reset();
    let response = app
        .request(
            Method::POST,
            chat,
            &[
                ("Authorization", &format!("Bearer {CLIENT_KEY}")),
                JSON_TYPE,
            ],
            body,
        )
        .await;
    assert_eq!(response.status, 404, "{}", response.text());
    assert_eq!(response.body, direct.body);
    let wrapped: Value = response.json();
    assert!(
        wrapped.is_array(),
        "Gemini's OpenAI errors are arrays: {wrapped}"
    );
}
