# Stock IIPImage server 1.1 from Debian's iipimage-server package, unmodified: a supervised set
# of FastCGI processes (iipsrv-pool), configured only by environment variables.
#
#   docker build -f deploy/images/iipsrv.Dockerfile -t iiif-iipsrv .    (the repository root)
#
# Environment (iipsrv reads its own; iipsrv-pool reads the first three):
#   IIPSRV_PROCESSES [2]  processes, one per core is the usual sizing
#   IIPSRV_PORT [9000]    the first one's port; the others take the next ports
#   IIPSRV_BIND [0.0.0.0] the address they listen on
#   FILESYSTEM_PREFIX [/var/cache/iiif/]  the cache mount, mounted read-only (the gateway
#                         fills it and sends paths below it)
#   MAX_CVT [5000]  JPEG_QUALITY [90]  VERBOSITY [1]  LOGFILE [/dev/stdout]
#   OMP_NUM_THREADS [1]  MEMCACHED_SERVERS [empty: off]  and every other iipsrv variable
ARG BASE=debian:bookworm-slim
FROM ${BASE}
# libfcgi-bin (cgi-fcgi) satisfies the package's web-server alternative without apache2,
# and gives the health check a FastCGI client. Already in the offline base image.
RUN if [ ! -x /usr/lib/iipimage-server/iipsrv.fcgi ] || ! command -v cgi-fcgi >/dev/null; then \
        apt-get update && \
        apt-get install -y --no-install-recommends iipimage-server libfcgi-bin && \
        rm -rf /var/lib/apt/lists/*; \
    fi
COPY deploy/images/iipsrv-pool /usr/local/bin/iipsrv-pool
ENV IIPSRV_PROCESSES=2 IIPSRV_PORT=9000 IIPSRV_BIND=0.0.0.0 \
    FILESYSTEM_PREFIX=/var/cache/iiif/ MAX_CVT=5000 JPEG_QUALITY=90 VERBOSITY=1 \
    LOGFILE=/dev/stdout OMP_NUM_THREADS=1 MEMCACHED_SERVERS=
USER www-data
EXPOSE 9000 9001
# Healthy while the first process answers a FastCGI request (any iipsrv answer, 400 included).
HEALTHCHECK --interval=5s --timeout=3s --start-period=5s --retries=3 \
    CMD env -i REQUEST_METHOD=GET QUERY_STRING= REQUEST_URI=/fcgi-bin/iipsrv.fcgi \
        cgi-fcgi -bind -connect "127.0.0.1:${IIPSRV_PORT}" | grep -q '^Status\|^Content-Type\|^Server'
ENTRYPOINT ["/usr/local/bin/iipsrv-pool"]
