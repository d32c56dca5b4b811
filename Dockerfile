# syntax=docker/dockerfile:1
# The daytwo image: one static-ish binary (glibc, no OpenSSL: TLS is rustls with ring) on
# distroless. Build:   docker build -t daytwo:0.1.0 .
# Used by `daytwo deploy manifests` (agent DaemonSet and collector Deployment); docs/kubernetes.md.
# Linted by hadolint in tests/deploy.rs; no Docker engine runs in CI, so it is not built there.

# Build stage: the toolchain this workspace pins (rust-version 1.95) on Debian 12, the same
# glibc as the runtime image below.
FROM docker.io/library/rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# Cache mounts keep the registry and target/ between builds (BuildKit); the binary is copied
# out of the cached target/ because cache mounts are not part of the layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin daytwo \
    && install -D -m 0755 target/release/daytwo /out/daytwo

# Runtime stage: glibc and libgcc only, no shell, no package manager. `nonroot` is uid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="daytwo" \
      org.opencontainers.image.description="Day-two diagnostics for Kubernetes and Linux fleets" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/daytwo /usr/local/bin/daytwo
# The collector runs as this user; the agent DaemonSet sets runAsUser 0 to read host logs.
USER 65532:65532
# OTLP/gRPC, collector HTTP, agent HTTP.
EXPOSE 4317 7700 7701
ENTRYPOINT ["/usr/local/bin/daytwo"]
CMD ["--help"]
