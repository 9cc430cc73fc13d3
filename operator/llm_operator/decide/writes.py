"""Pure: what to write of the desired children, and what to prune.

Each desired child is judged on its own (`judge_child`), by the first case that holds:
another controller owns it (`foreign_owner`), its name is taken by an object the read model
does not hold (`name_taken`), it is being deleted (`being_deleted`), it would
mount a cache claim that is not there, the claim's spec changed (`claim_changed`), it is a
download Job (`download_job`), or else it is applied when it differs (`apply_if_changed`).
Each case gives an `Outcome`: apply it, leave it, delete it to be made again, or why it
cannot be written. The cache claim is judged first: whether anything may mount it is handed
to the judgement of the others.

Ownership: only a child the read model holds with our controller reference is applied
(server-side apply, forced: our fields are ours). One it has never seen is created (act
POSTs it, so an object of that name made by someone else is refused, never taken over, and
the name is remembered as taken until that object changes or goes); one it holds with
another controller (a deleted LLMDeployment's, not yet collected) is not touched. Only
children with our controller reference are pruned.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from llm_common.words import plural
from llm_operator import api
from llm_operator.api.conditions import Verdict
from llm_operator.decide import cache as weights
from llm_operator.decide.compare import up_to_date
from llm_operator.decide.manifests import LWS_API_VERSION, LWS_KIND, MANAGED_KINDS, TEMPLATE_HASH_ANNOTATION, Owner
from llm_operator.decide.observed import Observed, Refusal, live_child
from llm_operator.decide.placement import LWS_INSTALL
from llm_operator.decide.revision import settled_workload

# Refusals that the same write will meet again (invalid, forbidden, immutable field).
PERMANENT_REFUSALS = (400, 403, 404, 405, 413, 415, 422)

# The kinds that run serving pods (one replica a pod, or a group of pods on several nodes),
# and with the PDB what keeps serving while a new spec waits for its weights or its plan.
SERVING_WORKLOADS = ("Deployment", LWS_KIND)
SERVING_KINDS = (*SERVING_WORKLOADS, "PodDisruptionBudget")
# The kinds whose pods mount the cache claim.
CLAIM_MOUNTERS = ("Job", *SERVING_WORKLOADS)

Problem = tuple[Verdict, bool]  # what to say, and whether only a change can help


def _key(obj: dict[str, Any]) -> tuple[str, str]:
    return obj["kind"], obj["metadata"]["name"]


def _ref(obj: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "metadata": {"name": obj["metadata"]["name"], "namespace": obj["metadata"].get("namespace", "")},
    }


# --- ownership ------------------------------------------------------------------------------


def owned(child: dict[str, Any], uid: str) -> bool:
    """The child carries our controller reference."""
    return any(
        ref.get("uid") == uid and ref.get("controller") for ref in child["metadata"].get("ownerReferences") or []
    )


def owner_words(child: dict[str, Any]) -> str:
    """Who holds an object, for a message: its controller, else its owners, else nobody."""
    refs = child["metadata"].get("ownerReferences") or []
    ref = next((r for r in refs if r.get("controller")), None) or (refs[0] if refs else None)
    return (
        f"owned by {ref.get('kind')} {ref.get('name')}"
        if ref
        else "owned by no controller (made by hand or by another tool)"
    )


def holder(live: dict[str, Any] | None, uid: str) -> str | None:
    """Who holds a name our child could not take, as the watch of that name shows it now
    (`owner_words`); None once the name is no obstacle: the object is gone, or ours now."""
    if live is None or owned(live, uid):
        return None
    return owner_words(live)


def name_conflict(kind: str, name: str, whose: str) -> Verdict:
    return Verdict(
        "False",
        "NameConflict",
        f"{kind}/{name} already exists and is not this LLMDeployment's "
        f"({whose}): the operator neither changes nor deletes it, and makes no {kind} of its own. "
        f"Rename or delete that {kind}, or give this LLMDeployment another name.",
    )


# --- refusals -------------------------------------------------------------------------------


def retried(kind: str, refusal: Refusal) -> bool:
    """Whether a refused write is tried again with the queue's backoff (at most a minute
    apart): what may pass by itself (conflicts, throttling, server trouble), and the
    LeaderWorkerSet API missing (installing LWS is a change to the cluster, not the spec:
    the next try finds it). Other 4xx wait for a change or the resync."""
    if refusal.taken_by is not None:
        return False
    return refusal.status not in PERMANENT_REFUSALS or (kind == LWS_KIND and refusal.status == 404)


def refusal_verdict(kind: str, name: str, refusal: Refusal) -> Problem:
    if refusal.taken_by is not None:
        return name_conflict(kind, name, refusal.taken_by), True
    if kind == LWS_KIND and refusal.status == 404:
        # The API has no such kind: LeaderWorkerSet's CRD is not installed (or was removed).
        return Verdict(
            "False",
            "LeaderWorkerSetMissing",
            (
                f"LeaderWorkerSet/{name} cannot be made: this cluster has no LeaderWorkerSet API ({LWS_API_VERSION}; "
                f"HTTP 404: {refusal.message.strip()}). A replica on several nodes needs it: install LeaderWorkerSet "
                f"({LWS_INSTALL}); the operator tries again every minute. Or serve on one node (spec.nodes: 1)."
            ),
        ), True
    verdict = Verdict(
        "False", "ApplyRefused", f"The API refused a write of {kind}/{name} (HTTP {refusal.status}): {refusal.message}"
    )
    # The same write will be refused again (invalid, forbidden, immutable): only a change can help.
    # Conflicts, throttling, server trouble: retried with a backoff.
    return verdict, refusal.status in PERMANENT_REFUSALS


# --- one desired child ----------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What to do with one desired child."""

    apply: bool = False  # write it (it differs from the live one, or there is none)
    replace: tuple[dict[str, Any], ...] = ()  # delete these (it, and what goes with it), made again once gone
    problem: Problem | None = None  # why it is not written
    unmountable: bool = False  # (the cache claim) nothing may mount it now: not ours, going, or replaced


