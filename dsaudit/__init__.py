"""dsaudit: prove from packets that a Deep Security deployment talks as documented."""

__version__ = "0.1.0"
