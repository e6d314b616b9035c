# duro: one image for the runtime (`duro serve`) and for the example services.
FROM python:3.11-slim
WORKDIR /opt/duro
COPY pyproject.toml README.md ./
COPY wal wal
COPY protocol protocol
COPY partition_worker partition_worker
COPY ingress ingress
COPY sdk sdk
COPY duro duro
COPY examples examples
COPY benchmarks benchmarks
RUN pip install --no-cache-dir .
ENV DURO_BIND=0.0.0.0 DURO_DATA_DIR=/var/lib/duro
VOLUME /var/lib/duro
EXPOSE 8080 9070
ENTRYPOINT ["duro"]
CMD ["serve"]
