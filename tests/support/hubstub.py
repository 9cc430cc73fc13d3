"""A stand-in for the Hugging Face Hub's file protocol, for tests: HEAD and ranged GET on
/{repo}/resolve/{revision}/{file}, gated repos, and a record of every request."""

from __future__ import annotations

import hashlib
import json
import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def safetensors_header_only(tensors):
    """A safetensors file cut after its header: all get_safetensors_metadata reads."""
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, (dtype, shape) in tensors.items():
        size = 2
        for dimension in shape:
            size *= dimension
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    encoded = json.dumps(header).encode()
    return struct.pack("<Q", len(encoded)) + encoded


class FakeHub:
    """Serves HEAD and (ranged) GET on /{repo}/resolve/{revision}/{file}, like huggingface.co."""

    def __init__(self, repos, gated=(), missing=None, missing_revisions=(), unreachable=()):
        """`missing`: when given, only these repositories answer as ones that do not exist
        (401 RepoNotFound, as huggingface.co answers a reader without a token) and any other
        repository not in `repos` answers as a gated one; when None, every repository not in
        `repos` does not exist. A revision in `missing_revisions` does not exist in any
        repository (404 RevisionNotFound). A request for a repository in `unreachable` has
        its connection closed with no answer, as a Hub that cannot be reached."""
        self.repos, self.gated, self.requests = repos, set(gated), []
        self.missing = None if missing is None else set(missing)
        self.missing_revisions = set(missing_revisions)
        self.unreachable = set(unreachable)
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def do_HEAD(self):
                hub.answer(self, body=False)

            def do_GET(self):
                hub.answer(self, body=True)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def answer(self, handler, body):
        self.requests.append((handler.command, handler.path))
        parts = handler.path.split("?")[0].lstrip("/").split("/")
        repo, filename = "/".join(parts[:2]), "/".join(parts[4:])
        if repo in self.unreachable:
            handler.close_connection = True     # nothing written: the client sees the connection drop
            return None
        unlisted = repo not in self.repos and self.missing is not None and repo not in self.missing
        if repo in self.gated or unlisted:
            return self.error(handler, 401, "GatedRepo", "Access to this model is restricted.")
        if repo not in self.repos or parts[2:3] != ["resolve"]:
            return self.error(handler, 401, "RepoNotFound", "Repository not found.")
        if parts[3:4] and parts[3] in self.missing_revisions:
            return self.error(handler, 404, "RevisionNotFound", "Invalid rev id.")
        content = self.repos[repo].get(filename)
        if content is None:
            return self.error(handler, 404, "EntryNotFound", "Entry not found.")
        status, content = self.ranged(handler.headers.get("Range"), content)
        handler.send_response(status)
        handler.send_header("X-Repo-Commit", COMMIT)
        handler.send_header("ETag", f'"{hashlib.sha256(self.repos[repo][filename]).hexdigest()}"')
        handler.send_header("Content-Length", str(len(content)))
        handler.end_headers()
        if body:
            handler.wfile.write(content)

    @staticmethod
    def ranged(range_header, content):
        if not range_header:
            return 200, content
        start, _, end = range_header.removeprefix("bytes=").partition("-")
        return 206, content[int(start): int(end) + 1 if end else None]

    @staticmethod
    def error(handler, status, code, message):
        handler.send_response(status)
        handler.send_header("X-Error-Code", code)
        handler.send_header("X-Error-Message", message)
        handler.send_header("Content-Length", "0")
        handler.end_headers()
