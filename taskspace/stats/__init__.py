"""Statistics over task spaces: permutations, hypothesis tests, reliability, the spaces themselves."""
