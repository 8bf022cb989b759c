"""Fitted predictors on arrays: encoders, Gaussian processes, forests, deep ensembles, parameter
importance, architecture encodings and scaling laws.

Every surrogate follows one contract (scikit-learn style): ``__init__`` stores arguments only,
``fit(X, y) -> self``, ``predict(X) -> (mean, variance)``, fitted attributes end in ``_``. Nothing
here sees the database or the controller: frozen records and arrays in, numbers out. Submodules are
imported on use (``from surrogates.gp import GaussianProcess``) so that importing one does not
pull in torch or scikit-learn for another.
"""
