"""Decision models: Decision-minGRU / Decision-minLSTM and the Decision Transformer (DT) in one framework.

As in the Decision Transformer (Chen et al. 2021), a trajectory is the token sequence
(R_1, s_1, a_1, R_2, s_2, a_2, ...) with R_t the return-to-go; each token is a linear embedding of its
value plus a learned embedding of the episode timestep t, followed by a LayerNorm. A causal sequence model
(the `backbone`: minGRU/minLSTM blocks, a GPT, or mambapy Mamba blocks for Decision Mamba, all from
`models.baselines.make_model`) runs over the 3K tokens
and the action a_t is predicted (tanh) from the output at the state token s_t. Only the backbone differs.

Acting (`Actor`): the recurrent models (the minRNNs and Mamba) feed the new tokens (a_{t-1}, R_t, s_t) into their carried state,
O(1) work per environment step, through the whole-backbone C step (`models.fast_step`, one call per token)
where it applies and the PyTorch forward otherwise (Mamba: mambapy's step, through `MambaLM.forward` with a state) (same values up to fp32 rounding); `Actor(mode="window")`
instead re-runs the last K steps from scratch, which is what DT does (and what a recurrent model trained on
K-step windows sees in training).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ...models.baselines import make_model
from ...models.fast_step import FAST_MAX_BATCH, fast_step  # noqa: F401  (FAST_MAX_BATCH: re-exported)


ARCHS = ("mingru", "minlstm", "transformer", "mamba")  # Decision-minGRU/-minLSTM, DT, Decision Mamba


class DecisionModel(nn.Module):
    """forward(rtg (B,K,1), states (B,K,obs), actions (B,K,act), timesteps (B,K)) -> actions (B,K,act)."""

    def __init__(self, arch: str, obs_dim: int, act_dim: int, *, context: int = 20, max_ep_len: int = 1000,
                 d_model: int = 128, **backbone_kw):
        super().__init__()
        if arch not in ARCHS:
            raise ValueError(f"arch: expected one of {', '.join(ARCHS)}, got {arch!r}")
        self.arch, self.obs_dim, self.act_dim = arch, obs_dim, act_dim
        self.context, self.max_ep_len, self.recurrent = context, max_ep_len, arch != "transformer"
        self.embed_t = nn.Embedding(max_ep_len, d_model)
        self.embed_r = nn.Linear(1, d_model)
        self.embed_s = nn.Linear(obs_dim, d_model)
        self.embed_a = nn.Linear(act_dim, d_model)
        self.ln = nn.LayerNorm(d_model)
        # DT's GPT-2 has no position embedding (the timestep embedding above is the only position signal)
        self.backbone = make_model(arch, input_dim=d_model, output_dim=d_model, d_model=d_model,
                                   block_size=3 * context, positions=False, **backbone_kw)
        self.predict_a = nn.Sequential(nn.Linear(d_model, act_dim), nn.Tanh())

    def tokens(self, rtg, states, actions, timesteps) -> torch.Tensor:
        """Interleaved token embeddings (B, 3K, d): R_1, s_1, a_1, ..., R_K, s_K, a_K."""
        B, K, _ = states.shape
        te = self.embed_t(timesteps.clamp(0, self.max_ep_len - 1))  # (B, K, d)
        x = torch.stack([self.embed_r(rtg) + te, self.embed_s(states) + te, self.embed_a(actions) + te], dim=2)
        return self.ln(x.reshape(B, 3 * K, -1))

    def forward(self, rtg, states, actions, timesteps, state=None):
        """-> (predicted actions (B, K, act_dim), backbone state). a_t is predicted from the s_t token."""
        for name, x, last in (("rtg", rtg, 1), ("states", states, self.obs_dim), ("actions", actions, self.act_dim)):
            if x.dim() != 3 or x.shape[-1] != last or x.shape[:2] != states.shape[:2]:
                raise ValueError(f"{name}: expected shape (B, K, {last}) with (B, K)={tuple(states.shape[:2])}, "
                                 f"got {tuple(x.shape)}")
        if timesteps.shape != states.shape[:2]:
            raise ValueError(f"timesteps: expected shape {tuple(states.shape[:2])}, got {tuple(timesteps.shape)}")
        h, state = self.backbone(self.tokens(rtg, states, actions, timesteps), state)  # (B, 3K, d)
        return self.predict_a(h[:, 1::3]), state

    def init_state(self, batch_size: int):
        return self.backbone.init_state(batch_size)




class Actor:
    """Acts in a batch of environments with a trained DecisionModel (eval mode, no grad).

    mode "carried" (recurrent models only): feed (a_{t-1}, R_t, s_t) into the carried state, O(1) per step.
    mode "window": re-run the last `context` steps (R, s, a) from scratch at every step, as DT does.
    fast (carried mode): run the backbone's step in C (`models.fast_step`) where it applies and the batch is at
    most FAST_MAX_BATCH environments; False (or MINRNN_DISABLE_FAST_STEP) keeps the PyTorch forward.
    `step_kind` says which one runs.
    """

    def __init__(self, model: DecisionModel, batch_size: int, mode: str | None = None, fast: bool = True):
        mode = mode or ("carried" if model.recurrent else "window")
        if mode not in ("carried", "window"):
            raise ValueError(f"mode: expected 'carried' or 'window', got {mode!r}")
        if mode == "carried" and not model.recurrent:
            raise ValueError("mode 'carried' needs a recurrent model (mingru/minlstm/mamba); the Transformer acts "
                             "with mode 'window'")
        self.model, self.mode, self.B = model, mode, batch_size
        p = next(model.parameters())
        self.dtype, self.device = p.dtype, p.device
        self.state = model.init_state(batch_size) if mode == "carried" else None
        self.hist: list[tuple] = []  # (rtg, state, action, t) per step, for window mode
        self.prev = None  # embedded token of a_{t-1} not yet fed (carried mode)
        self.fast = False
        if mode == "window":
            self.step_kind = "PyTorch forward over the window"
        else:
            with torch.no_grad():  # the route depends on grad mode; act() runs without grad
                route = getattr(model.backbone, "step_route", None)
                why = route(batch_size, fast) if route else f"{type(model.backbone).__name__} has no C step"
            self.fast = why is None
            self.step_kind = "native C step" if self.fast else f"PyTorch forward ({why})"

    @torch.no_grad()
    def act(self, rtg, obs, t) -> torch.Tensor:
        """rtg (B,) scaled return-to-go, obs (B, obs_dim) normalised, t (B,) int -> action (B, act_dim).
        Call `observe_action` with the action actually taken before the next `act`."""
        m = self.model
        r = torch.as_tensor(rtg, dtype=self.dtype, device=self.device).reshape(self.B, 1, 1)
        s = torch.as_tensor(obs, dtype=self.dtype, device=self.device).reshape(self.B, 1, m.obs_dim)
        t = torch.as_tensor(t, dtype=torch.long, device=self.device).reshape(self.B, 1)
        if self.mode == "window":
            self.hist.append((r, s, torch.zeros(self.B, 1, m.act_dim, dtype=self.dtype, device=self.device), t))
            self.hist = self.hist[-m.context:]
            cols = list(zip(*self.hist))
            R, S, A, T = (torch.cat(c, dim=1) for c in cols)
            toks = m.tokens(R, S, A, T)[:, :-1]  # the last action token is not known yet
            h, _ = m.backbone(toks, None)
            return m.predict_a(h[:, -1])
        tok = m.tokens(r, s, torch.zeros(self.B, 1, m.act_dim, dtype=self.dtype, device=self.device), t)
        new = tok[:, :2] if self.prev is None else torch.cat([self.prev, tok[:, :2]], dim=1)  # (B, 2|3, d)
        self._t = t
        if self.fast:  # one C call per token; the state keeps the PyTorch layout
            for i in range(new.shape[1]):
                out, self.state = fast_step(m.backbone, new[:, i], self.state)
            return m.predict_a(out)
        h, self.state = m.backbone(new, self.state)
        return m.predict_a(h[:, -1])

    def observe_action(self, action) -> None:
        a = torch.as_tensor(action, dtype=self.dtype, device=self.device).reshape(self.B, 1, self.model.act_dim)
        if self.mode == "window":
            r, s, _, t = self.hist[-1]
            self.hist[-1] = (r, s, a, t)
        else:
            m = self.model
            self.prev = m.ln(m.embed_a(a) + m.embed_t(self._t.clamp(0, m.max_ep_len - 1)))  # (B, 1, d)
