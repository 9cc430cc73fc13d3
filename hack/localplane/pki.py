"""The control plane's certificates and kubeconfig, made with openssl under DIR/pki: a mixin of
LocalCluster (hack/localplane/cluster.py), which gives it `pki`, `kubeconfig`, `env_file` and
`bin_dir`. Standard library only."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path


class Certificates:
    """The CA and what it signs, and the kubeconfig and env file that use them."""

    pki: Path
    kubeconfig: Path
    env_file: Path
    bin_dir: Path

    def _openssl(self, *args: str) -> None:
        subprocess.run(["openssl", *args], check=True, cwd=self.pki, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def make_pki(self) -> None:
        """A CA, the apiserver's serving certificate, an admin client certificate
        (group system:masters), the service-account signing key and the LWS webhook's
        serving certificate (for 127.0.0.1, in the tls.crt/tls.key layout controller-runtime reads)."""
        self.pki.mkdir(parents=True, exist_ok=True)
        # The real node's bridge address (hack/realnode.py) came later: older certificates lack it.
        if not (self.pki / "admin.crt").exists() or "10.251.0.1" not in (self.pki / "san.cnf").read_text():
            shutil.rmtree(self.pki / "lws-webhook", ignore_errors=True)  # signed by the CA made below
            self._make_base_pki()
        if not (self.pki / "lws-webhook" / "tls.crt").exists():
            (self.pki / "lws-webhook").mkdir(exist_ok=True)
            (self.pki / "webhook.cnf").write_text(
                "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
                "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n"
            )
            o = self._openssl
            o(
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "lws-webhook/tls.key",
                "-out",
                "lws-webhook.csr",
                "-subj",
                "/CN=lws-webhook",
            )
            o(
                "x509",
                "-req",
                "-in",
                "lws-webhook.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "lws-webhook/tls.crt",
                "-days",
                "3650",
                "-extfile",
                "webhook.cnf",
            )

    def _make_base_pki(self) -> None:
        o = self._openssl
        o(
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "3650",
            "-subj",
            "/CN=llm-operator-local-ca",
        )
        (self.pki / "san.cnf").write_text(
            "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
            "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,IP:10.0.0.1,IP:10.251.0.1,DNS:localhost,"
            "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,"
            "DNS:kubernetes.default.svc.cluster.local\n"
        )
        (self.pki / "client.cnf").write_text(
            "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n"
        )
        for name, subj, ext in (
            ("apiserver", "/CN=kube-apiserver", "san.cnf"),
            ("admin", "/O=system:masters/CN=local-admin", "client.cnf"),
        ):
            o("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subj)
            o(
                "x509",
                "-req",
                "-in",
                f"{name}.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                f"{name}.crt",
                "-days",
                "3650",
                "-extfile",
                ext,
            )
        o("genrsa", "-out", "sa.key", "2048")
        o("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub")

    def write_kubeconfig(self, server: str) -> None:
        self.kubeconfig.write_text(
            f"""apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: {server}
    certificate-authority: {self.pki / "ca.crt"}
users:
- name: admin
  user:
    client-certificate: {self.pki / "admin.crt"}
    client-key: {self.pki / "admin.key"}
contexts:
- name: local
  context: {{cluster: local, user: admin, namespace: default}}
current-context: local
"""
        )
        os.chmod(self.kubeconfig, 0o600)
        self.env_file.write_text(f'export KUBECONFIG="{self.kubeconfig}"\nexport PATH="{self.bin_dir}:$PATH"\n')
