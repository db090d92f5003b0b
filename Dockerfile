# One image for the API, the worker and the aggregator; the command picks the process.
FROM python:3.11-slim
WORKDIR /app
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
# The locked versions first, each checked against its hash (a layer that changes only with the lock).
COPY requirements.lock ./
RUN pip install --quiet --require-hashes -r requirements.lock
COPY pyproject.toml README.md ./
COPY ingest_api ./ingest_api
COPY workers ./workers
COPY aggregator ./aggregator
COPY catalog ./catalog
COPY runtime ./runtime
COPY infra ./infra
RUN pip install --quiet --no-deps --no-build-isolation .
USER nobody
EXPOSE 8080
CMD ["python", "-m", "ingest_api"]
