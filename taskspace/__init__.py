"""taskspace: linguistic task spaces (Weber, Jumelet, Bruni & Hupkes, ACL 2024) as reproducible software."""

__version__ = "0.1.0"
