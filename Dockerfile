# radiomicsd as a container sidecar: watches /data/input, writes de-identified frames to
# /data/output. Build: podman build --format docker -t radiomicsd .   (docker build works too;
# podman needs --format docker to keep HEALTHCHECK, which the OCI image format has no field for.)
#   --build-arg BASE_IMAGE=...      another Debian bookworm image (tests use a local one)
#   --build-arg EXTRAS=analysis     add TensorFlow & co for `radiomicsd analyse` (~1.6 GB more)
ARG BASE_IMAGE=debian:bookworm-slim

FROM ${BASE_IMAGE} AS builder
# python3-venv brings ensurepip (with pip); every dependency ships wheels, so no compiler.
# Not pinned (DL3008): Debian's archive keeps only the newest build of a stable release, so a
# pinned version breaks the build at the next security update; BASE_IMAGE fixes the release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY radiomicsd ./radiomicsd
COPY pipeline ./pipeline
COPY daemon ./daemon
COPY classifiers ./classifiers
# the SCONE session templates ride along in the wheel (pyproject data-files)
COPY scone/session.template.yaml scone/session.dev.template.yaml scone/config.enclave.yml ./scone/
ARG EXTRAS=""
# Networks that inspect TLS (common in hospitals) need their CA for pip to reach PyPI: pass it
# as a build secret, e.g. --secret id=ca-bundle,src=/etc/ssl/certs/ca-certificates.crt. A
# secret is mounted for this step only and never stored in a layer.
RUN --mount=type=secret,id=ca-bundle \
    if [ -s /run/secrets/ca-bundle ]; then export PIP_CERT=/run/secrets/ca-bundle; fi \
    && python3 -m venv /opt/radiomicsd \
    && /opt/radiomicsd/bin/pip install --no-cache-dir --quiet "/src${EXTRAS:+[$EXTRAS]}" \
    && /opt/radiomicsd/bin/pip uninstall --yes --quiet pip

FROM ${BASE_IMAGE}
# The interpreter (the venv's python is a symlink to /usr/bin/python3 of the same base) and
# Tesseract's English model (4 MB) for the OCR check before commit; tesserocr's wheel carries
# the engine itself.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 tesseract-ocr-eng \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --uid 10001 --user-group --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin radiomicsd \
    && install -d -o radiomicsd -g radiomicsd -m 0750 /data /data/input /data/output /data/state
COPY --from=builder /opt/radiomicsd /opt/radiomicsd
COPY deploy/container-config.yml /etc/radiomicsd/config.yml
COPY --chmod=0755 deploy/healthcheck.py /usr/local/bin/radiomicsd-healthcheck
ENV PATH=/opt/radiomicsd/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
# Numeric, so that Kubernetes' runAsNonRoot can check it.
USER 10001:10001
WORKDIR /data
VOLUME ["/data/input", "/data/output", "/data/state"]
# On SIGTERM the daemon finishes the videos in flight within shutdown_timeout (30 s) or drops
# them for the next start (never a partial output) and exits 0. Give it more than that:
# `podman stop -t 45`, compose's stop_grace_period, Kubernetes' terminationGracePeriodSeconds.
STOPSIGNAL SIGTERM
# /healthz answers 200 while the daemon is healthy, 503 otherwise. It listens on loopback, and
# a HEALTHCHECK runs inside the container's network namespace, so it reaches it.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["radiomicsd-healthcheck"]
ENTRYPOINT ["radiomicsd"]
CMD ["watch", "-c", "/etc/radiomicsd/config.yml"]
