"""Resource control: Dante's bandwidth, session, redirect and monitor modules, built in."""
