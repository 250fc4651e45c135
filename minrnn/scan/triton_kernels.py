"""Triton kernels: fused minGRU/minLSTM gate math + linear scan, forward and backward (GPU; CPU interpreter).

Every kernel works on one batch row, one block of BLOCK_H channels and one chunk of time, loading
(BLOCK_T, BLOCK_H) tiles of the gate pre-activations and scanning them along time with
`tl.associative_scan` over pairs (a, b) composed as (a1, b1) then (a2, b2) -> (a1 a2, b1 a2 + b2).
The state between tiles stays in registers, so a chunk is read once and written once.

Operand modes (CELL): 0 minGRU (x1 = k_z, x2 = k_h), 1 minLSTM (x1 = k_f, x2 = k_i, x3 = k_h),
2 plain recurrence (x1 = a, x2 = b). Gate math as in `gates.py`, in fp32 (fp64 for fp64 inputs):
  minGRU   a = sigmoid(-k_z), b = sigmoid(k_z) c(k_h)
  minLSTM  d = softplus(-k_f) - softplus(-k_i), a = sigmoid(-d), b = sigmoid(d) c(k_h)   (normalised)
           a = sigmoid(k_f),  b = sigmoid(k_i) c(k_h)                                   (not normalised)
then `reset` (a = 0, b += a h_reset) and `mask` (a = 1, b = 0 at padding), as in `cells.cell_scan`.

Time is split into chunks so that small batches still fill the GPU (two-level scan): PHASE 1 writes each
chunk's summary (prod a, zero-started final state); PHASE 2 folds the summaries of the earlier chunks
into its carry-in and writes the states; PHASE 0 is the single pass used when one chunk covers T.
Backward is the same scan run backwards, g_t = dL/dh_t + a_{t+1} g_{t+1}, recomputing a and b from k
(nothing but the states h is stored); dL/db_t = g_t, dL/da_t = g_t h_{t-1}, dL/dh0 = a_0 g_0.
"""
from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _combine(a1, b1, a2, b2):
    return a1 * a2, b1 * a2 + b2


@triton.jit
def _sigmoid(x):
    return 1.0 / (1.0 + tl.exp(-x))


@triton.jit
def _softplus(x):
    # log(1 + e^x) = max(x, 0) + log1p(e^-|x|); the series keeps tiny values exact where log(1 + u) rounds.
    u = tl.exp(-tl.abs(x))
    return tl.maximum(x, 0.0) + tl.where(u < 1e-4, u - 0.5 * u * u, tl.log(1.0 + u))


@triton.jit
def _cand(x, CAND_G: tl.constexpr):
    if CAND_G:
        x = tl.where(x >= 0, x + 0.5, _sigmoid(x))
    return x


@triton.jit
def _cand_grad(x, CAND_G: tl.constexpr):
    if CAND_G:
        s = _sigmoid(x)
        out = tl.where(x >= 0, 1.0, s * (1.0 - s))
    else:
        out = tl.full(x.shape, 1.0, x.dtype)
    return out


@triton.jit
def _gate_a(x1, x2, CELL: tl.constexpr, NORM: tl.constexpr):
    """The decay a of one step from its a-gate inputs (minLSTM normalised needs k_f and k_i)."""
    if CELL == 0:
        a = _sigmoid(-x1)
    elif CELL == 1:
        if NORM:
            a = _sigmoid(_softplus(-x2) - _softplus(-x1))
        else:
            a = _sigmoid(x1)
    else:
        a = x1
    return a


@triton.jit
def _gate_b(x1, x2, x3, CELL: tl.constexpr, NORM: tl.constexpr, CAND_G: tl.constexpr):
    if CELL == 0:
        b = _sigmoid(x1) * _cand(x2, CAND_G)
    elif CELL == 1:
        if NORM:
            b = _sigmoid(_softplus(-x1) - _softplus(-x2)) * _cand(x3, CAND_G)
        else:
            b = _sigmoid(x2) * _cand(x3, CAND_G)
    else:
        b = x2
    return b


@triton.jit
def _load_ops(x1_ptr, x2_ptr, x3_ptr, off, valid, CELL: tl.constexpr, ACC: tl.constexpr, ALL: tl.constexpr):
    """Load the operands at `off`; ALL=False loads only those the decay a needs."""
    x1 = tl.load(x1_ptr + off, mask=valid, other=0.0).to(ACC)
    x2 = x1
    x3 = x1
    if ALL or CELL == 1:
        x2 = tl.load(x2_ptr + off, mask=valid, other=0.0).to(ACC)
    if ALL and CELL == 1:
        x3 = tl.load(x3_ptr + off, mask=valid, other=0.0).to(ACC)
    return x1, x2, x3


