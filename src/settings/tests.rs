//! Unit tests of `settings`, kept apart so the module itself stays short.

use super::*;

fn parse(pairs: &[(&str, &str)]) -> Result<Settings, SettingsError> {
    let map = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Settings::from_map(&map)
}

#[test]
fn defaults_match_the_spec() {
    let s = parse(&[]).unwrap();
    assert_eq!(s.host, "0.0.0.0");
    assert_eq!(s.port, 5001);
    assert_eq!(s.default_model.name(), "gemini-2.5-flash");
    assert_eq!(
        s.gemini_base_url.as_str(),
        "https://generativelanguage.googleapis.com"
    );
    assert_eq!(s.max_prompt_chars.get(), 10_000);
    assert_eq!(s.max_body_bytes.get(), 262_144);
    assert_eq!(s.max_native_body_bytes.get(), 20_971_520);
    assert_eq!(s.max_upload_bytes, 2_147_483_648);
    assert_eq!(s.public_base_url, None);
    let public = parse(&[("PUBLIC_BASE_URL", "https://gemini.example.com/")]).unwrap();
    assert_eq!(
        public.public_base_url.as_ref().map(BaseUrl::as_str),
        Some("https://gemini.example.com")
    );
    assert_eq!(s.upstream_timeout, Duration::from_secs(120));
    assert_eq!(s.upstream_connect_timeout, Duration::from_secs(5));
    assert_eq!(s.cors_allowed_origins, CorsOrigins::None);
    assert_eq!(s.log_format, LogFormat::Text);
    assert!(!s.keys_file.required);
    assert_eq!(s.metrics_addr, None);
    assert_eq!(s.drain_timeout, Duration::from_secs(30));
    assert_eq!(s.client_stall_timeout, Duration::from_secs(30));
    assert_eq!(s.key_recheck_interval, Duration::from_secs(600));
    let private = parse(&[("METRICS_ADDR", " [::1]:9464 ")]).unwrap();
    assert_eq!(private.metrics_addr, "[::1]:9464".parse().ok());
    assert_eq!(parse(&[("METRICS_ADDR", "")]).unwrap().metrics_addr, None);
}

#[test]
fn a_bad_value_names_its_variable() {
    for (pairs, variable) in [
        (vec![("PORT", "eighty")], "PORT"),
        (vec![("PORT", "70000")], "PORT"),
        (vec![("MAX_PROMPT_CHARS", "0")], "MAX_PROMPT_CHARS"),
        (
            vec![("UPSTREAM_TIMEOUT_SECS", "-1")],
            "UPSTREAM_TIMEOUT_SECS",
        ),
        (vec![("LOG_LEVEL", "loud")], "LOG_LEVEL"),
        (vec![("LOG_FORMAT", "xml")], "LOG_FORMAT"),
        (vec![("GEMINI_BASE_URL", "ftp://x")], "GEMINI_BASE_URL"),
        (vec![("GEMINI_BASE_URL", "not a url")], "GEMINI_BASE_URL"),
        (vec![("DEFAULT_MODEL", "../x")], "DEFAULT_MODEL"),
        (
            vec![("CORS_ALLOWED_ORIGINS", "*,https://a.b")],
            "CORS_ALLOWED_ORIGINS",
        ),
        (
            vec![("CORS_ALLOWED_ORIGINS", "example.com")],
            "CORS_ALLOWED_ORIGINS",
        ),
        (vec![("API_KEYS", "a,,b")], "API_KEYS"),
        (vec![("METRICS_ADDR", "9464")], "METRICS_ADDR"),
        (vec![("METRICS_ADDR", "localhost:9464")], "METRICS_ADDR"),
        (vec![("DRAIN_TIMEOUT_SECS", "0")], "DRAIN_TIMEOUT_SECS"),
        (
            vec![("CLIENT_STALL_TIMEOUT_SECS", "x")],
            "CLIENT_STALL_TIMEOUT_SECS",
        ),
        (vec![("KEY_RECHECK_SECS", "0")], "KEY_RECHECK_SECS"),
    ] {
        let err = parse(&pairs).expect_err("should be refused");
        assert_eq!(err.variable, variable, "{pairs:?}: {err}");
    }
}

#[test]
fn errors_and_summaries_never_show_a_secret() {
    let err = parse(&[("GEMINI_API_KEY", "AIzaSECRETSECRET,AIzaSECRETSECRET")])
        .err()
        .unwrap();
    assert!(!err.to_string().contains("SECRET"), "{err}");
    let s = parse(&[
        ("GEMINI_API_KEY", "AIzaSECRET1,AIzaSECRET2"),
        ("API_KEYS", "client-SECRET"),
    ])
    .unwrap();
    assert_eq!(s.gemini_api_keys.len(), 2);
    assert!(!s.summary().contains("SECRET"), "{}", s.summary());
    assert!(!format!("{s:?}").contains("SECRET"));
}

