"""Small programs the supervisor tests run as real child processes."""
