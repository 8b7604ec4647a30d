# sidecred images: three targets from one file.
#
#   webhook (the default, last stage)  ghcr.io/sidecred/sidecred:<version>
#       sidecred with every runtime dependency: `webhook`, `broker`, `certs`, `check`
#   sidecar                           ghcr.io/sidecred/sidecred-sidecar:<version>
#       only what the injected sidecar runs: python3 and its standard library from Debian
#       packages, and sidecred's CLI and sidecar package; no third-party package at all, no
#       shell, pip, setuptools, apt or perl (FROM scratch, a root filesystem of package files)
#   sidecar-assume-role               ghcr.io/sidecred/sidecred-sidecar:<version>-assume-role
#       the same plus botocore, for the unsafe assume-role source (behind the webhook's flag)
#
# Image layout (all)
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
#        docker build --target sidecar-assume-role -t ghcr.io/sidecred/sidecred-sidecar:0.1.0-assume-role .
# (scripts/image builds and smoke-tests them with podman.)

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

# --- /opt/sidecred for the sidecar images: the sidecar's import closure only ----------
# The default sidecar needs nothing beyond the standard library (the STS call is an
# unsigned POST). The venv gets no pip or setuptools: the wheel is installed by a
# throw-away pip, and the packages the sidecar never imports are removed (importing
# them fails loudly).
FROM ${BASE_IMAGE} AS sidecar-venv
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=wheel /dist/ /dist/
RUN python3 -m venv /tmp/pip \
    && python3 -m venv --without-pip /opt/sidecred \
    && /tmp/pip/bin/pip --python /opt/sidecred/bin/python install --no-deps --compile /dist/sidecred-*.whl \
    && site=$(/opt/sidecred/bin/python -c 'import sidecred, os; print(os.path.dirname(sidecred.__file__))') \
    && rm -r "${site:?}/webhook" "${site:?}/certs" "${site:?}/dev" "${site:?}/broker" \
        "${site:?}/pods" "${site:?}/kube" "${site:?}/serving" "${site:?}/ops" \
        "${site:?}/sidecar/assume_role.py" "${site:?}/sidecar/__pycache__"/assume_role.* \
    && /opt/sidecred/bin/python -c 'import sidecred.sidecar.main, sidecred.sidecar.fetch, sidecred.sidecar.sources' \
    && rm -r /tmp/pip

# The unsafe assume-role source signs with botocore: a second sidecar image, with
# botocore from the hash lock and the source module kept.
FROM ${BASE_IMAGE} AS sidecar-assume-role-venv
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY requirements/sidecar-assume-role.txt /tmp/requirements.txt
COPY --from=wheel /dist/ /dist/
RUN python3 -m venv /tmp/pip \
    && python3 -m venv --without-pip /opt/sidecred \
    && /tmp/pip/bin/pip --python /opt/sidecred/bin/python install --require-hashes --only-binary :all: --compile -r /tmp/requirements.txt \
    && /tmp/pip/bin/pip --python /opt/sidecred/bin/python install --no-deps --compile /dist/sidecred-*.whl \
    && site=$(/opt/sidecred/bin/python -c 'import sidecred, os; print(os.path.dirname(sidecred.__file__))') \
    && rm -r "${site:?}/webhook" "${site:?}/certs" "${site:?}/dev" "${site:?}/broker" \
        "${site:?}/pods" "${site:?}/kube" "${site:?}/serving" "${site:?}/ops" \
    && /opt/sidecred/bin/python -c 'import sidecred.sidecar.main, sidecred.sidecar.assume_role' \
    && rm -r /tmp/pip