LEAVE = Outcome()
APPLY = Outcome(apply=True)


@dataclass(frozen=True)
class Claimants:
    """What of this LLMDeployment mounts its cache claim."""

    pods: int  # serving pods (a workload asking for replicas counts as its pods to come)
    downloads: int  # pods of download Jobs still running
    jobs: tuple[dict[str, Any], ...] = ()  # our Jobs not being deleted, as references: replaced with the claim


def foreign_owner(want: dict[str, Any], live: dict[str, Any], owner: Owner) -> Outcome:
    """A live object of that name that is not ours: never written. An earlier LLMDeployment of
    this name (that uid no longer exists) is waited for: the garbage collector removes it, and
    its deletion wakes us to make ours. Anyone else's is a conflict only a change resolves."""
    kind, name = _key(want)
    ref: dict[str, Any] = next((r for r in live["metadata"].get("ownerReferences") or [] if r.get("controller")), {})
    if ref.get("kind") == api.KIND and ref.get("name") == owner.name:
        problem = (
            Verdict(
                "False",
                "Creating",
                f"Waiting for the garbage collector to remove {kind}/{name} of an earlier LLMDeployment of this name.",
            ),
            False,
        )
    else:
        problem = (name_conflict(kind, name, owner_words(live)), True)
    return Outcome(problem=problem, unmountable=kind == "PersistentVolumeClaim")


def name_taken(want: dict[str, Any], whose: str) -> Outcome:
    """A name the API said is taken by an object not ours (the read model does not hold it:
    it lacks our labels), remembered until that object changes or goes: not tried again
    meanwhile, and said as when the create was refused."""
    kind, name = _key(want)
    return Outcome(problem=(name_conflict(kind, name, whose), True), unmountable=kind == "PersistentVolumeClaim")


def being_deleted(want: dict[str, Any]) -> Outcome:
    """Being deleted (replaced, or by hand): made again when its deletion wakes us."""
    return Outcome(unmountable=want["kind"] == "PersistentVolumeClaim")


