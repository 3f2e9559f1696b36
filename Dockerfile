# fleetgate agent image: build it with scripts/image, which makes the build context
# (site/: fleetgate and its dependencies unpacked from wheels, bin/fleetgate) and
# passes BASE:
#
#   scripts/image                              no registry needed: BASE is a Debian bookworm
#                                              made by debootstrap and `docker import`
#   scripts/image --base debian:bookworm-slim  with registry access: the same image FROM
#                                              Debian's own (python3, git, ... come from apt)
#
# Run it (docs/install.md):
#   docker run -d --name fleetgate --restart unless-stopped --network host \
#     -v /var/run/docker.sock:/var/run/docker.sock \   # the engine it converges (root-equivalent!)
#     -v /var/lib/fleetgate:/var/lib/fleetgate \        # state: revisions, configs, data dirs
#     -v /etc/fleetgate:/etc/fleetgate:ro \              # agent.yaml, secrets, allowed signers
#     fleetgate:0.1.0
#
# Data directories and configs are bind-mounted into the *application*
# containers by the engine, which resolves paths on the host: mount the state
# directory at the same path inside and outside (/var/lib/fleetgate).
# No pip, no compiler, no package lists in the image.

ARG BASE=debian:bookworm-slim
FROM ${BASE}
# git: the source adapter runs it; openssh-client: ssh:// fleet repositories and
# SSH-signed commits; gpg: GPG-signed commits. The debootstrap base has them all
# already (this step then changes nothing and needs no network).
RUN if ! command -v python3 >/dev/null || ! command -v git >/dev/null \
       || ! command -v ssh >/dev/null || ! command -v gpg >/dev/null; then \
      apt-get update \
      && apt-get install -y --no-install-recommends python3 git openssh-client gpg ca-certificates \
      && rm -rf /var/lib/apt/lists/* /usr/share/doc/* /usr/share/man/*; \
    fi
COPY site/ /usr/local/lib/python3.11/dist-packages/
COPY bin/fleetgate /usr/local/bin/fleetgate
# No FLEETGATE_STATE_DIR here: the environment wins over agent.yaml's stateDir, and the
# default is /var/lib/fleetgate already.
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
VOLUME ["/var/lib/fleetgate"]
# Status, metrics and health (statusListen); publish it only if you need it off-box.
EXPOSE 9180
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s \
  CMD ["python3", "-c", "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:9180/healthz', timeout=4).status != 200)"]
ENTRYPOINT ["fleetgate"]
CMD ["agent", "--config", "/etc/fleetgate/agent.yaml"]
