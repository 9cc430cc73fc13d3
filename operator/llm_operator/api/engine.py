"""spec.engine: which serving engine, its image, and what a user may add to its argv and
environment. The flags a spec field or the operator owns are refused at admission, from
each engine's own flag table (llm_common/data), named as the engine reads them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated, Any, Literal

from pydantic import Field

from llm_common import tgi_rules, vllm_rules
from llm_operator.api.base import ENV_NAME, Model, Rule, RuledModel, _cel_list
from llm_operator.engines import tgi
from llm_operator.engines import vllm as vllm_engine

# The pinned serving engine (engines/tgi.py says which); spec.engine.image overrides it.
DEFAULT_TGI_IMAGE = tgi.DEFAULT_IMAGE
DEFAULT_VLLM_IMAGE = vllm_engine.DEFAULT_IMAGE


class EnvVar(Model):
    name: str = Field(description="Environment variable name.", min_length=1, max_length=256, pattern=ENV_NAME)
    value: str = Field("", description="Its value.", max_length=32_768)


class ResourceRequirements(Model):
    requests: dict[str, str] = Field(
        default_factory=dict,
        description="Resource requests of the serving container, e.g. cpu and memory.",
        max_length=16,
    )
    limits: dict[str, str] = Field(
        default_factory=dict,
        description="Resource limits of the serving container. The GPU limit always comes from spec.gpus.",
        max_length=16,
    )


# The option a word of engine.args names, in CEL: "--port=80" -> "--port".
_OPTION = "{0}.split('=')[0]"


def _engine_rules() -> tuple[Rule, ...]:
    """engine.args and engine.env against TGI's launcher table (llm_common/data): what the
    manifest alone decides. Values against spec fields are judged later (decide), in Python."""
    table = tgi_rules.TABLE
    rules = []
    for owner, flags in table.owned_by().items():
        options = [f.option for f in flags] + [
            f"-{f.short}" for f in flags if f.short and tgi_rules.flag_of(f"-{f.short}") is f
        ]
        names = " or ".join(
            [", ".join(f.option for f in flags[:-1]), flags[-1].option] if len(flags) > 1 else [flags[0].option]
        )
        it = "it" if len(flags) == 1 else "them"
        message = (
            f"engine.args must not give {names}: " + tgi.FIXED_FLAGS_REASON.replace(" it:", f" {it}:") + "."
            if owner == tgi_rules.OPERATOR
            else f"engine.args must not give {names}: the operator sets {it} from {owner}; set that instead."
        )

        def gives_none(s: Engine, opts: tuple[str, ...] = tuple(options)) -> bool:
            return not any(tgi_rules.flag_name(a) in opts for a in s.args)

        rules.append(
            Rule(
                f"!has(self.args) || !self.args.exists(a, {_OPTION.format('a')} in {_cel_list(options)})",
                message,
                ".args",
                gives_none,
            )
        )
    known = [f.option for f in table.flags] + sorted({f"-{f.short}" for f in table.flags if f.short})
    open_list = ", ".join(f.option for f in table.open_flags)
    rules.append(
        Rule(
            f"!has(self.args) || self.args.all(a, !a.startsWith('-') || {_OPTION.format('a')} in {_cel_list(known)})",
            f"engine.args gives a flag TGI 3.3.7's launcher does not have; engine.args may use {open_list}.",
            ".args",
            lambda s: not tgi_rules.unknown_options(s.args),
            explain=lambda s: (
                f"engine.args: {', '.join(tgi_rules.unknown_options(s.args))} is not a flag of the TGI 3.3.7 "
                f"launcher; engine.args may use {open_list}."
            ),
        )
    )
    repeatable = [f.option for f in table.flags if f.repeatable]
    rules.append(
        Rule(
            f"!has(self.args) || self.args.all(a, !a.startsWith('--') || {_OPTION.format('a')} in {_cel_list(repeatable)} || "
            f"self.args.exists_one(b, {_OPTION.format('b')} == {_OPTION.format('a')}))",
            f"engine.args must give each flag once: TGI's launcher refuses a repeated flag (only {', '.join(repeatable)} may repeat).",
            ".args",
            lambda s: not tgi_rules.repeated_options(s.args),
        )
    )
    env_names = table.env_names
    rules.append(
        Rule(
            f"!has(self.env) || self.env.all(e, !(e.name in {_cel_list(env_names)}))",
            "engine.env must not set TGI's launcher variables (the flags' environment names, such as NUM_SHARD, QUANTIZE "
            "or MAX_INPUT_LENGTH): set the spec field that owns the setting, or give the flag in engine.args.",
            ".env",
            lambda s: not tgi_rules.launcher_env_names(e.name for e in s.env),
            explain=lambda s: (
                f"engine.env must not set {', '.join(tgi_rules.launcher_env_names(e.name for e in s.env))}: "
                "the TGI launcher reads it as a flag; set the spec field that owns the setting, or give the "
                "flag in engine.args."
            ),
        )
    )
    return tuple(_for_engine("tgi", rule) for rule in rules)


def _vllm_engine_rules() -> tuple[Rule, ...]:
    """engine.args against `vllm serve`'s table (llm_common/data): a flag a spec field or the
    operator sets is refused at admission, named as vLLM reads it (underscores for dashes,
    aliases such as -tp). Unknown or repeated flags and bad values are judged in decide
    (EngineWouldRefuse): the table is too long for the apiserver's CEL cost budget."""
    rules = []
    for owner, flags in vllm_rules.TABLE.owned_by().items():
        options = sorted({o for f in flags if not f.positional for o in (f.option, *f.aliases)})
        if not options:
            continue
        names = " or ".join([", ".join(options[:-1]), options[-1]] if len(options) > 1 else options)
        it = "it" if len(options) == 1 else "them"
        message = (
            f"engine.args must not give {names}: the operator sets {it} (the pods' port, names and "
            "protocol are what the Service, the probes and clients rely on)."
            if owner == vllm_rules.OPERATOR
            else f"engine.args must not give {names}: the operator sets {it} from {owner}; set that instead."
        )

        def gives_none_of_owner(s: Engine, owner: str = owner) -> bool:
            return not any(f.owner == owner for _, f in vllm_rules.owned_options(s.args))

        def explain(s: Engine, owner: str = owner) -> str:
            return _owned_sentence(s.args, owner)

        rules.append(
            Rule(
                f"!has(self.args) || !self.args.exists(a, a.split('=')[0].split('.')[0].replace('_', '-') in "
                f"{_cel_list(options)})",
                message,
                ".args",
                gives_none_of_owner,
                explain=explain,
            )
        )
    return tuple(_for_engine("vllm", rule) for rule in rules)


