//! Keys Gemini refuses outright (invalid, suspended, service disabled): the whole bodies,
//! on every route, before every other check but a missing key, and changeable at run time.

use std::collections::HashMap;

use gemini_mock::{KeyRefusal, MockGemini};
use serde_json::json;

use crate::helpers::{as_array, call, chat_body, start, BODY, JSON_UTF8};

const GENERATE: &str = "/v1beta/models/gemini-2.5-flash:generateContent";

fn suspended_body(key: &str) -> String {
    format!(
        r#"{{
  "error": {{
    "code": 403,
    "message": "Permission denied: Consumer 'api_key:{key}' has been suspended.",
    "status": "PERMISSION_DENIED",
    "details": [
      {{
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": "CONSUMER_SUSPENDED",
        "domain": "googleapis.com",
        "metadata": {{
          "service": "generativelanguage.googleapis.com",
          "containerInfo": "api_key:{key}",
          "consumer": "projects/123456789012"
        }}
      }},
      {{
        "@type": "type.googleapis.com/google.rpc.LocalizedMessage",
        "locale": "en-US",
        "message": "Permission denied: Consumer 'api_key:{key}' has been suspended."
      }}
    ]
  }}
}}
"#
    )
}

const ACTIVATION: &str = "https://console.developers.google.com/apis/api/generativelanguage.googleapis.com/overview?project=123456789012";

fn service_disabled_body() -> String {
    let message = format!(
        "Generative Language API has not been used in project 123456789012 before or it is \
         disabled. Enable it by visiting {ACTIVATION} then retry."
    );
    format!(
        r#"{{
  "error": {{
    "code": 403,
    "message": "{message}",
    "status": "PERMISSION_DENIED",
    "details": [
      {{
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": "SERVICE_DISABLED",
        "domain": "googleapis.com",
        "metadata": {{
          "serviceTitle": "Generative Language API",
          "consumer": "projects/123456789012",
          "containerInfo": "123456789012",
          "service": "generativelanguage.googleapis.com",
          "activationUrl": "{ACTIVATION}"
        }}
      }},
      {{
        "@type": "type.googleapis.com/google.rpc.LocalizedMessage",
        "locale": "en-US",
        "message": "{message}"
      }},
      {{
        "@type": "type.googleapis.com/google.rpc.Help",
        "links": [
          {{
            "description": "Google developers console API activation",
            "url": "{ACTIVATION}"
          }}
        ]
      }}
    ]
  }}
}}
"#
    )
}

const API_KEY_INVALID: &str = r#"{
  "error": {
    "code": 400,
    "message": "API key not valid. Please pass a valid API key.",
    "status": "INVALID_ARGUMENT",
    "details": [
      {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": "API_KEY_INVALID",
        "domain": "googleapis.com",
        "metadata": {
          "service": "generativelanguage.googleapis.com"
        }
      },
      {
        "@type": "type.googleapis.com/google.rpc.LocalizedMessage",
        "locale": "en-US",
        "message": "API key not valid. Please pass a valid API key."
      }
    ]
  }
}
"#;

async fn refusing(key: &str, refusal: KeyRefusal) -> MockGemini {
    let mock = start().await;
    mock.update_config(|c| {
        c.key_refusals = HashMap::from([(key.to_owned(), refusal)]);
    });
    mock
}

#[actix_rt::test]
async fn a_suspended_key_gets_a_403_quoting_it_in_full_on_every_route() {
    let key = "AIzaSyD-suspended_0123456789abcdefghijk";
    let mock = refusing(key, KeyRefusal::Suspended).await;
    let expected = suspended_body(key);
    let header = [("x-goog-api-key", key)];
    let native = [
        ("POST", GENERATE.to_owned(), Some(BODY)),
        ("POST", format!("{GENERATE}?key={key}"), Some(BODY)),
        (
            "POST",
            "/v1/models/gemini-2.5-flash:streamGenerateContent?alt=sse".to_owned(),
            Some(BODY),
        ),
        (
            "POST",
            "/v1/models/gemini-2.5-flash:countTokens".to_owned(),
            Some(BODY),
        ),
        ("GET", "/v1beta/models".to_owned(), None),
        ("GET", "/v1/models/gemini-2.5-flash".to_owned(), None),
    ];
    for (method, path, body) in native {
        let headers: &[(&str, &str)] = if path.contains("?key=") { &[] } else { &header };
        let r = call(&mock, method, &path, headers, body).await;
        assert_eq!(r.status, 403, "{path}");
        assert_eq!(r.header("content-type"), Some(JSON_UTF8), "{path}");
        assert_eq!(r.text(), expected, "{path}");
    }
    let array = call(
        &mock,
        "POST",
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent",
        &header,
        Some(BODY),
    )
    .await;
    assert_eq!(
        (array.status, array.text().as_str()),
        (403, &*as_array(&expected))
    );
    let bearer = format!("Bearer {key}");
    let openai = [("authorization", bearer.as_str())];
    let chat = chat_body("gemini-2.5-flash", "hi");
    for (method, path, body) in [
        (
            "POST",
            "/v1beta/openai/chat/completions",
            Some(chat.as_str()),
        ),
        ("GET", "/v1beta/openai/models", None),
    ] {
        let r = call(&mock, method, path, &openai, body).await;
        assert_eq!(
            (r.status, r.text().as_str()),
            (403, &*as_array(&expected)),
            "{path}"
        );
    }
    mock.stop().await;
}

