"""The foundation every other package imports: errors, config, wire, services, db, store, logs."""
