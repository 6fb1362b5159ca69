# syntax=docker/dockerfile:1
# ml-connector service image (README.md, "Run it" has the complete `docker run`; compose.yaml runs two instances on
# MongoDB). Configuration: /etc/ml-connector/ml-connector.toml (ML_CONFIG; the image's default is
# docker/ml-connector.toml: 0.0.0.0:8443, SQLite in /data): mount yours over it; ML_<SECTION>__<KEY> variables
# override single keys. The master key comes from ML_MASTER_KEY_FILE, a mounted secret readable by uid 10001 only.
# The service runs as uid/gid 10001 (not root) and keeps its SQLite store, when it has one, in the /data volume.
# tests/packaging/ runs this file's install and start commands in a fresh virtual environment: keep each RUN a
# plain shell command, and the user set-up (useradd) in a RUN of its own.

# --- build: the wheel, from the sources only -----------------------------------------------------------------------
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY cards ./cards
COPY connector ./connector
COPY dynamics ./dynamics
COPY sandbox ./sandbox
RUN --mount=type=cache,target=/root/.cache/pip \
    pip wheel --no-deps --wheel-dir /wheels .

# --- runtime: the locked dependencies (hash-checked, no test extras) and the wheel, non-editable -------------------
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 ML_CONFIG=/etc/ml-connector/ml-connector.toml
COPY requirements.lock /tmp/install/requirements.lock
COPY --from=build /wheels /tmp/install/wheels
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --require-hashes -r /tmp/install/requirements.lock \
    && pip install --no-deps /tmp/install/wheels/ml_connector-*.whl \
    && rm -r /tmp/install
COPY docker/ml-connector.toml /etc/ml-connector/ml-connector.toml
RUN groupadd --system --gid 10001 ml \
    && useradd --system --uid 10001 --gid 10001 --home-dir /data --no-create-home --shell /usr/sbin/nologin ml \
    && mkdir -p /data && chown 10001:10001 /data && chmod 0700 /data
USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8443
# python, not curl (the slim image has none); it reads the same configuration, so it follows port and TLS.
HEALTHCHECK --interval=30s --timeout=10s --start-period=20s --retries=3 CMD ["python", "-m", "connector.healthcheck"]
ENTRYPOINT ["ml-connector"]
CMD ["serve"]
