"""fieldgate edge runtime: config, scheduler, buffer, forwarder, uplinks and commands."""
