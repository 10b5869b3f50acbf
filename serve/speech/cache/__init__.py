"""The audio cache: PCM an engine made, kept by everything that changes it.

`key` names one engine request's audio, `tiers` are where it is kept (this replica's memory,
Redis shared by every replica, a disk directory in the embedded default), `store` layers them
(`AudioCache`), `lookup` turns an engine's requests into the parts the router must still
synthesize and the parts it can answer from the cache. It sits below the HTTP layer and the
router: the router calls it, never the other way round.
"""
