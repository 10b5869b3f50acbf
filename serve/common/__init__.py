"""What the wings and the operator share: names and limits (`constants`), YAML read safely
(`documents`), durable file replacement (`atomic_write`), text safe to show (`safe_text`)
and the Kubernetes client configuration (`kube_config`)."""
