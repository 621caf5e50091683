# mcp-oauth in a container: both servers (`mcp-oauth`), or one of them (`auth-server`,
# `mcp-server`) as the command. Multi-stage: the build stage compiles with the `dist` profile;
# the runtime stage holds the three binaries and nothing else, and runs as an unprivileged user
# with the SQLite store in /data (a volume).
#
#   docker build -t mcp-oauth .
#   docker run -p 8999:8999 -p 8990:8990 -v mcp-oauth-data:/data \
#     -e AUTH_SERVER_LISTEN=0.0.0.0:8999 -e MCP_SERVER_LISTEN=0.0.0.0:8990 mcp-oauth

FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock askama.toml build.rs ./
COPY src src
COPY migrations migrations
COPY bench bench
COPY testkit testkit
RUN cargo build --locked --profile dist --bins -p mcp-oauth

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin mcp-oauth \
    && mkdir /data && chown mcp-oauth /data
COPY --from=build /src/target/dist/mcp-oauth /src/target/dist/auth-server /src/target/dist/mcp-server /usr/local/bin/
USER mcp-oauth
WORKDIR /data
ENV AUTH_SERVER_DATA_DIR=/data
VOLUME /data
EXPOSE 8999 8990
CMD ["mcp-oauth"]
