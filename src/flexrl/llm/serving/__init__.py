"""``flexrl serve``: a local model behind an OpenAI-compatible subset, laid out as vLLM's ``entrypoints/openai``.

- :mod:`~flexrl.llm.serving.config`: :class:`ServeConfig`, every setting and limit of the server.
- :mod:`~flexrl.llm.serving.protocol`: the pydantic request and response models, and the error body.
- :mod:`~flexrl.llm.serving.engine`: the model behind the server (tokenizer and micro-batcher).
- :mod:`~flexrl.llm.serving.serving`: the logic of the endpoints over the engine (limits, echo,
  log-probs, structured-output choice, streaming).
- :mod:`~flexrl.llm.serving.router`: the FastAPI application (routes, API key, error handlers).
- :mod:`~flexrl.llm.serving.cli`: the ``flexrl serve`` command line.
"""
