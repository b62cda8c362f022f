# syntax=docker/dockerfile:1
# The previous version's hub image, for the upgrade test (tests/containers/test_upgrade.py;
# `make images-previous`): today's hub image with the previous commit's claudehub package and
# hub configuration in place of its own. The build context is that commit's tree (git archive).
# Only used while every other build input (pyproject.toml, images/constraints.txt, the npm
# lock, the Dockerfiles, jupyter-config) is the same in both trees, which the Makefile checks:
# the layers below the package are then the ones the old tree's own Dockerfile would build.
ARG CURRENT=localhost/claudehub/hub:dev
FROM ${CURRENT}
ARG SITE=/opt/venv/lib/python3.11/site-packages
USER 0:0
RUN rm -rf ${SITE}/claudehub /usr/local/share/claudehub/hub_config
COPY claudehub ${SITE}/claudehub
COPY hub_config /usr/local/share/claudehub/hub_config
# The root filesystem is read-only at run time: compile now, as the hub's own build does.
RUN /opt/venv/bin/python -m compileall -q ${SITE}/claudehub
USER 10001:10001
