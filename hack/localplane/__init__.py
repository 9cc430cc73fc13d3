"""The local control plane's parts (hack/localcluster.py is its entry point and re-exports them):

procs.py    errors, ports, waiting, process groups, kubectl's JSON stream
pki.py      the CA, the certificates and the kubeconfig
lws.py      the LeaderWorkerSet controller's configuration and webhooks
cluster.py  LocalCluster: starting, stopping and faulting the components
"""
