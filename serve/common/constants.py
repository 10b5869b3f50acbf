"""Names and limits that several parts of Chorus must agree on (the ingress, the stores,
the sample pipeline, the operator and the CRD): defined once here."""

from __future__ import annotations

MiB = 1024 * 1024

# The VoicePersonality API.
GROUP = "voice.chorus.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "VoicePersonality"
PLURAL = "voicepersonalities"

# The per-personality ConfigMaps the operator renders and the ingress's store reads.
PERSONALITY_LABEL = f"{GROUP}/personality"
GENERATION_ANNOTATION = f"{GROUP}/generation"

# The largest voice sample accepted, uploaded or fetched by URL (before decoding).
MAX_SAMPLE_BYTES = 48 * MiB
# The most voice samples a personality lists (its schema) and so may store.
MAX_VOICE_SAMPLES = 32
