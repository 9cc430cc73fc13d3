"""The forwarder: pods reach the loopback apiserver through the bridge's address (the process
`python hack/realnode.py forward TARGET LISTEN...` runs). Standard library only."""

from __future__ import annotations

import os
import signal
import socket
import threading


def forward(listeners: list[tuple[str, int]], target_host: str, target_port: int) -> None:
    """Accept on each listener and splice each connection to target (TLS passes through)."""
    servers = [socket.create_server(address) for address in listeners]

    def pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def serve(client: socket.socket) -> None:
        try:
            upstream = socket.create_connection((target_host, target_port), timeout=10)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        threading.Thread(target=pipe, args=(client, upstream), daemon=True).start()
        pipe(upstream, client)
        client.close()
        upstream.close()

    def accept(server: socket.socket) -> None:
        while True:
            client, _ = server.accept()
            threading.Thread(target=serve, args=(client,), daemon=True).start()

    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    for server in servers[1:]:
        threading.Thread(target=accept, args=(server,), daemon=True).start()
    accept(servers[0])
