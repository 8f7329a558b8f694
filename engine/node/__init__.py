"""A node process's side of the hub: the client link and the shared process entry rules."""
