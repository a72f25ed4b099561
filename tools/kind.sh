#!/usr/bin/env bash
# A kind cluster for the demo path with Docker (docs/demo.md "On kind"): kind's real control plane in Docker, KWOK
# running in it (v0.8.0, the version the local control plane pins) with this project's stages, and fake GPU nodes
# whose pods get IPs from a 127.x range, so the twin and the operator, on this machine, bind and scrape them on
# loopback exactly as with `tokenscale dev-cluster`. Not run in CI here (no Docker).
#
#   tools/kind.sh up     create the cluster (idempotent), install KWOK, stages and fake nodes; write the kubeconfig
#   tools/kind.sh down   delete the cluster
#
# Environment: KIND (kind binary), KIND_CLUSTER (name), KIND_POD_CIDR (the fake pods' range, in 127.0.0.0/8 and
# claimed by no `tokenscale dev-cluster`), KIND_KUBECONFIG (where the kubeconfig goes), PY (python with tokenscale).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
KIND="${KIND:-kind}"
KIND_CLUSTER="${KIND_CLUSTER:-tokenscale}"
KIND_POD_CIDR="${KIND_POD_CIDR:-127.253.0.0/16}"
KIND_KUBECONFIG="${KIND_KUBECONFIG:-${TOKENSCALE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tokenscale}/kind-${KIND_CLUSTER}.kubeconfig}"
PY="${PY:-$root/.venv/bin/python}"
KWOK_VERSION=v0.8.0
FAKE_NODES="${FAKE_NODES:-4}"

command -v "$KIND" >/dev/null || { echo "kind not found: https://kind.sigs.k8s.io/docs/user/quick-start/" >&2; exit 1; }
kubectl_bin="$(bash "$here/build-cluster-bins.sh" --locate)/kubectl"
[[ -x "$kubectl_bin" ]] || kubectl_bin="$(command -v kubectl)" || { echo "no kubectl: run make cluster-bins" >&2; exit 1; }
k() { "$kubectl_bin" --kubeconfig "$KIND_KUBECONFIG" "$@"; }

case "${1:-}" in
up)
  if ! "$KIND" get clusters | grep -qx "$KIND_CLUSTER"; then
    "$KIND" create cluster --name "$KIND_CLUSTER" --wait 120s
  fi
  mkdir -p "$(dirname "$KIND_KUBECONFIG")"
  "$KIND" get kubeconfig --name "$KIND_CLUSTER" >"$KIND_KUBECONFIG"
  k apply --server-side -f "https://github.com/kubernetes-sigs/kwok/releases/download/${KWOK_VERSION}/kwok.yaml"
  # The fake pods' IPs: KWOK's --cidr, set to the loopback range the twin binds on this machine.
  k -n kube-system get deployment kwok-controller -o json | "$PY" -c '
import json, sys
deployment = json.load(sys.stdin)
container = deployment["spec"]["template"]["spec"]["containers"][0]
container["args"] = [a for a in container["args"] if not a.startswith("--cidr=")] + ["--cidr=" + sys.argv[1]]
json.dump(deployment, sys.stdout)' "$KIND_POD_CIDR" | k apply -f -
  # This project's stages (Ready after the pod's sim.tokenscale.io/cold-start-delay), not KWOK's stage-fast.
  for stage in "$root"/operator/tokenscale/devcluster/stages/*.yaml; do k apply -f "$stage"; done
  "$PY" -c '
import json, sys
from tokenscale.devcluster import nodes
for node in nodes.fake_gpu_nodes(int(sys.argv[1])):
    print(json.dumps(nodes.node_manifest(node)))' "$FAKE_NODES" | k apply -f -
  k -n kube-system rollout status deployment/kwok-controller --timeout=180s
  k wait --for=condition=Ready node -l type=kwok --timeout=120s
  echo "kind cluster $KIND_CLUSTER ready: KUBECONFIG=$KIND_KUBECONFIG, fake pods in $KIND_POD_CIDR"
  echo "  tokenscale demo --kubeconfig $KIND_KUBECONFIG --pod-cidr $KIND_POD_CIDR"
  ;;
down)
  "$KIND" delete cluster --name "$KIND_CLUSTER"
  rm -f "$KIND_KUBECONFIG"
  ;;
*)
  echo "usage: $0 up|down" >&2
  exit 2
  ;;
esac
