# syntax=docker/dockerfile:1
# One image recipe for every service; the build argument names the binary:
#   docker build --build-arg SERVICE=order-service -t shop/order-service .
# (order-service, inventory-service, payment-service, email-service, analytics-service)

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS builder
ARG SERVICE
# rdkafka builds librdkafka from source with its configure script and make (no cmake);
# the rust image ships these already, installing them keeps that dependency written down.
RUN apt-get update \
    && apt-get install -y --no-install-recommends make gcc g++ perl python3 pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# sqlx only embeds migrations at compile time; never let it look for a database here.
ENV SQLX_OFFLINE=true
# Cache mounts keep the registry and the target dir between builds; the five service builds
# share one target dir (locked, so they take turns) and reuse the shared-events artefacts.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    test -n "${SERVICE}" || { echo "build with --build-arg SERVICE=<binary name>" >&2; exit 1; } \
    && cargo build --release --locked -p "${SERVICE}" \
    && install -D -m 0755 "target/release/${SERVICE}" "/out/${SERVICE}"

FROM debian:${DEBIAN_RELEASE}-slim AS runtime
ARG SERVICE
# ca-certificates for TLS peers, curl for the compose/k8s health checks.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 shop \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin shop \
    && install -d -o 10001 -g 10001 /app
COPY --from=builder /out/${SERVICE} /usr/local/bin/${SERVICE}
# Exec-form ENTRYPOINT cannot expand a build argument, so a fixed link points at the binary:
# it runs as PID 1 and receives SIGTERM directly for a graceful shutdown.
RUN ln -s "/usr/local/bin/${SERVICE}" /usr/local/bin/service
LABEL org.opencontainers.image.title="${SERVICE}" \
      org.opencontainers.image.description="shop ${SERVICE}" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV SERVICE=${SERVICE} \
    LOG_FORMAT=json
# Relative paths the services default to (the email-service's .data/mail without SMTP_URL)
# land in a directory the service user may write.
WORKDIR /app
# Numeric, so that Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/service"]
