# nginx as the public front of the gateways (nginx/gateway-front.conf), from Debian's package.
#
#   docker build -f deploy/images/front.Dockerfile -t iiif-front .    (the repository root)
#
# Environment, read at start by front-entrypoint:
#   SERVER_NAME  the public host name it answers for (any other Host gets 421)
#   PUBLIC_HOST [SERVER_NAME]  that host as clients write it, with a port that is not the
#                scheme's default (localhost:8080): the host of every id the gateways write
#   GATEWAYS     the gateways' public listeners, HOST:PORT, space-separated
#   LISTEN [0.0.0.0:8080]
# Runs as www-data (hence a port above 1024); logs go to stdout/stderr.
ARG BASE=debian:bookworm-slim
FROM ${BASE}
RUN if ! command -v nginx >/dev/null || ! command -v curl >/dev/null; then \
        apt-get update && apt-get install -y --no-install-recommends nginx curl && \
        rm -rf /var/lib/apt/lists/*; \
    fi
COPY nginx/gateway-front.conf /etc/iiif-front/gateway-front.conf.template
COPY deploy/images/front-entrypoint /usr/local/bin/front-entrypoint
RUN mkdir -p /var/lib/iiif-front/conf /var/lib/iiif-front/logs /var/lib/iiif-front/run \
        /var/lib/iiif-front/tmp && \
    ln -sf /dev/stdout /var/lib/iiif-front/logs/access.log && \
    ln -sf /dev/stderr /var/lib/iiif-front/logs/error.log && \
    chown -R www-data:www-data /var/lib/iiif-front
USER www-data
ENV LISTEN=0.0.0.0:8080
EXPOSE 8080
HEALTHCHECK --interval=5s --timeout=2s --retries=3 \
    CMD ["curl", "-fsS", "-o", "/dev/null", "--max-time", "2", "http://127.0.0.1:8080/nginx-ping"]
ENTRYPOINT ["/usr/local/bin/front-entrypoint"]
