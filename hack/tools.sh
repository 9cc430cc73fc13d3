#!/usr/bin/env bash
# Produce the pinned control-plane binaries (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl, kwok, helm, the LeaderWorkerSet manager lws-manager with its CRDs
# and webhook manifests in lws-manifests/), built from Go modules and cached by version under
# the user's cache directory, and statuscheck (hack/statuscheck: kstatus' and Argo CD's
# verdicts on our objects), cached by a hash of its source. Prints the directory that holds
# them all (symlinks) on stdout. `tools.sh kubelet`, `tools.sh helm` and `tools.sh registry` (the
# CNCF distribution registry, for the image-publishing test) build that one tool alone and print
# its path.
#
# Existing binaries are used instead of building when a directory names them:
#   LLMOP_BIN_DIR        any of the ten tools (our own variable; lws-manifests is a directory
#                        with crd/ and webhook/ as LWS's config/crd/bases and config/webhook)
#   KUBEBUILDER_ASSETS   envtest-style etcd, kube-apiserver, kubectl
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=hack/versions.env
source "$here/versions.env"

cache_root="${LLMOP_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/llm-operator}"
tools_root="$cache_root/tools"
log() { echo "tools: $*" >&2; }
die() { echo "tools: ERROR: $*" >&2; exit 1; }

mkdir -p "$tools_root"
k8s_dir="$tools_root/kubernetes-$KUBERNETES_VERSION"
kubelet_dir="$tools_root/kubelet-$KUBERNETES_VERSION"
etcd_dir="$tools_root/etcd-$ETCD_VERSION"
kwok_dir="$tools_root/kwok-$KWOK_VERSION"
helm_dir="$tools_root/helm-$HELM_VERSION"
registry_dir="$tools_root/registry-$DISTRIBUTION_VERSION"
lws_dir="$tools_root/lws-$LWS_VERSION"
# statuscheck is our own source: its cache key is what it is built from.
statuscheck_src="$here/statuscheck"
statuscheck_hash="$(cat "$statuscheck_src/go.mod" "$statuscheck_src/go.sum" "$statuscheck_src/main.go" | sha256sum | cut -c1-16)"
statuscheck_dir="$tools_root/statuscheck-$statuscheck_hash"
# Named after every input, so that checkouts with different versions never share links.
link_dir="$tools_root/bin-$KUBERNETES_VERSION-$ETCD_VERSION-$KWOK_VERSION-$HELM_VERSION-lws$LWS_VERSION-sc$statuscheck_hash"

# A directory the user gave us wins over anything we build.
find_given() {
  local name="$1" d
  for d in "${LLMOP_BIN_DIR:-}" "${KUBEBUILDER_ASSETS:-}"; do
    if [[ -n "$d" && -x "$d/$name" ]]; then echo "$d/$name"; return 0; fi
  done
  return 1
}

need_go() {
  command -v go >/dev/null 2>&1 || die "the Go toolchain is not installed (no 'go' on PATH); install Go 1.26 or newer, or point LLMOP_BIN_DIR at prebuilt binaries."
  local proxy
  proxy="$(go env GOPROXY | cut -d, -f1)"
  if [[ "$proxy" == http* ]]; then
    curl -sf --max-time 20 -o /dev/null "$proxy/k8s.io/kubernetes/@v/$KUBERNETES_VERSION.info" \
      || die "the Go module proxy $proxy cannot be reached, so the Kubernetes binaries cannot be built; fix the network or GOPROXY, or point LLMOP_BIN_DIR at prebuilt binaries."
  fi
}

go_env() {
  export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
  # The checksum database may be unreachable where the proxy is; the proxy's content is pinned by version.
  export GOSUMDB="${GOSUMDB_OVERRIDE:-off}"
}

# A wrapper module in $1 that builds the k8s.io/kubernetes commands $2... : k8s.io/kubernetes
# replaces every staging module with a local path; the wrapper points each at its published
# v0.X.Y twin instead. Prints the -ldflags that stamp the version.
kube_module() {
  local w="$1"; shift
  local minor="${KUBERNETES_VERSION#v1.}"; minor="${minor%%.*}"
  local staging_version="v0.${KUBERNETES_VERSION#v1.}"
  local mod
  mod="$(curl -sf --max-time 60 "$(go env GOPROXY | cut -d, -f1)/k8s.io/kubernetes/@v/$KUBERNETES_VERSION.mod")" \
    || die "could not read k8s.io/kubernetes $KUBERNETES_VERSION's go.mod from the module proxy."
  {
    echo "module llmop.local/kubebuild"
    echo "go 1.25.0"
    echo "require k8s.io/kubernetes $KUBERNETES_VERSION"
    echo "replace ("
    sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => \./staging/.*#\1#p' <<<"$mod" | while read -r m; do
      echo "  $m => $m $staging_version"
    done
    echo ")"
  } >"$w/go.mod"
  { printf '//go:build tools\n\npackage tools\n\nimport (\n'; printf '\t_ "%s"\n' "$@"; printf ')\n'; } >"$w/tools.go"
  (cd "$w" && go mod tidy -e >/dev/null 2>"$w/tidy.log") || { cat "$w/tidy.log" >&2; die "resolving Kubernetes modules failed (see above)."; }
  local ld="-s -w" p
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $p.gitVersion=$KUBERNETES_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
  done
  echo "$ld"
}

