#!/usr/bin/env bash
# Run a `flask --app app …` command the way the services run: as the svi user, with the
# settings of /etc/svi/svi.env (parsed by systemd, like the units), in /opt/svi/current.
#   deploy/svi-flask.sh setup --no-demo
#   deploy/svi-flask.sh users set-password admin@example.gouv.fr
set -euo pipefail
exec systemd-run --pipe --wait --quiet --collect --uid=svi --gid=svi \
  --property=EnvironmentFile=/etc/svi/svi.env --property=WorkingDirectory=/opt/svi/current \
  /opt/svi/current/.venv/bin/flask --app app "$@"
