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

/* Prefetch n elements from p for reading (one instruction per 64-byte line). */
static inline void FN(prefetch_row)(const REAL* p, int64_t n) {
    for (int64_t j = 0; j < n; j += 64 / (int64_t)sizeof(REAL)) __builtin_prefetch(p + j, 0, 3);
}

/* Software prefetch of one later time step of a job: its gate rows of k (read; NULL: none) and its row of h
 * (written). */
static inline void FN(prefetch_step)(const REAL* kp, const REAL* hp, int64_t ng, int64_t w, int64_t H) {
    if (kp) for (int64_t q = 0; q < ng; q++) FN(prefetch_row)(kp + q * H, w);
    for (int64_t j = 0; j < w; j += 64 / (int64_t)sizeof(REAL)) __builtin_prefetch(hp + j, 1, 3);
}

/* The same for backward, which walks time downwards: k and h of the step before (read), and dL/dh (read; NULL
 * when it does not vary over time). dL/dk is not prefetched: it is written with streaming stores. */
static inline void FN(prefetch_bwd)(const REAL* kp, const REAL* hq, const REAL* ghp, int64_t ng, int64_t w,
                                    int64_t H) {
    for (int64_t q = 0; q < ng; q++) FN(prefetch_row)(kp + q * H, w);
    FN(prefetch_row)(hq, w);
    if (ghp) FN(prefetch_row)(ghp, w);
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

/* The layer's matmuls inside the jobs (the fused_lin_* entry points; NULL elsewhere). Each job is a whole batch
 * row, walked through time in chunks of tc steps whose gate rows (tc x G, G = n_gates * H) live in the thread's
 * buffer, in cache, between the matmul and the scan; the buffer then holds the chunk of x packed for dL/dW
 * (lin_buf_size). x (B, T, D); wp is W (G, D) packed for gemm.h: as W^T (D x G) for forward, where
 * k = x W^T is also written out (saved for backward), and as W (G x D) for backward's dL/dx = dk W into dx
 * (B, T, D) (NULL: not wanted). dw (nthreads, G, D) accumulates each thread's dL/dW = dk^T x (NULL: not wanted). */
typedef struct { const REAL* x; const REAL* wp; REAL* dw; REAL* dx; int64_t D, tc; } FN(lin_t);

/* Offset of the packed x chunk in a thread's buffer, and the buffer's size in elements. */
static inline int64_t FN(lin_xoff)(int64_t tc, int64_t G) { return (tc * G + GEMM_NR - 1) / GEMM_NR * GEMM_NR; }
static inline int64_t FN(lin_buf_size)(int64_t tc, int64_t G, int64_t D) {
    return FN(lin_xoff)(tc, G) + packed_size(tc, D);
}

/* One (batch row, block of hidden units) job; always inlined with constant cell/norm/cand_g so that each
 * specialisation below has branch-free inner loops the compiler vectorises. k is only written with ln. */
static inline __attribute__((always_inline)) void FN(fwd_job)(
        int cell, int norm, int cand_g, REAL* k, const REAL* bias, const REAL* h0, REAL* h,
        const FN(seq_t)* sq, const FN(lin_t)* ln, REAL* buf, int64_t bi, int64_t j0, int64_t w, int64_t T,
        int64_t H) {
    int64_t ng = cell == 0 ? 2 : 3, G = ng * H, tc = ln ? ln->tc : T;
    REAL st[HBLK], bb[3 * HBLK];
    int64_t pf = prefetch_steps(G * (int64_t)sizeof(REAL));
    FN(load_bias)(bb, bias, ng, j0, w, H);
    for (int64_t j = 0; j < w; j++) st[j] = h0 ? h0[bi * H + j0 + j] : (REAL)0;
    for (int64_t t0 = 0; t0 < T; t0 += tc) {
        int64_t t1 = t0 + tc < T ? t0 + tc : T;
        const REAL* kc = k + (bi * T + t0) * G + j0;       /* gate rows of step t0 */
        if (ln) {                                           /* this chunk's k = x W^T, computed into the buffer */
            FN(gemm)(t1 - t0, G, ln->D, ln->x + (bi * T + t0) * ln->D, ln->D, 1, ln->wp, buf, G, 0);
            kc = buf;
        }
        for (int64_t t = t0; t < t1; t++) {
            const REAL* kp = kc + (t - t0) * G;
            REAL* hp = h + (bi * T + t) * H + j0;
            if (sq->mask && !sq->mask[bi * T + t]) {        /* padding: carry the state */
                for (int64_t j = 0; j < w; j++) hp[j] = st[j];
                continue;
            }
            if (sq->reset && sq->reset[bi * T + t])
                for (int64_t j = 0; j < w; j++) st[j] = sq->hr ? sq->hr[bi * H + j0 + j] : (REAL)0;
            if (t + pf < T) FN(prefetch_step)(ln ? 0 : kp + pf * G, hp + pf * H, ng, w, H);
            if (ln && t + tc < T) FN(prefetch_row)(ln->x + (bi * T + t + tc) * ln->D, ln->D);  /* next chunk's x */
            _Pragma("GCC ivdep")  /* k, h, gh, gk never overlap: spares the runtime alias checks */
            for (int64_t j = 0; j < w; j++) {
                FN(gate_t) o = GATE_AT(kp, bb, j);
                st[j] = o.a * st[j] + o.b;
                hp[j] = st[j];
            }
        }
        if (ln) FN(stream_row)(k + (bi * T + t0) * G, buf, (t1 - t0) * G);  /* saved for backward */
    }
    if (ln) stream_fence();
}

/* Reverse scan g_t = gh_t + a_{t+1} g_{t+1}, with ga_t = g_t h_{t-1}, gb_t = g_t turned into dL/dk on the fly;
 * the gate values are recomputed from k (nothing but k, h and h0 is kept from forward). gh is read through its
 * row/time strides (sgb, sgt; unit stride along H), so an expanded gradient (of y.sum()) is never copied.
 * dbp (this row's slot of a (B, ng * H) array, or NULL) receives the sum over time of dL/dk: the bias gradient.
 * dL/dk goes to gk, or with ln to the buffer, one chunk at a time, and from there into dL/dW and dL/dx. */
static inline __attribute__((always_inline)) void FN(bwd_job)(
        int cell, int norm, int cand_g, const REAL* k, const REAL* bias, const REAL* h, const REAL* h0,
        const REAL* gh, int64_t sgb, int64_t sgt, REAL* gk, REAL* dbp, REAL* dh0, const FN(seq_t)* sq,
        const FN(lin_t)* ln, REAL* buf, int64_t bi, int64_t j0, int64_t w, int64_t T, int64_t H) {
    int64_t ng = cell == 0 ? 2 : 3, G = ng * H, tc = ln ? ln->tc : T;
    REAL g[HBLK], an[HBLK], zero[HBLK], dhr[HBLK], bb[3 * HBLK], db[3 * HBLK];
    REAL dk[3 * HBLK] __attribute__((aligned(64)));
    int64_t pf = prefetch_steps(G * (int64_t)sizeof(REAL));
    const REAL* hp0 = h0 ? h0 + bi * H + j0 : zero;
    REAL* dwt = ln && ln->dw ? ln->dw + (int64_t)omp_get_thread_num() * G * ln->D : 0;  /* this thread's dL/dW */
    FN(load_bias)(bb, bias, ng, j0, w, H);
    for (int64_t j = 0; j < w; j++) { g[j] = 0; an[j] = 0; zero[j] = 0; dhr[j] = 0; }
    for (int64_t j = 0; j < 3 * HBLK; j++) db[j] = 0;
    for (int64_t t1 = T, t0; t1 > 0; t1 = t0) {
        t0 = t1 - tc > 0 ? t1 - tc : 0;
        for (int64_t t = t1 - 1; t >= t0; t--) {
            const REAL* kp = k + (bi * T + t) * G + j0;
            REAL* gkp = ln ? buf + (t - t0) * G : gk + (bi * T + t) * G + j0;
            const REAL* ghp = gh + bi * sgb + t * sgt + j0;
            if (sq->mask && !sq->mask[bi * T + t]) {        /* padding: a_t = 1, no gradient to k */
                for (int64_t j = 0; j < w; j++) {
                    g[j] = ghp[j] + an[j] * g[j];
                    an[j] = 1;
                    for (int64_t q = 0; q < ng; q++) gkp[q * H + j] = 0;
                }
                continue;
            }
            if (t - pf >= 0) {
                const REAL* hq = t - pf > 0 ? h + (bi * T + t - pf - 1) * H + j0 : hp0;
                FN(prefetch_bwd)(kp - pf * G, hq, sgt ? ghp - pf * sgt : 0, ng, w, H);
            }
            if (ln && t >= tc) FN(prefetch_row)(ln->x + (bi * T + t - tc) * ln->D, ln->D);  /* next chunk's x */
            int rs = sq->reset && sq->reset[bi * T + t];
            const REAL* hprev = rs ? (sq->hr ? sq->hr + bi * H + j0 : zero)
                                   : t > 0 ? h + (bi * T + t - 1) * H + j0 : hp0;
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
            /* This step's dL/dk rows, still in L1: summed into the bias gradient and streamed out to gk (or kept
             * in the cache-resident buffer for the chunk's matmuls). */
            for (int64_t q = 0; q < ng; q++) {
                if (dbp) for (int64_t j = 0; j < w; j++) db[q * HBLK + j] += dk[q * HBLK + j];
                if (ln) memcpy(gkp + q * H, dk + q * HBLK, (size_t)w * sizeof(REAL));
                else FN(stream_row)(gkp + q * H, dk + q * HBLK, w);
            }
            if (rs)  /* h_t = a_t hr + b_t: the gradient goes to hr, and none flows further back in time */
                for (int64_t j = 0; j < w; j++) { dhr[j] += an[j] * g[j]; an[j] = 0; }
        }
        if (ln) {  /* dL/dW += dk^T x and dL/dx = dk W for this chunk, while dk is in cache */
            int64_t m = t1 - t0, D = ln->D;
            if (dwt) {
                REAL* xp = buf + FN(lin_xoff)(tc, G);
                FN(pack)(m, D, ln->x + (bi * T + t0) * D, D, 1, xp);
                FN(gemm)(G, D, m, buf, 1, G, xp, dwt, D, 1);
            }
            if (ln->dx) FN(gemm)(m, D, G, buf, G, 1, ln->wp, ln->dx + (bi * T + t0) * D, D, 0);
        }
    }
    stream_fence();
    if (dh0) for (int64_t j = 0; j < w; j++) dh0[bi * H + j0 + j] = an[j] * g[j];
    if (sq->dhr) for (int64_t j = 0; j < w; j++) sq->dhr[bi * H + j0 + j] = dhr[j];
    if (dbp)
        for (int64_t q = 0; q < ng; q++)
            for (int64_t j = 0; j < w; j++) dbp[bi * ng * H + q * H + j0 + j] = db[q * HBLK + j];
}

#define SPECIALISE(C, N, G)                                                                                 \
static void FN(fwd_##C##N##G)(REAL* k, const REAL* bias, const REAL* h0, REAL* h, const FN(seq_t)* sq,       \
                              const FN(lin_t)* ln, REAL* buf, int64_t bi, int64_t j0, int64_t w, int64_t T, \
                              int64_t H) {                                                                  \
    FN(fwd_job)(C, N, G, k, bias, h0, h, sq, ln, buf, bi, j0, w, T, H); }                                  \
static void FN(bwd_##C##N##G)(const REAL* k, const REAL* bias, const REAL* h, const REAL* h0, const REAL* gh, \
                              int64_t sgb, int64_t sgt, REAL* gk, REAL* dbp, REAL* dh0, const FN(seq_t)* sq, \
                              const FN(lin_t)* ln, REAL* buf, int64_t bi, int64_t j0, int64_t w, int64_t T, \
                              int64_t H) {                                                                  \
    FN(bwd_job)(C, N, G, k, bias, h, h0, gh, sgb, sgt, gk, dbp, dh0, sq, ln, buf, bi, j0, w, T, H); }
SPECIALISE(0, 0, 0) SPECIALISE(0, 0, 1)
SPECIALISE(1, 0, 0) SPECIALISE(1, 0, 1) SPECIALISE(1, 1, 0) SPECIALISE(1, 1, 1)
#undef SPECIALISE

typedef void (*FN(fwd_fn))(REAL*, const REAL*, const REAL*, REAL*, const FN(seq_t)*, const FN(lin_t)*, REAL*,
                           int64_t, int64_t, int64_t, int64_t, int64_t);
typedef void (*FN(bwd_fn))(const REAL*, const REAL*, const REAL*, const REAL*, const REAL*, int64_t, int64_t,
                           REAL*, REAL*, REAL*, const FN(seq_t)*, const FN(lin_t)*, REAL*, int64_t, int64_t,
                           int64_t, int64_t, int64_t);

static FN(fwd_fn) FN(fwd_pick)(int cell, int norm, int cand_g) {
    FN(fwd_fn) fns[2][2][2] = {{{FN(fwd_000), FN(fwd_001)}, {FN(fwd_000), FN(fwd_001)}},
                               {{FN(fwd_100), FN(fwd_101)}, {FN(fwd_110), FN(fwd_111)}}};
    return fns[cell != 0][norm != 0][cand_g != 0];
}

static FN(bwd_fn) FN(bwd_pick)(int cell, int norm, int cand_g) {
    FN(bwd_fn) fns[2][2][2] = {{{FN(bwd_000), FN(bwd_001)}, {FN(bwd_000), FN(bwd_001)}},
                               {{FN(bwd_100), FN(bwd_101)}, {FN(bwd_110), FN(bwd_111)}}};
    return fns[cell != 0][norm != 0][cand_g != 0];
}

/* bias (n_gates * H) or NULL is added to k inside the kernel (the layer's matmul then needs no bias pass). */
void FN(fused_fwd)(int cell, int norm, int cand_g, const REAL* k, const REAL* bias, const REAL* h0, REAL* h,
                   const uint8_t* mask, const uint8_t* reset, const REAL* hr,
                   int64_t B, int64_t T, int64_t H, int nthreads) {
    FN(fwd_fn) f = FN(fwd_pick)(cell, norm, cand_g);
    FN(seq_t) sq = {mask, reset, hr, 0};
    int64_t W = block_width(B, H, nthreads), nb = (H + W - 1) / W;
    _Pragma("omp parallel for num_threads(nthreads) schedule(static)")
    for (int64_t job = 0; job < B * nb; job++) {
        int64_t bi = job / nb, j0 = (job % nb) * W;
        f((REAL*)k, bias, h0, h, &sq, 0, 0, bi, j0, H - j0 < W ? H - j0 : W, T, H);  /* k is not written */
    }
}

/* gh is addressed as gh[b * sgb + t * sgt + j]; dbias_rows (B, n_gates * H) or NULL receives per-row bias
 * gradients (summed over B by the caller: rows run in parallel, so each writes its own slot). */
void FN(fused_bwd)(int cell, int norm, int cand_g, const REAL* k, const REAL* bias, const REAL* h, const REAL* h0,
                   const REAL* gh, int64_t sgb, int64_t sgt, REAL* gk, REAL* dbias_rows, REAL* dh0,
                   const uint8_t* mask, const uint8_t* reset, const REAL* hr, REAL* dhr,
                   int64_t B, int64_t T, int64_t H, int nthreads) {
    FN(bwd_fn) f = FN(bwd_pick)(cell, norm, cand_g);
    FN(seq_t) sq = {mask, reset, hr, dhr};
    int64_t W = block_width(B, H, nthreads), nb = (H + W - 1) / W;
    _Pragma("omp parallel for num_threads(nthreads) schedule(static)")
    for (int64_t job = 0; job < B * nb; job++) {
        int64_t bi = job / nb, j0 = (job % nb) * W;
        f(k, bias, h, h0, gh, sgb, sgt, gk, dbias_rows, dh0, &sq, 0, 0, bi, j0, H - j0 < W ? H - j0 : W, T, H);
    }
}

/* The layer route: the matmuls of k = x W^T (forward) and of dL/dW, dL/dx (backward) run inside the jobs, one
 * chunk of time steps at a time (see lin_t). Jobs must be whole rows: returns 1, doing nothing, when rows would be
 * split (fewer rows than threads, or H > HBLK), 2 when a buffer cannot be allocated, else 0.
 * fused_lin_fwd writes k (B, T, G) and h; fused_lin_bwd takes k, h and the other arguments of fused_bwd, and
 * dw (nthreads, G, D), zero-filled by the caller and summed over its first axis afterwards, or NULL; dx or NULL. */
static int FN(lin_run)(int fwd, int cell, int norm, int cand_g, const REAL* x, const REAL* w, REAL* dw, REAL* dx,
                       REAL* k, const REAL* bias, const REAL* h0, REAL* h, const REAL* gh, int64_t sgb, int64_t sgt,
                       REAL* dbias_rows, REAL* dh0, const FN(seq_t)* sq, int64_t B, int64_t T, int64_t H, int64_t D,
                       int nthreads) {
    if (block_width(B, H, nthreads) < H) return 1;
    int64_t G = (cell == 0 ? 2 : 3) * H;
    FN(lin_t) ln = {x, 0, dw, dx, D, lin_chunk(G, sizeof(REAL))};
    REAL* wp = 0;
    if (fwd || dx) {  /* W packed as W^T (D x G) for forward, as W (G x D) for dL/dx */
        wp = (REAL*)aligned_buf(((size_t)packed_size(fwd ? D : G, fwd ? G : D) * sizeof(REAL) + 63) / 64 * 64);
        if (!wp) return 2;
        if (fwd) FN(pack)(D, G, w, 1, D, wp);
        else FN(pack)(G, D, w, D, 1, wp);
        ln.wp = wp;
    }
    FN(fwd_fn) ff = FN(fwd_pick)(cell, norm, cand_g);
    FN(bwd_fn) fb = FN(bwd_pick)(cell, norm, cand_g);
    size_t nbuf = ((size_t)FN(lin_buf_size)(ln.tc, G, D) * sizeof(REAL) + 63) / 64 * 64;
    int failed = 0;
    _Pragma("omp parallel num_threads(nthreads)")
    {
        REAL* buf = (REAL*)aligned_buf(nbuf);
        if (!buf) {
            _Pragma("omp atomic write")
            failed = 1;
        }
        _Pragma("omp for schedule(static)")
        for (int64_t bi = 0; bi < B; bi++) {
            if (!buf) continue;
            if (fwd) ff(k, bias, h0, h, sq, &ln, buf, bi, 0, H, T, H);
            else fb(k, bias, h, h0, gh, sgb, sgt, 0, dbias_rows, dh0, sq, &ln, buf, bi, 0, H, T, H);
        }
        aligned_free(buf);
    }
    aligned_free(wp);
    return failed ? 2 : 0;
}

int FN(fused_lin_fwd)(int cell, int norm, int cand_g, const REAL* x, const REAL* w, REAL* k, const REAL* bias,
                      const REAL* h0, REAL* h, const uint8_t* mask, const uint8_t* reset, const REAL* hr,
                      int64_t B, int64_t T, int64_t H, int64_t D, int nthreads) {
    FN(seq_t) sq = {mask, reset, hr, 0};
    return FN(lin_run)(1, cell, norm, cand_g, x, w, 0, 0, k, bias, h0, h, 0, 0, 0, 0, 0, &sq, B, T, H, D, nthreads);
}

int FN(fused_lin_bwd)(int cell, int norm, int cand_g, const REAL* x, const REAL* w, const REAL* k,
                      const REAL* bias, const REAL* h, const REAL* h0, const REAL* gh, int64_t sgb, int64_t sgt,
                      REAL* dw, REAL* dx, REAL* dbias_rows, REAL* dh0, const uint8_t* mask, const uint8_t* reset,
                      const REAL* hr, REAL* dhr, int64_t B, int64_t T, int64_t H, int64_t D, int nthreads) {
    FN(seq_t) sq = {mask, reset, hr, dhr};
    return FN(lin_run)(0, cell, norm, cand_g, x, w, dw, dx, (REAL*)k, bias, h0, (REAL*)h, gh, sgb, sgt, dbias_rows,
                       dh0, &sq, B, T, H, D, nthreads);  /* k and h are only read in backward */
}

#undef GATE_AT
#undef FN
#undef CAT2
#undef CAT2_
