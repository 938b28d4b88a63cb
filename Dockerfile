# CPU inference worker: the torch-free core (onnxruntime, numpy, pillow, soundfile, soxr,
# prefect, prefect-dask) and the shipped models. No torch, no training code paths used.
#   docker build -t autoenc-worker .
#   docker run -v /srv/media:/data -v autoenc-state:/var/lib/autoenc autoenc-worker            # serve configs/schedule.yaml
#   docker run -v /srv/media:/data -e PREFECT_API_URL=http://prefect:4200/api autoenc-worker \
#       prefect worker start --pool autoenc-cpu                                                  # or join a work pool
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PREFECT_HOME=/var/lib/autoenc/prefect-client \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    PREFECT_LOGGING_EXTRA_LOGGERS=autoenc \
    OMP_NUM_THREADS=2

WORKDIR /opt/autoenc-src
COPY pyproject.toml README.md ./
COPY autoenc ./autoenc
COPY pipelines ./pipelines
COPY configs ./configs
COPY docker ./docker
RUN sh docker/install.sh /opt/autoenc \
    && useradd --system --uid 10001 --home-dir /var/lib/autoenc autoenc \
    && mkdir -p /data /var/lib/autoenc \
    && chown autoenc /data /var/lib/autoenc

ENV PATH=/opt/autoenc/bin:$PATH
USER autoenc
WORKDIR /var/lib/autoenc
VOLUME ["/data", "/var/lib/autoenc"]

# The schedule's local Prefect server binds to 127.0.0.1 inside the container (see README,
# "Security"); mount your own schedule config over /opt/autoenc-src/configs/schedule.yaml.
CMD ["autoenc", "serve", "/opt/autoenc-src/configs/schedule.yaml"]
