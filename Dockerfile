# Build: the release binary, in the official Rust image.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# The workspace's other member (the mock Gemini) must be present for Cargo to
# read the workspace; the image's binary is built without it (no `demo`).
COPY crates ./crates
RUN cargo build --release --locked --no-default-features --bin gemini-proxy

# Run: one binary, as a non-root user, in a small image with CA certificates.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home gemini
WORKDIR /app
COPY --from=build /src/target/release/gemini-proxy /usr/local/bin/gemini-proxy
COPY config ./config
USER gemini
ENV HOST=0.0.0.0 PORT=5001
EXPOSE 5001
HEALTHCHECK --interval=30s --timeout=3s --start-period=5s --retries=3 \
  CMD curl -fsS "http://127.0.0.1:${PORT}/health" || exit 1
ENTRYPOINT ["/usr/local/bin/gemini-proxy"]
CMD ["serve"]
