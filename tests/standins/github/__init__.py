"""A GitHub REST API stand-in (check runs, statuses, comments, app tokens) for the local stack; see app.py."""
