"""dantex: a SOCKS proxy suite on Twisted, modelled on Dante."""

__version__ = "0.1.0"
