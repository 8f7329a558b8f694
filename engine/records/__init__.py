"""The stream's records in charles.db that no model code owns: timeline rows and tagged moments."""
