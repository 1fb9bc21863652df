# syntax=docker/dockerfile:1
# The tdmon image: one binary for every role (`tdmon dispatcher|worker|collector`,
# `tdmon simnet serve`, `tdmon tail`, ...). docker-compose.yml runs it; the
# image's rust version follows the workspace's `rust-version` (a test in
# crates/tdmon/tests/compose.rs keeps them together).

FROM rust:1.95-trixie AS build
WORKDIR /src
COPY . .
# The cache mounts keep the registry and the build between image builds; the
# binary is copied out of the cached target directory, which the image lacks.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p tdmon-cli \
    && install -m 0755 target/release/tdmon /usr/local/bin/tdmon

FROM debian:trixie-slim
# CA certificates: the worker verifies hosters' TLS, the bus a TLS broker.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
# A user of its own, no login, no root. /simnet is where the demo's simulated
# network leaves its notices, CA and ASN database for the other services (a
# named volume mounted there starts with this owner).
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/tdmon --create-home \
        --shell /usr/sbin/nologin tdmon \
    && install -d -o tdmon -g tdmon /simnet
COPY --from=build /usr/local/bin/tdmon /usr/local/bin/tdmon
# The documented example settings and the scenarios of the simulated network.
COPY config/ /etc/tdmon/
USER tdmon
WORKDIR /var/lib/tdmon
ENTRYPOINT ["tdmon"]
CMD ["--help"]
