"""Importable, tested functions that build claudehub's JupyterHub configuration.

The ``jupyterhub_config*.py`` files in the repository's ``hub_config/`` folder are thin
wrappers around these.
"""
