"""X-ray fluorescence physics on arrays: lines, detector, spectrum model and fit, calibration,
hotmax, smoothing. Never reads or writes a datastack, never imports the pipeline."""
