# syntax=docker/dockerfile:1
#
# kfbridge image: the service (/usr/local/bin/kfbridge) and the step runner
# (/usr/local/bin/kfbridge-step) in one image. The same image serves as
#   - the kfbridge sidecar of a Kubeflow notebook pod (deploy/), and
#   - the runner image of KFP steps: the Argo init container runs
#     `kfbridge-step cp /usr/local/bin/kfbridge-step /kfbridge/bin/kfbridge-step`
#     and the step containers exec the copy.
# Both binaries are static (CGO_ENABLED=0), so the image needs no libc, no shell and no network at
# run time; it runs as a non-root user.
#
#   docker build --build-arg VERSION=0.1.0 -t ghcr.io/kfbridge/kfbridge:0.1.0 .
#
# deploy/deploy_test.go checks these properties, and builds both binaries the way this file does.

# The Go version of go.mod's go directive.
ARG GO_VERSION=1.26.8

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
WORKDIR /src
# Modules first, so a source change does not download them again.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG TARGETOS=linux
ARG TARGETARCH
# Static binaries: no cgo (os/user, net use their pure-Go implementations), no libc dependency.
ENV CGO_ENABLED=0
RUN GOOS=$TARGETOS GOARCH=$TARGETARCH go build -trimpath \
        -ldflags "-s -w -X github.com/kfbridge/kfbridge/server.Version=${VERSION} -X github.com/kfbridge/kfbridge/runner.Version=${VERSION}" \
        -o /out/ ./cmd/kfbridge ./cmd/kfbridge-step \
    && mkdir -p /out/data && chmod 0700 /out/data

# distroless/static: CA certificates, /etc/passwd with a "nonroot" user (65532), /tmp, tzdata;
# nothing else.
FROM gcr.io/distroless/static-debian12:nonroot AS runtime
ARG VERSION=dev
LABEL org.opencontainers.image.title="kfbridge" \
      org.opencontainers.image.description="Elyra pipelines on Kubeflow Pipelines, with live step logs" \
      org.opencontainers.image.source="https://github.com/kfbridge/kfbridge" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build --chmod=0555 /out/kfbridge /usr/local/bin/kfbridge
COPY --from=build --chmod=0555 /out/kfbridge-step /usr/local/bin/kfbridge-step
COPY --from=build --chown=65532:65532 /out/data /var/lib/kfbridge
USER 65532:65532
ENV KFBRIDGE_ADDR=0.0.0.0:8765 \
    KFBRIDGE_DATA_DIR=/var/lib/kfbridge \
    KFBRIDGE_STEP_BINARY=/usr/local/bin/kfbridge-step
EXPOSE 8765
ENTRYPOINT ["/usr/local/bin/kfbridge"]
CMD ["serve"]
