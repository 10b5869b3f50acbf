"""Access control: API keys (`keys`), where they come from (`sources`, `config`), the ring
that holds them (`ring`) and their scopes (`scopes`). The check on every request is HTTP and
lives in the ingress (`chorus.ingress.middleware.auth`)."""
