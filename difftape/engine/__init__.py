"""The engine: tensors, the tape (reverse mode on recorded ops), ``difftape.function`` tracing, the API."""
