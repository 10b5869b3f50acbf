"""The ingress: the one Serve deployment with HTTP routes, and everything that speaks HTTP.

`deployment` is the Ray Serve deployment and its background tasks; the FastAPI app, its
middleware stack and error handlers are built around one replica's state (`replica`) and
handed to the routes as dependencies. `routes/` are thin and independent of each other;
what the speech routes and `/v1/clone` share is `speaking`. `handles` keeps engine calls
alive across a dying replica. Nothing below this wing imports FastAPI or Starlette.
"""
