"""The real node's parts (hack/realnode.py is its entry point and re-exports them):

settings.py  names, addresses, and the host settings the node changes
host.py      the host's state that `down` gives back, and `sh`
forward.py   the forwarder from the bridge to the loopback apiserver
configs.py   containerd's, the kubelet's and CNI's configuration files
node.py      RealNode: up and down
"""
