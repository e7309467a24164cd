# The kaip model-server image: `python -m kaip.serving`, as the non-root user 65532.
#
#   docker build -t ghcr.io/kaip-dev/kaip-server:0.1.0 .
#   make images      # the same Dockerfile with buildah, on a Debian base made by debootstrap
#
# BASE is any image with CPython 3.11 as `python` (with venv) and Debian's groupadd/useradd:
# python:3.11-slim where a registry is reachable, or `make images`'s own base (--build-arg
# BASE=localhost/kaip/base:bookworm-py3.11, tools/images/README.md).
#
# `kaip render` puts this image in every Model pod (and in the init container that fetches
# remote artifacts); point it at your build with KAIP_KUBE__IMAGE (settings.kube.image).
# Relative artifact paths are read from /var/lib/kaip/artifacts/<path> in the pod: mount them
# there (annotation kaip.dev/artifact-pvc) or bake them in, e.g. in an image built FROM this one:
#   COPY model.joblib /var/lib/kaip/artifacts/model.joblib
ARG BASE=python:3.11-slim

# Runtime dependencies first, in a stage of their own: what pyproject.toml asks for
# kaip[sklearn,onnx,s3], at the versions CI tested (requirements.lock, make lock). Its layers,
# and the venv the final image copies from it, change only when those two files do.
FROM ${BASE} AS deps
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml requirements.lock tools/images/requirements.py ./
RUN python requirements.py sklearn onnx s3 >requirements.txt \
 && python -m venv /opt/kaip \
 && /opt/kaip/bin/pip install -c requirements.lock pip \
 && /opt/kaip/bin/pip install -c requirements.lock -r requirements.txt

# kaip itself, installed under /opt/app (--root) so the final image adds only its own files;
# everything it needs is installed above (--no-deps), which pip check confirms.
FROM deps AS build
COPY README.md ./
COPY src ./src
RUN /opt/kaip/bin/pip install -c requirements.lock --no-deps --root /opt/app ".[sklearn,onnx,s3]" \
      --build-constraint requirements.lock --no-warn-script-location \
 && PYTHONPATH=/opt/app/opt/kaip/lib/python3.11/site-packages /opt/kaip/bin/pip check

FROM deps AS runtime
RUN /opt/kaip/bin/pip uninstall -y -q pip

FROM ${BASE}
ENV PATH=/opt/kaip/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
RUN groupadd --system --gid 65532 kaip \
 && useradd --system --uid 65532 --gid kaip --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin kaip \
 && mkdir -p /var/lib/kaip/artifacts \
 && chown 65532:65532 /var/lib/kaip/artifacts
COPY --from=runtime /opt/kaip /opt/kaip
COPY --from=build /opt/app/ /
USER 65532:65532
EXPOSE 8000
ENTRYPOINT ["python", "-m", "kaip.serving"]
