"""The bridge's canonical data: CloudEvents it publishes, the callbacks and commands it reads."""
