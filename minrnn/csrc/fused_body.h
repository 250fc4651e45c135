/* Body of the fused minGRU/minLSTM kernels, included by fused.c once per precision with REAL (float|double),
 * SUF (f32|f64) and EXP_NONPOS (a vectorisable exp for x <= 0) defined. See fused.c for the maths. */
#define CAT2_(a, b) a##_##b
#define CAT2(a, b) CAT2_(a, b)
#define FN(name) CAT2(name, SUF)

/* sigmoid(x) and sigmoid(-x) from one exp of a non-positive argument (exact for large |x|, no overflow). */
static inline void FN(sigm2)(REAL x, REAL* s_pos, REAL* s_neg) {
    REAL e = EXP_NONPOS(x >= 0 ? -x : x);
    REAL inv = (REAL)1 / ((REAL)1 + e);
    *s_pos = x >= 0 ? inv : e * inv;
    *s_neg = x >= 0 ? e * inv : inv;
}

/* Candidate c(x) and its derivative: g(x) = x + 1/2 (x >= 0), sigmoid(x) (x < 0); or the identity. */
static inline REAL FN(cand)(int cand_g, REAL x, REAL* dc) {
    if (!cand_g) { *dc = 1; return x; }
    REAL sp, sn;
    FN(sigm2)(x, &sp, &sn);
    *dc = x >= 0 ? (REAL)1 : sp * sn;
    return x >= 0 ? x + (REAL)0.5 : sp;
}

/* Gate values of one unit from its pre-activations x0, x1 (, x2) (bias already added): minGRU (kz, kh), minLSTM
 * (kf, ki, kh). Returns a and b, the candidate c and its derivative dc, the input gate w (b = w c), and the partials
 * p1, p2 that turn the gradients of a and b into dL/dk (see bwd_job). */
typedef struct { REAL a, b, c, dc, w, p1, p2; } FN(gate_t);

static inline FN(gate_t) FN(gate)(int cell, int norm, int cand_g, REAL x0, REAL x1, REAL x2) {
    FN(gate_t) o;
    if (cell == 0) {                        /* minGRU: a = sigmoid(-kz), b = sigmoid(kz) c(kh) */
        REAL z, a;
        FN(sigm2)(x0, &z, &a);
        o.c = FN(cand)(cand_g, x1, &o.dc);
        o.a = a; o.w = z; o.b = z * o.c;
        o.p1 = z * a;                       /* dL/dkz = (gb c - ga) z (1 - z) */
        o.p2 = 0;
    } else if (norm) {                      /* minLSTM, normalised: a = f/(f+i), b = i/(f+i) c(kh) */
        REAL u = -x0, v = -x1;
        /* 1 + exp(u) = exp(m) (p + q), 1 + exp(v) = exp(m) (p + r) with m = max(u, v, 0), so that all
         * exponents are <= 0; the one that equals m is exp(0) = 1, so two exponentials suffice. */
        int cu = u >= v && u >= 0, cv = !cu && v >= 0;   /* m = u, m = v, else m = 0 */
        REAL e1 = EXP_NONPOS(cu ? -u : (cv ? -v : u));
        REAL e2 = EXP_NONPOS(cu ? v - u : (cv ? u - v : v));
        REAL p = (cu || cv) ? e1 : (REAL)1;
        REAL q = cu ? (REAL)1 : (cv ? e2 : e1);
        REAL r = cu ? e2 : (cv ? (REAL)1 : e2);
        REAL inv = (REAL)1 / ((REAL)2 * p + q + r);
        o.c = FN(cand)(cand_g, x2, &o.dc);
        o.a = (p + r) * inv; o.w = (p + q) * inv; o.b = o.w * o.c;
        o.p1 = -q * (p + r) * inv * inv;    /* dL/dkf = (gb c - ga) * p1 */
        o.p2 = r * (p + q) * inv * inv;     /* dL/dki = (gb c - ga) * p2 */
    } else {                                /* minLSTM, unnormalised: a = sigmoid(kf), b = sigmoid(ki) c(kh) */
        REAL f, nf, i, ni;
        FN(sigm2)(x0, &f, &nf);
        FN(sigm2)(x1, &i, &ni);
        o.c = FN(cand)(cand_g, x2, &o.dc);
        o.a = f; o.w = i; o.b = i * o.c;
        o.p1 = f * nf;                      /* dL/dkf = ga f (1 - f) */
        o.p2 = i * ni;                      /* dL/dki = gb c i (1 - i) */
    }
    return o;
}

