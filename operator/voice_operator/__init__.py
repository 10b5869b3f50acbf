"""The Chorus operator: VoicePersonality resources -> per-personality config and samples."""
