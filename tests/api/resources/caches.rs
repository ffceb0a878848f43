//! Cached contents: created under the allow-list, used, patched, listed and
//! deleted on the key that made them, by the client that made them only.

use super::*;
use serde_json::json;

async fn create_cache(app: &TestApp, client: &str, model: &str) -> TestResponse {
    call(
        app,
        client,
        Method::POST,
        "/v1beta/cachedContents",
        json!({
            "model": model,
            "contents": [{"role": "user", "parts": [{"text": "a long document to cache"}]}],
            "ttl": "300s"
        })
        .to_string(),
    )
    .await
}

fn generate_with_cache(name: &str) -> String {
    json!({"cachedContent": name, "contents": [{"role": "user", "parts": [{"text": "summarise"}]}]})
        .to_string()
}

#[actix_rt::test]
async fn a_cache_is_used_patched_and_deleted_on_its_key_by_its_client_only() {
    let app = spawn_resources(&[]).await;
    let mut names = Vec::new();
    for _ in 0..3 {
        let made = create_cache(&app, A, "models/gemini-2.5-flash").await;
        assert_eq!(made.status, 200, "{}", made.text());
        let name = made.json()["name"].as_str().unwrap().to_owned();
        let key = app
            .upstream_requests()
            .pop()
            .unwrap()
            .api_key()
            .unwrap()
            .to_owned();
        let generated = call(
            &app,
            A,
            Method::POST,
            "/v1beta/models/gemini-2.5-flash:generateContent",
            generate_with_cache(&name),
        )
        .await;
        assert_eq!(generated.status, 200, "{}", generated.text());
        assert!(generated.json()["usageMetadata"]["cachedContentTokenCount"].as_u64() > Some(0));
        assert_eq!(
            app.upstream_requests().pop().unwrap().api_key(),
            Some(key.as_str())
        );
        let patched = call(
            &app,
            A,
            Method::PATCH,
            &format!("/v1beta/{name}?updateMask=ttl"),
            json!({"ttl": "600s"}).to_string(),
        )
        .await;
        assert_eq!(patched.status, 200, "{}", patched.text());
        let sent = app.upstream_requests().pop().unwrap();
        assert_eq!(sent.api_key(), Some(key.as_str()));
        assert!(
            sent.path_and_query.ends_with("?updateMask=ttl"),
            "{}",
            sent.path_and_query
        );
        names.push(name);
    }
    let before = app.mock.request_count();
    for name in &names {
        for (what, response) in [
            (
                "get",
                call(&app, B, Method::GET, &format!("/v1beta/{name}"), "").await,
            ),
            (
                "patch",
                call(
                    &app,
                    B,
                    Method::PATCH,
                    &format!("/v1beta/{name}"),
                    json!({"ttl": "1s"}).to_string(),
                )
                .await,
            ),
            (
                "delete",
                call(&app, B, Method::DELETE, &format!("/v1beta/{name}"), "").await,
            ),
            (
                "generate with it",
                call(
                    &app,
                    B,
                    Method::POST,
                    "/v1beta/models/gemini-2.5-flash:generateContent",
                    generate_with_cache(name),
                )
                .await,
            ),
        ] {
            assert_not_found(what, &response);
        }
    }
    assert_eq!(
        app.mock.request_count(),
        before,
        "none of B's calls reached Gemini"
    );
    let b_list = call(&app, B, Method::GET, "/v1beta/cachedContents", "").await;
    assert!(
        b_list.json()["cachedContents"].is_null(),
        "{}",
        b_list.text()
    );
    let a_list = call(
        &app,
        A,
        Method::GET,
        "/v1beta/cachedContents?pageSize=50",
        "",
    )
    .await;
    let mut listed = 0;
    let mut page = a_list;
    for _ in 0..10 {
        assert_eq!(page.status, 200, "{}", page.text());
        let body = page.json();
        listed += body["cachedContents"].as_array().map_or(0, Vec::len);
        let Some(next) = body["nextPageToken"].as_str() else {
            break;
        };
        page = call(
            &app,
            A,
            Method::GET,
            &format!("/v1beta/cachedContents?pageSize=50&pageToken={next}"),
            "",
        )
        .await;
    }
    assert_eq!(listed, 3);
    for name in &names {
        let deleted = call(&app, A, Method::DELETE, &format!("/v1beta/{name}"), "").await;
        assert_eq!(deleted.status, 200, "{}", deleted.text());
    }
}

#[actix_rt::test]
async fn a_cache_for_a_model_outside_the_allow_list_is_refused() {
    let keys = keys_file(
        "caches-allow",
        &format!("[[client]]\nname = \"narrow\"\nkey = \"{A}\"\nmodels = [\"gemini-2.5-flash\"]\n"),
    );
    let app = spawn_resources(&[("KEYS_FILE", &keys)]).await;
    let refused = create_cache(&app, A, "models/gemini-2.5-pro").await;
    assert_eq!(refused.status, 403, "{}", refused.text());
    assert_eq!(code_of(&refused).as_deref(), Some("MODEL_NOT_ALLOWED"));
    assert_eq!(app.mock.request_count(), 0);
}
