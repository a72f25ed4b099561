#!/usr/bin/env bash
# Builds the local control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl),
# kwok and helm from the pinned Go wrapper modules under tools/, into a cache directory outside the work tree
# keyed by the pins. Idempotent: a complete cache directory is reused and nothing is rebuilt.
# Prints the directory on its last line. See docs/testcluster.md.
#
#   tools/build-cluster-bins.sh           build what is missing, print the directory
#   tools/build-cluster-bins.sh --locate  build nothing: print the directory; exit 1 if a binary is missing
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod

locate=0
[[ "${1:-}" == "--locate" ]] && locate=1

# The pinned version of module $2 in tools/$1/go.mod. Read from the file rather than `go list -m`, so that
# --locate (which tokenscale.devcluster runs before every cluster start) needs no Go and answers at once.
mod_version() {
  awk -v m="$2" '($1 == "require" && $2 == m) { print $3; exit } ($1 == m) { print $2; exit }' "$here/$1/go.mod"
}
k8s_version=$(mod_version k8s k8s.io/kubernetes)
etcd_version=$(mod_version k8s go.etcd.io/etcd/server/v3)
kwok_version=$(mod_version kwok sigs.k8s.io/kwok)
helm_version=$(mod_version helm helm.sh/helm/v3)
for v in "$k8s_version" "$etcd_version" "$kwok_version" "$helm_version"; do
  [[ "$v" == v* ]] || { echo "cannot read a pinned version from tools/*/go.mod" >&2; exit 2; }
done
# The key names the versions and hashes the module files, so any change of a pin builds into a fresh directory.
sum=$(cat "$here"/{k8s,kwok,helm}/go.{mod,sum} | sha256sum | cut -c1-12)
key="k8s-${k8s_version}_etcd-${etcd_version}_kwok-${kwok_version}_helm-${helm_version}_${sum}"
bin="${TOKENSCALE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tokenscale}/bin/${key}"
names=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok helm)

complete=1
for n in "${names[@]}"; do [[ -x "$bin/$n" ]] || complete=0; done
if [[ $complete == 1 ]]; then echo "$bin"; exit 0; fi
if [[ $locate == 1 ]]; then echo "$bin"; exit 1; fi

command -v go >/dev/null || {
  echo "cluster binaries missing from $bin and no Go to build them: install Go 1.26 (or put it on PATH)" >&2; exit 1; }
mkdir -p "$bin.partial"
minor=$(echo "$k8s_version" | cut -d. -f2)
build_date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
stamp=""
# Without version stamping the binaries report v0.0.0-master and helm's kubeVersion checks misbehave.
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  stamp+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  stamp+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$build_date"
done

echo ">> building kube-apiserver, kube-controller-manager, kube-scheduler, kubectl ($k8s_version) and etcd ($etcd_version)" >&2
(cd "$here/k8s" && go build -trimpath -tags=selinux,notest,grpcnotrace -ldflags "-s -w $stamp" -o "$bin.partial/" \
  k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl)
(cd "$here/k8s" && go build -trimpath -ldflags "-s -w" -o "$bin.partial/etcd" go.etcd.io/etcd/server/v3)

echo ">> building kwok ($kwok_version)" >&2
(cd "$here/kwok" && go build -trimpath -ldflags "-s -w" -o "$bin.partial/kwok" sigs.k8s.io/kwok/cmd/kwok)

echo ">> building helm ($helm_version)" >&2
hstamp="-X helm.sh/helm/v3/internal/version.version=$helm_version"
for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
  hstamp+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$minor"
done
(cd "$here/helm" && go build -trimpath -ldflags "-s -w $hstamp" -o "$bin.partial/helm" helm.sh/helm/v3/cmd/helm)

rm -rf "$bin" && mv "$bin.partial" "$bin"
echo "$bin"
