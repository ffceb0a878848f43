#!/usr/bin/env bash
# Checks the Prometheus files in config/prometheus/: the alert rules
# (`promtool check rules`), their unit tests (`promtool test rules`,
# alerts_test.yml) and the configuration that loads them
# (`promtool check config`). promtool comes with the Debian package
# `prometheus`.
set -euo pipefail
cd "$(dirname "$0")/.."

dir=config/prometheus
if ! command -v promtool >/dev/null 2>&1; then
  echo "check-alerts: promtool is not installed; install the Debian package \`prometheus\` (apt-get install prometheus)" >&2
  exit 1
fi

promtool --version 2>&1 | sed -n 1p
promtool check rules "$dir/alerts.yml"
promtool test rules "$dir/alerts_test.yml"
promtool check config "$dir/prometheus.yml"
