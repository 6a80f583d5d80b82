# Model Garden, CPU variant: `docker build -t model-garden .` (docs/deploy.md).
FROM python:3.11-slim

ENV UV_PYTHON_DOWNLOADS=never \
    UV_LINK_MODE=copy \
    UV_NO_SYNC=1 \
    STORAGE_ROOT=/data/storage

RUN pip install --no-cache-dir uv==0.13.9 \
    && useradd --create-home --uid 1000 garden \
    && mkdir -p /app /data/storage \
    && chown garden:garden /app /data/storage

USER 1000
WORKDIR /app
COPY --chown=garden:garden . .
RUN uv sync --no-dev --no-cache

VOLUME ["/data/storage"]
EXPOSE 7860
HEALTHCHECK --interval=30s --timeout=5s --start-period=180s --retries=3 \
    CMD ["/app/.venv/bin/python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:7860/api/v1/health', timeout=4)"]
CMD ["uv", "run", "app.py", "--host", "0.0.0.0"]
