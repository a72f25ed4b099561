"""A real local control plane (etcd, kube-apiserver, controller-manager, scheduler, KWOK) on 127.0.0.1."""
