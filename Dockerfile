# duro: one image for the runtime (`duro serve`) and for the example services.
#   docker build -t duro:0.1.0 .
#   docker run -p 8080:8080 -p 9070:9070 -v duro-data:/var/lib/duro duro:0.1.0
# Two stages: the first builds wheels of duro and every dependency, the second installs them without a
# compiler or pip cache, and runs as the unprivileged user duro (uid 10001, as the Helm chart expects).
# PYTHON_IMAGE is the base of both stages (tests/e2e/test_image.py builds on a stand-in made from Debian packages).

ARG PYTHON_IMAGE=python:3.11-slim
FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY wal wal
COPY protocol protocol
COPY partition_worker partition_worker
COPY ingress ingress
COPY sdk sdk
COPY duro duro
COPY benchmarks benchmarks
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 duro \
 && useradd --system --uid 10001 --gid duro --home-dir /var/lib/duro --no-create-home --shell /usr/sbin/nologin duro \
 && mkdir -p /var/lib/duro \
 && chown duro:duro /var/lib/duro
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index /wheels/*.whl && rm -rf /wheels
WORKDIR /opt/duro
COPY examples examples
ENV DURO_BIND=0.0.0.0 \
    DURO_DATA_DIR=/var/lib/duro \
    PYTHONUNBUFFERED=1
USER 10001:10001
VOLUME /var/lib/duro
EXPOSE 8080 9070
# The admin API answers /health while the node runs (the Helm chart's liveness probe uses the same path).
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('DURO_ADMIN_PORT', '9070') + '/health', timeout=2)"]
ENTRYPOINT ["duro"]
CMD ["serve"]
