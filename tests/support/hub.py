"""A local stand-in for the Hugging Face Hub: the endpoints huggingface_hub, llm-runtime and
the operator call, with the answers and faults a test can ask for. The one Hub fake of the
tests: the operator's model facts (tests/unit/facts, the session's `hub` fixture), llm-runtime
download (tests/unit/runtime, the real-engine and real-node tiers) and the demo use it.

Serves, for each repository it holds (one commit, reachable by its id and as branch `main`;
with any_revision=True, by any revision name):
  HEAD/GET /{repo}/resolve/{revision}/{file}          file bytes, honouring Range
  GET      /api/models/{repo}/revision/{revision}     model info with siblings (size, blobId, lfs)
  GET      /api/models/{repo}/tree/{revision}         the file listing, as the Hub's tree API
Gated repositories answer 401 (X-Error-Code: GatedRepo) on /resolve/ unless the request carries
a token the stand-in accepts, like huggingface.co. Weight files are served as LFS files: their
ETag is the sha256 of the content, as the Hub's X-Linked-Etag is.

What it answers for what it does not hold, as huggingface.co answers a reader:
  a repository not held            401 RepoNotFound; with `missing` given, only the repositories
                                   named there, and any other answers 401 GatedRepo (so a private
                                   model is planned from the spec's GPUs)
  a revision in missing_revisions  404 RevisionNotFound, in every repository
  a repository in `unreachable`    the connection closed with no answer, as a Hub that cannot be
                                   reached

Faults (per repository and file, until cleared):
  cut_after(repo, file, n, then_fail=False)  send n bytes of a body, then close the connection;
                                             then_fail: later requests for the file get HTTP 500
  corrupt(repo, file, offset)                serve the file with one byte flipped (metadata stays right)
  stall(repo, file, after)                   send `after` bytes, then hold the connection silent
                                             until the server closes
`served[(repo, file)]` counts the body bytes written for GETs; `requests` logs each request
as (method, path, Range header).
"""

from __future__ import annotations

import hashlib
import json
import struct
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

# Files stored in Git LFS on the Hub: weights and anything large.
LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
LFS_MIN_SIZE = 10 * 1024 * 1024

# A held connection is released at close(), or after this long at the latest.
STALL_HOLD_LIMIT_S = 120

# What the session's Hub stand-ins serve (conftest.py's hub and tiny_hub fixtures).
# The tiny Llama and its LoRA adapter (hack/tinymodel.py): what a real engine serves.
TINY_MODEL, TINY_LORA = "test/tiny-llama", "test/tiny-llama-lora"
# Repositories the operator's Hub serves: config.json and a safetensors header whose one
# tensor holds the model's published parameter count (tests/data/models/).
HUB_MODELS = {"test/llama-3-70b": "llama-3-70b", "test/qwen2.5-7b": "qwen2.5-7b", "test/mistral-7b": "mistral-7b"}
# Names the operator's Hub answers as not existing: a repository, and a revision of any repository.
HUB_MISSING = {"test/no-such-model"}
HUB_MISSING_REVISIONS = {"no-such-revision"}
HUB_UNREACHABLE = {"test/unreachable"}  # the connection drops, as when the Hub cannot be reached


def safetensors_header_only(tensors: dict[str, tuple[str, list[int]]]) -> bytes:
    """A safetensors file cut after its header ({name: (dtype, shape)}, 2 bytes a parameter):
    all that get_safetensors_metadata reads, so a model's parameter count costs no weights."""
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, (dtype, shape) in tensors.items():
        size = 2
        for dimension in shape:
            size *= dimension
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    encoded = json.dumps(header).encode()
    return struct.pack("<Q", len(encoded)) + encoded