#[test]
fn the_rate_limit_backend_is_memory_unless_redis_is_asked_for() {
    let s = parse(&[]).unwrap();
    assert!(matches!(s.rate_limit_backend, RateLimitBackend::Memory));
    // REDIS_URL alone does not switch backends.
    let s = parse(&[("REDIS_URL", "redis://127.0.0.1:6379")]).unwrap();
    assert!(matches!(s.rate_limit_backend, RateLimitBackend::Memory));
    let s = parse(&[
        ("RATE_LIMIT_BACKEND", "redis"),
        ("REDIS_URL", "redis://cache.internal:6380/2"),
    ])
    .unwrap();
    let RateLimitBackend::Redis(redis) = &s.rate_limit_backend else {
        panic!("expected redis: {s:?}");
    };
    assert_eq!(redis.timeout, Duration::from_millis(5), "the default");
    assert_eq!(redis.display(), "redis://cache.internal:6380/2");
}

#[test]
fn redis_settings_are_refused_with_the_variable_named() {
    for (pairs, variable) in [
        (
            vec![("RATE_LIMIT_BACKEND", "memcached")],
            "RATE_LIMIT_BACKEND",
        ),
        (vec![("RATE_LIMIT_BACKEND", "redis")], "REDIS_URL"),
        (
            vec![("RATE_LIMIT_BACKEND", "redis"), ("REDIS_URL", "http://x")],
            "REDIS_URL",
        ),
        (
            vec![
                ("RATE_LIMIT_BACKEND", "redis"),
                ("REDIS_URL", "redis://h/not-a-db"),
            ],
            "REDIS_URL",
        ),
        (
            vec![
                ("RATE_LIMIT_BACKEND", "redis"),
                ("REDIS_URL", "rediss://h:6380"),
            ],
            "REDIS_URL",
        ),
        (vec![("REDIS_TIMEOUT_MS", "0")], "REDIS_TIMEOUT_MS"),
        (
            vec![("MAX_NATIVE_BODY_BYTES", "0")],
            "MAX_NATIVE_BODY_BYTES",
        ),
        (vec![("MAX_UPLOAD_BYTES", "big")], "MAX_UPLOAD_BYTES"),
        (
            vec![("PUBLIC_BASE_URL", "gemini.example.com")],
            "PUBLIC_BASE_URL",
        ),
        (
            vec![("PUBLIC_BASE_URL", "https://gemini.example.com/api")],
            "PUBLIC_BASE_URL",
        ),
        (
            vec![("PUBLIC_BASE_URL", "https://u:p@gemini.example.com")],
            "PUBLIC_BASE_URL",
        ),
        (vec![("REDIS_TIMEOUT_MS", "5000")], "REDIS_TIMEOUT_MS"),
        (vec![("REDIS_TIMEOUT_MS", "fast")], "REDIS_TIMEOUT_MS"),
    ] {
        let err = parse(&pairs).expect_err("should be refused");
        assert_eq!(err.variable, variable, "{pairs:?}: {err}");
    }
}

#[test]
fn a_redis_password_is_never_shown() {
    let secret = "PASSWORD-SECRET";
    for url in [
        format!("redis://:{secret}@cache.internal:6379/0"),
        format!("redis://user:{secret}@cache.internal"),
        format!("unix:///run/redis.sock?pass={secret}"),
    ] {
        let s = parse(&[
            ("RATE_LIMIT_BACKEND", "redis"),
            ("REDIS_URL", &url),
            ("REDIS_TIMEOUT_MS", "20"),
        ])
        .unwrap();
        let summary = s.summary();
        assert!(!summary.contains(secret), "{summary}");
        assert!(summary.contains("(password masked)"), "{summary}");
        assert!(summary.contains("redis_timeout=20ms"), "{summary}");
        assert!(!format!("{s:?}").contains(secret));
    }
    for url in [
        format!("redis://:{secret}@h/x"),
        format!("rediss://:{secret}@h"),
        secret.to_owned(),
        format!("redis://:{secret}@0.0.0.0"),
    ] {
        let err = parse(&[("RATE_LIMIT_BACKEND", "redis"), ("REDIS_URL", &url)])
            .expect_err("should be refused");
        assert!(!err.to_string().contains(secret), "{err}");
    }
}

#[test]
fn rust_log_wins_over_log_level() {
    let s = parse(&[("RUST_LOG", "gemini_proxy=trace"), ("LOG_LEVEL", "loud")]).unwrap();
    assert_eq!(s.log_level, LogLevel::Filter("gemini_proxy=trace".into()));
}

