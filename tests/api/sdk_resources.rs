//! The SDKs' stored resources through the service (docs/api.md#files-caches-batches-and-interactions): files uploaded by the
//! resumable protocol, cached contents, batches and interactions, made, used, listed
//! and deleted by the real python google-genai and @google/genai, with three server
//! keys in the pool and two clients. The scripts are `tests/sdk/check_resources.py`
//! and `tests/sdk/check_resources.mjs`; they print a `NAME <kind> <name>` line for
//! each resource they make.
//!
//! What the mock received then shows key affinity: every call naming a resource
//! (its path, or a body naming it: `fileData.fileUri`, `cachedContent`,
//! `previous_interaction_id`), and every chunk of its upload, went out with the
//! server key of the call that made it; and the second client never reached any of
//! them (the scripts check the 404s it got).
//!
//! Gated on the SDKs as in `sdk.rs`: without them the tests say so and pass, unless
//! `REQUIRE_SDK_TESTS=1`.

use crate::helpers::*;
use crate::sdk::{installed, run_script_at, sdk_dir};
use crate::shared_keys::KEYS as SERVER_KEYS;
use gemini_mock::RecordedRequest;
use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::time::Duration;

/// The second client, who must not see the first one's resources.
const CLIENT_B: &str = "client-key-b-fedcba9876543210";

/// The service with three server keys (used round-robin, so a call that lost its
/// resource's key lands on another one) and two clients from a keys file.
async fn spawn_app_for_resources(sdk: &str) -> TestApp {
    let keys = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "sdk-resources-keys-{sdk}-{}.toml",
        std::process::id()
    ));
    std::fs::write(
        &keys,
        format!(
            "[defaults]\nrequests_per_minute = 6000\nburst = 500\n\n\
             [[client]]\nname = \"a\"\nkey = \"{CLIENT_KEY}\"\n\n\
             [[client]]\nname = \"b\"\nkey = \"{CLIENT_B}\"\n"
        ),
    )
    .expect("keys file written");
    let app = spawn_app_with(|settings| {
        // Both clients come from the file.
        settings.remove("API_KEYS");
        settings.insert("GEMINI_API_KEY".into(), SERVER_KEYS.join(","));
        settings.insert("KEYS_FILE".into(), keys.display().to_string());
    })
    .await;
    app.mock.update_config(|c| {
        c.retry_delay = Some("0s".into());
        // As Gemini: upload URLs and file URIs on Google's host (python uploads to
        // the URL as given, so the service must hand out its own), a file PROCESSING
        // for a moment, cached contents of at least 1024 tokens.
        c.upload_url_google = true;
        c.file_processing = Duration::from_millis(300);
        c.cache_min_tokens = 1024;
    });
    app
}

/// The `NAME <kind> <name>` lines of a script's output.
fn created(output: &str) -> Vec<(String, String)> {
    output
        .lines()
        .filter_map(|line| line.strip_prefix("NAME "))
        .filter_map(|rest| rest.split_once(' '))
        .map(|(kind, name)| (kind.to_owned(), name.trim().to_owned()))
        .collect()
}

/// The path without its query.
fn path_of(request: &RecordedRequest) -> &str {
    request
        .path_and_query
        .split_once('?')
        .map_or(request.path_and_query.as_str(), |(path, _)| path)
}

fn query_param<'a>(request: &'a RecordedRequest, name: &str) -> Option<&'a str> {
    let (_, query) = request.path_and_query.split_once('?')?;
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
}

/// Whether `text` holds `token` as whole path segments: after a `/` or at the start,
/// and before the end, a `/` or a `:` (`files/abc:download`).
fn names_segment(text: &str, token: &str) -> bool {
    text.match_indices(token).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + token.len()..].chars().next();
        matches!(before, None | Some('/')) && matches!(after, None | Some('/' | ':'))
    })
}

/// Whether a JSON value holds a string naming `token` (`files/abc`, a URI ending in
/// `/files/abc`, an interaction id).
fn json_names(value: &serde_json::Value, token: &str) -> bool {
    match value {
        serde_json::Value::String(s) => names_segment(s, token),
        serde_json::Value::Array(items) => items.iter().any(|v| json_names(v, token)),
        serde_json::Value::Object(map) => map.values().any(|v| json_names(v, token)),
        _ => false,
    }
}

/// Whether the request is about `token`: its path, or its JSON body, names it.
fn names(request: &RecordedRequest, token: &str) -> bool {
    names_segment(path_of(request), token) || request.json().is_some_and(|b| json_names(&b, token))
}

fn is_upload(request: &RecordedRequest) -> bool {
    path_of(request).starts_with("/upload/")
}

