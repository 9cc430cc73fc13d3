"""A stand-in for the pods' /metrics endpoints, which the operator's autoscaler scrapes (kwok
pods serve nothing): the session's pod_metrics fixture in conftest.py."""

from __future__ import annotations

import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from support.loopback import require_loopback


class PodMetrics:
    """Serves TGI /metrics text in place of the pods (kwok pods have no server), by
    namespace, with per-pod overrides; a pod set to None does not answer. For a namespace in
    `relay` (real engines, support/realengine.py), each scrape is passed to the pod's own
    address and the engine's answer returned as it is."""

    def __init__(self):
        self.by_namespace: dict[str, str] = {}
        self.by_pod: dict[tuple[str, str], str | None] = {}
        self.relay: set[str] = set()
        served = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                path, _, query = self.path.partition("?")
                parts = path.strip("/").split("/")
                text = None
                if len(parts) == 3 and parts[0] in served.relay:
                    text = served.from_pod(dict(kv.split("=", 1) for kv in query.split("&") if "=" in kv))
                elif len(parts) == 3:
                    text = served.text_for(parts[0], parts[1])
                if text is None:
                    self.send_response(503)
                    self.end_headers()
                    return
                body = text.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = (
            f"http://127.0.0.1:{self.server.server_address[1]}/{{namespace}}/{{pod}}/metrics"
            "?ip={pod_ip}&port={port}"
        )
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def text_for(self, namespace: str, pod: str) -> str | None:
        if (namespace, pod) in self.by_pod:
            return self.by_pod[(namespace, pod)]
        return self.by_namespace.get(namespace)

    @staticmethod
    def from_pod(query: dict[str, str]) -> str | None:
        try:
            url = f"http://{require_loopback(query.get('ip', ''))}:{int(query.get('port', ''))}/metrics"
            with urllib.request.urlopen(url, timeout=2) as resp:
                return resp.read().decode()
        except (OSError, ValueError):
            return None

    def close(self):
        self.server.shutdown()
        self.server.server_close()
