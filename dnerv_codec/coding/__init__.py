"""The coding layer on the encoder side: quantizers and the differentiable rate that training
charges. Reading files never comes here (format and entropy modules are torch-free)."""