fn is_upload_start(request: &RecordedRequest) -> bool {
    is_upload(request)
        && request
            .header("x-goog-upload-command")
            .is_some_and(|c| c.trim().eq_ignore_ascii_case("start"))
}

/// Whether the request is the kind of call that makes a `kind` resource.
fn creates(kind: &str, request: &RecordedRequest) -> bool {
    let path = path_of(request);
    request.method == "POST"
        && match kind {
            "file" => is_upload_start(request),
            "cache" => path.ends_with("/cachedContents"),
            // A batch's answers file is Gemini's, made in the batch's project.
            "batch" | "answers" => path.ends_with(":batchGenerateContent"),
            "interaction" => path.ends_with("/interactions"),
            _ => false,
        }
}

fn describe(request: &RecordedRequest) -> String {
    format!(
        "{} {} key={:?}",
        request.method,
        request.path_and_query,
        request.api_key()
    )
}

/// Every resource a script made is tied to the server key of the call that made it
/// (the scripts read each resource back right after making it, so that call is the
/// last one of its kind before the first call naming the resource), and every call
/// naming it, and every chunk of a file's upload, carried that key; the mock's own
/// record of batches and interactions agrees. Returns the key of each resource.
fn assert_key_affinity(app: &TestApp, resources: &[(String, String)]) -> Vec<String> {
    let sent = app.upstream_requests();
    // Where the mock keeps the key that made a resource, it must be the one found here.
    let mock_batches = app.mock.batches();
    let mock_interactions = app.mock.interactions();
    let mut keys = Vec::new();
    for (kind, name) in resources {
        let naming: Vec<usize> = (0..sent.len()).filter(|&i| names(&sent[i], name)).collect();
        let Some(&first) = naming.first() else {
            panic!("no call upstream names {kind} {name}");
        };
        let made = (0..first)
            .rev()
            .find(|&i| creates(kind, &sent[i]))
            .unwrap_or_else(|| {
                panic!(
                    "no call made {kind} {name} before {}",
                    describe(&sent[first])
                )
            });
        let key = sent[made].api_key().unwrap_or_else(|| {
            panic!(
                "{kind} {name} made without a key: {}",
                describe(&sent[made])
            )
        });
        assert!(
            SERVER_KEYS.contains(&key),
            "{kind} {name} made with a key outside the pool: {}",
            describe(&sent[made])
        );
        let mut tied = naming.clone();
        if kind == "file" {
            // The chunks between the start and the first call naming the file: one
            // upload, every chunk on the key that started it (python sends none).
            let chunks: Vec<usize> = (made + 1..first).filter(|&i| is_upload(&sent[i])).collect();
            assert!(!chunks.is_empty(), "no upload chunks for {name}");
            let ids: BTreeSet<Option<&str>> = chunks
                .iter()
                .map(|&i| query_param(&sent[i], "upload_id"))
                .collect();
            assert_eq!(
                ids.len(),
                1,
                "chunks of {name} name several uploads: {ids:?}"
            );
            assert!(
                ids.iter().all(Option::is_some),
                "a chunk of {name} has no upload_id"
            );
            tied.extend(chunks);
        }
        for &i in &tied {
            assert_eq!(
                sent[i].api_key(),
                Some(key),
                "{kind} {name} was made with another server key than this call: {}\n(made by {})",
                describe(&sent[i]),
                describe(&sent[made])
            );
        }
        eprintln!(
            "{kind} {name}: made and used {} times with server key #{}",
            tied.len(),
            SERVER_KEYS
                .iter()
                .position(|k| *k == key)
                .unwrap_or_default()
        );
        keys.push(key.to_owned());
    }
    for ((kind, name), key) in resources.iter().zip(&keys) {
        let recorded = match kind.as_str() {
            "batch" => mock_batches
                .iter()
                .find(|b| &b.name == name)
                .map(|b| &b.key),
            "interaction" => mock_interactions
                .iter()
                .find(|i| &i.id == name)
                .map(|i| &i.key),
            _ => continue,
        };
        assert_eq!(recorded, Some(key), "the mock's record of {kind} {name}");
    }
    // Round-robin spreads the resources over the pool; all on one key would prove
    // nothing about affinity.
    let distinct: BTreeSet<&String> = keys.iter().collect();
    assert!(
        distinct.len() > 1,
        "every resource was made with one server key: {keys:?}"
    );
    keys
}

/// No call went upstream with a client key, or with a key in its URL.
fn assert_server_keys_only(sent: &[RecordedRequest]) {
    for request in sent {
        assert!(
            !request.path_and_query.contains("key="),
            "{}",
            describe(request)
        );
        let key = request.api_key();
        assert!(
            key.is_some_and(|k| SERVER_KEYS.contains(&k)),
            "not a server key: {}",
            describe(request)
        );
        assert_eq!(
            request.header("authorization"),
            None,
            "{}",
            describe(request)
        );
    }
}

