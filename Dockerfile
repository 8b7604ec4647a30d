# sidecred: one image, both entry points.
#
# Image layout
#   /opt/sidecred/               a virtualenv: sidecred and its runtime dependencies, nothing else
#                                (no compilers, no build tools, no test extras, no pip)
#   /opt/sidecred/bin/sidecred   the console script; ENTRYPOINT, and first on PATH
#   user 65532:65532             fixed non-root UID/GID; the chart's runAsUser and the injected
#                                sidecar's securityContext use the same numbers
#   no HEALTHCHECK               Kubernetes probes do that: /readyz and /healthz on the webhook,
#                                the sidecar's startupProbe on its health port
#   read-only root filesystem    bytecode is compiled at build time; nothing writes to /opt
#
# Entry points
#   IMAGE webhook --tls-cert F --tls-key F [--port 8443] ...   admission webhook (the chart's Deployment)
#   IMAGE sidecar                                              credential sidecar (the webhook injects it
#                                                              with command ["sidecred", "sidecar"])
#
# Build: docker build -t ghcr.io/sidecred/sidecred:0.1.0 .

ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml ./
COPY sidecred/ sidecred/
COPY webhook/ webhook/
COPY sidecar/ sidecar/
COPY certs/ certs/
# Build a wheel, then install it with its runtime dependencies into a fresh
# venv; the build tools stay behind in this stage. pip itself is removed from
# the venv: the running image never installs anything.
RUN python -m pip wheel --no-cache-dir --no-deps --wheel-dir /dist . \
    && python -m venv /opt/sidecred \
    && /opt/sidecred/bin/python -m pip install --no-cache-dir --compile /dist/sidecred-*.whl \
    && /opt/sidecred/bin/python -m pip uninstall --yes pip \
    && /opt/sidecred/bin/sidecred --help

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="sidecred" \
      org.opencontainers.image.description="Per-pod AWS IAM credentials for Kubernetes: admission webhook and credential sidecar" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/sidecred/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=builder /opt/sidecred /opt/sidecred
USER 65532:65532
ENTRYPOINT ["sidecred"]
CMD ["--help"]
