# syntax=docker/dockerfile:1
# kms-proxy, kms-core and kms-k8s-plugin in one minimal image. Build: docker build -t kms:dev .
# Run the proxy (the default), the core (--entrypoint /usr/local/bin/kms-core) or the
# Kubernetes KMS plugin (--entrypoint /usr/local/bin/kms-k8s-plugin); see README
# "Deploy". The runtime image has no shell and runs as the unprivileged user 65532.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --profile dist --locked -p kms-proxy -p kms-core -p kms-k8s-plugin \
        --bin kms-proxy --bin kms-core --bin kms-k8s-plugin \
    && strip target/dist/kms-proxy target/dist/kms-core target/dist/kms-k8s-plugin

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/dist/kms-proxy /src/target/dist/kms-core \
    /src/target/dist/kms-k8s-plugin /usr/local/bin/
USER 65532:65532
EXPOSE 9998 9464 9465
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/kms-proxy", "--healthcheck"]
ENTRYPOINT ["/usr/local/bin/kms-proxy"]
