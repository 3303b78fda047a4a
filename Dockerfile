# authgate in a container: the release binary on Debian slim, run as a non-root user (uid 10001).
#
#   docker build -t authgate .
#   docker run --rm -p 8080:8080 \
#     -v "$PWD/authgate.toml:/etc/authgate/authgate.toml:ro" \
#     -v authgate-data:/var/lib/authgate \
#     -e AUTHGATE_SECRET="$(openssl rand -base64 48)" \
#     authgate
#
# The mounted config must set `listen = "0.0.0.0:8080"` under [server]: the default 127.0.0.1 is
# unreachable from outside the container. Its upstream.url names the app as this container sees it
# (http://127.0.0.1:PORT for a sidecar in the same Kubernetes pod). Relative paths in the config
# (store.path, tokens.secret_file) are taken from the working directory, /var/lib/authgate, so the
# default store.path "data/authgate.db" lands in /var/lib/authgate/data/authgate.db.

FROM rust:1-bookworm AS builder
WORKDIR /src
# Everything the build reads: Cargo.toml, Cargo.lock, build.rs, src/, migrations/ (embedded at
# compile time), and bench/ with examples/ for the training run. .dockerignore keeps target/, data/
# and .git out.
COPY . .
# The profile-guided build that the benchmarks measure (bench/pgo.sh): authgate built instrumented,
# run on a sidecar's traffic over loopback for a few seconds, then built again with that profile
# (14.5k instead of 17.9k instructions per authenticated request). It installs rustup's llvm-tools
# and takes about three times as long as `cargo build --release --locked --bin authgate`, which
# still works in its place.
RUN bench/pgo.sh

FROM debian:bookworm-slim
# No ca-certificates: the app beside authgate is plain HTTP, and the PostgreSQL client's TLS (rustls)
# carries its own root certificates.
RUN groupadd --system --gid 10001 authgate \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /var/lib/authgate \
      --shell /usr/sbin/nologin authgate \
 && mkdir -p /var/lib/authgate /etc/authgate \
 && chown 10001:10001 /var/lib/authgate
COPY --from=builder /src/target/pgo/authgate /usr/local/bin/authgate
# With the default SQLite store its database lives here: mount a volume to keep users, sessions and
# revocations (with a read-only root filesystem, this directory must be a writable volume).
WORKDIR /var/lib/authgate
USER 10001:10001
ENV AUTHGATE_CONFIG=/etc/authgate/authgate.toml
EXPOSE 8080
# SIGTERM (docker stop, Kubernetes) stops accepting and lets in-flight requests finish.
ENTRYPOINT ["authgate"]
