#!/usr/bin/env bash
# Validates docker-compose.yml (and k8s/ manifests, once there are any) without a Docker engine:
#   1. docker-compose 1.29 (Debian's package) parses it and resolves anchors: `config -q`;
#      the modern `docker compose` plugin too, when this machine has it;
#   2. every file the compose file points at (build context, Dockerfile, bind mounts) exists;
#   3. dclint (npm) checks it against the Compose Specification schema and its lint rules;
#   4. dockerfile-utils (npm) lints the Dockerfile the five services are built from.
# Tools are installed once into a cache and reused, so a second run takes a few seconds.
#
#   scripts/check-compose.sh            # exit status non-zero on any failure
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
compose_file=docker-compose.yml
cache="${XDG_CACHE_HOME:-$HOME/.cache}/shop"

say() { printf '==> %s\n' "$*"; }
die() { printf 'check-compose: %s\n' "$*" >&2; exit 1; }

[ -f "$compose_file" ] || die "$compose_file not found in $root"

# --- 1. Compose parsers -----------------------------------------------------------------------
if ! command -v docker-compose >/dev/null 2>&1; then
  [ "$(id -u)" -eq 0 ] || die "docker-compose is missing; install Debian's package: sudo apt-get install docker-compose"
  say "installing docker-compose (Debian package) without the Docker engine it recommends"
  mkdir -p "$cache"
  if ! { apt-get update -qq \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-compose
  } >"$cache/apt-docker-compose.log" 2>&1; then
    cat "$cache/apt-docker-compose.log" >&2
    die "installing docker-compose failed"
  fi
fi
say "docker-compose config -q ($(docker-compose version --short 2>/dev/null || echo '?'))"
docker-compose -f "$compose_file" config -q

if docker compose version >/dev/null 2>&1; then
  say "docker compose config -q ($(docker compose version --short))"
  docker compose -f "$compose_file" config -q
else
  say "docker compose plugin not installed: skipped (docker-compose 1.29 checked the file)"
fi

# --- 2. Files the compose file refers to -----------------------------------------------------
# docker-compose 1.29 depends on PyYAML, so the system python3 can read its resolved output.
py=""
for candidate in /usr/bin/python3 python3; do
  if "$candidate" -c 'import yaml' 2>/dev/null; then py="$candidate"; break; fi
done
[ -n "$py" ] || die "no python3 with PyYAML found (Debian: apt-get install python3-yaml)"
say "build contexts, Dockerfiles and bind-mount sources exist"
resolved="$(mktemp)"
trap 'rm -f "$resolved"' EXIT
docker-compose -f "$compose_file" config >"$resolved"
"$py" - "$resolved" <<'PY'
import os, sys, yaml

with open(sys.argv[1]) as f:
    config = yaml.safe_load(f)
missing = []
for name, service in config["services"].items():
    build = service.get("build")
    if build:
        dockerfile = os.path.join(build["context"], build.get("dockerfile", "Dockerfile"))
        missing += [f"{name}: {p}" for p in (build["context"], dockerfile) if not os.path.exists(p)]
    for volume in service.get("volumes", []):
        # Resolved short syntax: absolute host paths are bind mounts, other names are volumes.
        source = volume["source"] if isinstance(volume, dict) else volume.split(":")[0]
        if source.startswith("/") and not os.path.exists(source):
            missing.append(f"{name}: {source}")
if missing:
    sys.exit("missing: " + ", ".join(missing))
print(f"    {len(config['services'])} services, every referenced file present")
PY

# --- 3. dclint: Compose Specification schema + lint rules ------------------------------------
# npm tools, pinned, installed once into the cache and reused.
npm_prefix="$cache/npm"
npm_tools=(dclint@3.1.0 dockerfile-utils@0.16.3)
installed_version() {
  node -p "require('$npm_prefix/node_modules/$1/package.json').version" 2>/dev/null || true
}
for tool in "${npm_tools[@]}"; do
  if [ "$(installed_version "${tool%@*}")" != "${tool#*@}" ]; then
    command -v npm >/dev/null 2>&1 || die "npm is needed to install ${npm_tools[*]}"
    say "installing ${npm_tools[*]} into $npm_prefix"
    mkdir -p "$npm_prefix"
    npm install --prefix "$npm_prefix" --no-audit --no-fund --loglevel=error "${npm_tools[@]}" >/dev/null
    break
  fi
done
# Two default rules are switched off on purpose:
#   require-project-name-field: docker-compose 1.29 rejects the top-level `name` key;
#   services-alphabetical-order: the file groups infrastructure first, then the services.
say "dclint $(installed_version dclint) (schema validation + rules, warnings fail)"
"$npm_prefix/node_modules/.bin/dclint" "$compose_file" --max-warnings 0 \
  --disable-rule require-project-name-field \
  --disable-rule services-alphabetical-order
echo "    no problems"

# --- 4. The Dockerfile every service is built from --------------------------------------------
say "dockerfile-utils $(installed_version dockerfile-utils) lint Dockerfile"
"$npm_prefix/node_modules/.bin/dockerfile-utils" lint Dockerfile
echo "    no problems"

# --- k8s/ -------------------------------------------------------------------------------------
mapfile -t manifests < <(find k8s -type f \( -name '*.yaml' -o -name '*.yml' \) 2>/dev/null | sort)
if [ "${#manifests[@]}" -eq 0 ]; then
  say "k8s/: no manifests yet (README only): skipped"
else
  say "k8s/: ${#manifests[@]} manifest(s) parse as YAML with apiVersion and kind"
  "$py" - "${manifests[@]}" <<'PY'
import sys, yaml
bad = []
for path in sys.argv[1:]:
    with open(path) as f:
        for doc in yaml.safe_load_all(f):
            if doc is None:
                continue
            if not isinstance(doc, dict) or "apiVersion" not in doc or "kind" not in doc:
                bad.append(path)
if bad:
    sys.exit("not Kubernetes objects (apiVersion/kind missing): " + ", ".join(sorted(set(bad))))
PY
  if command -v kubectl >/dev/null 2>&1 && [ -f k8s/kustomization.yaml ]; then
    say "kubectl kustomize k8s/"
    kubectl kustomize k8s >/dev/null
  fi
fi

say "compose checks passed"
