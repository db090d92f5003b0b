"""`python scripts/init_local_dynamodb.py init|seed|clear|reset`: the integration-testing guide's CI steps.

Each verb first makes sure the local emulator answers (starting DynamoDB Local and moto SQS where nothing answers
yet, and using a DynamoDB Local that already does, such as a CI service container on port 8000), then does what
`costkeeper VERB` does. With AWS_ENDPOINT_URL_* set it uses those endpoints and starts nothing.
"""

from __future__ import annotations

import argparse
import sys

try:
    from infra.cli import main as costkeeper
except ImportError as missing:  # run before the project was installed
    sys.exit(f"{missing}: install the project first (make install, or pip install -r requirements-dev.txt)")

VERBS = ("init", "seed", "clear", "reset")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="init_local_dynamodb.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("verb", choices=VERBS)
    args = parser.parse_args(argv)
    started = costkeeper(["start"])
    return started or costkeeper([args.verb])


if __name__ == "__main__":
    sys.exit(main())
