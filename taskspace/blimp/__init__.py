"""BLiMP: loading, validation and splits, paradigm metadata, the word sets of the lexical control."""
