"""The real node's configuration files: containerd's (with the CNI bridge network), the
kubelet's, its resolv.conf and its kubeconfig with a client certificate from the local CA. A
mixin of RealNode (hack/kubenode/node.py), which gives it `dir`, `run_dir`, `sock` and
`cluster`. Standard library only."""

from __future__ import annotations

import json
from pathlib import Path

from kubenode.settings import (
    BRIDGE,
    CGROUP_ROOT,
    CNI_BIN,
    CNI_NETWORK,
    GATEWAY,
    NODE_NAME,
    SERVICE_IP,
    SUBNET,
    TAINT_KEY,
)
from localplane.cluster import LocalCluster


class NodeConfigs:
    """What containerd and the kubelet read, written under the node's directory."""

    cluster: LocalCluster
    dir: Path
    run_dir: Path
    sock: Path

    def _containerd_config(self) -> Path:
        from images import PAUSE_IMAGE

        cni_conf = self.dir / "cni"
        cni_conf.mkdir(exist_ok=True)
        (cni_conf / "10-llmop-real.conflist").write_text(
            json.dumps(
                {
                    "cniVersion": "1.0.0",
                    "name": CNI_NETWORK,
                    "plugins": [
                        {
                            "type": "bridge",
                            "bridge": BRIDGE,
                            "isGateway": True,
                            "ipMasq": False,
                            "hairpinMode": True,
                            "ipam": {
                                "type": "host-local",
                                "dataDir": str(self.dir / "ipam"),
                                "ranges": [
                                    [
                                        {
                                            "subnet": SUBNET,
                                            "gateway": GATEWAY,
                                            "rangeStart": "10.251.0.10",
                                            "rangeEnd": "10.251.0.250",
                                        }
                                    ]
                                ],
                                "routes": [{"dst": SUBNET}, {"dst": f"{SERVICE_IP}/32"}],
                            },
                        },
                        {"type": "loopback"},
                    ],
                },
                indent=2,
            )
        )
        path = self.dir / "containerd.toml"
        path.write_text(f"""version = 2
root = "{self.dir / "containerd-root"}"
state = "{self.run_dir / "state"}"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", "io.containerd.internal.v1.opt",
  "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "{self.sock}"
[ttrpc]
  address = "{self.run_dir / "containerd.sock.ttrpc"}"
[debug]
  level = "warn"
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  # No CAP_SYS_RESOURCE here: containerd must not lower OOM scores below its own.
  restrict_oom_score_adj = true
  disable_apparmor = true
  enable_selinux = false
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "runc"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN}"
    conf_dir = "{cni_conf}"
    max_conf_num = 1
  # A hosts.toml per registry (trust_plain_http_registry), read at every pull.
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "{self.registry_hosts_dir}"
""")
        return path

    @property
    def registry_hosts_dir(self) -> Path:
        return self.dir / "certs.d"

    def trust_plain_http_registry(self, host: str) -> None:
        """Let containerd pull from the registry at `host` (HOST:PORT) over plain HTTP. containerd
        pulls in the host's network, so a registry on 127.0.0.1 is reachable; images there are
        named HOST:PORT/NAME:TAG."""
        d = self.registry_hosts_dir / host
        d.mkdir(parents=True, exist_ok=True)
        (d / "hosts.toml").write_text(
            f'server = "http://{host}"\n\n[host."http://{host}"]\n  capabilities = ["pull", "resolve"]\n'
        )

    def _kubelet_config(self, port: int, healthz_port: int) -> Path:
        path = self.dir / "kubelet.json"
        path.write_text(
            json.dumps(
                {
                    "apiVersion": "kubelet.config.k8s.io/v1beta1",
                    "kind": "KubeletConfiguration",
                    "address": GATEWAY,
                    "port": port,
                    "readOnlyPort": 0,
                    "healthzBindAddress": "127.0.0.1",
                    "healthzPort": healthz_port,
                    # Local only: the apiserver reaches the kubelet anonymously (logs, exec, port-forward).
                    "authentication": {"anonymous": {"enabled": True}, "webhook": {"enabled": False}},
                    "authorization": {"mode": "AlwaysAllow"},
                    "containerRuntimeEndpoint": f"unix://{self.sock}",
                    "cgroupDriver": "cgroupfs",
                    "cgroupRoot": f"/{CGROUP_ROOT}",
                    "failCgroupV1": False,
                    "failSwapOn": False,
                    "protectKernelDefaults": False,
                    "registerWithTaints": [{"key": TAINT_KEY, "value": "true", "effect": "NoSchedule"}],
                    "maxPods": 30,
                    "serializeImagePulls": False,
                    # Images are imported, never pulled: never collect them, never evict for a full disk.
                    "imageGCHighThresholdPercent": 100,
                    "imageGCLowThresholdPercent": 99,
                    "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
                    "resolvConf": str(self._resolv_conf()),
                    "nodeStatusReportFrequency": "10s",
                    "nodeStatusUpdateFrequency": "5s",
                    "syncFrequency": "5s",
                    "fileCheckFrequency": "5s",
                    "enableServer": True,
                    "staticPodPath": "",
                    "containerLogMaxSize": "5Mi",
                    "containerLogMaxFiles": 2,
                    "shutdownGracePeriod": "0s",
                },
                indent=2,
            )
        )
        return path

    def _resolv_conf(self) -> Path:
        # Pods resolve nothing off the machine.
        path = self.dir / "resolv.conf"
        path.write_text("nameserver 127.0.0.1\noptions ndots:1\n")
        return path

    def _kubelet_kubeconfig(self) -> Path:
        """The kubelet's client certificate, as the Node authorizer wants it: system:node:NAME."""
        pki = self.cluster.pki
        key, csr, crt = pki / "kubelet.key", pki / "kubelet.csr", pki / "kubelet.crt"
        if not crt.exists():
            self.cluster._openssl(
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                key.name,
                "-out",
                csr.name,
                "-subj",
                f"/O=system:nodes/CN=system:node:{NODE_NAME}",
            )
            self.cluster._openssl(
                "x509",
                "-req",
                "-in",
                csr.name,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                crt.name,
                "-days",
                "3650",
                "-extfile",
                "client.cnf",
            )
        path = self.dir / "kubelet.kubeconfig"
        path.write_text(f"""apiVersion: v1
kind: Config
clusters:
- name: local
  cluster: {{server: "{self.cluster.server}", certificate-authority: "{pki / "ca.crt"}"}}
users:
- name: kubelet
  user: {{client-certificate: "{crt}", client-key: "{key}"}}
contexts:
- name: local
  context: {{cluster: local, user: kubelet}}
current-context: local
""")
        return path
