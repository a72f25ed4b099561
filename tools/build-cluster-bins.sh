#!/usr/bin/env bash
# Builds the local control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl),
# kwok and helm from the pinned Go wrapper modules under tools/, into a cache directory outside the work tree
# keyed by the pins. Idempotent: a complete cache directory is reused and nothing is rebuilt.
# Prints the directory on its last line. See docs/testcluster.md.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod

k8s_version=$(cd "$here/k8s" && go list -m -f '{{.Version}}' k8s.io/kubernetes)
etcd_version=$(cd "$here/k8s" && go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)
kwok_version=$(cd "$here/kwok" && go list -m -f '{{.Version}}' sigs.k8s.io/kwok)
helm_version=$(cd "$here/helm" && go list -m -f '{{.Version}}' helm.sh/helm/v3)
# The key names the versions and hashes the module files, so any change of a pin builds into a fresh directory.
sum=$(cat "$here"/{k8s,kwok,helm}/go.{mod,sum} | sha256sum | cut -c1-12)
key="k8s-${k8s_version}_etcd-${etcd_version}_kwok-${kwok_version}_helm-${helm_version}_${sum}"
bin="${TOKENSCALE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tokenscale}/bin/${key}"
names=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok helm)

complete=1
for n in "${names[@]}"; do [[ -x "$bin/$n" ]] || complete=0; done
if [[ $complete == 1 ]]; then echo "$bin"; exit 0; fi

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
