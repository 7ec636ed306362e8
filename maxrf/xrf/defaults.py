"""The instrument and processing defaults of the physics modules, in one light module (no numpy)
so that the pipeline table and the command line can offer them without importing the physics."""

ANODES = ("Rh", "Mo", "Ag", "W", "Cr", "Cu")  # tube anodes whose lines are scattered by the sample
DEFAULT_ANODE = "Rh"  # the Bruker M6 Jetstream's tube
DEFAULT_TUBE_KV = 50.0
TUBE_KV_RANGE = (5.0, 150.0)  # the voltages the physics models (xrf.lines.excitation_spectrum)
DEFAULT_SIGMA = 7.0  # Gaussian smoothing in channels (maxrf4u smooths with sigma 7)
