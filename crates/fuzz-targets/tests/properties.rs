//! Property tests on stable: the parsers that face untrusted input never panic
//! and keep their invariants, over many generated inputs (the fuzz targets'
//! assertions, driven by proptest).
// Test code: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use gemini_proxy::model_id::ModelId;
use gemini_proxy_fuzz_targets as fuzz_targets;
use proptest::prelude::*;

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        ".{0,20}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

fn request_object() -> impl Strategy<Value = String> {
    let field = prop_oneof![
        Just("prompt".to_owned()),
        Just("model".to_owned()),
        Just("api_key".to_owned()),
        Just("system_instruction".to_owned()),
        Just("generation_config".to_owned()),
        "[a-z_]{1,10}",
    ];
    prop::collection::vec((field, json_value()), 0..6).prop_map(|fields| {
        let members: Vec<String> = fields
            .into_iter()
            .map(|(k, v)| format!("{}:{}", serde_json::Value::from(k), v))
            .collect();
        format!("{{{}}}", members.join(","))
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn the_request_parser_never_panics_on_bytes(data in prop::collection::vec(any::<u8>(), 0..256)) {
        fuzz_targets::request_body(&data);
    }

    #[test]
    fn the_request_parser_gives_body_codes_for_any_object(body in request_object()) {
        fuzz_targets::request_body(body.as_bytes());
    }

    #[test]
    fn accepted_model_ids_are_safe_path_segments(raw in "(models/|tunedModels/)?[a-zA-Z0-9./:%?# -]{0,140}") {
        fuzz_targets::model_id(raw.as_bytes());
    }

    #[test]
    fn well_formed_model_ids_are_accepted(raw in "[a-z0-9]{1,10}([.-][a-z0-9]{1,10}){0,5}") {
        prop_assert!(ModelId::parse(&raw).is_ok(), "{raw}");
        let prefixed = format!("models/{raw}");
        prop_assert_eq!(ModelId::parse(&prefixed).map(|m| m.name().to_owned()), Ok(raw));
    }

    #[test]
    fn keys_file_errors_never_quote_a_key(
        key in "[A-Za-z0-9_-]{12,40}",
        name in "[a-z -]{0,10}",
        burst in prop_oneof![Just("0".to_owned()), Just("-5".to_owned()), Just("\"x\"".to_owned()), "[0-9]{1,12}"],
        extra in prop_oneof![Just(String::new()), Just("models = []\n".to_owned()), Just("kee = 1\n".to_owned()), Just("key_sha256 = \"zz\"\n".to_owned())],
    ) {
        let text = format!("[[client]]\nname = \"{name}\"\nkey = \"{key}\"\nburst = {burst}\n{extra}");
        fuzz_targets::keys_file(text.as_bytes());
        let message = gemini_proxy::keys::file::parse_clients("k.toml", &text, &[]).err().map(|e| e.to_string()).unwrap_or_default();
        prop_assert!(!message.contains(&key), "{}", message);
    }

    #[test]
    fn the_keys_file_parser_never_panics(text in ".{0,300}") {
        fuzz_targets::keys_file(text.as_bytes());
    }

    #[test]
    fn any_upstream_answer_yields_a_spec_code(status in 100u16..600, body in prop::collection::vec(any::<u8>(), 0..200)) {
        let mut data = status.wrapping_sub(100).to_be_bytes().to_vec();
        data.extend_from_slice(&body);
        fuzz_targets::upstream_answer(&data);
    }

    #[test]
    fn any_json_upstream_answer_yields_a_spec_code(status in 100u16..600, body in json_value()) {
        let mut data = status.wrapping_sub(100).to_be_bytes().to_vec();
        data.extend_from_slice(body.to_string().as_bytes());
        fuzz_targets::upstream_answer(&data);
    }
}
