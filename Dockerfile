# syntax=docker/dockerfile:1
# Build: docker build -t uipath-gateway .   Run with a database: see docker-compose.yml.

FROM rust:1.95-slim-bookworm AS chef
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /app

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /app/recipe.json recipe.json
RUN cargo chef cook --release --recipe-path recipe.json
COPY . .
# Queries are checked against the committed .sqlx/ data, not a live database.
ENV SQLX_OFFLINE=true
RUN cargo build --release --locked --bin uipath-gateway

# .ci/docker-test builds this stage alone, on a base made from Debian's packages and with the
# binary CI built: it replaces this FROM line and the COPY --from=builder line, nothing else.
FROM debian:bookworm-slim AS runtime
# Versions float with the Debian point release; the image is rebuilt for security fixes.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 gateway \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/uipath-gateway --create-home gateway
COPY --from=builder /app/target/release/uipath-gateway /usr/local/bin/uipath-gateway
USER 10001:10001
WORKDIR /var/lib/uipath-gateway
ENV GATEWAY_HOST=0.0.0.0 \
    GATEWAY_PORT=8080 \
    GATEWAY_DATA_DIR=/var/lib/uipath-gateway \
    GATEWAY_LOG_FORMAT=json
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["uipath-gateway", "healthcheck"]
ENTRYPOINT ["uipath-gateway"]
CMD ["serve"]
