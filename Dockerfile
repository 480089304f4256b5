# syntax=docker/dockerfile:1
#
# One image, both services: `public-api` (the default command) and `internal-api` (set the
# command). Build it with the git revision, which /version and --version report (.git is not in
# the build context, see .dockerignore):
#
#   docker build --build-arg HALO_GIT_REVISION="$(git rev-parse --short=12 HEAD)" -t halo .
#
# The builder and the runtime use the same Debian release, so the binaries find the glibc they
# were linked against.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS builder
WORKDIR /src
COPY . .
# Read by crates/halo-build-info/build.rs (an ARG is in the environment of RUN).
ARG HALO_GIT_REVISION=unknown
# BuildKit caches keep the registry and the compiled dependencies between builds; the binaries
# are copied out of the cached target before the step ends.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p public-api -p internal-api \
    && install -D -m 0755 -t /out target/release/public-api target/release/internal-api

FROM debian:${DEBIAN_RELEASE}-slim
ARG HALO_GIT_REVISION=unknown
LABEL org.opencontainers.image.title="halo" \
      org.opencontainers.image.revision="${HALO_GIT_REVISION}"
# ca-certificates: TLS to managed Postgres and Valkey. Nothing else: no shell tools, no curl
# (the HEALTHCHECK is the binaries' own `healthcheck` subcommand).
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 halo \
    && useradd --system --uid 10001 --gid halo --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin halo
COPY --from=builder /out/public-api /out/internal-api /usr/local/bin/
# Numeric, so that Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
# In a container: listen on every address, on PORT (which Cloud Run sets too; PORT overrides
# PUBLIC_PORT and INTERNAL_PORT, see crates/halo-config). DATABASE_URL, VALKEY_URL and
# AUTH_JWT_SECRET come from the platform's secrets.
ENV BIND_ADDR=0.0.0.0 \
    PORT=8080
EXPOSE 8080
# Either binary checks whichever service listens on PORT (GET /healthz over loopback).
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["public-api", "healthcheck"]
CMD ["public-api"]
