# syntax=docker/dockerfile:1
# fleetgate agent image.
#
#   docker build -t fleetgate:0.1.0 .
#   docker run -d --name fleetgate --restart unless-stopped \
#     -v /var/run/docker.sock:/var/run/docker.sock \   # the engine it converges (root-equivalent!)
#     -v /var/lib/fleetgate:/var/lib/fleetgate \        # state: revisions, configs, data dirs
#     -v /etc/fleetgate:/etc/fleetgate:ro \              # agent.yaml, secrets, allowed signers
#     fleetgate:0.1.0
#
# Data directories and configs are bind-mounted into the *application*
# containers by the engine, which resolves paths on the host: mount the state
# directory at the same path inside and outside (/var/lib/fleetgate).

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml ./
COPY reconciler ./reconciler
RUN python -m venv /opt/fleetgate \
 && /opt/fleetgate/bin/pip install --no-cache-dir --upgrade pip \
 && /opt/fleetgate/bin/pip install --no-cache-dir /src

FROM python:3.11-slim
# git: the source adapter runs it; openssh-client: ssh:// fleet repositories and
# `git verify-commit` with SSH keys; gnupg: GPG-signed commits.
RUN apt-get update \
 && apt-get install -y --no-install-recommends git openssh-client gnupg ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /opt/fleetgate /opt/fleetgate
ENV PATH=/opt/fleetgate/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    FLEETGATE_STATE_DIR=/var/lib/fleetgate
VOLUME ["/var/lib/fleetgate"]
# Status, metrics and health (statusListen); publish it only if you need it off-box.
EXPOSE 9180
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s \
  CMD ["python", "-c", "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:9180/healthz', timeout=4).status != 200)"]
ENTRYPOINT ["fleetgate", "agent"]
CMD ["--config", "/etc/fleetgate/agent.yaml"]
