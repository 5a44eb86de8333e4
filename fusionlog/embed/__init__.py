"""Template embeddings: a Ray Data actor pool of sentence-transformers writing to LanceDB."""