#[test]
fn cors_accepts_a_list_or_a_star() {
    let s = parse(&[(
        "CORS_ALLOWED_ORIGINS",
        "https://a.example, http://localhost:3000/",
    )])
    .unwrap();
    assert_eq!(
        s.cors_allowed_origins,
        CorsOrigins::List(vec![
            "https://a.example".into(),
            "http://localhost:3000".into()
        ])
    );
    let s = parse(&[("CORS_ALLOWED_ORIGINS", "*")]).unwrap();
    assert_eq!(s.cors_allowed_origins, CorsOrigins::Any);
}

#[test]
fn tls_needs_both_files_or_neither() {
    let dir = crate::tls::tests::PemDir::new("settings-pair");
    let (files, _) = dir.self_signed();
    let (cert, key) = (
        files.cert.display().to_string(),
        files.key.display().to_string(),
    );
    assert!(parse(&[]).unwrap().tls.is_none());
    for (pairs, missing) in [
        (vec![("TLS_CERT_FILE", cert.as_str())], "TLS_KEY_FILE"),
        (vec![("TLS_KEY_FILE", key.as_str())], "TLS_CERT_FILE"),
        (
            vec![("TLS_CERT_FILE", cert.as_str()), ("TLS_KEY_FILE", " ")],
            "TLS_KEY_FILE",
        ),
    ] {
        let err = parse(&pairs).expect_err("one file alone is refused");
        assert_eq!(err.variable, missing, "{pairs:?}: {err}");
        let text = err.to_string();
        assert!(
            text.contains("TLS_CERT_FILE") && text.contains("TLS_KEY_FILE"),
            "{text}"
        );
    }
    let both = parse(&[
        ("TLS_CERT_FILE", &cert),
        ("TLS_KEY_FILE", &format!(" {key} ")),
    ])
    .unwrap();
    assert_eq!(both.tls, Some(files.clone()));
    let summary = both.summary();
    assert!(
        summary.contains(&format!("tls=cert {cert} key {key}")),
        "{summary}"
    );
    assert!(parse(&[]).unwrap().summary().contains("tls=off"));
}

#[test]
fn tls_files_are_read_and_checked_with_the_settings() {
    let dir = crate::tls::tests::PemDir::new("settings-check");
    let (files, issued) = dir.self_signed();
    let (cert, key) = (
        files.cert.display().to_string(),
        files.key.display().to_string(),
    );
    let missing = dir.dir.join("missing.pem").display().to_string();
    for (pairs, variable, says) in [
        (
            [
                ("TLS_CERT_FILE", missing.as_str()),
                ("TLS_KEY_FILE", key.as_str()),
            ],
            "TLS_CERT_FILE",
            "cannot be read",
        ),
        (
            [
                ("TLS_CERT_FILE", key.as_str()),
                ("TLS_KEY_FILE", key.as_str()),
            ],
            "TLS_CERT_FILE",
            "no PEM certificate",
        ),
        (
            [
                ("TLS_CERT_FILE", cert.as_str()),
                ("TLS_KEY_FILE", cert.as_str()),
            ],
            "TLS_KEY_FILE",
            "no PEM private key",
        ),
    ] {
        let err = parse(&pairs).expect_err("should be refused");
        assert_eq!(err.variable, variable, "{pairs:?}: {err}");
        let text = err.to_string();
        assert!(text.contains(says), "{text}");
        assert!(
            !text.contains(issued.key_pem.lines().nth(1).unwrap()),
            "{text}"
        );
    }
}

#[test]
fn an_upstream_ca_file_adds_each_of_its_certificates_as_a_root() {
    let dir = crate::tls::tests::PemDir::new("settings-ca");
    let (one, two) = (
        crate::tls::tests::Issued::new(),
        crate::tls::tests::Issued::new(),
    );
    // A key in the bundle is skipped, not refused.
    let bundle = dir.write(
        "bundle.pem",
        &format!("{}{}{}", one.cert_pem, one.key_pem, two.cert_pem),
    );
    let path = bundle.display().to_string();
    let settings = parse(&[("UPSTREAM_CA_FILE", &format!(" {path} "))]).unwrap();
    let ca = settings.upstream_ca.as_ref().expect("extra roots");
    assert_eq!(ca.file, bundle);
    assert_eq!(ca.roots.len(), 2);
    assert!(
        settings
            .summary()
            .contains(&format!("upstream_ca_file={path} (2 roots)")),
        "{}",
        settings.summary()
    );
    let unset = parse(&[("UPSTREAM_CA_FILE", " ")]).unwrap();
    assert!(unset.upstream_ca.is_none());
    assert!(unset.summary().contains("upstream_ca_file=none"));
}

