"""The LeaderWorkerSet (LWS) controller on the local control plane: its configuration, its
webhooks served on loopback and signed by the local CA, and the checks that it admits. A mixin
of LocalCluster (hack/localplane/cluster.py), which gives it `root`, `pki`, `bin_dir` and
kubectl. Standard library only."""

from __future__ import annotations

import base64
import json
import ssl
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

from localplane.procs import json_stream, wait_until

# The resources of LWS's CRDs (its manager watches both).
LWS_RESOURCES = (
    "/apis/leaderworkerset.x-k8s.io/v1/leaderworkersets",
    "/apis/disaggregatedset.x-k8s.io/v1/disaggregatedsets",
)


class LeaderWorkerSet:
    """The LWS manager's configuration, its webhook configurations and the waits for them."""

    root: Path
    pki: Path
    bin_dir: Path

    def _write_lws_config(self, port: int) -> Path:
        """The manager's configuration (its --config, LWS's config.lws.x-k8s.io Configuration):
        no internal cert management (it would make a Secret for a Service and patch the
        webhook configurations; the local CA signs its certificate instead), no leader
        election, the webhook on loopback, metrics and health endpoints off."""
        path = self.root / "lws-config.json"
        path.write_text(
            json.dumps(
                {
                    "apiVersion": "config.lws.x-k8s.io/v1alpha1",
                    "kind": "Configuration",
                    "leaderElection": {"leaderElect": False},
                    "internalCertManagement": {"enable": False},
                    "webhook": {"host": "127.0.0.1", "port": port, "certDir": str(self.pki / "lws-webhook")},
                    "metrics": {"bindAddress": "0"},
                    "health": {"healthProbeBindAddress": "0"},
                },
                indent=2,
            )
        )
        return path

    def _lws_webhook_configurations(self, port: int) -> list[dict]:
        """LWS's own webhook configurations as its config/default install makes them (the
        kustomization in config/webhook: rules, paths, failure policies, and the pod webhooks'
        objectSelector, so they act on LWS pods only), each webhook reached at
        https://127.0.0.1:PORT/PATH instead of through a Service."""
        rendered = self.kubectl(
            "create", "-k", str(self.bin_dir / "lws-manifests" / "webhook"), "--dry-run=client", "-o", "json"
        )
        ca_bundle = base64.b64encode((self.pki / "ca.crt").read_bytes()).decode()
        configs = []
        for obj in json_stream(rendered):
            if obj["kind"] not in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
                continue  # the Service the webhooks would be reached through in a cluster
            obj["metadata"] = {"name": "lws-" + obj["metadata"]["name"]}  # config/default's namePrefix
            for hook in obj["webhooks"]:
                path = hook["clientConfig"]["service"]["path"]
                hook["clientConfig"] = {"url": f"https://127.0.0.1:{port}{path}", "caBundle": ca_bundle}
            configs.append(obj)
        return configs

    def _lws_serves(self, urls: list[str]) -> bool:
        """True when the manager serves every webhook URL with the certificate the apiserver
        trusts (it registers them one by one once its certificates are read)."""
        ctx = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        for url in urls:
            req = urllib.request.Request(url, data=b"{}", method="POST", headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, context=ctx, timeout=2):
                    pass  # controller-runtime answers an empty review with an AdmissionReview error
            except urllib.error.HTTPError as err:
                if err.code == 404:
                    return False
            except (urllib.error.URLError, OSError):
                return False
        return True

    def _lws_admits(self) -> bool:
        """True when the apiserver admits a LeaderWorkerSet through LWS's webhooks (a
        server-side dry run: the CRD is Established and the webhooks answer)."""
        probe = {
            "apiVersion": "leaderworkerset.x-k8s.io/v1",
            "kind": "LeaderWorkerSet",
            "metadata": {"name": "localcluster-probe", "namespace": "default"},
            "spec": {
                "leaderWorkerTemplate": {
                    "size": 1,
                    "workerTemplate": {"spec": {"containers": [{"name": "c", "image": "registry.invalid/none"}]}},
                }
            },
        }
        return bool(self.kubectl_ok("create", "--dry-run=server", "-o", "name", "-f", "-", input=json.dumps(probe)))

    def _wait_for_lws(self, urls: list[str], timeout: float, procs: dict[str, subprocess.Popen]) -> None:
        wait_until(
            f"the LWS manager to serve its webhooks ({', '.join(urls)})", lambda: self._lws_serves(urls), timeout, procs
        )
        wait_until("the apiserver to admit a LeaderWorkerSet through LWS's webhooks", self._lws_admits, timeout, procs)
