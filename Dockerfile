# syntax=docker/dockerfile:1
#
# modelserver on the CPU: the binary and ONNX Runtime's CPU library on Debian
# slim. One image serves one Truss-style model directory at /app (config.yaml
# + model.onnx), or a language model named with --model; it is also the base
# of the images of CPU Chainlets (chains.DefaultImage, modelserver:latest).
#
#   docker build -t modelserver:latest .
#   docker run -p 8080:8080 -v "$PWD/my-model:/app:ro" modelserver:latest
#   docker run -p 8080:8080 -v hf-cache:/cache/huggingface modelserver:latest --model phi3
#
# docker build --build-context model=path/to/my-model ... bakes the model into
# /app instead. The GPU image is Dockerfile.cuda. deploy/dockerfile_test.go
# checks this file's invariants (no Docker engine runs where the tests do).

# Base images. Go and Debian match Dockerfile.cuda's; the build and runtime
# stages share the Debian release, so the cgo binary finds the glibc it was
# linked against.
ARG GO_VERSION=1.26.8
ARG DEBIAN_RELEASE=bookworm
# Node only runs scripts/install-onnxruntime.sh, which fetches ONNX Runtime's
# CPU library with npm and checks it; the script alone pins its version and
# sha256, for this image and for `go test` alike.
ARG NODE_VERSION=24.12.0

# The model to bake into /app; empty unless replaced with
# --build-context model=DIR.
FROM scratch AS model

FROM golang:${GO_VERSION}-${DEBIAN_RELEASE} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# onnxruntime_go opens the library with dlopen through cgo.
RUN CGO_ENABLED=1 go build -trimpath -ldflags="-s -w" -o /out/modelserver ./cmd/modelserver

FROM node:${NODE_VERSION}-${DEBIAN_RELEASE}-slim AS onnxruntime
COPY scripts/install-onnxruntime.sh /src/scripts/
RUN ORT_INSTALL_DIR=/out/lib /src/scripts/install-onnxruntime.sh

FROM debian:${DEBIAN_RELEASE}-slim AS runtime
# ca-certificates: --model phi3 downloads over TLS; curl: the health check;
# libstdc++6: ONNX Runtime's C++ runtime. The Hugging Face cache is created
# for the user so that a named volume mounted there inherits its owner.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates curl libstdc++6 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin modelserver \
 && mkdir -p /cache/huggingface \
 && chown 10001:10001 /cache/huggingface
COPY --from=onnxruntime /out/lib/ /opt/onnxruntime/lib/
COPY --from=build /out/modelserver /usr/local/bin/modelserver
COPY --from=model / /app/
ENV ONNXRUNTIME_LIB=/opt/onnxruntime/lib/libonnxruntime.so \
    HF_HOME=/cache/huggingface
VOLUME ["/cache/huggingface"]
WORKDIR /app
USER 10001:10001
# HTTP (Truss, OpenAI) and gRPC (Open Inference Protocol).
EXPOSE 8080 8081
# Readiness: 200 once the model is loaded, 503 while it loads.
HEALTHCHECK --interval=15s --timeout=5s --start-period=300s --retries=3 \
  CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:8080/v1/models/model"]
# Arguments after the image name come after these; the last --model wins, so
# `docker run IMAGE --model phi3` serves phi3 instead of /app.
ENTRYPOINT ["/usr/local/bin/modelserver", "--model", "/app", "--host", "0.0.0.0", "--port", "8080"]
# The binary is built without the cuda tag: say so rather than probe for a GPU.
CMD ["--device", "cpu"]
