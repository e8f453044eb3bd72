# wsgate container image: a static binary on a distroless base (CA
# certificates and a non-root user included, no shell at run time).
#
#   docker build --build-arg VERSION=$(git describe --always) -t wsgate .
#   docker run -p 8080:8080 -p 8443:8443 \
#     -v $PWD/config.yaml:/etc/wsgate/config.yaml:ro -v wsgate-data:/var/lib/wsgate wsgate
#
# The config is read from /etc/wsgate/config.yaml (the image ships
# config.example.yaml there). Relative paths in it (ACME storage
# ./wsgate-data/certs) resolve in /var/lib/wsgate, the data volume.

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
# The build command line. .ci/run runs exactly this line, and
# deploy/deploy_test.go checks that the two stay the same.
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w -X main.version=${VERSION}" -o ./bin/wsgate ./cmd/wsgate

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /src/bin/wsgate /usr/local/bin/wsgate
COPY config.example.yaml /etc/wsgate/config.yaml
WORKDIR /var/lib/wsgate
VOLUME /var/lib/wsgate
# listen, tls_listen, admin_listen of the default config.
EXPOSE 8080 8443 9090
# SIGTERM starts the graceful drain (SPEC "Graceful shutdown"); give the
# container runtime a stop timeout above shutdown_grace (docker run
# --stop-timeout 45).
STOPSIGNAL SIGTERM
USER nonroot:nonroot
ENTRYPOINT ["/usr/local/bin/wsgate"]
CMD ["run", "-config", "/etc/wsgate/config.yaml"]
