use super::*;

const SECRET: &str = "client-SECRET-key-1";

fn sha(key: &str) -> String {
    hex::encode(KeyHash::of(key).0)
}

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

#[test]
fn reads_the_documented_format() {
    let text = format!(
        r#"
        [defaults]
        requests_per_minute = 120
        burst = 20
        models = ["gemini-2.5-flash"]
        allow_own_key = false

        [[client]]
        name = "billing-service"
        key_sha256 = "{}"
        requests_per_minute = 600
        burst = 50
        models = ["gemini-2.5-flash", "models/gemini-2.5-pro"]

        [[client]]
        name = "reports"
        key = "reports-key"
        allow_own_key = true
        "#,
        sha(SECRET)
    );
    let clients =
        parse_clients("k.toml", &text, &[SecretString::from("env-key".to_owned())]).unwrap();
    let names: Vec<&str> = clients.iter().map(|c| &*c.name).collect();
    assert_eq!(names, ["billing-service", "reports", "env-1"]);
    let billing = &clients[0];
    assert!(billing.key_hash.ct_eq(&KeyHash::of(SECRET)));
    assert_eq!(billing.limits.requests_per_minute.get(), 600);
    assert!(
        billing.may_use_model("gemini-2.5-pro"),
        "models/ prefix is stripped"
    );
    assert!(!billing.allow_own_key, "inherits the default");
    let reports = &clients[1];
    assert_eq!(
        (
            reports.limits.requests_per_minute.get(),
            reports.limits.burst.get()
        ),
        (120, 20)
    );
    assert!(reports.allow_own_key);
    assert!(
        !reports.may_use_model("gemini-2.5-pro"),
        "inherits the default allow-list"
    );
    assert_eq!(
        clients[2].limits, clients[1].limits,
        "API_KEYS clients get the defaults"
    );
}

#[test]
fn without_defaults_clients_get_sixty_a_minute_and_a_burst_of_ten() {
    let clients = load("[[client]]\nname = \"a\"\nkey = \"k\"\n").unwrap();
    assert_eq!(clients[0].limits, Limits::default());
    assert_eq!(clients[0].limits.requests_per_minute.get(), 60);
    assert_eq!(clients[0].limits.burst.get(), 10);
    assert!(clients[0].models.is_none());
    assert!(load("").unwrap().is_empty());
}

