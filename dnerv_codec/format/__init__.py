"""The .dnv format: the container, the tensor sections, the entropy models, the architecture the
header describes and the decode budget priced from it. Torch-free, and the only code that reads
untrusted bytes; nothing here imports from the rooms above it (coding, models, training)."""
