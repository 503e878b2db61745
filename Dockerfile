# syntax=docker/dockerfile:1
# One image recipe for every service; the build argument names the binary:
#   docker build --build-arg SERVICE=order-service -t shop/order-service .
# (order-service, inventory-service, payment-service, email-service, analytics-service,
# dashboard: each a workspace package whose binary has the package's name)
#
# The `tools` target puts several command-line tools in one image, without an entrypoint, so
# the command names the tool (compose's `tools` service):
#   docker build --target tools --build-arg SERVICE="shop-load shop-dlt" -t shop/tools .

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS builder
ARG SERVICE
# rdkafka builds librdkafka from source with its configure script and make (no cmake), with
# TLS and SASL (PLAIN, SCRAM) against OpenSSL that openssl-src compiles from source too
# (rdkafka's `ssl-vendored`): OpenSSL's Configure is perl and needs the full perl package
# (IPC::Cmd and other core modules are not in perl-base), then make and gcc. No OpenSSL
# headers or libraries from Debian are used. sqlx and lettre use rustls with ring, which
# needs only the C compiler. The rust image ships all of these already; installing them keeps
# the dependency written down. Versions come with the Debian release the image is built on.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends make gcc g++ perl python3 pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# sqlx only embeds migrations at compile time; never let it look for a database here.
ENV SQLX_OFFLINE=true
# Cache mounts keep the registry and the target dir between builds; the service builds share
# one target dir (locked, so they take turns) and reuse the shop-runtime artefacts.
# SERVICE names one package, or several separated by spaces (the tools image): one
# `cargo build` with a `-p` for each, then each package's binary of the same name to /out.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    test -n "${SERVICE}" || { echo "build with --build-arg SERVICE=<binary name>" >&2; exit 1; } \
    && set -- \
    && for package in ${SERVICE}; do set -- "$@" -p "${package}"; done \
    && cargo build --release --locked "$@" \
    && for package in ${SERVICE}; do install -D -m 0755 "target/release/${package}" "/out/${package}"; done

# What every image runs on. No OpenSSL library: librdkafka's is linked in statically, and
# rustls (PostgreSQL, SMTP) carries Mozilla's roots compiled in (webpki-roots).
FROM debian:${DEBIAN_RELEASE}-slim AS runtime-base
# ca-certificates: without KAFKA_SSL_CA_LOCATION, librdkafka trusts the public CAs of a
# managed cluster from /etc/ssl/certs/ca-certificates.crt, which it finds by probing the usual
# paths (`ssl.ca.location=probe`; a vendored OpenSSL's own default directory is not Debian's).
# curl for the compose/k8s health checks.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 shop \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin shop \
    && install -d -o 10001 -g 10001 /app
# Relative paths the binaries default to (the email-service's .data/mail without SMTP_URL)
# land in a directory the user may write.
WORKDIR /app

# Command-line tools, each on the PATH under its own name: `docker compose run --rm tools
# shop-dlt list`. Not the last stage, so a plain `docker build` still makes a service image.
FROM runtime-base AS tools
ARG SERVICE
COPY --from=builder /out/ /usr/local/bin/
LABEL org.opencontainers.image.title="shop-tools" \
      org.opencontainers.image.description="shop command-line tools: ${SERVICE}" \
      org.opencontainers.image.licenses="Apache-2.0"
USER 10001:10001
CMD ["shop-load", "--help"]

# A service: the one binary named by SERVICE, as PID 1.
FROM runtime-base AS runtime
ARG SERVICE
# Exec-form ENTRYPOINT cannot expand a build argument, so a fixed link points at the binary:
# it runs as PID 1 and receives SIGTERM directly for a graceful shutdown.
RUN case "${SERVICE}" in \
      "" | *" "*) echo "a service image runs one binary: --build-arg SERVICE=<binary name>" >&2; exit 1 ;; \
    esac \
    && ln -s "/usr/local/bin/${SERVICE}" /usr/local/bin/service
COPY --from=builder /out/${SERVICE} /usr/local/bin/${SERVICE}
LABEL org.opencontainers.image.title="${SERVICE}" \
      org.opencontainers.image.description="shop ${SERVICE}" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV SERVICE=${SERVICE} \
    LOG_FORMAT=json
# Numeric, so that Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/service"]
