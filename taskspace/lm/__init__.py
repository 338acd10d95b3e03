"""Language models: loading, shapes, tiny models, scoring with packing. Knows no stage, no stats."""
