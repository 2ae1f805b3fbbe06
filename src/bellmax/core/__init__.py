"""What every deep RL algorithm shares: networks, buffers and return estimators, the Algorithm
base (learn / act / evaluate / save / load), and the run directory. Nothing algorithm-specific."""
