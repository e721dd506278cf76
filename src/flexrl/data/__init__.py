"""Data for learned policies: datasets, instruction embeddings, offline-trained policies."""
