"""The run workspace: run directories, metadata and atomic writes."""
