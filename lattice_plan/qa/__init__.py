"""Protocol dose-constraint sets (TOML) and their checking, with the built-in study protocol."""
