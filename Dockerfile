# ml-connector service image. Configuration: ML_CONFIG (a TOML file) and ML_* variables; the master key from
# ML_MASTER_KEY_FILE (a mounted secret, mode 0400). The embedded SQLite store lives in /data unless
# [store] url points at MongoDB.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 ML_STORE__URL=sqlite:////data/ml-connector.db
WORKDIR /app
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY cards ./cards
COPY connector ./connector
COPY dynamics ./dynamics
COPY sandbox ./sandbox
COPY manifest ./manifest
RUN pip install --no-cache-dir -e . \
    && useradd --system --uid 10001 --home /data ml \
    && mkdir -p /data && chown ml /data
USER ml
VOLUME ["/data"]
EXPOSE 8443
ENTRYPOINT ["ml-connector"]
CMD ["serve"]
