# gemini-proxy: one binary, built without the demo mock, run as uid 10001 in
# a distroless image.
#
#   docker build --build-arg VERSION=0.1.0 --build-arg SOURCE=https://… -t gemini-proxy .
#
# Build and runtime are the same Debian release (13, trixie), so the binary
# never needs a newer glibc than the runtime has. The toolchain is the one CI
# uses (Cargo.toml's rust-version is the oldest that builds).

# ---------------------------------------------------------------- build
FROM rust:1.95-trixie AS build
WORKDIR /src

# 1. Dependencies, in a layer of their own that changes only with the
# manifests: the workspace's manifests and lock file, stub sources for every
# target Cargo must find, and the same build as below. The stubs exit 101 if
# they were ever run.
COPY Cargo.toml Cargo.lock ./
COPY crates/gemini-mock/Cargo.toml crates/gemini-mock/Cargo.toml
COPY crates/fuzz-targets/Cargo.toml crates/fuzz-targets/Cargo.toml
RUN mkdir -p src crates/gemini-mock/src/bin crates/fuzz-targets/src \
 && echo 'fn main() { std::process::exit(101) }' > src/main.rs \
 && cp src/main.rs crates/gemini-mock/src/bin/mock_gemini.rs \
 && touch src/lib.rs crates/gemini-mock/src/lib.rs crates/fuzz-targets/src/lib.rs \
 && cargo build --release --locked --no-default-features --bin gemini-proxy \
 && rm -rf src crates/gemini-mock/src crates/fuzz-targets/src target/release/gemini-proxy

# 2. The real sources. Their files are touched so that Cargo sees them newer
# than the stubs' outputs whatever times the build context carries; the
# version check fails the build if the binary were still the stub.
COPY src ./src
COPY crates ./crates
RUN find src crates -type f -exec touch {} + \
 && cargo build --release --locked --no-default-features --bin gemini-proxy \
 && /src/target/release/gemini-proxy version

# ---------------------------------------------------------------- runtime
# distroless/cc: glibc, libgcc and nothing else — no shell, no package
# manager, no curl. The binary needs no more: its TLS roots and time-zone data
# are compiled in. The `nonroot` variant is not root even without the USER
# below; USER sets 10001, the uid the Kubernetes manifests expect.
FROM gcr.io/distroless/cc-debian13:nonroot

ARG VERSION=0.1.0
ARG SOURCE=""
LABEL org.opencontainers.image.title="gemini-proxy" \
      org.opencontainers.image.description="A gateway in front of the Gemini API: per-client keys and limits, a key pool, metrics." \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.version="${VERSION}"

WORKDIR /app
COPY --from=build /src/target/release/gemini-proxy /usr/local/bin/gemini-proxy
# The default keys file is /app/config/keys.toml: mount yours there (or set
# KEYS_FILE). .dockerignore keeps a local config/keys.toml out of the image.
COPY config ./config
USER 10001:10001
ENV HOST=0.0.0.0 PORT=5001
EXPOSE 5001
# `gemini-proxy healthcheck` exits 0 when GET http://127.0.0.1:$PORT/health
# answers 200 (https:// when TLS_CERT_FILE and TLS_KEY_FILE are set).
HEALTHCHECK --interval=30s --timeout=3s --start-period=5s --retries=3 \
  CMD ["/usr/local/bin/gemini-proxy", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/gemini-proxy"]
CMD ["serve"]