#[actix_rt::test]
async fn a_key_of_a_project_with_the_api_disabled_gets_service_disabled() {
    let mock = refusing("off-key", KeyRefusal::ServiceDisabled).await;
    let r = call(
        &mock,
        "GET",
        "/v1/models/gemini-2.5-flash",
        &[("x-goog-api-key", "off-key")],
        None,
    )
    .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.text(), service_disabled_body());
    assert!(!r.text().contains("off-key"));
    mock.stop().await;
}

#[actix_rt::test]
async fn a_refused_key_is_judged_before_every_other_check_but_a_missing_key() {
    let mock = refusing("bad", KeyRefusal::Invalid).await;
    let key = ("x-goog-api-key", "bad");
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case<'_>; 5] = [
        (
            "a Bearer token on a native route",
            &[key, ("authorization", "Bearer bad")],
            BODY,
        ),
        (
            "a deadline under 10 s",
            &[key, ("x-server-timeout", "5")],
            BODY,
        ),
        ("an invalid body", &[key], "{not json"),
        (
            "an error scenario",
            &[key, ("x-mock-scenario", "503")],
            BODY,
        ),
        ("a quota scenario", &[key, ("x-mock-scenario", "429")], BODY),
    ];
    for (what, headers, body) in cases {
        let r = call(&mock, "POST", GENERATE, headers, Some(body)).await;
        assert_eq!(
            (r.status, r.text().as_str()),
            (400, API_KEY_INVALID),
            "{what}"
        );
    }
    let unknown_model = call(
        &mock,
        "POST",
        "/v1/models/no-such-model:generateContent",
        &[key],
        Some(BODY),
    )
    .await;
    assert_eq!(unknown_model.status, 400, "an unknown model");
    mock.update_config(|c| {
        c.exhausted_keys.insert("bad".to_owned());
    });
    let exhausted = call(&mock, "POST", GENERATE, &[key], Some(BODY)).await;
    assert_eq!(exhausted.status, 400, "an exhausted quota");
    let none = call(&mock, "POST", GENERATE, &[], Some(BODY)).await;
    assert_eq!(none.status, 403, "no key is still no key");
    assert_eq!(
        none.json()["error"]["message"]
            .as_str()
            .map(|m| m.starts_with("Method doesn't allow")),
        Some(true)
    );
    mock.stop().await;
}

#[actix_rt::test]
async fn a_key_refused_and_later_removed_from_the_map_is_accepted_again() {
    let mock = refusing("flip", KeyRefusal::Suspended).await;
    let models = "/v1beta/models/gemini-2.5-flash";
    let key = [("x-goog-api-key", "flip")];
    assert_eq!(call(&mock, "GET", models, &key, None).await.status, 403);
    assert_eq!(
        call(
            &mock,
            "POST",
            GENERATE,
            &[("x-goog-api-key", "other")],
            Some(BODY)
        )
        .await
        .status,
        200,
        "other keys are not refused"
    );
    mock.update_config(|c| {
        c.key_refusals.remove("flip");
    });
    assert_eq!(call(&mock, "GET", models, &key, None).await.status, 200);
    assert_eq!(
        call(&mock, "POST", GENERATE, &key, Some(BODY)).await.status,
        200
    );
    mock.update_config(|c| {
        c.key_refusals
            .insert("flip".to_owned(), KeyRefusal::Invalid);
    });
    let r = call(&mock, "GET", models, &key, None).await;
    assert_eq!((r.status, r.text().as_str()), (400, API_KEY_INVALID));
    mock.stop().await;
}

#[actix_rt::test]
async fn scenarios_403_suspended_and_403_service_disabled_quote_the_requests_key() {
    let mock = start().await;
    let prompt = r#"{"contents":[{"parts":[{"text":"[mock:403-suspended] hi"}]}]}"#;
    let r = call(
        &mock,
        "POST",
        GENERATE,
        &[("x-goog-api-key", "AIza-prompt")],
        Some(prompt),
    )
    .await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (403, &*suspended_body("AIza-prompt"))
    );
    let by_query = call(
        &mock,
        "POST",
        "/v1/models/mock-403-suspended:generateContent?key=AIza-query",
        &[],
        Some(BODY),
    )
    .await;
    assert_eq!(by_query.text(), suspended_body("AIza-query"));
    let chat = chat_body("mock-403-service-disabled", "hi");
    let r = call(
        &mock,
        "POST",
        "/v1beta/openai/chat/completions",
        &[("authorization", "Bearer sk")],
        Some(&chat),
    )
    .await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (403, &*as_array(&service_disabled_body()))
    );
    mock.stop().await;
}

#[actix_rt::test]
async fn refusals_can_be_set_and_read_through_the_control_route() {
    let mock = start().await;
    let patch = r#"{"key_refusals":{"a":"suspended","b":"service-disabled","c":"invalid"}}"#;
    let r = call(&mock, "POST", "/__mock/config", &[], Some(patch)).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json()["key_refusals"],
        json!({"a": "suspended", "b": "service-disabled", "c": "invalid"})
    );
    for (key, expected) in [("a", 403), ("b", 403), ("c", 400), ("d", 200)] {
        let r = call(&mock, "GET", "/v1/models", &[("x-goog-api-key", key)], None).await;
        assert_eq!(r.status, expected, "{key}");
    }
    let typo = r#"{"key_refusals":{"a":"Suspended"}}"#;
    let r = call(&mock, "POST", "/__mock/config", &[], Some(typo)).await;
    assert_eq!(r.status, 400);
    mock.stop().await;
}