@triton.jit
def _flags(mask_ptr, reset_ptr, moff, tvalid, HAS_MASK: tl.constexpr, HAS_RESET: tl.constexpr):
    """(BLOCK_T, 1) booleans: m = real step (not padding), r = reset at this step."""
    m = tvalid
    r = tvalid & (moff < 0)  # all False, with tvalid's shape
    if HAS_MASK:
        m = m & (tl.load(mask_ptr + moff, mask=tvalid, other=0) != 0)
    if HAS_RESET:
        r = r | (tl.load(reset_ptr + moff, mask=tvalid, other=0) != 0)
    return m[:, None], r[:, None]


@triton.jit
def _last_row(x, rows, BLOCK_T: tl.constexpr):
    return tl.sum(tl.where(rows[:, None] == BLOCK_T - 1, x, 0.0), axis=0)


@triton.jit
def scan_fwd_kernel(x1_ptr, x2_ptr, x3_ptr, h_ptr, h0_ptr, hr_ptr, mask_ptr, reset_ptr, agg_ptr,
                    T, H, CHUNK, N_CHUNKS, C0, s_xb, s_xt, s_hb, s_ht, s_h0b, s_hrb,
                    CELL: tl.constexpr, NORM: tl.constexpr, CAND_G: tl.constexpr, ACC: tl.constexpr,
                    HAS_H0: tl.constexpr, HAS_HR: tl.constexpr, HAS_MASK: tl.constexpr,
                    HAS_RESET: tl.constexpr, PHASE: tl.constexpr, BLOCK_T: tl.constexpr,
                    BLOCK_H: tl.constexpr, STAGES: tl.constexpr = 1):
    pid_h, c, bi = tl.program_id(0), tl.program_id(1) + C0, tl.program_id(2).to(tl.int64)
    cols = pid_h * BLOCK_H + tl.arange(0, BLOCK_H)
    hvalid = cols < H
    rows = tl.arange(0, BLOCK_T)
    t0 = c * CHUNK
    t1 = tl.minimum(t0 + CHUNK, T)
    hr = tl.zeros([BLOCK_H], ACC)
    if HAS_HR:
        hr = tl.load(hr_ptr + bi * s_hrb + cols, mask=hvalid, other=0.0).to(ACC)
    state = tl.zeros([BLOCK_H], ACC)
    prod = tl.full([BLOCK_H], 1.0, ACC)
    if PHASE != 1:
        if HAS_H0:
            state = tl.load(h0_ptr + bi * s_h0b + cols, mask=hvalid, other=0.0).to(ACC)
        agg = agg_ptr + bi * N_CHUNKS * 2 * H + cols
        for j in tl.range(0, c):  # carry-in: fold the summaries of the earlier chunks (PHASE 2 only)
            pa = tl.load(agg + j * 2 * H, mask=hvalid, other=1.0)
            pb = tl.load(agg + j * 2 * H + H, mask=hvalid, other=0.0)
            state = pa.to(ACC) * state + pb.to(ACC)
    for ts in tl.range(t0, t1, BLOCK_T, num_stages=STAGES):
        t = ts + rows
        tvalid = t < t1
        valid = tvalid[:, None] & hvalid[None, :]
        off = bi * s_xb + t.to(tl.int64)[:, None] * s_xt + cols[None, :]
        x1, x2, x3 = _load_ops(x1_ptr, x2_ptr, x3_ptr, off, valid, CELL, ACC, True)
        a = _gate_a(x1, x2, CELL, NORM)
        b = _gate_b(x1, x2, x3, CELL, NORM, CAND_G)
        m, r = _flags(mask_ptr, reset_ptr, bi * T + t, tvalid, HAS_MASK, HAS_RESET)
        if HAS_HR:
            b = tl.where(r, b + a * hr[None, :], b)
        a = tl.where(r, 0.0, a)
        a = tl.where(m & hvalid[None, :], a, 1.0)  # padding and out-of-range steps leave the state alone
        b = tl.where(m & hvalid[None, :], b, 0.0)
        pa, pb = tl.associative_scan((a, b), 0, _combine)
        h = pa * state[None, :] + pb  # (BLOCK_T, BLOCK_H)
        if PHASE != 1:
            hoff = bi * s_hb + t.to(tl.int64)[:, None] * s_ht + cols[None, :]
            tl.store(h_ptr + hoff, h.to(h_ptr.dtype.element_ty), mask=valid)
        else:
            prod = prod * _last_row(pa, rows, BLOCK_T)
        state = _last_row(h, rows, BLOCK_T)
    if PHASE == 1:
        agg = agg_ptr + (bi * N_CHUNKS + c) * 2 * H + cols
        tl.store(agg, prod, mask=hvalid)
        tl.store(agg + H, state, mask=hvalid)


