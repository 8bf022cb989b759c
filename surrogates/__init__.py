"""Fitted predictors on arrays: encoders, Gaussian processes, forests, deep ensembles, parameter
importance, architecture encodings and scaling laws.

Every surrogate follows one contract (scikit-learn style): ``__init__`` stores arguments only,
``fit(X, y) -> self``, ``predict(X) -> (mean, variance)``, fitted attributes end in ``_``. The
scaling laws (``surrogates.scaling``) are the one exception, with their own contract stated once in
that module's docstring. Nothing here sees the database, the controller or trial records: arrays
(and, for the scaling laws, tables of runs) in, numbers out; ``search.encoding`` and ``analysis``
turn records into arrays. This package imports neither ``storage`` nor ``search``. Submodules are
imported on use (``from surrogates.gp import GaussianProcess``) so that importing one does not
pull in torch or scikit-learn for another.
"""
