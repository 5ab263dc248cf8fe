"""Fine-tuning of the world model (``vap-env train``): Accelerate loop, losses, LGF, checkpoints."""