def claim_changed(want: dict[str, Any], changes: list[str], claimants: Claimants) -> Outcome:
    """The cache claim's spec changed in a way a claim cannot change in place. Mounted by a pod
    of ours: left as it is, and said. Mounted by none: deleted to be made again, with the Jobs
    whose downloads it held."""
    name = want["metadata"]["name"]
    if claimants.pods or claimants.downloads:
        return Outcome(
            problem=(
                Verdict(
                    "False",
                    "ClaimImmutable",
                    (
                        f"The cache volume claim {name} cannot change in place ({'; '.join(changes)}): it must be "
                        f"deleted and made again, and the weights downloaded again. {plural(claimants.pods, 'serving pod')} and "
                        f"{plural(claimants.downloads, 'download pod')} of this LLMDeployment mount it, so it is left as it is and they "
                        f"go on. To replace it, scale to zero (spec.replicas: 0): the operator then deletes and re-creates the "
                        f"claim and downloads again; scale back up once WeightsCached is True. Or undo the change."
                    ),
                ),
                True,
            )
        )
    return Outcome(replace=(_ref(want), *claimants.jobs), unmountable=True)


def download_job(want: dict[str, Any], live: dict[str, Any]) -> Outcome:
    """A download Job that exists. Done: left alone (what it downloads is in its name, so no
    other field is worth downloading again for). Its pod template changed: re-created, as a
    Job's template is immutable (the old pod gone first, so that two never write the same
    files). Otherwise applied when it differs."""
    if weights.job_complete(live):
        return LEAVE
    template = TEMPLATE_HASH_ANNOTATION
    if (live["metadata"].get("annotations") or {}).get(template) != want["metadata"]["annotations"][template]:
        return Outcome(replace=({**_ref(want), "propagationPolicy": "Foreground"},))
    return apply_if_changed(want, live)


def apply_if_changed(want: dict[str, Any], live: dict[str, Any] | None) -> Outcome:
    return LEAVE if up_to_date(want, live) else APPLY


def judge_child(
    want: dict[str, Any],
    live: dict[str, Any] | None,
    owner: Owner,
    mountable: bool,
    claimants: Callable[[], Claimants],
    taken: str | None = None,
) -> Outcome:
    """One desired child against its live self (as `live_child` gives it, None: there is none).
    `mountable`: the cache claim is ours and stays; `claimants`: asked only of a changed claim;
    `taken`: who holds its name, where the API said an object not ours has it."""
    kind = want["kind"]
    if live is not None and not owned(live, owner.uid):
        return foreign_owner(want, live, owner)
    if live is None and taken is not None:
        return name_taken(want, taken)
    if live is not None and live["metadata"].get("deletionTimestamp"):
        return being_deleted(want)
    if kind in CLAIM_MOUNTERS and not mountable:
        return LEAVE  # it would mount a claim that is not (or no longer) there
    if kind == "PersistentVolumeClaim" and live is not None:
        changes = weights.claim_changes(want, live)
        if changes:
            return claim_changed(want, changes, claimants())
    if kind == "Job" and live is not None:
        return download_job(want, live)
    return apply_if_changed(want, live)


def claimants_of(
    observed: Observed, owner: Owner, serving: tuple[dict[str, Any], ...], workload: dict[str, Any] | None
) -> Claimants:
    """The serving pods, the running download pods and our Jobs: what mounts the claim."""
    wanted = ((workload or {}).get("spec") or {}).get("replicas", 0) if workload else 0
    running = [job for job in observed.children.get("Job", ()) if not weights.job_finished(live_child(job))]
    downloads = sum(len(weights.job_pods(observed, job["metadata"]["name"])) for job in running)
    jobs = tuple(
        _ref(j)
        for j in observed.children.get("Job", ())
        if owned(j, owner.uid) and not j["metadata"].get("deletionTimestamp")
    )
    return Claimants(max(len(serving), wanted or 0), downloads, jobs)


# --- all of them ----------------------------------------------------------------------------


def _joined(verdicts: list[Verdict]) -> Verdict | None:
    return Verdict("False", verdicts[0].reason, " ".join(v.message for v in verdicts)) if verdicts else None


