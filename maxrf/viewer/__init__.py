"""``maxrf view``: a local web viewer of a datastack (Starlette on loopback, static page)."""
