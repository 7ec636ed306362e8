"""Files in and out: Ripple headers, raw cubes, scan folders, fingerprints, atomic writes."""
