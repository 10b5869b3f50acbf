"""Voice samples: decoding, quality checks, storage, the upload pipeline and the
per-replica service. Import the modules themselves; this package re-exports nothing, so
importing one part never pulls in the others."""
