"""Deep ensemble of small heteroscedastic MLPs (Lakshminarayanan et al. 2017), the surrogate that
BOSHNAS uses: each member predicts a mean and a noise variance, so the spread of the member means
is the model (epistemic) uncertainty and the average predicted noise is the data (aleatoric)
uncertainty. Members are trained with the beta-NLL loss (Seitzer et al. 2022, beta = 0.5), which
keeps the mean fit from stalling where the predicted variance is large."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from surrogates._validation import as_generator, check_fitted, check_X, check_Xy

__all__ = ["DeepEnsemble"]


class DeepEnsemble:
    """``fit(X, y) -> self``; ``predict(X) -> (mean, epistemic + aleatoric variance)``;
    ``predict_decomposed(X) -> (mean, epistemic_var, aleatoric_var)``, all in units of ``y``.

    Parameters
    ----------
    n_members: ensemble size.
    hidden: widths of the hidden layers of each MLP (SiLU activations).
    epochs: full passes over the data (minibatches of ``batch_size``).
    lr, weight_decay: AdamW settings.
    batch_size: minibatch size; the whole set when it is smaller.
    random_state: seed; equal seeds and data give equal predictions on one machine (CPU).
    """

    def __init__(self, *, n_members: int = 5, hidden: Sequence[int] = (64, 64), epochs: int = 300,
                 lr: float = 5e-3, weight_decay: float = 1e-4, batch_size: int = 256,
                 random_state: Any = None) -> None:
        self.n_members = n_members
        self.hidden = hidden
        self.epochs = epochs
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.random_state = random_state

    def _init(self, d: int, gen):
        """Stacked parameters of every member: per layer a (members, fan_in, fan_out) weight and a
        (members, 1, fan_out) bias, drawn as ``torch.nn.Linear`` draws them (uniform within
        1/sqrt(fan_in)); the last layer outputs a mean and a raw noise scale."""
        import torch

        params = []
        width = d
        for h in (*self.hidden, 2):
            bound = 1.0 / width ** 0.5
            w = (torch.rand((self.n_members, width, h), generator=gen, dtype=torch.float64) * 2 - 1) * bound
            b = (torch.rand((self.n_members, 1, h), generator=gen, dtype=torch.float64) * 2 - 1) * bound
            params += [w.requires_grad_(), b.requires_grad_()]
            width = h
        return params

    @staticmethod
    def _forward(params, X):
        """(members, n, 2) outputs; ``X`` is (n, d) (shared) or (members, n, d)."""
        import torch.nn.functional as F

        h = X
        for i in range(0, len(params), 2):
            h = (h @ params[i] if h.dim() == 3 else (h.unsqueeze(0) @ params[i])) + params[i + 1]
            if i + 2 < len(params):
                h = F.silu(h)
        return h

    def fit(self, X: Any, y: Any) -> "DeepEnsemble":
        import torch
        import torch.nn.functional as F

        if self.n_members < 1:
            raise ValueError(f"n_members must be >= 1, got {self.n_members}")
        X, y = check_Xy(X, y, min_samples=2)
        n, d = X.shape
        rng = as_generator(self.random_state)
        self.x_mean_ = X.mean(0)
        self.x_std_ = np.where(X.std(0) > 1e-12, X.std(0), 1.0)
        self.y_mean_ = float(y.mean())
        self.y_std_ = float(y.std()) if y.std() > 1e-12 else 1.0
        Xt = torch.from_numpy((X - self.x_mean_) / self.x_std_)
        yt = torch.from_numpy((y - self.y_mean_) / self.y_std_)
        bs = min(self.batch_size, n)
        # All members train at once as one stacked network: Adam(W) acts elementwise, so this is
        # the members' independent trainings (own initialisation, own minibatch order), with one
        # optimiser step's Python overhead instead of one per member.
        gen = torch.Generator().manual_seed(int(rng.integers(2**31 - 1)))
        params = self._init(d, gen)
        opt = torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)
        for _ in range(self.epochs):
            if bs == n:
                batches = [None]
            else:
                perm = torch.argsort(torch.rand((self.n_members, n), generator=gen), dim=1)
                batches = [perm[:, start:start + bs] for start in range(0, n, bs)]
            for idx in batches:
                xb, yb = (Xt, yt.unsqueeze(0)) if idx is None else (Xt[idx], yt[idx])
                out = self._forward(params, xb)
                mu, var = out[..., 0], F.softplus(out[..., 1]) + 1e-6
                nll = 0.5 * (torch.log(var) + (yb - mu) ** 2 / var)
                # beta-NLL, beta = 0.5; the sum over members keeps each member's gradient its own mean's.
                loss = (nll * var.detach() ** 0.5).mean(-1).sum()
                opt.zero_grad()
                loss.backward()
                opt.step()
        self.members_ = [p.detach() for p in params]
        self.n_features_in_ = d
        return self

    def predict_decomposed(self, X: Any):
        import torch
        import torch.nn.functional as F

        check_fitted(self, "members_")
        X = check_X(X, self.n_features_in_)
        Xt = torch.from_numpy((X - self.x_mean_) / self.x_std_)
        with torch.no_grad():
            out = self._forward(self.members_, Xt)
        mus = out[..., 0].numpy()
        vars_ = (F.softplus(out[..., 1]) + 1e-6).numpy()
        mean = mus.mean(0) * self.y_std_ + self.y_mean_
        epistemic = mus.var(0) * self.y_std_ ** 2
        aleatoric = vars_.mean(0) * self.y_std_ ** 2
        return mean, np.maximum(epistemic, 1e-12), aleatoric

    def predict(self, X: Any):
        mean, epi, ale = self.predict_decomposed(X)
        return mean, epi + ale
