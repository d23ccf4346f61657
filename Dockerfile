# synthgen in an image: a shard worker (the default command), a job's driver, or a scheduled job's worker.
#
# The image holds an installed synthgen (the project's wheel, with the embedded models): no checkout, no
# shared folder. A worker needs PREFECT_API_URL, credentials for the object store (AWS_* variables, or an
# instance role) and access to the models (hub ids, a URL of a folder on the store, or the embedded ones).
#
#   CPU:   docker build -t synthgen:cpu --build-arg COMMIT=$(git rev-parse HEAD) .
#   CUDA:  docker build -t synthgen:cu128 --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 \
#            --build-arg COMMIT=$(git rev-parse HEAD) .
#          (PyTorch's CUDA wheels carry their CUDA libraries; the host needs the NVIDIA driver and
#          container toolkit: docker run --gpus all ...)
#
#   docker run --rm -e PREFECT_API_URL=http://prefect:4200/api -e SYNTHGEN_GPUS=0 --gpus '"device=0"' \
#     synthgen:cu128 prefect worker start --pool gpu --type process --limit 1
#
# See docs/scale-out.md for Docker and Kubernetes work pools.
ARG PYTHON=3.11

FROM python:${PYTHON}-slim AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY synthgen synthgen
COPY catalog catalog
COPY flows flows
# The commit the image is built from: rows record it as code_commit (an installed package has no git).
ARG COMMIT=""
RUN if [ -n "$COMMIT" ]; then echo "$COMMIT" > synthgen/commit.txt; fi \
 && pip wheel --no-cache-dir --no-deps -w /wheels .

FROM python:${PYTHON}-slim
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ARG TORCH_VERSION=2.13.0
# torch first, from the index that matches the hardware; synthgen's other dependencies from PyPI.
RUN pip install --no-cache-dir "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX}"
# OpenCV's wheel (opencv-python: invisible-watermark requires it, not the headless build) links X11, GL and
# GLib, which the slim image lacks: without them importing diffusers' pipelines fails (libxcb.so.1).
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 libsm6 libxext6 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=wheel /wheels /wheels
# Within the versions the tests passed with: the newest of every package at once does not resolve (pip
# backtracks for an hour over s3fs / aiobotocore / botocore / boto3 pins) and would not be what was tested.
COPY constraints.txt /wheels/
ARG EXTRAS=""
RUN pip install --no-cache-dir -c /wheels/constraints.txt "$(ls /wheels/synthgen-*.whl)${EXTRAS:+[$EXTRAS]}" \
 && rm -rf /wheels
# Telemetry off, as synthgen sets it for the services it starts.
ENV PREFECT_SERVER_ANALYTICS_ENABLED=false MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=1 \
    HF_HUB_DISABLE_TELEMETRY=1 RAY_USAGE_STATS_ENABLED=0 PYTHONUNBUFFERED=1
RUN useradd --create-home synthgen
USER synthgen
WORKDIR /home/synthgen
ENV SYNTHGEN_DATA=/home/synthgen/synthgen-data
CMD ["prefect", "worker", "start", "--pool", "gpu", "--type", "process"]
