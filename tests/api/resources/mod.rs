//! Files, cached contents, batches and interactions (docs/api.md#files-caches-batches-and-interactions):
//! each resource goes out with the server key that made it, and exists only
//! for the client that made it. Three server keys, so a call that forgot the
//! key would land on the wrong project two times in three; two clients, so
//! one can try everything on the other's resources.

mod attacks;
mod batches;
mod big_upload;
mod caches;
pub mod files;
mod interactions;

use crate::helpers::*;
use awc::http::Method;
use std::time::Duration;

pub const KEYS: [&str; 3] = [
    "AIzaResourceKeyZero0123456789abcdefghij",
    "AIzaResourceKeyOne01123456789abcdefghij",
    "AIzaResourceKeyTwo02123456789abcdefghij",
];
pub const A: &str = "client-a-0123456789abcdef";
pub const B: &str = "client-b-0123456789abcdef";
pub const JSON: (&str, &str) = ("Content-Type", "application/json");

/// The service with three server keys and clients `a` and `b` (limits the
/// tests stay under), its mock finishing batches and background interactions
/// after 200 ms.
pub async fn spawn_resources(extra: &[(&str, &str)]) -> TestApp {
    let extra: Vec<(String, String)> = extra
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let keys = keys_file(
        "resources",
        &format!(
            "[defaults]\nrequests_per_minute = 60000\nburst = 5000\n\n\
             [[client]]\nname = \"a\"\nkey = \"{A}\"\n\n[[client]]\nname = \"b\"\nkey = \"{B}\"\n"
        ),
    );
    let app = spawn_app_with(move |settings| {
        settings.insert("GEMINI_API_KEY".into(), KEYS.join(","));
        settings.insert("API_KEYS".into(), String::new());
        settings.insert("KEYS_FILE".into(), keys);
        settings.extend(extra);
    })
    .await;
    app.mock.update_config(|c| {
        c.batch_delay = Duration::from_millis(200);
        c.interaction_delay = Duration::from_millis(200);
    });
    app
}

/// Writes a keys file of its own for one test (tests run in parallel).
pub fn keys_file(name: &str, text: &str) -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "{name}-keys-{}-{}.toml",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&path, text).expect("keys file written");
    path.display().to_string()
}

/// A request with `client`'s key as the SDKs send it.
pub async fn call(
    app: &TestApp,
    client: &str,
    method: Method,
    path: &str,
    body: impl Into<bytes::Bytes>,
) -> TestResponse {
    app.request(method, path, &[("x-goog-api-key", client), JSON], body)
        .await
}

/// Checks a 404 in Google's shape, written by the service (not Gemini's).
pub fn assert_not_found(what: &str, response: &TestResponse) {
    assert_eq!(response.status, 404, "{what}: {}", response.text());
    let body = response.json();
    assert_eq!(body["error"]["status"], "NOT_FOUND", "{what}: {body}");
    assert_eq!(
        code_of(response).as_deref(),
        Some("NOT_FOUND"),
        "{what}: {body}"
    );
}

/// Checks that Gemini got at least one request whose path and query contain
/// `needle`, and that every one of them carried `key`.
pub fn assert_calls_on_key(app: &TestApp, needle: &str, key: &str) {
    let keys: Vec<String> = app
        .upstream_requests()
        .iter()
        .filter(|r| r.path_and_query.contains(needle))
        .map(|r| r.api_key().unwrap_or("<none>").to_owned())
        .collect();
    assert!(!keys.is_empty(), "no call named {needle}");
    assert!(
        keys.iter().all(|k| k == key),
        "calls naming {needle} went out with {keys:?}, not only {key}"
    );
}
