"""Images beside the scan: registration of the maps to a photograph of the painting."""
