# The kaip model-server image: `python -m kaip.serving`, as the non-root user 65532.
#
#   docker build -t ghcr.io/kaip-dev/kaip-server:0.1.0 .
#
# `kaip render` puts this image in every Model pod (and in the init container that fetches
# remote artifacts); point it at your build with KAIP_KUBE__IMAGE (settings.kube.image).
# Relative artifact paths are read from /var/lib/kaip/artifacts/<path> in the pod: mount them
# there (annotation kaip.dev/artifact-pvc) or bake them in, e.g. in an image built FROM this one:
#   COPY model.joblib /var/lib/kaip/artifacts/model.joblib

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md requirements.lock ./
COPY src ./src
# The versions CI tested: requirements.lock pins every package (make lock).
RUN python -m venv /opt/kaip \
 && /opt/kaip/bin/pip install -c requirements.lock pip \
 && /opt/kaip/bin/pip install ".[sklearn,onnx]" -c requirements.lock --build-constraint requirements.lock

FROM python:3.11-slim
ENV PATH=/opt/kaip/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
RUN groupadd --system --gid 65532 kaip \
 && useradd --system --uid 65532 --gid kaip --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin kaip \
 && mkdir -p /var/lib/kaip/artifacts \
 && chown 65532:65532 /var/lib/kaip/artifacts
COPY --from=build /opt/kaip /opt/kaip
USER 65532:65532
EXPOSE 8000
ENTRYPOINT ["python", "-m", "kaip.serving"]
