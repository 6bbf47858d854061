# syntax=docker/dockerfile:1
#
# authz as a small, static, non-root image:
#
#   docker build -t authz .                      # the authz image (last stage)
#   docker build --target whoami -t whoami .     # the demo app of docker-compose.yml
#   docker build --build-arg GO_VERSION=1.26.9 -t authz .
#
# The runtime is distroless "static" (CA certificates for rediss://, tzdata,
# /etc/passwd with the nonroot user, no shell). It has no curl for a
# HEALTHCHECK: probe GET /healthz and /readyz on port 9091 or 9092 from the
# orchestrator instead (Kubernetes httpGet probes, a load balancer).

# The golang image builds with GOTOOLCHAIN=local, so GO_VERSION must be at
# least go.mod's go line (deploy/compose_test.go checks it).
ARG GO_VERSION=1.26.8
ARG RUNTIME_IMAGE=gcr.io/distroless/static-debian12:nonroot

# Build on the builder's own platform and cross-compile (no emulation for
# docker buildx build --platform linux/arm64).
FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS deps
WORKDIR /src
ENV CGO_ENABLED=0
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download

FROM deps AS build-authz
ARG TARGETOS
ARG TARGETARCH
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    GOOS=$TARGETOS GOARCH=$TARGETARCH go build -trimpath -ldflags "-s -w" -o /out/authz ./cmd/authz

FROM deps AS build-whoami
ARG TARGETOS
ARG TARGETARCH
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    GOOS=$TARGETOS GOARCH=$TARGETARCH go build -trimpath -ldflags "-s -w" -o /out/whoami ./examples/whoami

# The demo app (examples/whoami): shows the X-Auth-* headers Nginx passed on.
FROM ${RUNTIME_IMAGE} AS whoami
COPY --from=build-whoami /out/whoami /whoami
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/whoami"]
CMD ["--listen", "0.0.0.0:8080"]

# authz itself: the default target, so keep it last.
FROM ${RUNTIME_IMAGE} AS authz
COPY --from=build-authz /out/authz /authz
# In a container, loopback (the binary's default) is unreachable from Nginx
# and Prometheus: listen on every interface. AUTHZ_* or flags override.
ENV AUTHZ_LISTEN=0.0.0.0:9091 \
    AUTHZ_METRICS_LISTEN=0.0.0.0:9092
USER 65532:65532
EXPOSE 9091 9092
ENTRYPOINT ["/authz"]
CMD ["serve"]
