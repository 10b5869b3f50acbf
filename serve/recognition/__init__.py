"""Speech recognition of what Chorus synthesized: the ear (`ear`), the words it is asked to
hear and what it heard (`models`), and the Serve deployment it runs in (`deployment`)."""
