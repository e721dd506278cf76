"""Kubernetes deployment of flex-rl: Jobs, Indexed-Job sweeps and LLM serving built with the official client.

The ``kubernetes`` package is an optional extra (``pip install 'flexrl[k8s]'``), imported only when objects
are built or submitted; ``flexrl k8s trial`` (inside a sweep's pods) does not need it.
"""
