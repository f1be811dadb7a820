# cellbench: the same steps as the README's "Running it for real".
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    CELLBENCH_DATA_DIR=/data \
    CELLBENCH_DATABASE_URL=sqlite:////data/cellbench.db \
    CELLBENCH_CHECKPOINT_KEY=/keys/checkpoint.key

# Label PDFs print "≤ −150 °C" and Danish text: they need a Unicode font.
RUN apt-get update && apt-get install -y --no-install-recommends fonts-dejavu-core \
 && rm -rf /var/lib/apt/lists/*

# A fixed non-root user that owns only the data and key volumes. The checkpoint key has its own
# volume so that a copy of the data volume (a backup) never carries the key that could sign a forgery.
RUN useradd --system --create-home --uid 10001 cellbench \
 && mkdir -p /data /keys && chown cellbench:cellbench /data /keys && chmod 0700 /keys

WORKDIR /app
COPY pyproject.toml README.md ./
COPY cellbench ./cellbench
# Shipped inside the wheel (pyproject's force-include: cellbench/_specs, cellbench/_templates).
COPY specs ./specs
COPY templates ./templates
RUN pip install --no-cache-dir .

USER cellbench
VOLUME ["/data", "/keys"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health')"

# `cellbench init` is idempotent: it creates or upgrades the schema, then the server starts.
# The server refuses to start without CELLBENCH_SECRET_KEY (docker run -e CELLBENCH_SECRET_KEY=...)
# and without the checkpoint key: create it once on the key volume,
#   docker run --rm -v cellbench-keys:/keys cellbench cellbench keys init
# and keep a copy of it apart from the data volume's backups;
# for a demo: docker run -p 8000:8000 cellbench cellbench serve --demo --host 0.0.0.0
CMD ["sh", "-c", "cellbench init && exec cellbench serve --host 0.0.0.0 --port 8000"]