def git_blob_sha1(content: bytes) -> str:
    """The git object id of a file: what the Hub reports as blobId and as the ETag of non-LFS files."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def is_lfs(name: str, content: bytes) -> bool:
    return name.endswith(LFS_SUFFIXES) or len(content) >= LFS_MIN_SIZE


@dataclass
class Fault:
    kind: str  # "cut", "corrupt", "stall"
    at: int = 0  # byte count (cut, stall) or offset (corrupt)
    then_fail: bool = False
    tripped: bool = False


class HubServer:
    """Start with HubServer({repo_id: {filename: bytes}}, gated={repo_id}, tokens={"hf_x"}); close() at the end.
    `missing`, `missing_revisions`, `unreachable` and `any_revision`: see the module's docstring."""

    def __init__(
        self,
        repos: dict[str, dict[str, bytes]],
        gated=(),
        tokens=(),
        host: str = "127.0.0.1",
        *,
        missing=None,
        missing_revisions=(),
        unreachable=(),
        any_revision: bool = False,
    ):
        self.repos = {repo: dict(files) for repo, files in repos.items()}
        self.gated, self.tokens = set(gated), set(tokens)
        self.missing = None if missing is None else set(missing)
        self.missing_revisions, self.unreachable = set(missing_revisions), set(unreachable)
        self.any_revision = any_revision
        self.faults: dict[tuple[str, str], Fault] = {}
        self.served: dict[tuple[str, str], int] = {}
        self.requests: list[tuple[str, str, str | None]] = []
        self._closing = threading.Event()
        self._lock = threading.Lock()
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def do_HEAD(self):
                hub._answer(self, body=False)

            def do_GET(self):
                hub._answer(self, body=True)

            def log_message(self, *args):
                pass

        # host: loopback, or the real node's bridge address (tests/realnode), where its pods reach it.
        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.endpoint = f"http://{host}:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    # --- what tests use ------------------------------------------------------------------

    def commit(self, repo: str) -> str:
        """A stable commit id for the repository's content."""
        digest = hashlib.sha1()
        for name in sorted(self.repos[repo]):
            digest.update(name.encode() + b"\0" + git_blob_sha1(self.repos[repo][name]).encode())
        return digest.hexdigest()

    def cut_after(self, repo: str, name: str, n: int, then_fail: bool = False) -> None:
        self.faults[(repo, name)] = Fault("cut", n, then_fail)

    def corrupt(self, repo: str, name: str, offset: int = 0) -> None:
        self.faults[(repo, name)] = Fault("corrupt", offset)

    def stall(self, repo: str, name: str, after: int = 0) -> None:
        self.faults[(repo, name)] = Fault("stall", after)

    def clear_faults(self) -> None:
        self.faults.clear()

    def reset_counts(self) -> None:
        with self._lock:
            self.served.clear()
            self.requests.clear()

    def close(self) -> None:
        if self._closing.is_set():
            return
        self._closing.set()  # releases stalled connections
        self.server.shutdown()
        self.server.server_close()

    # --- the protocol --------------------------------------------------------------------

    def _answer(self, handler: BaseHTTPRequestHandler, body: bool) -> None:
        path = unquote(handler.path.split("?")[0])
        with self._lock:
            self.requests.append((handler.command, path, handler.headers.get("Range")))
        parts = path.lstrip("/").split("/")
        if parts[:2] == ["api", "models"]:
            return self._api(handler, parts[2:])
        repo = "/".join(parts[:2])
        if len(parts) < 5 or parts[2] != "resolve":
            return self._error(handler, 404, "EntryNotFound", "Not a Hub path.")
        return self._resolve(handler, repo, parts[3], "/".join(parts[4:]), body)

    def _known_revision(self, repo: str, revision: str) -> bool:
        if revision in self.missing_revisions:
            return False
        return self.any_revision or revision in ("main", self.commit(repo))

    def _refused(self, handler, repo: str) -> bool:
        """Answers for a repository that is unreachable, gated to this request, or not held; False
        when the repository is served."""
        if repo in self.unreachable:
            handler.close_connection = True  # nothing written: the client sees the connection drop
            return True
        if repo in self.gated and not self._authorized(handler):
            self._error(handler, 401, "GatedRepo", "Access to this model is restricted.")
            return True
        if repo not in self.repos:
            if self.missing is not None and repo not in self.missing:
                self._error(handler, 401, "GatedRepo", "Access to this model is restricted.")
            else:
                self._error(handler, 401, "RepoNotFound", "Repository not found.")
            return True
        return False

    def _api(self, handler, parts: list[str]) -> None:
        # parts: org, name, "revision"|"tree", revision...
        repo, kind, revision = "/".join(parts[:2]), parts[2] if len(parts) > 2 else "", "/".join(parts[3:])
        if (repo in self.unreachable or repo not in self.repos) and self._refused(handler, repo):
            return None  # model info is public: a gated repository held here answers it
        if not self._known_revision(repo, revision):
            return self._error(handler, 404, "RevisionNotFound", f"Invalid rev id: {revision}")
        files = self.repos[repo]
        if kind == "revision":
            siblings = [self._sibling(name, content) for name, content in sorted(files.items())]
            return self._json(
                handler,
                {
                    "id": repo,
                    "modelId": repo,
                    "sha": self.commit(repo),
                    "private": False,
                    "gated": "manual" if repo in self.gated else False,
                    "siblings": siblings,
                },
            )
        if kind == "tree":
            return self._json(handler, [self._tree_entry(name, content) for name, content in sorted(files.items())])
        return self._error(handler, 404, "EntryNotFound", "Unknown API path.")

    @staticmethod
    def _sibling(name: str, content: bytes) -> dict:
        entry = {"rfilename": name, "size": len(content), "blobId": git_blob_sha1(content)}
        if is_lfs(name, content):
            entry["lfs"] = {"sha256": hashlib.sha256(content).hexdigest(), "size": len(content), "pointerSize": 134}
        return entry

    @staticmethod
    def _tree_entry(name: str, content: bytes) -> dict:
        entry = {"type": "file", "oid": git_blob_sha1(content), "size": len(content), "path": name}
        if is_lfs(name, content):
            entry["lfs"] = {"oid": hashlib.sha256(content).hexdigest(), "size": len(content), "pointerSize": 134}
        return entry

    def _authorized(self, handler) -> bool:
        auth = handler.headers.get("Authorization", "")
        return auth.startswith("Bearer ") and auth.removeprefix("Bearer ") in self.tokens

    def _resolve(self, handler, repo: str, revision: str, name: str, body: bool) -> None:
        if self._refused(handler, repo):
            return None
        if not self._known_revision(repo, revision):
            return self._error(handler, 404, "RevisionNotFound", f"Invalid rev id: {revision}")
        content = self.repos[repo].get(name)
        if content is None:
            return self._error(handler, 404, "EntryNotFound", "Entry not found.")
        fault = self.faults.get((repo, name))
        if body and fault and fault.kind == "cut" and fault.tripped and fault.then_fail:
            return self._error(handler, 500, "", "Internal error (injected).")
        served = content
        if fault and fault.kind == "corrupt":
            flipped = bytearray(content)
            flipped[fault.at] ^= 0xFF
            served = bytes(flipped)
        status, start, end = self._range(handler.headers.get("Range"), len(content))
        handler.send_response(status)
        handler.send_header("X-Repo-Commit", self.commit(repo))
        if is_lfs(name, content):
            sha256 = hashlib.sha256(content).hexdigest()
            handler.send_header("ETag", f'"{sha256}"')
            handler.send_header("X-Linked-Etag", f'"{sha256}"')
            handler.send_header("X-Linked-Size", str(len(content)))
        else:
            handler.send_header("ETag", f'"{git_blob_sha1(content)}"')
        if status == 206:
            handler.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(content)}")
        handler.send_header("Accept-Ranges", "bytes")
        handler.send_header("Content-Length", str(end - start))
        handler.end_headers()
        if body:
            self._send_body(handler, repo, name, served[start:end], fault)

    @staticmethod
    def _range(header: str | None, size: int) -> tuple[int, int, int]:
        if not header:
            return 200, 0, size
        first, _, last = header.removeprefix("bytes=").partition("-")
        # A range past the end is cut at the end, as HTTP servers do (get_safetensors_metadata
        # asks for the first 100,000 bytes of files that may be shorter).
        return 206, min(int(first), size), min(int(last) + 1 if last else size, size)

    def _send_body(self, handler, repo: str, name: str, data: bytes, fault: Fault | None) -> None:
        limit = None
        if fault and fault.kind in ("cut", "stall"):
            limit = fault.at
        sent = data if limit is None else data[:limit]
        try:
            handler.wfile.write(sent)
            handler.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            return
        finally:
            with self._lock:
                self.served[(repo, name)] = self.served.get((repo, name), 0) + len(sent)
        if limit is None or limit >= len(data):
            return
        if fault.kind == "cut":
            fault.tripped = True
            handler.close_connection = True  # the client sees a body shorter than Content-Length
        else:
            self._closing.wait(STALL_HOLD_LIMIT_S)  # silent: no bytes, no close

    @staticmethod
    def _json(handler, data) -> None:
        encoded = json.dumps(data).encode()
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(encoded)))
        handler.end_headers()
        if handler.command == "GET":
            handler.wfile.write(encoded)

    @staticmethod
    def _error(handler, status: int, code: str, message: str) -> None:
        handler.send_response(status)
        if code:
            handler.send_header("X-Error-Code", code)
        handler.send_header("X-Error-Message", message)
        handler.send_header("Content-Length", "0")
        handler.end_headers()
