# StrapVitService container image (see deploy/README.md).
#
# Targets:
#   gpu (default)  NVIDIA CUDA 13 + cuDNN 9 runtime with the ASP.NET Core 10 runtime; ONNX Runtime's CUDA provider.
#                  Run it with the NVIDIA Container Toolkit (docker run --gpus all ...).
#   cpu            The ASP.NET Core 10 runtime image; ONNX Runtime's CPU provider. About 3 GB smaller.
#
#   docker build --target cpu -t strapvit-service:cpu .
#   docker build --target gpu -t strapvit-service:gpu .
#
# Both run as the non-root user 1654 (the .NET images' "app" user), listen on 8080, carry the embedded default model,
# and work with a read-only root filesystem when /tmp and the cache directory are writable mounts:
#   docker run --read-only --tmpfs /tmp --tmpfs /var/cache/strapvit -p 8080:8080 strapvit-service:cpu

ARG DOTNET_VERSION=10.0
# ONNX Runtime 1.31's CUDA provider links libcudart.so.13, libcublas(Lt).so.13, libcurand.so.10 and loads cuDNN 9:
# any nvidia/cuda 13.x "-cudnn-runtime-ubuntu24.04" tag fits (the host driver must support CUDA 13, i.e. R580+).
ARG CUDA_VERSION=13.0.1

# ---------------------------------------------------------------------------------------------------------------------
FROM mcr.microsoft.com/dotnet/sdk:${DOTNET_VERSION} AS build
WORKDIR /src

# Restore from the project files alone, so code edits reuse the package layer.
COPY global.json Directory.Build.props Directory.Packages.props .editorconfig ./
COPY src/StrapVit.Core/StrapVit.Core.csproj src/StrapVit.Core/
COPY src/StrapVit.Api/StrapVit.Api.csproj src/StrapVit.Api/
RUN dotnet restore src/StrapVit.Api/StrapVit.Api.csproj

COPY src/ src/
COPY models/fashion-vit-tiny/ models/fashion-vit-tiny/
# Universal-patch jobs train on these (Attacks:Universal:TrainImages and HoldOutImages, relative to /app).
COPY samples/fashion-mnist/ samples/fashion-mnist/
# The CPU image drops the CUDA and TensorRT providers (about 285 MB it could never load).
RUN dotnet publish src/StrapVit.Api/StrapVit.Api.csproj -c Release --no-restore -o /out/gpu \
    && test -f /out/gpu/models/fashion-vit-tiny/model.onnx \
    && test -f /out/gpu/models/fashion-vit-tiny/model.json \
    && test -f /out/gpu/samples/fashion-mnist/calib-500-images-idx3-ubyte.gz \
    && test -f /out/gpu/samples/fashion-mnist/test-1000-labels-idx1-ubyte.gz \
    && cp -a /out/gpu /out/cpu \
    && rm /out/cpu/libonnxruntime_providers_cuda.so /out/cpu/libonnxruntime_providers_tensorrt.so

# ---------------------------------------------------------------------------------------------------------------------
# Only a source of the ASP.NET Core runtime for the GPU image (same Ubuntu 24.04 base, so the binaries match).
FROM mcr.microsoft.com/dotnet/aspnet:${DOTNET_VERSION} AS aspnet

# ---------------------------------------------------------------------------------------------------------------------
FROM mcr.microsoft.com/dotnet/aspnet:${DOTNET_VERSION} AS cpu

# ASPNETCORE_HTTP_PORTS: the one listening port. DOTNET_EnableDiagnostics=0: no diagnostic IPC socket in /tmp (set 1 and
# keep /tmp writable to attach dotnet-counters/dotnet-trace). Model__CacheDirectory: derived artefacts (gradient graphs);
# it must be writable, so mount a volume or tmpfs there when the root filesystem is read-only.
ENV ASPNETCORE_HTTP_PORTS=8080 \
    ASPNETCORE_ENVIRONMENT=Production \
    DOTNET_EnableDiagnostics=0 \
    Inference__Device=Cpu \
    Model__CacheDirectory=/var/cache/strapvit

WORKDIR /app
COPY --from=build /out/cpu/ ./
COPY deploy/docker/healthcheck.sh /usr/local/bin/healthcheck
RUN chmod 0755 /usr/local/bin/healthcheck \
    && mkdir -p /var/cache/strapvit \
    && chown 1654:1654 /var/cache/strapvit

USER 1654
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 CMD ["/usr/local/bin/healthcheck", "/healthz/live"]
ENTRYPOINT ["dotnet", "StrapVit.Api.dll"]

# ---------------------------------------------------------------------------------------------------------------------
FROM nvidia/cuda:${CUDA_VERSION}-cudnn-runtime-ubuntu24.04 AS gpu

# What the .NET runtime-deps image adds to Ubuntu (ICU, OpenSSL, CA roots, time zones), then the "app" user with the
# same uid as the .NET images so volumes and securityContexts work for both targets.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates libicu74 libssl3t64 tzdata \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 1654 app \
    && useradd --uid 1654 --gid 1654 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin app \
    && mkdir -p /var/cache/strapvit/cuda \
    && chown -R 1654:1654 /var/cache/strapvit

COPY --from=aspnet /usr/share/dotnet /usr/share/dotnet
RUN ln -s /usr/share/dotnet/dotnet /usr/bin/dotnet

# Inference__Device=Auto: CUDA, else CPU with a logged warning and the StrapVitCudaFallback alert (Cuda fails fast
# instead). CUDA_CACHE_PATH keeps the PTX JIT cache in the writable cache directory, not in a home directory.
ENV DOTNET_ROOT=/usr/share/dotnet \
    ASPNETCORE_HTTP_PORTS=8080 \
    ASPNETCORE_ENVIRONMENT=Production \
    DOTNET_EnableDiagnostics=0 \
    Inference__Device=Auto \
    Model__CacheDirectory=/var/cache/strapvit \
    CUDA_CACHE_PATH=/var/cache/strapvit/cuda

WORKDIR /app
COPY --from=build /out/gpu/ ./
COPY deploy/docker/healthcheck.sh /usr/local/bin/healthcheck
RUN chmod 0755 /usr/local/bin/healthcheck

USER 1654
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 CMD ["/usr/local/bin/healthcheck", "/healthz/live"]
ENTRYPOINT ["dotnet", "StrapVit.Api.dll"]