@dataclass(frozen=True)
class Writes:
    """What to write of the desired children, what to prune, and which cannot be written."""

    apply: tuple[dict[str, Any], ...] = ()
    replace: tuple[dict[str, Any], ...] = ()  # deleted now, made again once gone
    prune: tuple[dict[str, Any], ...] = ()  # owned children no longer wanted, and those replaced
    problems: tuple[Problem, ...] = ()

    @property
    def stalled(self) -> Verdict | None:
        """What only a change can help, as one verdict."""
        return _joined([v for v, permanent in self.problems if permanent])

    @property
    def held(self) -> Verdict | None:
        """What time may resolve, as one verdict."""
        return _joined([v for v, permanent in self.problems if not permanent])


def prunable(
    observed: Observed, owner: Owner, desired: list[dict[str, Any]], keep: tuple[str, ...]
) -> tuple[dict[str, Any], ...]:
    """Children we own (our controller reference, not just our label) that are no longer wanted."""
    wanted = {_key(d) for d in desired}
    out = []
    for api_version, kind in MANAGED_KINDS:
        if kind in keep:
            continue
        for child in observed.children.get(kind, ()):
            name = child["metadata"]["name"]
            if (kind, name) in wanted or child["metadata"].get("deletionTimestamp") or not owned(child, owner.uid):
                continue
            out.append(
                {"apiVersion": api_version, "kind": kind, "metadata": {"name": name, "namespace": owner.namespace}}
            )
    return tuple(out)


def judge_children(
    observed: Observed,
    owner: Owner,
    desired: list[dict[str, Any]],
    serving: tuple[dict[str, Any], ...],
    workload: dict[str, Any] | None,
) -> list[Outcome]:
    """Each desired child's outcome, in order; the cache claim's first, as the others mount it."""

    def judge(want: dict[str, Any], mountable: bool = True) -> Outcome:
        live = live_child(observed.child(*_key(want)))
        return judge_child(
            want,
            live,
            owner,
            mountable,
            lambda: claimants_of(observed, owner, serving, workload),
            observed.taken.get(_key(want)),
        )

    claim = next((d for d in desired if d["kind"] == "PersistentVolumeClaim"), None)
    claimed = judge(claim) if claim is not None else LEAVE
    return [claimed if want is claim else judge(want, not claimed.unmountable) for want in desired]


def _ours(observed: Observed, owner: Owner, want: dict[str, Any]) -> dict[str, Any] | None:
    """The live child of that kind and name when it carries our controller reference."""
    live = live_child(observed.child(*_key(want))) if want["kind"] in SERVING_WORKLOADS else None
    return live if live is not None and owned(live, owner.uid) else None


def writes_for(
    observed: Observed,
    owner: Owner,
    desired: list[dict[str, Any]],
    serving: tuple[dict[str, Any], ...],
    workload: dict[str, Any] | None,
    serve: bool,
) -> Writes:
    """The writes of the desired children: applied, replaced, pruned, and the problems with
    them (each child's, and every refusal of a write). `serve`: the new spec may serve now;
    until then, whatever serves goes on serving (nothing serving is pruned)."""
    # A serving workload keeps its pod template while what it was rendered from is unchanged.
    desired = [settled_workload(want, _ours(observed, owner, want)) for want in desired]
    outcomes = judge_children(observed, owner, desired, serving, workload)
    problems = []
    for want, outcome in zip(desired, outcomes, strict=True):
        refusal = observed.refused.get(_key(want))
        problems += [refusal_verdict(*_key(want), refusal)] if refusal is not None else []
        problems += [outcome.problem] if outcome.problem is not None else []
    wanted = {_key(d) for d in desired}
    problems += [refusal_verdict(k, n, r) for (k, n), r in sorted(observed.refused.items()) if (k, n) not in wanted]
    replace = tuple(r for outcome in outcomes for r in outcome.replace)
    replaced = {_key(r) for r in replace}
    prune = prunable(observed, owner, desired, () if serve else SERVING_KINDS)
    return Writes(
        apply=tuple(w for w, o in zip(desired, outcomes, strict=True) if o.apply and _key(w) not in replaced),
        replace=replace,
        prune=tuple(p for p in prune if _key(p) not in replaced) + replace,
        problems=tuple(problems),
    )
