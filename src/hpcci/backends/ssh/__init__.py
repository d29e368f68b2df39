"""SSH transport: remote runs argv and moves files on a login node (open remote.py first), sftp, known_hosts verification, certs for certificate logins, errors maps failures to causes."""
