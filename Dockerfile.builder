# Builder: installs the locked requirements into /opt/venv from a wheelhouse prepared beforehand, so this
# build needs no network. A requirement with no wheel for the image arrives as its (hash-checked) sdist with its
# build backend's wheels, and pip builds it into a wheel here (gcc and the Python headers are in the base). The base is Debian 13 with Debian's python3.13 at /usr/bin/python3.13, the same
# interpreter path as the distroless runtime. Built by `python scripts/build.py` (classic builder, no BuildKit).
ARG BUILDER_BASE=sklearn-model-service-base/builder:latest
FROM ${BUILDER_BASE}

ENV PIP_NO_INDEX=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

COPY requirements.txt /src/requirements.txt
COPY wheelhouse/ /src/wheelhouse/
RUN /usr/bin/python3.13 -m venv /opt/venv \
    && /opt/venv/bin/python -m pip install --no-cache-dir --no-compile \
        --find-links /src/wheelhouse --require-hashes -r /src/requirements.txt \
    && /opt/venv/bin/python -m pip uninstall --yes --quiet pip

# The venv trimmed to sourceless bytecode; the standard library as sourceless bytecode for the runtime image.
COPY build/trim.py build/runtime_trim.py build/runtime-trim.txt /src/
RUN /usr/bin/python3.13 /src/trim.py /opt/venv /staging/stdlib
