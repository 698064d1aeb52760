# backpain-cds: CDS Hooks service. Build: docker build -t backpain-cds .
# Run:   docker run -p 8080:8080 -v $PWD/config.toml:/etc/backpain-cds/config.toml:ro backpain-cds
# The container binds 0.0.0.0, so the config MUST list [[auth.trusted_clients]] (the service
# refuses to accept unsigned calls on a non-loopback address) and public_base_url.
# Database schema: a new SQLite file in /var/lib/backpain-cds gets it at the first start. A
# PostgreSQL database (BACKPAIN_CDS_DATABASE_URL), or any database after upgrading the image, is
# migrated first, once, not by each serving container (they refuse to start until then):
#   docker run --rm <same config/env> backpain-cds backpain-cds migrate
# (`backpain-cds migrate --sql` prints the SQL for a DBA instead; README "Database and migrations").
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY backpain_cds ./backpain_cds
COPY cds_hooks ./cds_hooks
COPY fhir_mapping ./fhir_mapping
COPY assessment ./assessment
COPY smart_launch ./smart_launch
COPY knowledge ./knowledge
RUN pip install --no-cache-dir --prefix=/install '.[postgres]'

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    BACKPAIN_CDS_CONFIG=/etc/backpain-cds/config.toml \
    BACKPAIN_CDS_DATABASE_URL=sqlite:////var/lib/backpain-cds/backpain-cds.sqlite3
COPY --from=build /install /usr/local
RUN useradd --system --uid 10001 --home-dir /var/lib/backpain-cds --create-home backpain \
    && mkdir -p /etc/backpain-cds && chown backpain /var/lib/backpain-cds
USER backpain
WORKDIR /var/lib/backpain-cds
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status == 200 else 1)"
# Stopping: exec form (no shell), so gunicorn's master is PID 1 and gets docker stop's SIGTERM
# itself: it stops accepting, lets the calls in flight finish within
# limits.shutdown_grace_seconds (default 10 s), then exits 0. Give the container more than that
# before SIGKILL (docker stop -t 15; compose stop_grace_period: 15s; Kubernetes
# terminationGracePeriodSeconds: 15); README "Docker".
STOPSIGNAL SIGTERM
CMD ["backpain-cds", "serve", "--host", "0.0.0.0", "--port", "8080", "--workers", "2"]
