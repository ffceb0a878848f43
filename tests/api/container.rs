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

/// The lower-case proxy variables (`https_proxy`, `all_proxy`, `no_proxy`),
/// which an env file mentions in a comment beside their upper-case twins.
fn lower_case_twin(name: &str) -> bool {
    name.chars().any(|c| c.is_ascii_lowercase())
}

#[test]
fn the_env_example_lists_exactly_the_variables_the_service_reads() {
    let entries = env_file_entries(&read(".env.example"));
    let listed: BTreeSet<String> = entries.iter().map(|(name, _)| name.clone()).collect();
    let read_set: BTreeSet<String> = variables_the_service_reads()
        .into_iter()
        .filter(|name| !lower_case_twin(name) || !listed.contains(&name.to_uppercase()))
        .collect();
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

/// Cargo.toml as a table.
fn manifest() -> toml::Table {
    toml::from_str(&read("Cargo.toml")).expect("Cargo.toml parses")
}

/// The `[[bin]]` names of Cargo.toml.
fn binary_targets() -> Vec<String> {
    manifest()["bin"]
        .as_array()
        .expect("[[bin]] targets")
        .iter()
        .filter_map(|bin| bin["name"].as_str().map(str::to_owned))
        .collect()
}

/// A `[package]` string of Cargo.toml.
fn package_field(field: &str) -> String {
    manifest()["package"][field]
        .as_str()
        .unwrap_or_else(|| panic!("Cargo.toml has package.{field}"))
        .to_owned()
}

/// The manifest of every workspace member: `Cargo.toml`, `crates/…/Cargo.toml`.
fn workspace_manifests() -> Vec<String> {
    manifest()["workspace"]["members"]
        .as_array()
        .expect("[workspace] members")
        .iter()
        .filter_map(|member| member.as_str())
        .map(|member| match member.trim_end_matches('/') {
            "." => "Cargo.toml".to_owned(),
            dir => format!("{dir}/Cargo.toml"),
        })
        .collect()
}

/// The sources of a COPY (flags and the destination left out).
fn copy_sources(args: &str) -> Vec<&str> {
    let words: Vec<&str> = args
        .split_whitespace()
        .filter(|w| !w.starts_with("--"))
        .collect();
    words[..words.len().saturating_sub(1)].to_vec()
}

/// Whether a COPY brings sources rather than manifests only.
fn copies_sources(args: &str) -> bool {
    !args.starts_with("--from")
        && copy_sources(args)
            .iter()
            .any(|s| !(s.ends_with("Cargo.toml") || s.ends_with("Cargo.lock")))
}

/// The `cargo build` commands of a RUN (one RUN may chain several with `&&`).
fn cargo_builds(run: &str) -> Vec<String> {
    run.split("&&")
        .map(str::trim)
        .filter(|command| command.starts_with("cargo build"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_dockerfile_builds_the_dependencies_in_a_layer_of_their_own_then_the_binary() {
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

    // Two builds, the same command: dependencies from the manifests alone,
    // then the binary from the sources.
    let builds: Vec<(usize, String)> = build
        .iter()
        .enumerate()
        .filter(|(_, i)| i.keyword == "RUN")
        .flat_map(|(at, i)| cargo_builds(&i.args).into_iter().map(move |c| (at, c)))
        .collect();
    assert_eq!(
        builds.len(),
        2,
        "a dependency build and the real one: {builds:?}"
    );
    let (deps_at, deps_build) = &builds[0];
    let (real_at, real_build) = &builds[1];
    assert_eq!(
        deps_build, real_build,
        "the dependency layer builds exactly what the real build does, or its cache is not used"
    );
    let words: Vec<&str> = real_build.split_whitespace().collect();
    for flag in ["--release", "--locked", "--no-default-features"] {
        assert!(words.contains(&flag), "{flag} in `{real_build}`");
    }
    assert!(
        words.windows(2).any(|w| w == ["--bin", "gemini-proxy"]),
        "builds the bin gemini-proxy: {real_build}"
    );

    let sources_at = build
        .iter()
        .position(|i| i.keyword == "COPY" && copies_sources(&i.args))
        .expect("a COPY of the sources");
    assert!(
        deps_at < &sources_at && &sources_at < real_at,
        "dependencies are built before any source is copied, the binary after"
    );
    let copied_first: Vec<&str> = build[..*deps_at]
        .iter()
        .filter(|i| i.keyword == "COPY")
        .flat_map(|i| copy_sources(&i.args))
        .collect();
    for needed in workspace_manifests()
        .iter()
        .map(String::as_str)
        .chain(["Cargo.lock"])
    {
        assert!(
            copied_first.contains(&needed),
            "{needed} is copied before the dependency build (found {copied_first:?})"
        );
    }
    let copied_later: Vec<&str> = build[sources_at..*real_at]
        .iter()
        .filter(|i| i.keyword == "COPY")
        .flat_map(|i| copy_sources(&i.args))
        .collect();
    for needed in ["src", "crates"] {
        assert!(
            copied_later.contains(&needed),
            "{needed} is copied before the real build (found {copied_later:?})"
        );
    }

    // The stubs' outputs cannot stand in for the binary: the real sources are
    // touched before the build, and the binary runs after it.
    let after_sources: Vec<&str> = build[sources_at..]
        .iter()
        .filter(|i| i.keyword == "RUN")
        .map(|i| i.args.as_str())
        .collect();
    let after_sources = after_sources.join(" && ");
    let touch = after_sources
        .find("touch")
        .expect("the sources are touched");
    let cargo = after_sources.find("cargo build").expect("cargo build");
    assert!(touch < cargo, "touched before the build: {after_sources}");
    let workdir = find(build, "WORKDIR")
        .last()
        .map_or("/", |w| w.trim_end_matches('/'));
    let built = format!("{workdir}/target/release/gemini-proxy");
    let runs_it = after_sources[cargo..]
        .split("&&")
        .any(|c| c.split_whitespace().collect::<Vec<_>>() == [built.as_str(), "version"]);
    assert!(
        runs_it,
        "`{built} version` runs after the build, so a stub binary fails it: {after_sources}"
    );

    // The runtime stage copies what `cargo build --release` produced.
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

/// The uid (and gid) the image runs as; the Kubernetes manifests assume it.
const IMAGE_USER: &str = "10001:10001";

#[test]
fn the_image_runs_as_uid_10001_with_config_a_healthcheck_command_and_the_default_port() {
    let stages = dockerfile_stages();
    let runtime = stages.last().expect("a runtime stage");

    let user = find(runtime, "USER");
    assert_eq!(
        user.last().copied(),
        Some(IMAGE_USER),
        "the runtime stage ends as USER {IMAGE_USER}"
    );
    // The binary needs glibc and libgcc only, which the base image has: the
    // runtime stage installs nothing (no curl, no shell needed).
    assert!(
        find(runtime, "RUN").is_empty(),
        "nothing is installed in the runtime stage: {:?}",
        find(runtime, "RUN")
    );
    for instruction in runtime {
        assert!(
            !instruction.args.contains("curl") && !instruction.args.contains("wget"),
            "no HTTP client in the image: {} {}",
            instruction.keyword,
            instruction.args
        );
    }

    assert!(
        find(runtime, "COPY").iter().any(|c| {
            let parts: Vec<&str> = c.split_whitespace().collect();
            !c.starts_with("--from") && parts.first() == Some(&"config")
        }),
        "the runtime stage copies config/"
    );

    // HEALTHCHECK runs the binary's own `healthcheck` command, in exec form.
    let installed = find(runtime, "COPY")
        .into_iter()
        .find(|c| c.starts_with("--from="))
        .and_then(|c| c.split_whitespace().last())
        .expect("the installed binary");
    let healthcheck = find(runtime, "HEALTHCHECK");
    let healthcheck = healthcheck.first().expect("a HEALTHCHECK");
    let command = healthcheck
        .split_once("CMD")
        .map(|(_, command)| command.trim())
        .expect("HEALTHCHECK … CMD");
    let command: Vec<String> = serde_json::from_str(command)
        .unwrap_or_else(|e| panic!("HEALTHCHECK CMD in exec form (a JSON array): {e}"));
    assert_eq!(command, [installed, "healthcheck"], "{healthcheck}");

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

/// `key=value` and `key="value with spaces"` pairs of a LABEL or ARG.
fn key_values(args: &str) -> HashMap<String, String> {
    let mut pairs = HashMap::new();
    let mut rest = args.trim();
    while let Some((key, after)) = rest.split_once('=') {
        let (value, next) = match after.strip_prefix('"') {
            Some(quoted) => {
                let end = quoted.find('"').expect("a closing quote");
                (&quoted[..end], &quoted[end + 1..])
            }
            None => after.split_once(char::is_whitespace).unwrap_or((after, "")),
        };
        pairs.insert(key.trim().to_owned(), value.to_owned());
        rest = next.trim_start();
    }
    pairs
}

#[test]
fn the_image_carries_oci_labels_that_match_the_manifest() {
    let stages = dockerfile_stages();
    let runtime = stages.last().expect("a runtime stage");
    let labels: HashMap<String, String> = find(runtime, "LABEL")
        .iter()
        .flat_map(|l| key_values(l))
        .collect();
    let args: HashMap<String, String> = find(runtime, "ARG")
        .iter()
        .flat_map(|a| key_values(a))
        .collect();
    let label = |name: &str| {
        labels
            .get(&format!("org.opencontainers.image.{name}"))
            .unwrap_or_else(|| panic!("LABEL org.opencontainers.image.{name}: {labels:?}"))
            .as_str()
    };
    assert_eq!(label("title"), package_field("name"));
    assert_eq!(label("description"), package_field("description"));
    assert_eq!(label("licenses"), package_field("license"));
    assert_eq!(
        label("version"),
        "${VERSION}",
        "the version comes from ARG VERSION"
    );
    assert_eq!(
        args.get("VERSION").map(String::as_str),
        Some(package_field("version").as_str()),
        "ARG VERSION defaults to Cargo.toml's version"
    );
    assert!(
        label("source").starts_with("${") || label("source").starts_with("https://"),
        "org.opencontainers.image.source: {}",
        label("source")
    );
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
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    for entry in [
        "target",
        "**/target",
        ".env",
        ".git",
        "config/keys.toml",
        "**/node_modules",
        "**/.venv",
    ] {
        assert!(
            ignored.iter().any(|i| i == entry),
            ".dockerignore leaves out {entry}"
        );
    }

    // …but not what the Dockerfile copies from the context.
    let excluded = |path: &str| {
        let parts: Vec<&str> = path.split('/').collect();
        (1..=parts.len()).any(|n| ignored.contains(&parts[..n].join("/")))
            || ignored.iter().any(|i| {
                i.strip_prefix("**/")
                    .is_some_and(|name| parts.contains(&name))
            })
    };
    for stage in dockerfile_stages() {
        for copy in find(&stage, "COPY") {
            if copy.starts_with("--from") {
                continue;
            }
            for source in copy_sources(copy) {
                assert!(
                    !excluded(source.trim_end_matches('/')),
                    "the Dockerfile copies {source}, which .dockerignore leaves out"
                );
            }
        }
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
        "./config/prometheus:",
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
    // Prometheus reads config/prometheus/prometheus.yml, and the rule files it
    // names, from the mounted directory.
    let prometheus = services["prometheus"]["volumes"].to_string();
    assert!(
        prometheus.contains("./config/prometheus:/etc/prometheus:ro"),
        "{prometheus}"
    );
    assert!(
        services["prometheus"]["command"]
            .to_string()
            .contains("--config.file=/etc/prometheus/prometheus.yml"),
        "{}",
        services["prometheus"]["command"]
    );
    let config = read("config/prometheus/prometheus.yml");
    let rule_files: Vec<&str> = config
        .lines()
        .skip_while(|l| !l.starts_with("rule_files:"))
        .skip(1)
        .map_while(|l| l.trim().strip_prefix("- "))
        .collect();
    assert!(
        rule_files.contains(&"alerts.yml"),
        "prometheus.yml loads alerts.yml: {rule_files:?}"
    );
    for file in rule_files {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("config/prometheus")
            .join(file);
        assert!(path.is_file(), "rule file {} is missing", path.display());
    }
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

/// A compose duration (`35s`, `1m30s`, `500ms`) in seconds.
fn compose_duration_secs(text: &str) -> f64 {
    let mut total = 0.0;
    let mut number = String::new();
    let mut chars = text.trim().chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            number.push(c);
            continue;
        }
        let value: f64 = number
            .parse()
            .unwrap_or_else(|_| panic!("duration `{text}`"));
        number.clear();
        total += match (c, chars.peek()) {
            ('m', Some('s')) => {
                chars.next();
                value / 1000.0
            }
            ('h', _) => value * 3600.0,
            ('m', _) => value * 60.0,
            ('s', _) => value,
            _ => panic!("duration `{text}`"),
        };
    }
    assert!(number.is_empty(), "duration `{text}` without a unit");
    total
}

#[test]
fn the_compose_stack_starts_on_health_drains_on_stop_and_scrapes_the_metrics_listener() {
    let Some(compose) = compose_as_json(&read("docker-compose.yml")) else {
        let _ = writeln!(
            std::io::stderr(),
            "NOTICE: python3 with PyYAML is absent; docker-compose.yml start-up order not checked"
        );
        return;
    };
    let services = compose["services"].as_object().expect("services");
    let proxy = &services["gemini-proxy"];
    let environment = compose_environment(proxy);

    // Every dependency waits for its target's health check.
    for (name, service) in services {
        let Some(depends_on) = service["depends_on"].as_object() else {
            assert!(
                service["depends_on"].is_null(),
                "{name}: depends_on in the long form, with a condition"
            );
            continue;
        };
        for (target, dependency) in depends_on {
            assert_eq!(
                dependency["condition"], "service_healthy",
                "{name} waits for {target} to be healthy"
            );
            let test = &services
                .get(target)
                .unwrap_or_else(|| panic!("{name} depends on {target}, which is not a service"))
                ["healthcheck"]["test"];
            assert!(test.is_array(), "{target} has a healthcheck test: {test}");
        }
    }
    assert_eq!(
        proxy["healthcheck"]["test"],
        serde_json::json!(["CMD", "/usr/local/bin/gemini-proxy", "healthcheck"]),
        "the service's health is its own `healthcheck` command"
    );

    // Redis under its profile; the service depends on it only when it is there.
    let redis = &services["redis"];
    assert_eq!(redis["profiles"], serde_json::json!(["redis"]));
    assert_eq!(proxy["depends_on"]["redis"]["required"], false);
    let redis_url = environment.get("REDIS_URL").expect("REDIS_URL");
    assert!(
        redis_url.contains("redis://redis:6379"),
        "REDIS_URL defaults to the compose Redis: {redis_url}"
    );

    // `docker compose stop` leaves the drain its whole time.
    let drain: f64 = environment
        .get("DRAIN_TIMEOUT_SECS")
        .expect("DRAIN_TIMEOUT_SECS")
        .parse()
        .expect("DRAIN_TIMEOUT_SECS is a number, so stop_grace_period can be checked");
    let grace = compose_duration_secs(
        proxy["stop_grace_period"]
            .as_str()
            .expect("stop_grace_period"),
    );
    assert!(
        grace > drain,
        "stop_grace_period {grace} s must be above DRAIN_TIMEOUT_SECS {drain} s"
    );

    // Prometheus scrapes the metrics listener, not the public port.
    let metrics_addr = environment.get("METRICS_ADDR").expect("METRICS_ADDR");
    let (_, metrics_port) = metrics_addr
        .rsplit_once(':')
        .expect("METRICS_ADDR is host:port");
    let config = read("config/prometheus/prometheus.yml");
    assert!(
        config.contains(&format!("\"gemini-proxy:{metrics_port}\"")),
        "config/prometheus/prometheus.yml scrapes gemini-proxy:{metrics_port}:\n{config}"
    );
    assert!(
        !proxy["ports"].to_string().contains(metrics_port),
        "the metrics port is not published: {}",
        proxy["ports"]
    );

    // Images are pinned to a version.
    for (name, service) in services {
        let Some(image) = service["image"].as_str() else {
            continue;
        };
        if !service["build"].is_null() {
            continue;
        }
        let tag = image
            .rsplit_once(':')
            .map(|(_, tag)| tag)
            .filter(|tag| !tag.contains('/'))
            .unwrap_or_else(|| panic!("{name}: image {image} has no tag"));
        assert!(
            tag != "latest" && tag.chars().any(|c| c.is_ascii_digit()),
            "{name}: image {image} is pinned to a version"
        );
    }
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