#[test]
fn each_mistake_is_refused_with_where_and_what_to_fix() {
    let hashed = sha(SECRET);
    let cases: Vec<(&str, String, &str)> = vec![
        ("an unknown field", format!("[[client]]\nname = \"a\"\nkey = \"{SECRET}\"\nburts = 5\n"), "line 4: unknown field `burts`"),
        ("an unknown table", "[default]\nburst = 5\n".into(), "line 1: unknown field `default`"),
        ("a syntax error on a key line", format!("[[client]]\nname = \"a\"\nkey = \"{SECRET}\n"), "line 3"),
        ("a duplicate name", format!("[[client]]\nname = \"a\"\nkey = \"{SECRET}\"\n[[client]]\nname = \"a\"\nkey = \"other\"\n"), "[[client]] #2 (`a`): the name is used by an earlier client"),
        ("a plaintext key equal to a hashed one", format!("[[client]]\nname = \"a\"\nkey_sha256 = \"{hashed}\"\n[[client]]\nname = \"b\"\nkey = \"{SECRET}\"\n"), "[[client]] #2 (`b`): has the same key as client `a`"),
        ("a key given both ways", format!("[[client]]\nname = \"a\"\nkey = \"{SECRET}\"\nkey_sha256 = \"{hashed}\"\n"), "(`a`): give `key` or `key_sha256`, not both"),
        ("no key at all", "[[client]]\nname = \"a\"\n".into(), "(`a`): needs `key_sha256`"),
        ("malformed hex", "[[client]]\nname = \"a\"\nkey_sha256 = \"xyz\"\n".into(), "(`a`): `key_sha256` must be 64 hexadecimal characters"),
        ("a short hash", format!("[[client]]\nname = \"a\"\nkey_sha256 = \"{}\"\n", &hashed[..62]), "`key_sha256` must be 64 hexadecimal characters"),
        ("a zero rate", format!("[[client]]\nname = \"a\"\nkey = \"{SECRET}\"\nrequests_per_minute = 0\n"), "(`a`): `requests_per_minute` must be a whole number from 1"),
        ("a negative burst", format!("[[client]]\nname = \"a\"\nkey = \"{SECRET}\"\nburst = -3\n"), "(`a`): `burst` must be a whole number from 1 to 4294967295, not -3"),
        ("a zero default", "[defaults]\nburst = 0\n".into(), "[defaults]: `burst` must be a whole number"),
        ("a bucket too big for the clock", format!("[[client]]\nname = \"a\"\nkey = \"{SECRET}\"\nrequests_per_minute = 1\nburst = 4294967295\n"), "(`a`): a `burst` of 4294967295 at 1 `requests_per_minute` takes over 100 years"),
        ("a default bucket too big for the clock", "[defaults]\nrequests_per_minute = 10\nburst = 4294967295\n".into(), "[defaults]: a `burst` of 4294967295"),
        ("an empty allow-list", format!("[[client]]\nname = \"a\"\nkey = \"{SECRET}\"\nmodels = []\n"), "(`a`): `models = []` would allow no model"),
        ("an invalid model", format!("[[client]]\nname = \"a\"\nkey = \"{SECRET}\"\nmodels = [\"../x\"]\n"), "(`a`): `models` entry `../x`"),
        ("an empty name", format!("[[client]]\nname = \"\"\nkey = \"{SECRET}\"\n"), "[[client]] #1: `name` must be"),
        ("a name with spaces", format!("[[client]]\nname = \"my app\"\nkey = \"{SECRET}\"\n"), "`name` must be"),
        ("the reserved name", format!("[[client]]\nname = \"anonymous\"\nkey = \"{SECRET}\"\n"), "`anonymous` is reserved"),
        ("a wrong type", format!("[[client]]\nname = \"a\"\nkey = \"{SECRET}\"\nburst = \"ten\"\n"), "line 4"),
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
fn a_type_error_names_the_kind_of_value_but_not_the_value() {
    // (description, file text, the refused value, what the message says instead)
    let cases = [
        (
            "a key written as a number",
            "[[client]]\nname = \"a\"\nkey = 987654321\n",
            "987654321",
            "line 3: invalid type: integer, expected a string",
        ),
        (
            "a key pasted on the burst line",
            "[[client]]\nname = \"a\"\nkey = \"k\"\nburst = \"pasted-SECRET\"\n",
            "pasted-SECRET",
            "line 4: invalid type: string, expected i64",
        ),
        (
            "a key as a default limit",
            "[defaults]\nrequests_per_minute = \"SECRET-2\"\n",
            "SECRET-2",
            "line 2: invalid type: string, expected i64",
        ),
        (
            "a float",
            "[defaults]\nburst = 2.5\n",
            "2.5",
            "line 2: invalid type: floating point, expected i64",
        ),
    ];
    for (why, text, value, expected) in cases {
        let message = load(text).expect_err(why).to_string();
        assert!(
            !message.contains(value),
            "{why}: the value is in `{message}`"
        );
        assert!(
            message.contains(expected),
            "{why}: expected `{expected}` in `{message}`"
        );
    }
}

#[test]
fn an_api_keys_entry_may_not_repeat_a_file_key_or_take_a_reserved_name() {
    let keys = [SecretString::from(SECRET.to_owned())];
    let text = format!(
        "[[client]]\nname = \"a\"\nkey_sha256 = \"{}\"\n",
        sha(SECRET)
    );
    let message = parse_clients("k.toml", &text, &keys)
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("API_KEYS entry 1 has the same key as client `a`"),
        "{message}"
    );
    let text = "[[client]]\nname = \"env-1\"\nkey = \"other\"\n";
    let message = parse_clients("k.toml", text, &keys)
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("reserved for API_KEYS entry 1"),
        "{message}"
    );
}

#[test]
fn a_missing_file_is_fine_only_when_it_is_the_default() {
    let path = std::path::PathBuf::from("/nonexistent/keys.toml");
    let default = KeysFile {
        path: path.clone(),
        required: false,
    };
    assert!(load_clients(&default, &[]).unwrap().is_empty());
    let named = KeysFile {
        path,
        required: true,
    };
    let message = load_clients(&named, &[]).unwrap_err().to_string();
    assert!(
        message.starts_with("/nonexistent/keys.toml: cannot read the file"),
        "{message}"
    );
}
