#!/usr/bin/env bash
# Validates the Kubernetes manifests in k8s/ without a cluster:
#   1. `kubectl kustomize` renders every overlay in k8s/overlays/;
#   2. every rendered object is valid against its schema, strictly (no unknown field): core
#      kinds against Kubernetes' own OpenAPI schemas, Strimzi/CloudNativePG/KEDA kinds against
#      the CRDs vendored in k8s/crds/ (CEL rules included), PodMonitors and the
#      PrometheusRule against strict schemas of the fields they use;
#   3. the policies: probes, requests and limits, the restricted Pod Security Standard,
#      pinned images, every Secret and ConfigMap reference resolvable, each overlay's shape,
#      and the PrometheusRule holding exactly docker/prometheus/rules.yml's groups (compose's
#      rules, tested by promtool in scripts/check-compose.sh);
#   4. k8s/base/prometheus-rules.yaml is what scripts/sync-prometheus-rules.sh writes from
#      rules.yml, comments included.
# k8s/tools/validate.py does 2 and 3; e2e/tests/k8s.rs checks the topics, users and ACLs
# against the code. The Python tools (k8s/tools/requirements.txt, pinned) are installed
# once into a virtualenv in the cache; later runs take a few seconds.
#
#   scripts/check-k8s.sh            # exit status non-zero on any failure
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/shop"
venv="$cache/k8s-venv"
requirements=k8s/tools/requirements.txt

say() { printf '==> %s\n' "$*"; }
die() { printf 'check-k8s: %s\n' "$*" >&2; exit 1; }

command -v kubectl >/dev/null 2>&1 \
  || die "kubectl is missing: it renders the overlays (kubectl kustomize); install kubectl 1.27 or newer"

# --- 1. Render every overlay ------------------------------------------------------------------
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
rendered=()
for dir in k8s/overlays/*/; do
  overlay="$(basename "$dir")"
  say "kubectl kustomize k8s/overlays/$overlay"
  kubectl kustomize "$dir" >"$work/$overlay.yaml" || die "k8s/overlays/$overlay does not render"
  printf '    %s objects\n' "$(grep -c '^kind:' "$work/$overlay.yaml")"
  rendered+=("$overlay=$work/$overlay.yaml")
done
[ "${#rendered[@]}" -gt 0 ] || die "no overlay in k8s/overlays/"

# --- 2 and 3. Schemas and policies ------------------------------------------------------------
# The virtualenv is rebuilt whenever requirements.txt changes (its hash is kept beside it).
want="$(sha256sum "$requirements" | cut -d' ' -f1)"
if [ "$(cat "$venv/.requirements-sha256" 2>/dev/null)" != "$want" ]; then
  say "installing the validators ($requirements) into $venv"
  rm -rf "$venv"
  mkdir -p "$cache"
  python="$(command -v python3 || true)"
  [ -n "$python" ] || die "python3 is missing (3.9 or newer)"
  if ! "$python" -m venv "$venv" >/dev/null 2>&1; then
    # Debian's python3 comes without venv.
    [ "$(id -u)" -eq 0 ] || die "python3 cannot make a virtualenv: sudo apt-get install python3-venv"
    rm -rf "$venv"
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
          --no-install-recommends -o DPkg::Lock::Timeout=600 python3-venv; } >"$cache/apt-python3-venv.log" 2>&1; then
      cat "$cache/apt-python3-venv.log" >&2
      die "installing python3-venv failed"
    fi
    "$python" -m venv "$venv"
  fi
  if ! "$venv/bin/pip" install --quiet --disable-pip-version-check --no-input \
      -r "$requirements" >"$cache/pip-k8s.log" 2>&1; then
    cat "$cache/pip-k8s.log" >&2
    rm -rf "$venv"
    die "pip install -r $requirements failed"
  fi
  echo "$want" >"$venv/.requirements-sha256"
fi
say "schemas (Kubernetes, vendored CRDs) and policies (k8s/tools/validate.py)"
"$venv/bin/python" k8s/tools/validate.py --crds k8s/crds \
  --prometheus-rules docker/prometheus/rules.yml "${rendered[@]}"

# --- 4. The PrometheusRule is generated ------------------------------------------------------
say "k8s/base/prometheus-rules.yaml is what scripts/sync-prometheus-rules.sh writes"
bash scripts/sync-prometheus-rules.sh --check

say "k8s checks passed"