/* The job's slice of the gate bias (zeros when the layer has none), gate q at bb[q * HBLK + j]. */
static inline void FN(load_bias)(REAL* bb, const REAL* bias, int64_t ng, int64_t j0, int64_t w, int64_t H) {
    for (int64_t q = 0; q < ng; q++)
        for (int64_t j = 0; j < w; j++) bb[q * HBLK + j] = bias ? bias[q * H + j0 + j] : (REAL)0;
}

/* Software prefetch of one later time step of a job: its gate rows of k (read) and its row of h (written). */
static inline void FN(prefetch_step)(const REAL* kp, const REAL* hp, int64_t ng, int64_t w, int64_t H) {
    for (int64_t q = 0; q < ng; q++)
        for (int64_t j = 0; j < w; j += 64 / (int64_t)sizeof(REAL)) __builtin_prefetch(kp + q * H + j, 0, 3);
    for (int64_t j = 0; j < w; j += 64 / (int64_t)sizeof(REAL)) __builtin_prefetch(hp + j, 1, 3);
}

/* The same for backward, which walks time downwards: k and h of the step before (read), and dL/dh (read; NULL
 * when it does not vary over time). dL/dk is not prefetched: it is written with streaming stores. */
static inline void FN(prefetch_bwd)(const REAL* kp, const REAL* hq, const REAL* ghp, int64_t ng, int64_t w,
                                    int64_t H) {
    const int64_t L = 64 / (int64_t)sizeof(REAL);
    for (int64_t q = 0; q < ng; q++)
        for (int64_t j = 0; j < w; j += L) __builtin_prefetch(kp + q * H + j, 0, 3);
    for (int64_t j = 0; j < w; j += L) __builtin_prefetch(hq + j, 0, 3);
    if (ghp) for (int64_t j = 0; j < w; j += L) __builtin_prefetch(ghp + j, 0, 3);
}

/* dst[0:n] = src[0:n] with non-temporal (streaming) stores where dst is 32-byte aligned: dL/dk is written once
 * and next read by a matmul after the whole backward, so it need not be read into the cache first. */
static inline void FN(stream_row)(REAL* dst, const REAL* src, int64_t n) {
    int64_t j = 0;
#if defined(__AVX__)
    const int64_t V = 32 / (int64_t)sizeof(REAL);
    if (((uintptr_t)dst & 31) == 0)
        for (; j + V <= n; j += V) {
            if (sizeof(REAL) == 4) _mm256_stream_ps((float*)(dst + j), _mm256_loadu_ps((const float*)(src + j)));
            else _mm256_stream_pd((double*)(dst + j), _mm256_loadu_pd((const double*)(src + j)));
        }
#endif
    for (; j < n; j++) dst[j] = src[j];
}

#define GATE_AT(kp, bb, j) FN(gate)(cell, norm, cand_g, (kp)[j] + (bb)[j], (kp)[H + (j)] + (bb)[HBLK + (j)], \
                                    cell == 0 ? (REAL)0 : (kp)[2 * H + (j)] + (bb)[2 * HBLK + (j)])

/* Per-sequence flags, all optional (NULL): mask (B, T), 0 = padding, where the state is carried (a = 1, b = 0;
 * it wins over reset); reset (B, T), 1 = the state restarts at this step from hr (B, H) (zeros if NULL);
 * dhr (B, H) receives dL/dhr in backward. */
typedef struct { const uint8_t* mask; const uint8_t* reset; const REAL* hr; REAL* dhr; } FN(seq_t);

