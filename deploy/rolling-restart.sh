#!/usr/bin/env bash
# Restart the SVI web instances one at a time: each is back and ready (GET /readyz answers 200:
# database reachable, schema at head) before the next one stops, so that calls keep being
# answered by the others (nginx retries a refused connection on another instance).
#
#   deploy/rolling-restart.sh [PORT…]     (default: every running svi-web@<port> instance)
#
# READY_TIMEOUT: seconds to wait for each instance (default 60). Stops at the first instance
# that does not come back ready, leaving the others untouched (exit status 1).
set -euo pipefail
timeout="${READY_TIMEOUT:-60}"
ports=("$@")
if [ ${#ports[@]} -eq 0 ]; then
  mapfile -t ports < <(systemctl list-units --plain --no-legend --state=active 'svi-web@*.service' \
    | sed -n 's/^svi-web@\([0-9]*\)\.service.*/\1/p')
fi
[ ${#ports[@]} -gt 0 ] || { echo "aucune instance svi-web@ active" >&2; exit 1; }
for port in "${ports[@]}"; do
  systemctl restart "svi-web@$port"
  for _ in $(seq "$timeout"); do
    if curl -fsS -o /dev/null "http://127.0.0.1:$port/readyz"; then
      echo "svi-web@$port : redémarrée, prête"
      continue 2
    fi
    sleep 1
  done
  echo "svi-web@$port : pas prête après $timeout s, mise à jour interrompue :" >&2
  curl -sS "http://127.0.0.1:$port/readyz" >&2 || true
  exit 1
done