build_kubernetes() {
  [[ -x "$k8s_dir/kube-apiserver" && -x "$k8s_dir/kube-controller-manager" && -x "$k8s_dir/kube-scheduler" && -x "$k8s_dir/kubectl" ]] && return 0
  need_go; go_env
  log "building Kubernetes $KUBERNETES_VERSION from Go modules (cold: tens of minutes; cached afterwards in $k8s_dir)"
  local w="$tools_root/build-kubernetes-$KUBERNETES_VERSION"
  rm -rf "$w"; mkdir -p "$w/out"
  local cmds=(k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager
              k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl)
  local ld
  ld="$(kube_module "$w" "${cmds[@]}")" || exit 1
  (cd "$w" && go build -trimpath -ldflags "$ld" -o out/ "${cmds[@]}") \
     || die "building Kubernetes $KUBERNETES_VERSION failed (see above)."
  rm -rf "$k8s_dir"; mv "$w/out" "$k8s_dir"; rm -rf "$w"
}

# The kubelet, for the optional real node (hack/realnode.py): built only when asked for
# (tools.sh kubelet), from the same kind of wrapper module as the control plane.
build_kubelet() {
  [[ -x "$kubelet_dir/kubelet" ]] && return 0
  need_go; go_env
  log "building the kubelet $KUBERNETES_VERSION from Go modules (cold: minutes; cached in $kubelet_dir)"
  local w="$tools_root/build-kubelet-$KUBERNETES_VERSION"
  rm -rf "$w"; mkdir -p "$w/out"
  local ld
  ld="$(kube_module "$w" k8s.io/kubernetes/cmd/kubelet)" || exit 1
  (cd "$w" && go build -trimpath -ldflags "$ld" -o out/kubelet k8s.io/kubernetes/cmd/kubelet) \
    || die "building the kubelet $KUBERNETES_VERSION failed (see above)."
  rm -rf "$kubelet_dir"; mv "$w/out" "$kubelet_dir"; rm -rf "$w"
}

build_etcd() {
  [[ -x "$etcd_dir/etcd" ]] && return 0
  need_go; go_env
  log "building etcd $ETCD_VERSION"
  local w="$tools_root/build-etcd-$ETCD_VERSION"
  rm -rf "$w"; mkdir -p "$w/out"
  printf 'module llmop.local/etcdbuild\ngo 1.25.0\nrequire go.etcd.io/etcd/server/v3 %s\n' "$ETCD_VERSION" >"$w/go.mod"
  printf '//go:build tools\n\npackage tools\n\nimport _ "go.etcd.io/etcd/server/v3"\n' >"$w/tools.go"
  (cd "$w" && go mod tidy -e >/dev/null 2>"$w/tidy.log" && go build -trimpath -ldflags "-s -w" -o out/etcd go.etcd.io/etcd/server/v3) \
    || { cat "$w/tidy.log" >&2; die "building etcd $ETCD_VERSION failed (see above)."; }
  rm -rf "$etcd_dir"; mv "$w/out" "$etcd_dir"; rm -rf "$w"
}

build_go_install() { # dir pkg@version binary
  local dir="$1" pkg="$2" bin="$3"
  [[ -x "$dir/$bin" ]] && return 0
  need_go; go_env
  log "building $pkg"
  mkdir -p "$dir.tmp"
  GOBIN="$dir.tmp" go install -trimpath -ldflags "-s -w ${4:-}" "$pkg" || die "building $pkg failed (see above)."
  rm -rf "$dir"; mv "$dir.tmp" "$dir"
}

# `go install sigs.k8s.io/lws/cmd@V` fails: it reads the module's version list (for
# deprecations), which the proxy refuses for sigs.k8s.io/lws; a wrapper module needs only V.
build_lws() {
  [[ -x "$lws_dir/lws-manager" ]] && return 0
  need_go; go_env
  log "building the LeaderWorkerSet manager $LWS_VERSION (cached in $lws_dir)"
  local w="$tools_root/build-lws-$LWS_VERSION"
  rm -rf "$w"; mkdir -p "$w"
  printf 'module llmop.local/lwsbuild\ngo 1.26.0\nrequire sigs.k8s.io/lws %s\n' "$LWS_VERSION" >"$w/go.mod"
  printf '//go:build tools\n\npackage tools\n\nimport _ "sigs.k8s.io/lws/cmd"\n' >"$w/tools.go"
  (cd "$w" && go mod tidy -e >/dev/null 2>"$w/tidy.log" && go build -trimpath \
     -ldflags "-s -w -X sigs.k8s.io/lws/pkg/version.GitVersion=$LWS_VERSION" -o lws-manager sigs.k8s.io/lws/cmd) \
    || { cat "$w/tidy.log" >&2; die "building the LeaderWorkerSet manager $LWS_VERSION failed (see above)."; }
  mkdir -p "$lws_dir"; mv "$w/lws-manager" "$lws_dir/lws-manager"; rm -rf "$w"
}

