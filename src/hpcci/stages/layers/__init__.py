"""Layer staging: index says which blobs an image needs, store is the bounded blob store on the cluster, stage moves the missing blobs there (open stage.py first)."""
