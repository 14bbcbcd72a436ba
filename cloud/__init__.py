"""fieldgate cloud core. ``cloud.contract`` is the only module the gateway imports."""