# LWS's CRDs and webhook configurations, from the same module: the local plane installs
# them as a cluster install would (the webhooks reached by URL instead of a Service).
fetch_lws_manifests() {
  [[ -d "$lws_dir/manifests" ]] && return 0
  need_go; go_env
  log "fetching the LeaderWorkerSet $LWS_VERSION CRDs and webhook manifests"
  local src
  src="$(cd "$tools_root" && go mod download -json "sigs.k8s.io/lws@$LWS_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  [[ -d "$src/config/crd/bases" && -d "$src/config/webhook" ]] \
    || die "could not download sigs.k8s.io/lws@$LWS_VERSION from the module proxy."
  mkdir -p "$lws_dir"; rm -rf "$lws_dir/manifests.tmp"; mkdir -p "$lws_dir/manifests.tmp"
  cp -r "$src/config/crd/bases" "$lws_dir/manifests.tmp/crd"
  cp -r "$src/config/webhook" "$lws_dir/manifests.tmp/webhook"
  chmod -R u+w "$lws_dir/manifests.tmp"  # the module cache is read-only
  mv "$lws_dir/manifests.tmp" "$lws_dir/manifests"
}

build_statuscheck() {
  [[ -x "$statuscheck_dir/statuscheck" ]] && return 0
  need_go; go_env
  log "building statuscheck (kstatus and Argo CD's Lua engine; cached in $statuscheck_dir)"
  # Built from a copy, so that -mod=mod can never rewrite the committed go.mod or go.sum.
  local w="$tools_root/build-statuscheck-$statuscheck_hash"
  rm -rf "$w"; mkdir -p "$w/out"
  cp "$statuscheck_src/go.mod" "$statuscheck_src/go.sum" "$statuscheck_src/main.go" "$w/"
  (cd "$w" && go build -trimpath -ldflags "-s -w" -o out/statuscheck .) || die "building statuscheck failed (see above)."
  rm -rf "$statuscheck_dir"; mv "$w/out" "$statuscheck_dir"; rm -rf "$w"
}

# The CNCF distribution registry, for the image-publishing test (hack/publish.py pushes to it
# on loopback): built only when asked for (tools.sh registry).
if [[ "${1:-}" == registry ]]; then
  if given="$(find_given registry)"; then echo "$given"; exit 0; fi
  build_go_install "$registry_dir" "github.com/distribution/distribution/v3/cmd/registry@$DISTRIBUTION_VERSION" registry \
    "-X github.com/distribution/distribution/v3/version.version=$DISTRIBUTION_VERSION"
  echo "$registry_dir/registry"; exit 0
fi

# helm alone, for packaging the chart (hack/publish.py) without the control plane's build.
if [[ "${1:-}" == helm ]]; then
  if given="$(find_given helm)"; then echo "$given"; exit 0; fi
  build_go_install "$helm_dir" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" helm \
    "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  echo "$helm_dir/helm"; exit 0
fi

if [[ "${1:-}" == kubelet ]]; then
  if given="$(find_given kubelet)"; then echo "$given"; exit 0; fi
  build_kubelet; echo "$kubelet_dir/kubelet"; exit 0
fi

declare -A want=(
  [etcd]="$etcd_dir/etcd"
  [kube-apiserver]="$k8s_dir/kube-apiserver"
  [kube-controller-manager]="$k8s_dir/kube-controller-manager"
  [kube-scheduler]="$k8s_dir/kube-scheduler"
  [kubectl]="$k8s_dir/kubectl"
  [kwok]="$kwok_dir/kwok"
  [helm]="$helm_dir/helm"
  [statuscheck]="$statuscheck_dir/statuscheck"
  [lws-manager]="$lws_dir/lws-manager"
  [lws-manifests]="$lws_dir/manifests"
)

mkdir -p "$link_dir"
for name in etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok helm statuscheck lws-manager lws-manifests; do
  if given="$(find_given "$name")"; then
    ln -sfn "$given" "$link_dir/$name"; continue
  fi
  case "$name" in
    etcd) build_etcd ;;
    kube-*|kubectl) build_kubernetes ;;
    kwok) build_go_install "$kwok_dir" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" kwok ;;
    helm) build_go_install "$helm_dir" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" helm \
            "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" ;;
    statuscheck) build_statuscheck ;;
    lws-manager) build_lws ;;
    lws-manifests) fetch_lws_manifests ;;
  esac
  ln -sfn "${want[$name]}" "$link_dir/$name"
done
echo "$link_dir"
