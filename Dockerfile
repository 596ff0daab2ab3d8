# syntax=docker/dockerfile:1
# pfgateway's container image: a static binary on distroless, non-root.
#   docker build -t pfgateway:dev .
# Not built in CI here (no container engine on the CI machine).

# The builder matches go.mod's go directive.
ARG GO_VERSION=1.26.8

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
# Modules first, so a source change does not download them again.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG TARGETOS=linux
ARG TARGETARCH
# CGO off: a static binary for the distroless static base (no libc).
# -trimpath: no build paths in the binary; -s -w: no symbol/DWARF tables.
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
    go build -trimpath -ldflags "-s -w" \
      -o /out/pfgateway ./cmd/pfgateway

# distroless static, nonroot variant: no shell, no package manager, CA
# certificates and tzdata only; uid/gid 65532 as the chart's securityContext.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/pfgateway /usr/local/bin/pfgateway
USER 65532:65532
# The client-facing HTTPS port and the admin port (metrics, probes).
EXPOSE 6443 9095
ENTRYPOINT ["/usr/local/bin/pfgateway"]
