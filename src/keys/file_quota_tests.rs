use super::MAX_QUOTA;
use crate::keys::file::{parse_clients, KeysFileError};
use crate::keys::ClientPolicy;
use crate::quota::{QuotaGroup, QuotaLimits};
use secrecy::SecretString;
use std::collections::BTreeSet;
use std::num::NonZeroU64;

const SECRET: &str = "client-SECRET-key-1";

fn load(text: &str) -> Result<Vec<ClientPolicy>, KeysFileError> {
    parse_clients("config/keys.toml", text, &[])
}

fn refusal(text: &str) -> String {
    let error = load(text).expect_err("the file should be refused");
    let message = error.to_string();
    assert!(message.starts_with("config/keys.toml: "), "{message}");
    assert!(!message.contains("SECRET"), "a key leaked: {message}");
    message
}

fn n(v: u64) -> Option<NonZeroU64> {
    NonZeroU64::new(v)
}

fn limits(tpm: u64, rpd: u64, tpd: u64) -> QuotaLimits {
    QuotaLimits {
        tokens_per_minute: n(tpm),
        requests_per_day: n(rpd),
        tokens_per_day: n(tpd),
    }
}

/// One client `a` with `body` after its key.
fn client(body: &str) -> String {
    format!("[[client]]\nname = \"a\"\nkey = \"{SECRET}\"\n{body}")
}

#[test]
fn reads_quotas_from_the_defaults_the_clients_and_their_groups() {
    let text = format!(
        r#"
        [defaults]
        tokens_per_minute = 100000
        requests_per_day = 5000

        [[client]]
        name = "billing-service"
        key = "{SECRET}"
        models = ["gemini-2.5-flash", "gemini-2.5-pro", "gemini-2.0-flash"]
        tokens_per_minute = 400000
        tokens_per_day = 20000000

        [[client.quota]]
        models = ["models/gemini-2.5-pro"]
        requests_per_day = 500
        tokens_per_day = 2000000

        [[client.quota]]
        models = ["gemini-2.5-flash", "gemini-2.0-flash"]
        tokens_per_minute = 50000

        [[client]]
        name = "reports"
        key = "reports-key"
        "#
    );
    let keys = [SecretString::from("env-key".to_owned())];
    let clients = parse_clients("k.toml", &text, &keys).unwrap();

    let billing = &clients[0].quotas;
    assert_eq!(
        billing.total,
        limits(400_000, 5_000, 20_000_000),
        "its own values override the defaults field by field"
    );
    assert_eq!(
        billing.groups,
        [
            QuotaGroup {
                models: BTreeSet::from(["gemini-2.5-pro".to_owned()]),
                limits: limits(0, 500, 2_000_000),
                name: "gemini-2.5-pro".into(),
            },
            QuotaGroup {
                models: BTreeSet::from(["gemini-2.0-flash".into(), "gemini-2.5-flash".into()]),
                limits: limits(50_000, 0, 0),
                name: "gemini-2.5-flash".into(),
            },
        ],
        "groups keep the file's order and are named by their first model as listed, without `models/`"
    );

    let reports = &clients[1].quotas;
    assert_eq!(reports.total, limits(100_000, 5_000, 0));
    assert!(reports.groups.is_empty());
    assert_eq!(
        clients[2].quotas, *reports,
        "API_KEYS clients get the defaults' quotas"
    );
}

#[test]
fn without_quota_fields_a_client_is_unlimited() {
    let clients = load(&client("")).unwrap();
    assert!(clients[0].quotas.is_empty());
    let clients = parse_clients("k.toml", "", &[SecretString::from("env-key".to_owned())]).unwrap();
    assert!(clients[0].quotas.is_empty());
}

#[test]
fn a_group_may_name_any_valid_model_when_the_client_has_no_allow_list() {
    let text =
        client("[[client.quota]]\nmodels = [\"tunedModels/my-model\"]\nrequests_per_day = 3\n");
    let group = &load(&text).unwrap()[0].quotas.groups[0];
    assert_eq!(group.name, "tunedModels/my-model");
    assert_eq!(group.limits.requests_per_day, n(3));
}

#[test]
fn a_group_may_name_a_model_the_defaults_allow() {
    let text = format!(
        "[defaults]\nmodels = [\"gemini-2.5-pro\"]\n{}",
        client("[[client.quota]]\nmodels = [\"gemini-2.5-pro\"]\ntokens_per_day = 9\n")
    );
    assert_eq!(load(&text).unwrap()[0].quotas.groups.len(), 1);
}

#[test]
fn quotas_run_from_one_to_ten_to_the_fifteenth() {
    let text = format!(
        "[defaults]\ntokens_per_day = {MAX_QUOTA}\n{}",
        client("tokens_per_minute = 1\n")
    );
    let quotas = &load(&text).unwrap()[0].quotas;
    assert_eq!(quotas.total.tokens_per_day, n(1_000_000_000_000_000));
    assert_eq!(quotas.total.tokens_per_minute, n(1));
    let message = refusal(&client(&format!("tokens_per_day = {}\n", MAX_QUOTA + 1)));
    assert!(
        message.contains(
            "[[client]] #1 (`a`): `tokens_per_day` must be a whole number from 1 to \
             1000000000000000, not 1000000000000001"
        ),
        "{message}"
    );
}

