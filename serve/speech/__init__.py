"""From an `Utterance` to audio: the router (a personality's chain, fallback, deadlines,
circuit breakers, replicas), sentence packing, the audio cache, encoding, and the
`chorus.speech` span. No FastAPI, no Ray: engines are reached through handle protocols."""
