"""`python -m llm_operator.cli`: the same as the `llm-operator` command."""

from llm_operator.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
