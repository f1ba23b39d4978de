# Garage, the S3 server the compose stack and CI use in place of AWS S3 (a stand-in: production
# points the gateways at its real S3). The binary is the host's `cargo install garage --locked`
# (needs only glibc), staged as prebuilt/garage by deploy/images/build; built only from there.
ARG BASE=debian:bookworm-slim
FROM ${BASE}
COPY prebuilt/garage /usr/local/bin/garage
RUN mkdir -p /var/lib/garage && chown 10002:10002 /var/lib/garage
USER 10002:10002
EXPOSE 3900 3903
ENTRYPOINT ["/usr/local/bin/garage", "-c", "/etc/garage.toml"]
CMD ["server", "--single-node", "--default-bucket"]
