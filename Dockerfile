# syntax=docker/dockerfile:1
# monitor in a container: the `monitor` command, run as an unprivileged user.
#
#   docker build -t monitor .
#   docker run --rm -v monitor-data:/var/lib/monitor monitor db upgrade
#   docker run -d --name monitor -v monitor-data:/var/lib/monitor \
#       -v "$PWD/feeds.yaml:/etc/monitor/feeds.yaml:ro" --env-file .env monitor
#
# docker-compose.yml runs it with PostgreSQL and a mail catcher; docs/deploy.md has the rest.

ARG PYTHON_VERSION=3.11

# -- build: the project's wheel, and a virtual environment holding it and its dependencies ----------------
FROM python:${PYTHON_VERSION}-slim-bookworm AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

WORKDIR /src
COPY pyproject.toml README.md ./
COPY alembic/ alembic/
COPY monitor/ monitor/

# The wheel carries the Alembic scripts as monitor/_alembic (pyproject's force-include), so
# `monitor db upgrade` works from the installed package. The environment gets no pip or setuptools of its
# own (the program needs neither); pip compiles the bytecode now, as the image's files are read-only to
# the user that runs it.
RUN --mount=type=cache,target=/root/.cache/pip \
    pip wheel --no-deps --wheel-dir /wheels . \
    && python -m venv --without-pip /opt/monitor \
    && pip --python /opt/monitor/bin/python install /wheels/monitor-*.whl

# -- run: the slim base, the environment copied over; no compiler, no build files ---------------------------
FROM python:${PYTHON_VERSION}-slim-bookworm

ARG UID=10001
RUN groupadd --system --gid "${UID}" monitor \
    && useradd --system --uid "${UID}" --gid monitor --home-dir /var/lib/monitor --no-create-home \
        --shell /usr/sbin/nologin monitor \
    && install -d -o monitor -g monitor -m 0750 /var/lib/monitor \
    && install -d -m 0755 /etc/monitor

COPY --from=build /opt/monitor /opt/monitor
# A default feeds.yaml (the shipped example); mount your own over it.
COPY feeds.yaml /etc/monitor/feeds.yaml

ENV PATH=/opt/monitor/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MONITOR_CONFIG=/etc/monitor/feeds.yaml \
    MONITOR_DATABASE_URL=sqlite:////var/lib/monitor/monitor.db

# The data directory: the SQLite database by default (with PostgreSQL nothing needs it but
# `monitor digest preview` files).
WORKDIR /var/lib/monitor
VOLUME ["/var/lib/monitor"]

# By number, so that a runtime can tell it is not root without reading /etc/passwd.
USER 10001:10001

# Healthy while the database answers and its schema is the one this version needs (the container stops
# when the daemon does). docker-compose.yml repeats this check; tests/test_deploy.py keeps them equal.
HEALTHCHECK --interval=60s --timeout=20s --start-period=120s --retries=3 \
    CMD ["python", "-c", "from monitor.config import load_settings; from monitor.storage import ensure_current, make_engine; ensure_current(make_engine(load_settings().database_url))"]

ENTRYPOINT ["monitor"]
# -v: log what the stream does (polls, articles, hits, digests) to stderr, i.e. `docker logs`.
# --http: /healthz and Prometheus /metrics.
EXPOSE 9108
CMD ["-v", "run", "--http", "0.0.0.0:9108"]
