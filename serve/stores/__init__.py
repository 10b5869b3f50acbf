"""Personality stores: where the ingress reads personalities from.

`base` is the surface and the shared bookkeeping, `directory` and `kubernetes` the two
backends, `sources` their configuration, `configmaps` the ConfigMap format the operator
writes and the Kubernetes backend reads, `opening.open_store` picks the backend. Import the
modules themselves: this package re-exports nothing, so importing one part (the operator's
`configmaps`) never pulls in the others.
"""
