"""Collaborative distillation rounds (FusionLog): LLM pseudo-labels, small-model agreement, fine-tuning."""
