module chorus.local/netpol

go 1.26.8

require sigs.k8s.io/kube-network-policies v0.8.0 // indirect
