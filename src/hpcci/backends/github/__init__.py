"""GitHub API: client (checks, statuses, comments, permissions; open client.py first) and errors."""
