#!/usr/bin/env bash
# Writes k8s/base/prometheus-rules.yaml, the PrometheusRule Kubernetes gets, from
# docker/prometheus/rules.yml, the rules compose's Prometheus loads and promtool tests: the
# envelope, then the rule file's `groups:` indented under `spec:`, its comments included. The
# rules are edited in docker/prometheus/rules.yml only; run this after every change.
#
#   scripts/sync-prometheus-rules.sh           # rewrite the PrometheusRule
#   scripts/sync-prometheus-rules.sh --check   # fail if it is not what this script writes
#
# scripts/check-k8s.sh runs --check, after k8s/tools/validate.py has compared the rendered
# PrometheusRule's groups with rules.yml rule by rule.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "$root"

source_file=docker/prometheus/rules.yml
target=k8s/base/prometheus-rules.yaml

generate() {
  cat <<'HEADER'
# GENERATED from docker/prometheus/rules.yml by scripts/sync-prometheus-rules.sh: edit the
# rules there (promtool tests them, rules.test.yml), then run the script. scripts/check-k8s.sh
# fails while this file differs from what the script writes.
#
# The shop's recording and alerting rules for the Prometheus Operator: the groups compose's
# Prometheus loads, unchanged. They group by `namespace` and `service` only, which mean the
# same under the PodMonitors (pod-monitors.yaml) as in compose. The Prometheus resource must
# select this object: its ruleSelector and ruleNamespaceSelector must match it (label
# app.kubernetes.io/part-of: shop, namespace shop), as its podMonitorSelector must match the
# PodMonitors.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: shop
spec:
HEADER
  # Everything from the top-level `groups:` on, two spaces in; the header comment before it
  # is about compose's checks, and blank lines stay blank (no trailing spaces).
  awk -v file="$source_file" '
    /^groups:/ { found = 1 }
    found && /^[^ #]/ && !/^groups:/ { printf "%s: top-level key other than groups: %s\n", file, $0 > "/dev/stderr"; bad = 1 }
    found { print ($0 == "" ? "" : "  " $0) }
    END {
      if (!found) { printf "%s: no top-level groups:\n", file > "/dev/stderr"; exit 1 }
      if (bad) exit 1
    }
  ' "$source_file"
}

case "${1:-}" in
  "")
    generated="$(generate)"
    printf '%s\n' "$generated" >"$target"
    say "wrote $target from $source_file"
    ;;
  --check)
    generated="$(generate)"
    if ! diff -u "$target" - <<<"$generated" >&2; then
      die "$target is not what scripts/sync-prometheus-rules.sh writes from $source_file (diff above): edit the rules in $source_file, then run scripts/sync-prometheus-rules.sh"
    fi
    ;;
  *)
    die "usage: scripts/sync-prometheus-rules.sh [--check]"
    ;;
esac
