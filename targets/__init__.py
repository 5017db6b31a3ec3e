"""Device descriptions, one TOML file per target. Adding a device is adding a file here."""
