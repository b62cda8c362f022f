# syntax=docker/dockerfile:1
# The previous version's sandbox image, for the upgrade test (see hub.Dockerfile beside it):
# today's sandbox image with the previous commit's claudehub package, managed settings and
# entrypoint. The xterm.js and fonts the image carries in the package (vendor/) are kept:
# the lock that pins them is the same in both trees.
ARG CURRENT=localhost/claudehub/sandbox:dev
FROM ${CURRENT}
ARG SITE=/opt/claudehub/lib/python3.11/site-packages
USER 0:0
RUN mv ${SITE}/claudehub/server_ext/static/vendor /tmp/vendor && rm -rf ${SITE}/claudehub
COPY claudehub ${SITE}/claudehub
RUN mv /tmp/vendor ${SITE}/claudehub/server_ext/static/vendor \
    && /opt/claudehub/bin/python -m compileall -q ${SITE}/claudehub
COPY --chmod=0644 claudehub/server_ext/managed-settings.json /etc/claude-code/managed-settings.json
COPY --chmod=0755 images/sandbox/noshell /usr/libexec/claudehub/bash
COPY --chmod=0644 images/sandbox/entrypoint.py /usr/libexec/claudehub/entrypoint.py
USER 1000:1000
