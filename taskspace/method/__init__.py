"""The method: FTGD, gradient similarity and parameter sharing, low impact, the probing loop."""
