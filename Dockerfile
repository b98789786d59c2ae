# syntax=docker/dockerfile:1
# Multi-stage image of one worker: `docker run ... stream-enricher` runs `enricher worker`;
# `docker run -p 8080:8080 ... stream-enricher enricher chat --host 0.0.0.0` serves the chat page
# (the `chat` extra; the gateway listens on 127.0.0.1 unless told otherwise).

FROM python:3.11-slim AS build
WORKDIR /src
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY pyproject.toml constraints.txt README.md ./
COPY app ./app
COPY agents ./agents
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir -c constraints.txt '.[chat]'

FROM python:3.11-slim AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    ENRICHER_PROMPTS_DIR=/srv/prompts \
    ENRICHER_KNOWLEDGE_DIR=/srv/knowledge
RUN groupadd --system --gid 10001 enricher \
 && useradd --system --uid 10001 --gid enricher --home-dir /srv --shell /usr/sbin/nologin enricher \
 && mkdir -p /srv \
 && chown enricher:enricher /srv
COPY --from=build /opt/venv /opt/venv
COPY --chown=enricher:enricher prompts /srv/prompts
COPY --chown=enricher:enricher knowledge /srv/knowledge
WORKDIR /srv
USER 10001
EXPOSE 6066
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:6066/healthz', timeout=2)"]
STOPSIGNAL SIGTERM
CMD ["enricher", "worker"]