@triton.jit
def scan_bwd_kernel(x1_ptr, x2_ptr, x3_ptr, h_ptr, gh_ptr, d1_ptr, d2_ptr, d3_ptr, h0_ptr, dh0_ptr,
                    hr_ptr, dhr_ptr, mask_ptr, reset_ptr, agg_ptr,
                    T, H, CHUNK, N_CHUNKS, C0, s_xb, s_xt, s_hb, s_ht, s_h0b, s_hrb,
                    CELL: tl.constexpr, NORM: tl.constexpr, CAND_G: tl.constexpr, ACC: tl.constexpr,
                    HAS_H0: tl.constexpr, HAS_HR: tl.constexpr, HAS_MASK: tl.constexpr,
                    HAS_RESET: tl.constexpr, PHASE: tl.constexpr, BLOCK_T: tl.constexpr,
                    BLOCK_H: tl.constexpr, STAGES: tl.constexpr = 1):
    """Reverse scan g_t = gh_t + a_{t+1} g_{t+1} per chunk; tile row i is time t_hi - i (latest first).

    h and gh are contiguous (B, T, H) tensors with strides s_hb, s_ht; the gradients d1..d3 share the
    operands' strides. PHASE 1 writes (prod a_{t+1}, zero-started g at the chunk's first step).
    """
    pid_h, c, bi = tl.program_id(0), tl.program_id(1) + C0, tl.program_id(2).to(tl.int64)
    cols = pid_h * BLOCK_H + tl.arange(0, BLOCK_H)
    hvalid = cols < H
    rows = tl.arange(0, BLOCK_T)
    t0 = c * CHUNK
    t1 = tl.minimum(t0 + CHUNK, T)
    hr = tl.zeros([BLOCK_H], ACC)
    if HAS_HR:
        hr = tl.load(hr_ptr + bi * s_hrb + cols, mask=hvalid, other=0.0).to(ACC)
    h0 = tl.zeros([BLOCK_H], ACC)
    if HAS_H0:
        h0 = tl.load(h0_ptr + bi * s_h0b + cols, mask=hvalid, other=0.0).to(ACC)
    g = tl.zeros([BLOCK_H], ACC)  # g at the step after the current tile
    prod = tl.full([BLOCK_H], 1.0, ACC)
    dhr = tl.zeros([BLOCK_H], ACC)
    agg = agg_ptr + bi * N_CHUNKS * 2 * H + cols
    if PHASE == 2:
        for jj in tl.range(c + 1, N_CHUNKS):  # carry-in from the later chunks, latest first
            j = N_CHUNKS + c - jj
            pa = tl.load(agg + j * 2 * H, mask=hvalid, other=1.0)
            pg = tl.load(agg + j * 2 * H + H, mask=hvalid, other=0.0)
            g = pa.to(ACC) * g + pg.to(ACC)
    n_tiles = tl.cdiv(t1 - t0, BLOCK_T)
    for it in tl.range(0, n_tiles, num_stages=STAGES):
        t = t1 - 1 - it * BLOCK_T - rows
        tvalid = t >= t0
        valid = tvalid[:, None] & hvalid[None, :]
        t64 = t.to(tl.int64)[:, None]
        # decay of the next step, a_{t+1} (zero past the end: nothing flows back from beyond T)
        nvalid = tvalid & (t + 1 < T)
        noff = bi * s_xb + (t64 + 1) * s_xt + cols[None, :]
        n1, n2, n3 = _load_ops(x1_ptr, x2_ptr, x3_ptr, noff, nvalid[:, None] & hvalid[None, :], CELL, ACC, False)
        an = _gate_a(n1, n2, CELL, NORM)
        nm, nr = _flags(mask_ptr, reset_ptr, bi * T + t + 1, nvalid, HAS_MASK, HAS_RESET)
        an = tl.where(nr, 0.0, an)
        an = tl.where(nm, an, 1.0)
        an = tl.where(nvalid[:, None], an, 0.0)
        an = tl.where(valid, an, 1.0)  # rows before the chunk pass the carry through
        hoff = bi * s_hb + t64 * s_ht + cols[None, :]
        gh = tl.load(gh_ptr + hoff, mask=valid, other=0.0).to(ACC)
        pa, pg = tl.associative_scan((an, gh), 0, _combine)
        gt = pa * g[None, :] + pg  # (BLOCK_T, BLOCK_H): dL/d(b_eff) at step t
        g = _last_row(gt, rows, BLOCK_T)
        if PHASE == 1:
            prod = prod * _last_row(pa, rows, BLOCK_T)
        else:
            off = bi * s_xb + t64 * s_xt + cols[None, :]
            x1, x2, x3 = _load_ops(x1_ptr, x2_ptr, x3_ptr, off, valid, CELL, ACC, True)
            m, r = _flags(mask_ptr, reset_ptr, bi * T + t, tvalid, HAS_MASK, HAS_RESET)
            pvalid = valid & (t64 >= 1)
            hp = tl.load(h_ptr + hoff - s_ht, mask=pvalid, other=0.0).to(ACC)  # h_{t-1}
            if HAS_H0:
                hp = tl.where(t64 == 0, h0[None, :], hp)
            db = tl.where(m, gt, 0.0)  # gradients of the gate outputs (a, b) before reset/mask
            da = tl.where(m, gt * hp, 0.0)
            if HAS_RESET:
                a_raw = _gate_a(x1, x2, CELL, NORM)
                if HAS_HR:
                    dhr += tl.sum(tl.where(r & valid, db * a_raw, 0.0), axis=0)
                    da = tl.where(r, db * hr[None, :], da)
                else:
                    da = tl.where(r, 0.0, da)
            _gate_grads(x1, x2, x3, da, db, d1_ptr, d2_ptr, d3_ptr, off, valid, CELL, NORM, CAND_G)
    if PHASE == 1:
        tl.store(agg + c * 2 * H, prod, mask=hvalid)
        tl.store(agg + c * 2 * H + H, g, mask=hvalid)
    else:
        if HAS_HR:
            tl.store(dhr_ptr + (bi * N_CHUNKS + c) * H + cols, dhr, mask=hvalid)
        if HAS_H0:
            if c == 0:  # dL/dh0 = a_eff(0) * g_0
                zoff = bi * s_xb + cols
                z1, z2, z3 = _load_ops(x1_ptr, x2_ptr, x3_ptr, zoff, hvalid, CELL, ACC, False)
                a0 = _gate_a(z1, z2, CELL, NORM)
                if HAS_RESET:
                    a0 = tl.where(tl.load(reset_ptr + bi * T) != 0, 0.0, a0)
                if HAS_MASK:
                    a0 = tl.where(tl.load(mask_ptr + bi * T) != 0, a0, 1.0)
                tl.store(dh0_ptr + bi * H + cols, (a0 * g).to(dh0_ptr.dtype.element_ty), mask=hvalid)


