"""What may be spent, counted where the replicas share counts: `callers` limits API keys and
personalities (rates, character budgets; 429), `providers` meters the cloud engines' monthly
free tiers per voice class (fall back or flag), `provider_counts` keeps those counts in Redis
or SQLite."""
