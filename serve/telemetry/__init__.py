"""What completed spans become: the statistics behind `GET /v1/stats` (`stats/`) and the
`chorus_*` Ray metrics (`ray_metrics`, the only module here that imports Ray)."""