# --- the sidecar images' root filesystem: the files of the Debian packages python3 runs on --
# python3 and its standard library, the C library, OpenSSL (TLS to STS or the broker),
# expat (STS answers in XML) and zlib, with the bytecode Debian compiled at install time,
# Debian's CA bundle, and the venv. Left out: docs (but each package's copyright), man pages,
# locales, glibc's iconv modules; and every other package of the base: no shell, pip,
# setuptools, apt, dpkg or perl. The file list is checked by running the sidecar's imports
# in the new root.
FROM ${BASE_IMAGE} AS sidecar-root-base
RUN mkdir -p /rootfs/usr/bin /rootfs/usr/lib /rootfs/usr/lib64 /rootfs/usr/sbin /rootfs/etc /rootfs/opt \
    && ln -s usr/bin /rootfs/bin && ln -s usr/lib /rootfs/lib \
    && ln -s usr/lib64 /rootfs/lib64 && ln -s usr/sbin /rootfs/sbin \
    && dpkg-query -L python3-minimal python3.11-minimal libpython3.11-minimal libpython3.11-stdlib \
        libc6 libssl3 libexpat1 zlib1g >/tmp/listed \
    && sort -u -o /tmp/listed /tmp/listed \
    && while read -r path; do if [ -f "$path" ] || [ -L "$path" ]; then echo "$path"; fi; done \
        </tmp/listed >/tmp/all \
    && grep -v -E '^/usr/share/(man|lintian|locale|bug)/|/gconv/|^/usr/share/doc/.*/(changelog|NEWS|README)' \
        /tmp/all >/tmp/files \
    && sed -n 's|^\(.*\)/\([^/]*\)\.py$|\1/__pycache__/\2.cpython-311.pyc|p' /tmp/files >/tmp/pycs \
    && while read -r pyc; do if [ -f "$pyc" ]; then echo "$pyc"; fi; done </tmp/pycs >>/tmp/files \
    && printf '%s\n' /usr/lib/ssl/cert.pem /usr/lib/ssl/certs /etc/ld.so.conf >>/tmp/files \
    && tar -C / --no-recursion -cf /tmp/root.tar -T /tmp/files \
    && tar -C /rootfs --keep-directory-symlink -xf /tmp/root.tar \
    && rm /tmp/root.tar \
    && ldconfig -r /rootfs \
    && printf 'root:x:0:0:root:/root:/usr/sbin/nologin\nnonroot:x:65532:65532:nonroot:/nonexistent:/usr/sbin/nologin\n' >/rootfs/etc/passwd \
    && printf 'root:x:0:\nnonroot:x:65532:\n' >/rootfs/etc/group
# Debian's CA bundle (from a layer: during a build, scripts/image mounts the host's over it).
COPY --from=sidecar-venv /etc/ssl/certs/ca-certificates.crt /rootfs/etc/ssl/certs/ca-certificates.crt

FROM sidecar-root-base AS sidecar-root
COPY --from=sidecar-venv /opt/sidecred /rootfs/opt/sidecred
RUN chroot /rootfs /opt/sidecred/bin/python -c \
        'import ssl, sidecred.sidecar.main, sidecred.sidecar.fetch, sidecred.sidecar.sts_client, sidecred.sidecar.runtime; assert ssl.create_default_context().cert_store_stats()["x509_ca"] > 0'

FROM sidecar-root-base AS sidecar-assume-role-root
COPY --from=sidecar-assume-role-venv /opt/sidecred /rootfs/opt/sidecred
RUN chroot /rootfs /opt/sidecred/bin/python -c \
        'import sidecred.sidecar.main, sidecred.sidecar.runtime, sidecred.sidecar.assume_role, botocore.session'

# --- the webhook image's runtime: labels, env, the non-root user, the entry point ---------
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

# The sidecar images are their root filesystem alone (FROM scratch), root-owned and
# read-only to the user: nothing in them writes anywhere. Both take their metadata,
# user and entry point from sidecar-image.
FROM scratch AS sidecar-image
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/sidecred/sidecred" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
ENV PATH=/opt/sidecred/bin:/usr/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 65532:65532
ENTRYPOINT ["sidecred"]
CMD ["sidecar"]

FROM sidecar-image AS sidecar
LABEL org.opencontainers.image.title="sidecred-sidecar" \
      org.opencontainers.image.description="sidecred's credential sidecar: per-pod AWS IAM credentials on the pod's loopback"
COPY --from=sidecar-root /rootfs/ /

FROM sidecar-image AS sidecar-assume-role
LABEL org.opencontainers.image.title="sidecred-sidecar-assume-role" \
      org.opencontainers.image.description="sidecred's credential sidecar with botocore, for the unsafe assume-role source"
COPY --from=sidecar-assume-role-root /rootfs/ /

FROM runtime AS webhook
LABEL org.opencontainers.image.title="sidecred" \
      org.opencontainers.image.description="Per-pod AWS IAM credentials for Kubernetes: admission webhook and credential broker"
COPY --from=webhook-venv /opt/sidecred /opt/sidecred
CMD ["--help"]
