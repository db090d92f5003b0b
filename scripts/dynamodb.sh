#!/usr/bin/env bash
# The integration-testing guide's commands (docs/integration-testing.md): a thin shell over `costkeeper`.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  cat <<'USAGE'
usage: ./scripts/dynamodb.sh COMMAND [ARGS]

The local DynamoDB (DynamoDB Local) and SQS (moto) the pipeline runs on; no Docker needed.

emulator
  start [--in-memory]   start DynamoDB Local and moto SQS (tables persist in .run/dynamodb-data)
  stop                  let the worker drain the queues, stop `costkeeper run`, stop the emulator
  restart               stop, then start: tables keep their data, queues come back empty
  status                servers answering? tables and queues there?
  setup                 start + init + seed: everything in one command
data
  init                  create the tables and queues (idempotent)
  seed                  the test org and app; prints their client secrets once (saved in .run/credentials.json)
  clear                 delete all data (tables and queues stay)
  reset                 clear, then seed
inspecting
  list                  tables and queues with their sizes
  scan TABLE            a table's items as JSON lines (e.g. bedrock-cost-keeper-usage, or just usage)
tests
  test [PYTEST ARGS]    the integration tests (default: tests/integration -v -m integration)

Ports: CK_DYNAMODB_PORT (8000), CK_SQS_PORT (9324); run folder: CK_RUN_DIR (.run). More: `costkeeper --help`.
USAGE
}

# The costkeeper of the active virtualenv (pip install -r requirements-dev.txt), else the project's .venv, which
# `make install` creates on first use.
if [[ -n "${VIRTUAL_ENV:-}" && -x "$VIRTUAL_ENV/bin/costkeeper" ]]; then
  costkeeper="$VIRTUAL_ENV/bin/costkeeper"
else
  if [[ ! -x .venv/bin/costkeeper ]]; then
    echo "== first run: installing the project into .venv (make install)" >&2
    make install >&2
  fi
  costkeeper=.venv/bin/costkeeper
fi

command="${1:-}"
case "$command" in
  start | stop | restart | status | setup | init | seed | clear | reset | list)
    shift
    exec "$costkeeper" "$command" "$@"
    ;;
  scan)
    if (($# < 2)); then
      echo "scan needs a table name, e.g. ./scripts/dynamodb.sh scan bedrock-cost-keeper-usage" >&2
      exit 2
    fi
    shift
    exec "$costkeeper" scan "$@"
    ;;
  test)
    shift
    if (($# == 0)); then
      set -- tests/integration -v -m integration
    fi
    exec "$costkeeper" test "$@"
    ;;
  -h | --help | help)
    usage
    ;;
  *)
    usage >&2
    [[ -n "$command" ]] && echo "unknown command: $command" >&2
    exit 2
    ;;
esac
