"""twistd plugin ``twistd dante`` and the ``clientFromString`` prefixes
``socks5:``, ``socks4:``, ``httpconnect:``.  Imports nothing heavy at
plugin-scan time (the parsers import their endpoints when used)."""

from twisted.application.service import ServiceMaker

from dantex.client.parsers import HTTPConnectParser, Socks4Parser, Socks5Parser

dante = ServiceMaker(
    "dantex",
    "dantex.server.tap",
    "SOCKS v4/v4a/v5 proxy server that reads Dante's sockd.conf",
    "dante",
)

socks5_endpoint = Socks5Parser()
socks4_endpoint = Socks4Parser()
httpconnect_endpoint = HTTPConnectParser()
