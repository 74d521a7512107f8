"""regenheart: the data system of the RegenHeart trial (NCT04325594)."""

__version__ = "0.1.0"