@triton.jit
def _gate_grads(x1, x2, x3, da, db, d1_ptr, d2_ptr, d3_ptr, off, valid, CELL: tl.constexpr,
                NORM: tl.constexpr, CAND_G: tl.constexpr):
    """Chain (dL/da, dL/db) through the gate math to the operands and store them."""
    ty = d1_ptr.dtype.element_ty
    if CELL == 0:
        z = _sigmoid(x1)
        c = _cand(x2, CAND_G)
        tl.store(d1_ptr + off, (z * (1.0 - z) * (db * c - da)).to(ty), mask=valid)
        tl.store(d2_ptr + off, (db * z * _cand_grad(x2, CAND_G)).to(ty), mask=valid)
    elif CELL == 1:
        c = _cand(x3, CAND_G)
        if NORM:
            d = _softplus(-x1) - _softplus(-x2)
            sd = _sigmoid(d)
            dd = sd * (1.0 - sd) * (db * c - da)  # d/dd of (a, b) = (sigmoid(-d), sigmoid(d) c)
            tl.store(d1_ptr + off, (-dd * _sigmoid(-x1)).to(ty), mask=valid)
            tl.store(d2_ptr + off, (dd * _sigmoid(-x2)).to(ty), mask=valid)
            tl.store(d3_ptr + off, (db * sd * _cand_grad(x3, CAND_G)).to(ty), mask=valid)
        else:
            f = _sigmoid(x1)
            i = _sigmoid(x2)
            tl.store(d1_ptr + off, (da * f * (1.0 - f)).to(ty), mask=valid)
            tl.store(d2_ptr + off, (db * c * i * (1.0 - i)).to(ty), mask=valid)
            tl.store(d3_ptr + off, (db * i * _cand_grad(x3, CAND_G)).to(ty), mask=valid)
    else:
        tl.store(d1_ptr + off, da.to(ty), mask=valid)
        tl.store(d2_ptr + off, db.to(ty), mask=valid)
