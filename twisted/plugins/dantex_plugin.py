"""twistd plugin: ``twistd dante``.  Imports nothing heavy at plugin-scan time."""

from twisted.application.service import ServiceMaker

dante = ServiceMaker(
    "dantex",
    "dantex.server.tap",
    "SOCKS v4/v4a/v5 proxy server that reads Dante's sockd.conf",
    "dante",
)
