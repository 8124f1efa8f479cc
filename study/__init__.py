"""A PsychoPy experiment for triplet and ranking judgments of reconstructions."""
