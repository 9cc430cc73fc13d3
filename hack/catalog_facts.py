#!/usr/bin/env python3
"""Write each catalog entry's `facts` block from its `config` and `parameterCount`, with
the parser the Hub path uses; `--check` only says which entries differ (exit 1).

    .venv/bin/python hack/catalog_facts.py [--check]

The operator refuses an entry whose stated facts differ from what its config gives, so
after adding or changing an entry, run this and review the diff.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from llm_operator.facts.hub import facts_from_config

FOLDER = Path(__file__).resolve().parent.parent / "operator" / "llm_operator" / "facts" / "data" / "catalog"


def facts_of(entry: dict) -> dict:
    facts = facts_from_config(
        entry["config"], entry.get("parameterCount"), model_id=entry["id"], revision=entry.get("revision", "main")
    )
    return facts.to_dict()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a facts block is stale")
    args = parser.parse_args(argv)
    stale = []
    for path in sorted(FOLDER.glob("*.json")):
        data = json.loads(path.read_text())
        for entry in data["models"]:
            wanted = facts_of(entry)
            if entry.get("facts") != wanted:
                stale.append(f"{path.name}: {entry['id']}")
                entry["facts"] = wanted
        if not args.check:
            path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    for line in stale:
        print(("stale: " if args.check else "updated: ") + line)
    return 1 if (args.check and stale) else 0


if __name__ == "__main__":
    sys.exit(main())
