"""The training-free semantic router (FusionLog): general vs proprietary target windows."""
