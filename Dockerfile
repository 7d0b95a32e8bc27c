# peering: one cluster per container.  Build: docker build -t peering .   (or podman build)
# Run:   docker run -p 8500:8500 -p 8503:8503 -v peering-data:/data \
#          -e PEERING_ADVERTISE_ADDR=<address other clusters reach>:8503 peering
# The container smoke test is `bash deploy/container-test.sh` (README, "Running in a container").

# ---- build stage: a wheel of this project and a virtualenv with only the runtime deps ----
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore
WORKDIR /src

# Runtime dependencies, pinned by the lock.  requirements.lock is the whole dev set (it also
# pins mypy, ruff, pytest...), so it is used as a *constraints* file: pip installs only the
# [project] dependencies of pyproject.toml (and what they pull in), each at the version the lock
# pins.  The check after it fails the build if anything got in that the lock does not pin
# (names compared after normalising case and -_.), so the image never runs an unpinned
# version.  This layer only depends on pyproject.toml and the lock, so code changes reuse it.
COPY pyproject.toml requirements.lock ./
RUN python -m venv /opt/venv \
 && python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/runtime.in \
 && /opt/venv/bin/pip install -q --constraint requirements.lock -r /tmp/runtime.in \
 && tr 'A-Z_.' 'a-z--' < requirements.lock > /tmp/lock.norm \
 && /opt/venv/bin/pip freeze | tr 'A-Z_.' 'a-z--' > /tmp/installed.norm \
 && if grep -vxFf /tmp/lock.norm /tmp/installed.norm; then echo "not pinned by requirements.lock (above)" >&2; exit 1; fi

# The project itself: a wheel (version from peering.__version__), installed without deps (they
# are all above); pip check proves the set is complete.  pip and setuptools are not needed at
# run time, so they leave the venv.
COPY README.md ./
COPY peering ./peering
RUN /opt/venv/bin/pip wheel -q --no-deps --wheel-dir /tmp/wheels . \
 && /opt/venv/bin/pip install -q --no-deps /tmp/wheels/peering-*.whl \
 && /opt/venv/bin/pip check \
 && /opt/venv/bin/pip uninstall -q -y pip setuptools \
 && /opt/venv/bin/peering --help >/dev/null

# ---- run stage: the base image, the venv, an unprivileged user ----
FROM python:3.11-slim
RUN groupadd --system --gid 10001 peering \
 && useradd --system --uid 10001 --gid 10001 --home-dir /data --no-create-home --shell /usr/sbin/nologin peering \
 && mkdir /data && chown 10001:10001 /data && chmod 0700 /data
COPY --from=build /opt/venv /opt/venv

# Listen on every interface inside the container (the service's own defaults are 127.0.0.1).
# Tokens carry PEERING_ADVERTISE_ADDR (default: the peering address, 0.0.0.0:8503 here, which
# no peer can dial): set it to an address the other cluster reaches, e.g. cluster-a:8503.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PEERING_DATA_DIR=/data \
    PEERING_HTTP_ADDR=0.0.0.0:8500 \
    PEERING_PEERING_ADDR=0.0.0.0:8503

USER 10001:10001
WORKDIR /data
# declared after the chown, so a new named volume starts out owned by the peering user
VOLUME ["/data"]
EXPOSE 8500 8503

# Healthy when /v1/status/leader answers 200; follows PEERING_HTTP_ADDR (a wildcard host is
# reached on loopback).  Python's urllib, so no curl in the image.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request as u; h, _, p = os.environ.get('PEERING_HTTP_ADDR', '127.0.0.1:8500').rpartition(':'); h = {'0.0.0.0': '127.0.0.1', '[::]': '[::1]', '': '127.0.0.1'}.get(h, h); u.urlopen(f'http://{h}:{p}/v1/status/leader', timeout=4)"]

ENTRYPOINT ["peering"]
CMD ["serve"]