fn assert_called(sent: &[RecordedRequest], calls: &[(&str, &str)]) {
    for (method, prefix) in calls {
        assert!(
            sent.iter()
                .any(|r| r.method == *method && r.path_and_query.starts_with(prefix)),
            "no {method} {prefix}: {:?}",
            sent.iter()
                .map(|r| format!("{} {}", r.method, r.path_and_query))
                .collect::<Vec<_>>()
        );
    }
}

#[actix_rt::test]
async fn the_python_sdk_keeps_each_resource_on_its_server_key_and_its_client() {
    let python = sdk_dir().join(".venv/bin/python");
    if !installed(&python, "the Python SDKs (google-genai, openai)") {
        return;
    }
    let app = spawn_app_for_resources("python").await;
    let mut resources = Vec::new();
    // The SDK's default version (v1 for python 3.x), then v1beta.
    for version in ["", "v1beta"] {
        let (status, output) = run_script_at(
            &app,
            &app.address,
            &[("PROXY_KEY_B", CLIENT_B), ("API_VERSION", version)],
            &python,
            "check_resources.py",
        )
        .await;
        assert!(
            status.success(),
            "check_resources.py {version} {status}:\n{output}"
        );
        assert!(output.contains("all checks passed"), "{output}");
        let made = created(&output);
        let kinds: BTreeSet<&str> = made.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            kinds,
            BTreeSet::from(["answers", "batch", "cache", "file", "interaction"]),
            "{output}"
        );
        resources.extend(made);
    }

    let sent = app.upstream_requests();
    assert_server_keys_only(&sent);
    assert_key_affinity(&app, &resources);
    assert_called(
        &sent,
        &[
            ("POST", "/upload/v1/files"),
            ("POST", "/upload/v1beta/files"),
            ("GET", "/v1/files/"),
            ("GET", "/v1beta/files?"),
            ("DELETE", "/v1/files/"),
            ("POST", "/v1/cachedContents"),
            ("PATCH", "/v1beta/cachedContents/"),
            ("POST", "/v1/models/gemini-2.5-flash:batchGenerateContent"),
            ("GET", "/v1beta/batches/"),
            ("DELETE", "/v1/batches/"),
            ("POST", "/v1/interactions"),
            ("POST", "/v1beta/interactions"),
            ("GET", "/v1/interactions/"),
            ("DELETE", "/v1beta/interactions/"),
        ],
    );
    // Client B's attempts never reached Gemini: every call naming a resource is
    // accounted for by client A (the affinity check above), and B's lists are its own.
    let per_key: HashMap<&str, usize> = sent.iter().fold(HashMap::new(), |mut m, r| {
        *m.entry(r.api_key().unwrap_or_default()).or_default() += 1;
        m
    });
    eprintln!("upstream calls per server key: {per_key:?}");
}

#[actix_rt::test]
async fn the_node_sdk_keeps_each_resource_on_its_server_key() {
    let package = sdk_dir().join("node_modules/@google/genai/package.json");
    if !installed(&package, "the Node SDK (@google/genai)") {
        return;
    }
    let app = spawn_app_for_resources("node").await;

    let (status, output) = run_script_at(
        &app,
        &app.address,
        &[],
        Path::new("node"),
        "check_resources.mjs",
    )
    .await;

    assert!(status.success(), "check_resources.mjs {status}:\n{output}");
    assert!(output.contains("all checks passed"), "{output}");
    let made = created(&output);
    let kinds: BTreeSet<&str> = made.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        kinds,
        BTreeSet::from(["cache", "file", "interaction"]),
        "{output}"
    );
    let sent = app.upstream_requests();
    assert_server_keys_only(&sent);
    assert_key_affinity(&app, &made);
    // 2.x defaults to v1beta.
    assert_called(
        &sent,
        &[
            ("POST", "/upload/v1beta/files"),
            ("GET", "/v1beta/files/"),
            ("POST", "/v1beta/interactions"),
            ("POST", "/v1beta/cachedContents"),
        ],
    );
}

#[test]
fn a_resource_is_named_only_by_whole_segments() {
    let cases = [
        ("/v1/files/abc", "files/abc", true),
        ("/v1beta/files/abc:download", "files/abc", true),
        ("https://host/v1/files/abc", "files/abc", true),
        ("files/abc", "files/abc", true),
        ("/v1/files/abcd", "files/abc", false),
        ("/v1/myfiles/abc", "files/abc", false),
        ("/v1/interactions/v1_x/cancel", "v1_x", true),
        ("/v1/interactions/v1_xy", "v1_x", false),
    ];
    for (text, token, expected) in cases {
        assert_eq!(names_segment(text, token), expected, "{text} {token}");
    }
}
