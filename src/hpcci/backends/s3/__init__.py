"""S3 object store: store (presigned transfers, listing; open store.py first) and multipart (resumable multipart uploads)."""