def _owned_sentence(args: Sequence[str], owner: str) -> str:
    given = ", ".join(dict.fromkeys(w for w, f in vllm_rules.owned_options(args) if f.owner == owner))
    if owner == vllm_rules.OPERATOR:
        return (
            f"engine.args must not give {given}: the operator sets it (the pods' port, names and protocol are "
            "what the Service, the probes and clients rely on)."
        )
    return f"engine.args must not give {given}: the operator sets it from {owner}; set that instead."


def _for_engine(name: str, rule: Rule) -> Rule:
    """A rule of one engine's table: it holds for every other engine."""

    def holds(s: Engine, rule_holds: Callable[[Any], bool] = rule.holds) -> bool:
        return s.name != name or rule_holds(s)

    return Rule(f"self.name != '{name}' || ({rule.cel})", rule.message, rule.field_path, holds, explain=rule.explain)


class Engine(RuledModel):
    """The serving engine: Text Generation Inference (the default) or vLLM."""

    name: Literal["tgi", "vllm"] = Field(
        "tgi",
        description="Serving engine: tgi (Hugging Face Text Generation Inference 3.3.7) or vllm (vLLM 0.33.0's OpenAI-compatible server).",
    )
    image: str = Field(
        "",
        description=f"Container image of the engine. Empty: {DEFAULT_TGI_IMAGE} for tgi, {DEFAULT_VLLM_IMAGE} for vllm.",
        max_length=512,
    )
    image_pull_policy: Literal["", "Always", "IfNotPresent", "Never"] = Field(
        "",
        description="When the kubelet pulls the engine image: Always, IfNotPresent, or Never (the image is loaded "
        "onto the nodes beforehand). Empty: Kubernetes' default (Always for a :latest or untagged "
        "image, else IfNotPresent).",
    )
    args: list[Annotated[str, Field(max_length=1024)]] = Field(
        default_factory=list,
        max_length=64,
        description="Extra engine arguments, appended after the ones the operator sets: only flags of the engine "
        "(TGI 3.3.7's launcher, or vLLM 0.33.0's `vllm serve`) that no spec field sets, each once "
        "(admission refuses the rest).",
    )
    env: list[EnvVar] = Field(
        default_factory=list,
        description="Extra environment variables of the serving container; not the launcher's own variables (NUM_SHARD, QUANTIZE, ...): use the spec fields or engine.args.",
        max_length=64,
    )
    resources: ResourceRequirements = Field(
        default_factory=ResourceRequirements, description="CPU and memory of the serving container."
    )

    __rules__ = _engine_rules() + _vllm_engine_rules()
