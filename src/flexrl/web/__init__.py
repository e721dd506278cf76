"""The HTTP layer flex-rl's runs share: one FastAPI app per run, guarded, served by uvicorn on a thread."""
