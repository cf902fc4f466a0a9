"""The paper's other tasks as codec features: frame interpolation in the decoder
(interpolate.py, `dnerv decode --fps-scale K`) and inpainting in the encoder (masks.py,
`dnerv encode --mask`)."""
