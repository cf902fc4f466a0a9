"""The decode side (decoding/video.py: frames from a file; decoding/describe.py: what
`dnerv info` shows). It imports format/, models/, tasks/ and device.py, never the encoder's
rooms."""
