"""The only places that touch a dependency's internals (one module per dependency). Each is
checked by ``tests/test_compat.py`` against the pinned versions, so an upgrade that changes them
fails there, not deep inside a conversion."""