/* One (batch row, block of hidden units) job; always inlined with constant cell/norm/cand_g so that each
 * specialisation below has branch-free inner loops the compiler vectorises. */
static inline __attribute__((always_inline)) void FN(fwd_job)(
        int cell, int norm, int cand_g, const REAL* k, const REAL* bias, const REAL* h0, REAL* h,
        const FN(seq_t)* sq, int64_t bi, int64_t j0, int64_t w, int64_t T, int64_t H) {
    int64_t ng = cell == 0 ? 2 : 3;
    REAL st[HBLK], bb[3 * HBLK];
    int64_t pf = prefetch_steps(ng * H * (int64_t)sizeof(REAL));
    FN(load_bias)(bb, bias, ng, j0, w, H);
    for (int64_t j = 0; j < w; j++) st[j] = h0 ? h0[bi * H + j0 + j] : (REAL)0;
    for (int64_t t = 0; t < T; t++) {
        const REAL* kp = k + (bi * T + t) * ng * H + j0;
        REAL* hp = h + (bi * T + t) * H + j0;
        if (sq->mask && !sq->mask[bi * T + t]) {            /* padding: carry the state */
            for (int64_t j = 0; j < w; j++) hp[j] = st[j];
            continue;
        }
        if (sq->reset && sq->reset[bi * T + t])
            for (int64_t j = 0; j < w; j++) st[j] = sq->hr ? sq->hr[bi * H + j0 + j] : (REAL)0;
        if (t + pf < T) FN(prefetch_step)(kp + pf * ng * H, hp + pf * H, ng, w, H);
        _Pragma("GCC ivdep")  /* k, h, gh, gk never overlap: spares the runtime alias checks */
        for (int64_t j = 0; j < w; j++) {
            FN(gate_t) o = GATE_AT(kp, bb, j);
            st[j] = o.a * st[j] + o.b;
            hp[j] = st[j];
        }
    }
}

/* Reverse scan g_t = gh_t + a_{t+1} g_{t+1}, with ga_t = g_t h_{t-1}, gb_t = g_t turned into dL/dk on the fly;
 * the gate values are recomputed from k (nothing but k, h and h0 is kept from forward). gh is read through its
 * row/time strides (sgb, sgt; unit stride along H), so an expanded gradient (of y.sum()) is never copied.
 * dbp (this row's slot of a (B, ng * H) array, or NULL) receives the sum over time of dL/dk: the bias gradient. */
