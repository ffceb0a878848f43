//! The files that package and configure the service, checked without a Docker
//! engine: `.env.example` against the variables the service really reads, the
//! Dockerfile's build and runtime stages, and `docker-compose.yml`.

use gemini_proxy::settings::{Settings, ALL_VARIABLES};
use serde_json::Value;
use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

fn read(relative: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every variable `Settings::from_lookup` asks for, found by asking it (so a
/// new setting cannot be forgotten here), plus `RUST_LOG`, which the logger reads.
fn variables_the_service_reads() -> BTreeSet<String> {
    let asked = RefCell::new(BTreeSet::new());
    Settings::from_lookup(|name| {
        asked.borrow_mut().insert(name.to_owned());
        None
    })
    .expect("the defaults are valid settings");
    let mut asked = asked.into_inner();
    asked.insert("RUST_LOG".into());
    asked
}

/// `NAME=value` and commented-out `# NAME=` lines of an env file: name → value
/// (`None` for a commented-out one).
fn env_file_entries(text: &str) -> Vec<(String, Option<String>)> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            let (commented, rest) = match line.strip_prefix('#') {
                Some(rest) => (true, rest.trim_start()),
                None => (false, line),
            };
            let (name, value) = rest.split_once('=')?;
            let plain = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
            plain.then(|| (name.to_owned(), (!commented).then(|| value.to_owned())))
        })
        .collect()
}

#[test]
fn the_env_example_lists_exactly_the_variables_the_service_reads() {
    let entries = env_file_entries(&read(".env.example"));
    let listed: BTreeSet<String> = entries.iter().map(|(name, _)| name.clone()).collect();
    let read_set = variables_the_service_reads();
    let unknown: Vec<&String> = listed.difference(&read_set).collect();
    let missing: Vec<&String> = read_set.difference(&listed).collect();
    assert!(
        unknown.is_empty(),
        ".env.example sets variables the service never reads: {unknown:?}"
    );
    assert!(
        missing.is_empty(),
        ".env.example does not mention {missing:?} (add them, commented out if need be)"
    );
    let mut seen = BTreeSet::new();
    for (name, _) in entries.iter().filter(|(_, value)| value.is_some()) {
        assert!(seen.insert(name), "{name} is set twice in .env.example");
    }
}

#[test]
fn the_env_example_is_a_valid_configuration_as_is() {
    let map: HashMap<String, String> = env_file_entries(&read(".env.example"))
        .into_iter()
        .filter_map(|(name, value)| Some((name, value?)))
        .collect();
    if let Err(e) = Settings::from_map(&map) {
        panic!(".env.example copied to .env would not start: {e}");
    }
}

#[test]
fn all_variables_is_exactly_what_the_service_reads() {
    let declared: BTreeSet<String> = ALL_VARIABLES.iter().map(|v| v.to_string()).collect();
    let mut read_set = variables_the_service_reads();
    read_set.remove("RUST_LOG");
    assert_eq!(declared, read_set, "settings::ALL_VARIABLES");
}

#[test]
fn the_settings_table_lists_exactly_the_variables_the_service_reads() {
    let page = read("docs/configuration.md");
    let section = page
        .split("\n## Settings")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("a `## Settings` section in docs/configuration.md");
    let documented: BTreeSet<String> = section
        .lines()
        .filter_map(|line| line.strip_prefix("| `")?.split('`').next())
        .map(str::to_owned)
        .collect();
    let mut read_set = variables_the_service_reads();
    // RUST_LOG is explained in the LOG_LEVEL row rather than a row of its own.
    read_set.remove("RUST_LOG");
    assert_eq!(
        documented, read_set,
        "docs/configuration.md `## Settings` table"
    );
}

// ---------------------------------------------------------------- Dockerfile

/// One Dockerfile instruction: its keyword (upper case) and the rest, with
/// continuation lines joined.
struct Instruction {
    keyword: String,
    args: String,
}

/// The instructions of each stage, in order.
fn dockerfile_stages() -> Vec<Vec<Instruction>> {
    let text = read("Dockerfile");
    let mut logical = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if current.is_empty() && (trimmed.starts_with('#') || trimmed.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                logical.push(std::mem::take(&mut current));
            }
        }
    }
    let mut stages: Vec<Vec<Instruction>> = Vec::new();
    for line in logical {
        let (keyword, args) = line.split_once(char::is_whitespace).unwrap_or((&line, ""));
        let instruction = Instruction {
            keyword: keyword.to_ascii_uppercase(),
            args: args.trim().to_owned(),
        };
        if instruction.keyword == "FROM" {
            stages.push(Vec::new());
        }
        stages
            .last_mut()
            .expect("the Dockerfile starts with FROM")
            .push(instruction);
    }
    stages
}

