"""Statistics derived from the spans (docs/observability.md#statistics): a span processor
tallies every completed utterance per engine and per personality into time buckets, kept in
Redis when the replicas share one, in process otherwise; `GET /v1/stats` reads them back."""
