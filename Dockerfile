# sidecred images: two targets from one file.
#
#   webhook (the default, last stage)  ghcr.io/sidecred/sidecred:<version>
#       sidecred with every runtime dependency: `webhook`, `broker`, `certs`, `check`
#   sidecar                           ghcr.io/sidecred/sidecred-sidecar:<version>
#       only what the injected sidecar runs: sidecred's CLI and sidecar package and
#       botocore (its whole import closure beyond the standard library); no FastAPI,
#       uvicorn, kubernetes client, cryptography, re2, prometheus-client, no sidecred.dev
#
# Image layout (both)
#   /opt/sidecred/               a virtualenv: sidecred and its runtime dependencies, nothing
#                                else (no compilers, no build tools, no test extras, no pip)
#   /opt/sidecred/bin/sidecred   the console script; ENTRYPOINT, and first on PATH
#   user 65532:65532             fixed non-root UID/GID; the chart's runAsUser and the injected
#                                sidecar's securityContext use the same numbers
#   no HEALTHCHECK               Kubernetes probes do that
#   read-only root filesystem    bytecode is compiled at build time; nothing writes to /opt
#
# Dependencies come from hash-locked files (requirements/, written by scripts/lock) and are
# installed with `pip install --require-hashes`. The base defaults to the public image
# pinned by digest; scripts/image passes a Debian base bootstrapped from Debian packages.
#
# Build: docker build -t ghcr.io/sidecred/sidecred:0.1.0 .
#        docker build --target sidecar -t ghcr.io/sidecred/sidecred-sidecar:0.1.0 .
# (scripts/image builds and smoke-tests both with podman.)

ARG BASE_IMAGE=docker.io/library/python:3.11.11-slim-bookworm@sha256:081075da77b2b55c23c088251026fb69a7b2bf92471e491ff5fd75c192fd38e5

# --- the sidecred wheel, built with a hash-locked setuptools ------------------------
FROM ${BASE_IMAGE} AS wheel
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY requirements/ requirements/
RUN python3 -m venv /build \
    && /build/bin/pip install --require-hashes --only-binary :all: -r requirements/build.txt
COPY pyproject.toml README.md LICENSE ./
COPY sidecred/ sidecred/
COPY deploy/examples/ deploy/examples/
RUN /build/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /dist .

# --- /opt/sidecred for the webhook/broker image -------------------------------------
FROM ${BASE_IMAGE} AS webhook-venv
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY requirements/image.txt /tmp/requirements.txt
COPY --from=wheel /dist/ /dist/
# pip itself is removed from the venv: the running image never installs anything.
# sidecred.dev (the demo and its local stand-ins) ships in the wheel for `sidecred demo`
# but is not part of a runtime image.
RUN python3 -m venv /opt/sidecred \
    && /opt/sidecred/bin/pip install --require-hashes --only-binary :all: --compile -r /tmp/requirements.txt \
    && /opt/sidecred/bin/pip install --no-deps --compile /dist/sidecred-*.whl \
    && /opt/sidecred/bin/pip uninstall --yes pip \
    && rm -r /opt/sidecred/lib/python3.*/site-packages/sidecred/dev \
    && /opt/sidecred/bin/sidecred webhook --help >/dev/null \
    && /opt/sidecred/bin/sidecred broker --help >/dev/null

# --- /opt/sidecred for the sidecar image: the sidecar's import closure only ----------
FROM ${BASE_IMAGE} AS sidecar-venv
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY requirements/sidecar-image.txt /tmp/requirements.txt
COPY --from=wheel /dist/ /dist/
# The wheel is installed without its dependencies, then the packages the sidecar
# never imports (webhook, certs, dev, broker, pods, kube, serving) are removed: importing them fails loudly.
RUN python3 -m venv /opt/sidecred \
    && /opt/sidecred/bin/pip install --require-hashes --only-binary :all: --compile -r /tmp/requirements.txt \
    && /opt/sidecred/bin/pip install --no-deps --compile /dist/sidecred-*.whl \
    && /opt/sidecred/bin/pip uninstall --yes pip \
    && site=$(/opt/sidecred/bin/python -c 'import sidecred, os; print(os.path.dirname(sidecred.__file__))') \
    && rm -r "${site:?}/webhook" "${site:?}/certs" "${site:?}/dev" "${site:?}/broker" \
        "${site:?}/pods" "${site:?}/kube" "${site:?}/serving" \
    && /opt/sidecred/bin/python -c 'import sidecred.sidecar.main, botocore.session'

# --- what both images share: labels, env, the non-root user, the entry point --------------
FROM ${BASE_IMAGE} AS runtime
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/sidecred/sidecred" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
ENV PATH=/opt/sidecred/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 65532:65532
ENTRYPOINT ["sidecred"]

# The venv is root-owned and read-only to the user: nothing in the image writes to it.
FROM runtime AS sidecar
LABEL org.opencontainers.image.title="sidecred-sidecar" \
      org.opencontainers.image.description="sidecred's credential sidecar: per-pod AWS IAM credentials on the pod's loopback"
COPY --from=sidecar-venv /opt/sidecred /opt/sidecred
CMD ["sidecar"]

FROM runtime AS webhook
LABEL org.opencontainers.image.title="sidecred" \
      org.opencontainers.image.description="Per-pod AWS IAM credentials for Kubernetes: admission webhook and credential broker"
COPY --from=webhook-venv /opt/sidecred /opt/sidecred
CMD ["--help"]
