# The gateway image: iiif-gateway (with its `redirects` subcommand) and the lazyfetch CLI.
#
# On a machine that can pull images, from the repository root (compiles in a Rust stage):
#
#   docker build -f deploy/images/gateway.Dockerfile -t iiif-gateway .
#
# deploy/images/build (and so CI, offline) builds the same file from a staged context that
# holds the host-built release binaries in prebuilt/, with BUILDER set to the runtime base:
# the first stage then only copies them, and nothing is compiled or fetched. The binaries
# need only glibc, so build them on the Debian release of BASE or older.
#
# Runs as an unprivileged user with a read-only root file system: what it writes goes to
# /run/iiif-gateway (tmpfs: pid file, upgrade socket) and the cache mount /var/cache/iiif (a
# volume shared with the iipsrv containers). Logs go to stderr. The config is mounted at
# /etc/iiif-gateway/gateway.yaml; secrets come as files (admin.token_file, S3
# secret_access_key_file) or, for S3, the usual AWS_* environment variables.
ARG BASE=debian:bookworm-slim
ARG BUILDER=rust:1-bookworm

FROM ${BUILDER} AS binaries
WORKDIR /src
COPY . .
# cmake: aws-lc-sys (S3's TLS) may want it; the Rust image has the C compiler.
RUN mkdir -p /out && \
    if [ -x prebuilt/iiif-gateway ] && [ -x prebuilt/lazyfetch ]; then \
        cp prebuilt/iiif-gateway prebuilt/lazyfetch /out/; \
    else \
        (command -v cmake >/dev/null || \
            (apt-get update && apt-get install -y --no-install-recommends cmake)) && \
        cargo build --release --locked -p gateway -p lazyfetch && \
        cp target/release/iiif-gateway target/release/lazyfetch /out/ && \
        strip --strip-debug /out/iiif-gateway /out/lazyfetch; \
    fi

FROM ${BASE}
# ca-certificates: S3 and Redis over TLS; curl: the health check. Both are already in the
# offline base image CI builds (deploy/images/make-base), so nothing is fetched there.
RUN if [ ! -e /etc/ssl/certs/ca-certificates.crt ] || ! command -v curl >/dev/null; then \
        apt-get update && apt-get install -y --no-install-recommends ca-certificates curl && \
        rm -rf /var/lib/apt/lists/*; \
    fi
COPY --from=binaries /out/iiif-gateway /out/lazyfetch /usr/local/bin/
RUN groupadd --system --gid 10001 iiif && \
    useradd --system --uid 10001 --gid iiif --no-create-home --home-dir /nonexistent iiif && \
    mkdir -p /etc/iiif-gateway /run/iiif-gateway /var/cache/iiif && \
    chown iiif:iiif /run/iiif-gateway /var/cache/iiif
USER 10001:10001
ENV RUST_LOG=info
EXPOSE 8080 9180
# The readiness probe: 200 once an iipsrv process answers (and not while draining).
HEALTHCHECK --interval=5s --timeout=2s --start-period=10s --retries=3 \
    CMD ["curl", "-fsS", "-o", "/dev/null", "--max-time", "2", "http://127.0.0.1:9180/readyz"]
ENTRYPOINT ["/usr/local/bin/iiif-gateway"]
CMD ["-c", "/etc/iiif-gateway/gateway.yaml"]
