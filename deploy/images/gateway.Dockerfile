# The gateway image: iiif-gateway (with its `redirects` subcommand) and the lazyfetch CLI.
#
# Built by deploy/images/build, which stages the host-built release binaries as bin/ in the
# build context (`cargo build --release -p gateway -p lazyfetch` first; the binaries need only
# glibc, so build on the Debian release of BASE or older).
#
#   docker build -f deploy/images/gateway.Dockerfile CONTEXT    (CONTEXT holds bin/)
#
# Runs as an unprivileged user with a read-only root file system: what it writes goes to
# /run/iiif-gateway (tmpfs: pid file, upgrade socket) and the cache mount /var/cache/iiif (a
# volume shared with the iipsrv containers). Logs go to stderr. The config is mounted at
# /etc/iiif-gateway/gateway.yaml; secrets come as files (admin.token_file, S3
# secret_access_key_file) or, for S3, the usual AWS_* environment variables.
ARG BASE=debian:bookworm-slim
FROM ${BASE}
# ca-certificates: S3 and Redis over TLS; curl: the health check. Both are already in the
# offline base image CI builds (deploy/images/make-base), so nothing is fetched there.
RUN if [ ! -e /etc/ssl/certs/ca-certificates.crt ] || ! command -v curl >/dev/null; then \
        apt-get update && apt-get install -y --no-install-recommends ca-certificates curl && \
        rm -rf /var/lib/apt/lists/*; \
    fi
COPY bin/iiif-gateway bin/lazyfetch /usr/local/bin/
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
