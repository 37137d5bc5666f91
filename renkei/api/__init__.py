"""HTTP routers only: thin adapters from HTTP to the domain packages."""
