"""What the tests share: deploying Chorus, engines a test scripts, real servers (Redis, the
OpenTelemetry Collector, S3, the cloud services' wire protocols), tiny model checkpoints,
speech recognition, load and fault runs."""
