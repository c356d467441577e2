"""Where studies are stored: storage URLs, their redaction, SQLite settings."""
