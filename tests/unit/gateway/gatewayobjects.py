"""LLMDeployments and serving pods as the API lists them, for the gateway's unit tests."""


def llmd(name, ns="models", ready=True, engine=None, replicas=1, autoscaling=None, adapters=(), stalled=""):
    spec = {"model": {"id": "org/m"}, "replicas": replicas}
    if engine:
        spec["engine"] = {"name": engine}
    if autoscaling:
        spec["autoscaling"] = autoscaling
    status = {"conditions": [{"type": "Ready", "status": "True" if ready else "False", "message": "m"}]}
    if stalled:
        status["conditions"].append({"type": "Stalled", "status": "True", "message": stalled})
    if adapters:
        spec["adapters"] = [{"name": a, "id": f"org/{a}"} for a, _ in adapters]
        status["adapters"] = [
            {"name": a, "served": served is not None, "servedAs": served or ""} for a, served in adapters
        ]
    return {"metadata": {"name": name, "namespace": ns, "uid": "u-" + name}, "spec": spec, "status": status}


def pod(name, model, ns="models", ip="127.10.0.5", ready=True, deleting=False, role=None, port=8080):
    labels = {"llm-operator.io/name": model, "app.kubernetes.io/component": "server"}
    if role:
        labels["llm-operator.io/role"] = role
    meta = {"name": name, "namespace": ns, "labels": labels}
    if deleting:
        meta["deletionTimestamp"] = "2026-12-01T00:00:00Z"
    return {
        "metadata": meta,
        "spec": {"containers": [{"name": "engine", "ports": [{"name": "http", "containerPort": port}]}]},
        "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }
