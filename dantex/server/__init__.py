"""The SOCKS server: sessions, relays, outbound connects, the twistd service."""