static inline __attribute__((always_inline)) void FN(bwd_job)(
        int cell, int norm, int cand_g, const REAL* k, const REAL* bias, const REAL* h, const REAL* h0,
        const REAL* gh, int64_t sgb, int64_t sgt, REAL* gk, REAL* dbp, REAL* dh0, const FN(seq_t)* sq,
        int64_t bi, int64_t j0, int64_t w, int64_t T, int64_t H) {
    int64_t ng = cell == 0 ? 2 : 3;
    REAL g[HBLK], an[HBLK], zero[HBLK], dhr[HBLK], bb[3 * HBLK], db[3 * HBLK];
    REAL dk[3 * HBLK] __attribute__((aligned(64)));
    int64_t pf = prefetch_steps(ng * H * (int64_t)sizeof(REAL));
    const REAL* hp0 = h0 ? h0 + bi * H + j0 : zero;
    FN(load_bias)(bb, bias, ng, j0, w, H);
    for (int64_t j = 0; j < w; j++) { g[j] = 0; an[j] = 0; zero[j] = 0; dhr[j] = 0; }
    for (int64_t j = 0; j < 3 * HBLK; j++) db[j] = 0;
    for (int64_t t = T - 1; t >= 0; t--) {
        const REAL* kp = k + (bi * T + t) * ng * H + j0;
        REAL* gkp = gk + (bi * T + t) * ng * H + j0;
        const REAL* ghp = gh + bi * sgb + t * sgt + j0;
        if (sq->mask && !sq->mask[bi * T + t]) {            /* padding: a_t = 1, no gradient to k */
            for (int64_t j = 0; j < w; j++) {
                g[j] = ghp[j] + an[j] * g[j];
                an[j] = 1;
                for (int64_t q = 0; q < ng; q++) gkp[q * H + j] = 0;
            }
            continue;
        }
        if (t - pf >= 0) {
            const REAL* hq = t - pf > 0 ? h + (bi * T + t - pf - 1) * H + j0 : hp0;
            FN(prefetch_bwd)(kp - pf * ng * H, hq, sgt ? ghp - pf * sgt : 0, ng, w, H);
        }
        int rs = sq->reset && sq->reset[bi * T + t];
        const REAL* hprev = rs ? (sq->hr ? sq->hr + bi * H + j0 : zero)
                               : t > 0 ? h + (bi * T + t - 1) * H + j0 : (h0 ? h0 + bi * H + j0 : zero);
        /* Time runs backwards, so memory is walked downwards too, in short ascending runs of RBLK units: the
         * hardware prefetcher follows a descending stream, but not descending rows read upwards (measured
         * 5-6x slower on an AMD EPYC VM). */
        for (int64_t jb = (w - 1) / RBLK * RBLK; jb >= 0; jb -= RBLK) {
            int64_t je = jb + RBLK < w ? jb + RBLK : w;
            _Pragma("GCC ivdep")
            for (int64_t j = jb; j < je; j++) {
                FN(gate_t) o = GATE_AT(kp, bb, j);
                g[j] = ghp[j] + an[j] * g[j];
                REAL ga = g[j] * hprev[j], gb = g[j];
                REAL x = gb * o.c - ga, d0, d1, d2;
                if (cell == 0) {
                    d0 = x * o.p1; d1 = gb * o.w * o.dc; d2 = 0;
                } else if (norm) {
                    d0 = x * o.p1; d1 = x * o.p2; d2 = gb * o.w * o.dc;
                } else {
                    d0 = ga * o.p1; d1 = gb * o.c * o.p2; d2 = gb * o.w * o.dc;
                }
                dk[j] = d0; dk[HBLK + j] = d1;
                if (cell != 0) dk[2 * HBLK + j] = d2;
                an[j] = o.a;
            }
        }
        /* This step's dL/dk rows, still in L1: summed into the bias gradient and streamed out to gk. */
        for (int64_t q = 0; q < ng; q++) {
            if (dbp) for (int64_t j = 0; j < w; j++) db[q * HBLK + j] += dk[q * HBLK + j];
            FN(stream_row)(gkp + q * H, dk + q * HBLK, w);
        }
        if (rs)  /* h_t = a_t hr + b_t: the gradient goes to hr, and none flows further back in time */
            for (int64_t j = 0; j < w; j++) { dhr[j] += an[j] * g[j]; an[j] = 0; }
    }
    stream_fence();
    if (dh0) for (int64_t j = 0; j < w; j++) dh0[bi * H + j0 + j] = an[j] * g[j];
    if (sq->dhr) for (int64_t j = 0; j < w; j++) sq->dhr[bi * H + j0 + j] = dhr[j];
    if (dbp)
        for (int64_t q = 0; q < ng; q++)
            for (int64_t j = 0; j < w; j++) dbp[bi * ng * H + q * H + j0 + j] = db[q * HBLK + j];
}

#define SPECIALISE(C, N, G)                                                                                 \
static void FN(fwd_##C##N##G)(const REAL* k, const REAL* bias, const REAL* h0, REAL* h, const FN(seq_t)* sq, \
                              int64_t bi, int64_t j0, int64_t w, int64_t T, int64_t H) {                  \
    FN(fwd_job)(C, N, G, k, bias, h0, h, sq, bi, j0, w, T, H); }                                          \
