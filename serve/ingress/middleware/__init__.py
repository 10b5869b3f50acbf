"""The pure ASGI layers every request passes, outermost first: its server span
(`server_spans`), its request id (`request_id`), the key check (`auth`), the key's rate
(`spend`) and the body cap (`body_limit`). Each refuses through the `refuse=` it is given,
so error shapes stay in `chorus.ingress.errors`."""
