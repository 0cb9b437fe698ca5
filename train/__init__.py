"""Training stage: backbones, models (CRR, RLR), defect synthesis, loops, evaluation. Needs torch."""