#[test]
fn each_quota_mistake_is_refused_with_the_client_the_group_and_what_to_fix() {
    let group = |body: &str| client(&format!("[[client.quota]]\n{body}"));
    let allowed = |body: &str| {
        client(&format!(
            "models = [\"gemini-2.5-flash\"]\n[[client.quota]]\n{body}"
        ))
    };
    let two_groups = |first: &str, second: &str| {
        client(&format!(
            "[[client.quota]]\nmodels = {first}\nrequests_per_day = 1\n\
             [[client.quota]]\nmodels = {second}\nrequests_per_day = 1\n"
        ))
    };
    // (description, file text, what the message says)
    let cases: Vec<(&str, String, &str)> = vec![
        ("a zero client quota", client("tokens_per_minute = 0\n"), "[[client]] #1 (`a`): `tokens_per_minute` must be a whole number from 1 to 1000000000000000, not 0"),
        ("a negative client quota", client("requests_per_day = -5\n"), "(`a`): `requests_per_day` must be a whole number from 1 to 1000000000000000, not -5"),
        ("a zero default quota", "[defaults]\ntokens_per_day = 0\n".into(), "[defaults]: `tokens_per_day` must be a whole number from 1"),
        ("a default quota over the maximum", "[defaults]\nrequests_per_day = 1000000000000001\n".into(), "[defaults]: `requests_per_day` must be a whole number from 1 to 1000000000000000, not 1000000000000001"),
        ("a float quota", client("tokens_per_day = 1e6\n"), "line 4: invalid type: floating point, expected i64"),
        ("a group's zero limit", group("models = [\"gemini-2.5-pro\"]\nrequests_per_day = 0\n"), "[[client]] #1 (`a`): quota group #1: `requests_per_day` must be a whole number from 1"),
        ("a group's negative limit", group("models = [\"gemini-2.5-pro\"]\ntokens_per_minute = -1\n"), "quota group #1: `tokens_per_minute` must be a whole number from 1 to 1000000000000000, not -1"),
        ("a group without a limit", group("models = [\"gemini-2.5-pro\"]\n"), "(`a`): quota group #1: gives no limit, so it would count nothing; add `tokens_per_minute`, `requests_per_day` or `tokens_per_day`, or remove the group"),
        ("a group without models", group("requests_per_day = 5\n"), "missing field `models`"),
        ("a group with `models = []`", group("models = []\nrequests_per_day = 5\n"), "(`a`): quota group #1: `models = []` names no model; list the models this group counts"),
        ("a group with an invalid model", group("models = [\"../x\"]\nrequests_per_day = 5\n"), "(`a`): quota group #1: `models` entry `../x`: the model id is not a valid Gemini model id"),
        ("a group with an unknown field", group("models = [\"gemini-2.5-pro\"]\nrequest_per_day = 5\n"), "line 6: unknown field `request_per_day`"),
        ("overlapping groups", two_groups("[\"gemini-2.5-flash\", \"gemini-2.5-pro\"]", "[\"models/gemini-2.5-pro\"]"), "(`a`): quota group #2: model `gemini-2.5-pro` is also in quota group #1; a model counts in one group only, so remove it from one of them"),
        ("a group model outside the client's allow-list", allowed("models = [\"gemini-2.5-pro\"]\nrequests_per_day = 5\n"), "(`a`): quota group #1: model `gemini-2.5-pro` is not in the client's `models`, so the client cannot use it; add it to the client's `models` or remove it from the group"),
        ("a group model outside the defaults' allow-list", format!("[defaults]\nmodels = [\"gemini-2.5-flash\"]\n{}", group("models = [\"gemini-2.5-pro\"]\nrequests_per_day = 5\n")), "quota group #1: model `gemini-2.5-pro` is not in the client's `models`"),
        ("a group under the defaults", "[[defaults.quota]]\nmodels = [\"gemini-2.5-pro\"]\nrequests_per_day = 5\n".into(), "line 1: unknown field `quota`"),
    ];
    for (why, text, expected) in cases {
        let message = refusal(&text);
        assert!(
            message.contains(expected),
            "{why}: expected `{expected}` in `{message}`"
        );
    }
}

#[test]
fn a_later_client_s_group_error_names_that_client() {
    let text = format!(
        "{}[[client]]\nname = \"b\"\nkey = \"other-key\"\n\
         [[client.quota]]\nmodels = [\"gemini-2.5-pro\"]\nrequests_per_day = 1\n\
         [[client.quota]]\nmodels = [\"gemini-2.5-flash\"]\n",
        client("[[client.quota]]\nmodels = [\"gemini-2.5-flash\"]\nrequests_per_day = 1\n")
    );
    let message = refusal(&text);
    assert!(
        message.contains("[[client]] #2 (`b`): quota group #2: gives no limit"),
        "{message}"
    );
}
