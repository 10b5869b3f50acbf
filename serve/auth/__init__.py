"""Access control: API keys (`keys`), where they come from (`sources`), the ring that
holds them (`ring`), their scopes (`scopes`) and the check on every request (`guard`)."""