fn find<'a>(stage: &'a [Instruction], keyword: &str) -> Vec<&'a str> {
    stage
        .iter()
        .filter(|i| i.keyword == keyword)
        .map(|i| i.args.as_str())
        .collect()
}

/// The `[[bin]]` names of Cargo.toml.
fn binary_targets() -> Vec<String> {
    let manifest: toml::Table = toml::from_str(&read("Cargo.toml")).expect("Cargo.toml parses");
    manifest["bin"]
        .as_array()
        .expect("[[bin]] targets")
        .iter()
        .filter_map(|bin| bin["name"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn the_dockerfile_builds_the_release_binary_in_a_separate_stage() {
    assert!(
        binary_targets().contains(&"gemini-proxy".to_owned()),
        "Cargo.toml has a [[bin]] named gemini-proxy"
    );
    let stages = dockerfile_stages();
    assert!(stages.len() >= 2, "a multi-stage build");
    let build = &stages[0];
    let from = find(build, "FROM")[0];
    let stage_name = from
        .split_whitespace()
        .skip_while(|w| !w.eq_ignore_ascii_case("as"))
        .nth(1)
        .expect("the build stage is named (FROM … AS build)");
    assert!(
        find(build, "COPY").iter().any(|c| c.contains("Cargo.lock")),
        "the build uses the lock file"
    );
    let cargo = find(build, "RUN")
        .into_iter()
        .find(|r| r.contains("cargo build"))
        .expect("a RUN cargo build");
    let words: Vec<&str> = cargo.split_whitespace().collect();
    assert!(words.contains(&"--release"), "{cargo}");
    assert!(
        words.windows(2).any(|w| w == ["--bin", "gemini-proxy"]),
        "builds the bin gemini-proxy: {cargo}"
    );

    // The runtime stage copies what `cargo build --release` produced.
    let workdir = find(build, "WORKDIR")
        .last()
        .map_or("/", |w| w.trim_end_matches('/'));
    let built = format!("{workdir}/target/release/gemini-proxy");
    let runtime = stages.last().expect("a runtime stage");
    let copy = find(runtime, "COPY")
        .into_iter()
        .find(|c| c.starts_with(&format!("--from={stage_name} ")))
        .expect("COPY --from=<build stage>");
    let parts: Vec<&str> = copy.split_whitespace().collect();
    assert_eq!(parts.len(), 3, "one source and its destination: {copy}");
    assert_eq!(parts[1], built, "the path cargo build --release writes");
    let installed = parts[2];
    let entrypoint = find(runtime, "ENTRYPOINT").join(" ");
    assert!(
        entrypoint.contains(installed),
        "ENTRYPOINT runs {installed}: {entrypoint}"
    );
}

#[test]
fn the_image_runs_as_a_non_root_user_with_config_a_healthcheck_and_the_default_port() {
    let stages = dockerfile_stages();
    let runtime = stages.last().expect("a runtime stage");

    let user = find(runtime, "USER");
    let user = user.last().expect("a USER in the runtime stage");
    let name = user.split(':').next().unwrap_or_default();
    assert!(
        !matches!(name, "root" | "0" | ""),
        "runs as a non-root user, not `{user}`"
    );
    let created = name.bytes().all(|b| b.is_ascii_digit())
        || find(runtime, "RUN")
            .iter()
            .any(|r| (r.contains("useradd") || r.contains("adduser")) && r.contains(name));
    assert!(created, "the user `{name}` is created in the runtime stage");
    let user_at = runtime
        .iter()
        .position(|i| i.keyword == "USER")
        .unwrap_or(0);
    assert!(
        !runtime[user_at..].iter().any(|i| i.keyword == "RUN"),
        "nothing runs as root after USER"
    );

    assert!(
        find(runtime, "COPY").iter().any(|c| {
            let parts: Vec<&str> = c.split_whitespace().collect();
            !c.starts_with("--from") && parts.first() == Some(&"config")
        }),
        "the runtime stage copies config/"
    );

    let healthcheck = find(runtime, "HEALTHCHECK");
    let healthcheck = healthcheck.first().expect("a HEALTHCHECK");
    assert!(
        healthcheck.contains("CMD") && healthcheck.contains("/health"),
        "{healthcheck}"
    );

    let default_port = Settings::from_lookup(|_| None).expect("defaults").port;
    let exposed: Vec<&str> = find(runtime, "EXPOSE")
        .iter()
        .flat_map(|e| e.split_whitespace())
        .collect();
    assert!(
        exposed.contains(&default_port.to_string().as_str())
            || exposed.contains(&format!("{default_port}/tcp").as_str()),
        "EXPOSE {default_port} (the default PORT), found {exposed:?}"
    );
    for env in find(runtime, "ENV") {
        if let Some(port) = env
            .split_whitespace()
            .find_map(|pair| pair.strip_prefix("PORT="))
        {
            assert_eq!(port, default_port.to_string(), "ENV PORT matches EXPOSE");
        }
    }
}

#[test]
fn the_docker_build_context_leaves_out_secrets_and_build_output() {
    let ignored: Vec<String> = read(".dockerignore")
        .lines()
        .map(|l| {
            l.trim()
                .trim_start_matches('/')
                .trim_end_matches('/')
                .to_owned()
        })
        .collect();
    for entry in ["target", ".env", ".git"] {
        assert!(
            ignored.iter().any(|i| i == entry),
            ".dockerignore leaves out {entry}"
        );
    }
}

// ---------------------------------------------------------------- docker-compose.yml

/// docker-compose.yml as JSON, when python3 with PyYAML is here to parse it.
fn compose_as_json(text: &str) -> Option<Value> {
    let mut child = Command::new("python3")
        .args([
            "-c",
            "import sys, json, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    child.stdin.take()?.write_all(text.as_bytes()).ok()?;
    let output = child.wait_with_output().ok()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if stderr.contains("No module named") {
        return None;
    }
    assert!(
        output.status.success(),
        "docker-compose.yml is not valid YAML: {stderr}"
    );
    Some(serde_json::from_slice(&output.stdout).expect("JSON from python"))
}

/// A compose list or map of `environment`, as name → value.
fn compose_environment(service: &Value) -> HashMap<String, String> {
    match &service["environment"] {
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| {
                let value = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
                (k.clone(), value)
            })
            .collect(),
        Value::Array(list) => list
            .iter()
            .filter_map(|item| {
                let (k, v) = item.as_str()?.split_once('=')?;
                Some((k.to_owned(), v.to_owned()))
            })
            .collect(),
        _ => HashMap::new(),
    }
}

#[test]
fn the_compose_file_runs_the_service_with_prometheus_and_grafana() {
    let text = read("docker-compose.yml");
    for needle in [
        "./config/prometheus.yml:",
        "./config/grafana/provisioning/datasources:",
        "./config/grafana/provisioning/dashboards:",
        "./config/grafana/dashboards:",
        "${GEMINI_API_KEY:-}",
        "API_KEYS:",
        "GF_AUTH_ANONYMOUS_ENABLED",
    ] {
        assert!(
            text.contains(needle),
            "`{needle}` not in docker-compose.yml"
        );
    }
    assert!(!text.contains('\t'), "YAML indentation must not use tabs");

    let Some(compose) = compose_as_json(&text) else {
        // Straight to stderr, past the test harness's capture, so the skip is seen.
        let _ = writeln!(
            std::io::stderr(),
            "NOTICE: python3 with PyYAML is absent; docker-compose.yml checked by text only"
        );
        return;
    };
    let services = &compose["services"];
    let proxy = &services["gemini-proxy"];
    let build_context = proxy["build"]["context"]
        .as_str()
        .or(proxy["build"].as_str())
        .expect("gemini-proxy is built here");
    assert_eq!(build_context, ".");
    assert!(
        proxy["ports"].to_string().contains("5001"),
        "{}",
        proxy["ports"]
    );
    let read_set = variables_the_service_reads();
    for name in compose_environment(proxy).keys() {
        assert!(
            read_set.contains(name),
            "compose sets {name}, which the service never reads"
        );
    }

    // Every host path mounted exists in the repository.
    for (name, service) in services.as_object().expect("services") {
        for volume in service["volumes"].as_array().into_iter().flatten() {
            let Some(source) = volume.as_str().and_then(|v| v.strip_prefix("./")) else {
                continue;
            };
            let source = source.split(':').next().unwrap_or_default();
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(source);
            assert!(
                path.exists(),
                "{name} mounts ./{source}, which does not exist"
            );
        }
    }
    let prometheus = services["prometheus"]["volumes"].to_string();
    assert!(
        prometheus.contains("./config/prometheus.yml:/etc/prometheus/prometheus.yml"),
        "{prometheus}"
    );
    let grafana = compose_environment(&services["grafana"]);
    assert_eq!(
        grafana.get("GF_AUTH_ANONYMOUS_ENABLED").map(String::as_str),
        Some("true")
    );
    assert_eq!(
        grafana
            .get("GF_AUTH_ANONYMOUS_ORG_ROLE")
            .map(String::as_str),
        Some("Viewer")
    );
}

#[test]
fn the_readme_set_up_commands_run_what_they_say() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    assert!(
        readme.contains("cargo run --release -- demo"),
        "the run command"
    );
    assert!(readme.contains("scripts/test.sh"), "the test command");
    // `cargo run` must know which of the two binaries is the service.
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).expect("Cargo.toml");
    assert!(
        manifest.contains("default-run = \"gemini-proxy\""),
        "default-run"
    );
    let ci = std::fs::read_to_string(root.join(".ci/run")).expect(".ci/run");
    assert!(
        ci.contains("scripts/test.sh"),
        "CI runs the README's test command"
    );
}
