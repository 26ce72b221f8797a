# catapult-bridge image: `docker build -t catapult-bridge .`
#
# The builder installs the locked dependencies with the README's install steps (pinned uv,
# `uv sync --frozen --no-dev`) into /app/.venv; the runtime stage holds only that virtualenv and
# the `bridge` package, runs as an unprivileged user, and starts `bridge` directly (exec form), so
# SIGTERM reaches the bridge itself and it drains before it exits.

FROM python:3.11-slim AS builder

ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3.11

WORKDIR /app
RUN python3 -m pip install --no-cache-dir uv==0.13.9

# Dependencies first, in their own layer: it is rebuilt only when the lock file changes.
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --no-install-project

COPY README.md ./
COPY bridge ./bridge
RUN uv sync --frozen --no-dev


FROM python:3.11-slim AS runtime

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/app/.venv/bin:$PATH

RUN groupadd --system --gid 10001 bridge \
    && useradd --system --uid 10001 --gid bridge --home-dir /app --no-create-home bridge

WORKDIR /app
COPY --from=builder /app/.venv /app/.venv
COPY --from=builder /app/bridge /app/bridge
# The receiver's spool (receiver.spool_dir, relative to /app); mount a volume here to keep it.
RUN mkdir -p /app/var/spool && chown -R bridge:bridge /app/var

USER bridge:bridge

# Receiver callbacks (receiver.port); the operations server, /healthz, /readyz and /metrics of
# every role in the container (operations.port).
EXPOSE 8080 8081

# No curl in the slim image: ask /healthz with Python on the operations port, which every role
# serves (BRIDGE_OPERATIONS__PORT moves it).
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request\nurl = f\"http://127.0.0.1:{os.environ.get('BRIDGE_OPERATIONS__PORT', '8081')}/healthz\"\ntry:\n    healthy = urllib.request.urlopen(url, timeout=2).status == 200\nexcept OSError:\n    healthy = False\nraise SystemExit(0 if healthy else 1)"]

ENTRYPOINT ["bridge"]
CMD ["run"]