#[test]
fn an_upstream_ca_file_that_gives_no_usable_root_stops_start_up() {
    let dir = crate::tls::tests::PemDir::new("settings-ca-bad");
    let issued = crate::tls::tests::Issued::new();
    let key_only = dir.write("key.pem", &issued.key_pem);
    let not_pem = dir.write("notes.txt", "just some words\n");
    // Valid PEM and base64, but not a certificate inside.
    let not_x509 = dir.write(
        "garbage.pem",
        &format!(
            "{}-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n",
            issued.cert_pem
        ),
    );
    let truncated = dir.write(
        "truncated.pem",
        issued
            .cert_pem
            .lines()
            .take(3)
            .collect::<Vec<_>>()
            .join("\n")
            .as_str(),
    );
    let missing = dir.dir.join("missing.pem");
    for (file, says) in [
        (&missing, "cannot be read"),
        (&dir.dir, "cannot be read"),
        (&key_only, "holds no PEM certificate"),
        (&not_pem, "holds no PEM certificate"),
        (
            &not_x509,
            "certificate 2 of 2 is not a valid X.509 certificate",
        ),
        (&truncated, "no `-----END` line"),
    ] {
        let path = file.display().to_string();
        let err = parse(&[("UPSTREAM_CA_FILE", &path)]).expect_err("should be refused");
        assert_eq!(err.variable, "UPSTREAM_CA_FILE", "{path}: {err}");
        let text = err.to_string();
        assert!(
            text.starts_with(&format!("UPSTREAM_CA_FILE: {path}: ")),
            "{text}"
        );
        assert!(text.contains(says), "{path}: {text}");
        assert!(
            !text.contains(issued.key_pem.lines().nth(1).unwrap()),
            "{text}"
        );
        assert!(!text.contains("aGVsbG8"), "{text}");
    }
}

#[test]
fn upstream_proxy_wins_over_the_conventional_variables_and_no_proxy() {
    let proxies = |pairs: &[(&str, &str)]| parse(pairs).unwrap().upstream_proxy.describe();
    assert_eq!(proxies(&[]), "none");
    assert_eq!(
        proxies(&[
            (
                "UPSTREAM_PROXY",
                "http://me:hunter2@p1:3128, socks5h://p2:1080"
            ),
            ("HTTPS_PROXY", "http://other:3128"),
            ("NO_PROXY", "*"),
        ]),
        "http://me:***@p1:3128,socks5h://p2:1080"
    );
    assert_eq!(proxies(&[("https_proxy", "p:3128")]), "http://p:3128");
    assert_eq!(
        proxies(&[("HTTPS_PROXY", "http://a:1"), ("ALL_PROXY", "socks5://b:2")]),
        "http://a:1"
    );
    assert_eq!(proxies(&[("all_proxy", "socks5://b:2")]), "socks5://b:2");
    for no_proxy in [
        "googleapis.com",
        ".googleapis.com",
        "*",
        "localhost,generativelanguage.googleapis.com",
    ] {
        assert_eq!(
            proxies(&[("HTTPS_PROXY", "http://a:1"), ("no_proxy", no_proxy)]),
            "none",
            "{no_proxy}"
        );
    }
    assert_eq!(
        proxies(&[
            ("HTTPS_PROXY", "http://a:1"),
            ("NO_PROXY", "127.0.0.1"),
            ("GEMINI_BASE_URL", "http://127.0.0.1:8080"),
        ]),
        "none"
    );
    assert_eq!(
        proxies(&[("HTTPS_PROXY", "http://a:1"), ("NO_PROXY", "example.com")]),
        "http://a:1"
    );
}

#[test]
fn a_bad_proxy_url_names_its_variable_and_never_its_password() {
    for (name, value, expected) in [
        (
            "UPSTREAM_PROXY",
            "socks4://me:hunter2@p:1080",
            "unknown proxy scheme",
        ),
        (
            "UPSTREAM_PROXY",
            "http://p:1,http://me:hunter2@q",
            "entry 2: a proxy URL needs a port",
        ),
        (
            "UPSTREAM_PROXY",
            "http://p:1,,http://q:2",
            "entry 2 is empty",
        ),
        (
            "HTTPS_PROXY",
            "ftp://me:hunter2@p:21",
            "unknown proxy scheme",
        ),
        ("ALL_PROXY", "socks5://me:hunter2@p", "needs a port"),
    ] {
        let error = parse(&[(name, value)])
            .err()
            .unwrap_or_else(|| panic!("{value} parsed"));
        assert_eq!(error.variable, name, "{value}");
        assert!(error.problem.contains(expected), "{value}: {error}");
        assert!(!error.to_string().contains("hunter2"), "{value}: {error}");
    }
    let settings = parse(&[("UPSTREAM_PROXY", "socks5://me:hunter2@p:1080")]).unwrap();
    assert!(!settings.summary().contains("hunter2"));
    assert!(settings
        .summary()
        .contains("upstream_proxy=socks5://me:***@p:1080"));
    assert!(!format!("{settings:?}").contains("hunter2"));
}
