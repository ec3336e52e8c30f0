"""The ``lazaretto`` command: ``main`` dispatches; decisions go to a local or remote backend."""