static void FN(bwd_##C##N##G)(const REAL* k, const REAL* bias, const REAL* h, const REAL* h0, const REAL* gh, \
                              int64_t sgb, int64_t sgt, REAL* gk, REAL* dbp, REAL* dh0, const FN(seq_t)* sq, \
                              int64_t bi, int64_t j0, int64_t w, int64_t T, int64_t H) {                  \
    FN(bwd_job)(C, N, G, k, bias, h, h0, gh, sgb, sgt, gk, dbp, dh0, sq, bi, j0, w, T, H); }
SPECIALISE(0, 0, 0) SPECIALISE(0, 0, 1)
SPECIALISE(1, 0, 0) SPECIALISE(1, 0, 1) SPECIALISE(1, 1, 0) SPECIALISE(1, 1, 1)
#undef SPECIALISE

typedef void (*FN(fwd_fn))(const REAL*, const REAL*, const REAL*, REAL*, const FN(seq_t)*, int64_t, int64_t,
                           int64_t, int64_t, int64_t);
typedef void (*FN(bwd_fn))(const REAL*, const REAL*, const REAL*, const REAL*, const REAL*, int64_t, int64_t,
                           REAL*, REAL*, REAL*, const FN(seq_t)*, int64_t, int64_t, int64_t, int64_t, int64_t);

/* bias (n_gates * H) or NULL is added to k inside the kernel (the layer's matmul then needs no bias pass). */
void FN(fused_fwd)(int cell, int norm, int cand_g, const REAL* k, const REAL* bias, const REAL* h0, REAL* h,
                   const uint8_t* mask, const uint8_t* reset, const REAL* hr,
                   int64_t B, int64_t T, int64_t H, int nthreads) {
    FN(fwd_fn) fns[2][2][2] = {{{FN(fwd_000), FN(fwd_001)}, {FN(fwd_000), FN(fwd_001)}},
                               {{FN(fwd_100), FN(fwd_101)}, {FN(fwd_110), FN(fwd_111)}}};
    FN(fwd_fn) f = fns[cell != 0][norm != 0][cand_g != 0];
    FN(seq_t) sq = {mask, reset, hr, 0};
    int64_t W = block_width(B, H, nthreads), nb = (H + W - 1) / W;
    _Pragma("omp parallel for num_threads(nthreads) schedule(static)")
    for (int64_t job = 0; job < B * nb; job++) {
        int64_t bi = job / nb, j0 = (job % nb) * W;
        f(k, bias, h0, h, &sq, bi, j0, H - j0 < W ? H - j0 : W, T, H);
    }
}

/* gh is addressed as gh[b * sgb + t * sgt + j]; dbias_rows (B, n_gates * H) or NULL receives per-row bias
 * gradients (summed over B by the caller: rows run in parallel, so each writes its own slot). */
void FN(fused_bwd)(int cell, int norm, int cand_g, const REAL* k, const REAL* bias, const REAL* h, const REAL* h0,
                   const REAL* gh, int64_t sgb, int64_t sgt, REAL* gk, REAL* dbias_rows, REAL* dh0,
                   const uint8_t* mask, const uint8_t* reset, const REAL* hr, REAL* dhr,
                   int64_t B, int64_t T, int64_t H, int nthreads) {
    FN(bwd_fn) fns[2][2][2] = {{{FN(bwd_000), FN(bwd_001)}, {FN(bwd_000), FN(bwd_001)}},
                               {{FN(bwd_100), FN(bwd_101)}, {FN(bwd_110), FN(bwd_111)}}};
    FN(bwd_fn) f = fns[cell != 0][norm != 0][cand_g != 0];
    FN(seq_t) sq = {mask, reset, hr, dhr};
    int64_t W = block_width(B, H, nthreads), nb = (H + W - 1) / W;
    _Pragma("omp parallel for num_threads(nthreads) schedule(static)")
    for (int64_t job = 0; job < B * nb; job++) {
        int64_t bi = job / nb, j0 = (job % nb) * W;
        f(k, bias, h, h0, gh, sgb, sgt, gk, dbias_rows, dh0, &sq, bi, j0, H - j0 < W ? H - j0 : W, T, H);
    }
}

#undef GATE_AT
#undef FN
#undef CAT2
#undef CAT2_
