/* Linear recurrence h_t = a_t * h_{t-1} + b_t on contiguous (B, T, D) arrays, forward and backward.
 * Parallel over (batch, feature-block) with OpenMP, sequential over time; the inner loop runs over
 * contiguous features so the compiler vectorises it. One pass reads a and b and writes h.
 * Backward is the reverse scan g_t = gh_t + a_{t+1} g_{t+1}, fused with da_t = g_t h_{t-1} and db_t = g_t. */
#include <stdint.h>
#include <string.h>

/* A job is one batch row and a block of up to DBLK features walked through time; with whole rows in one block,
 * a, b and h stream sequentially through memory. Rows are split only when there are fewer rows than threads. */
#define DBLK 2048
#define RBLK 16

static int64_t block_width(int64_t B, int64_t D, int nthreads) {
    if (B <= 0 || D <= 0 || nthreads < 1) return 1;  /* empty input: no job runs (and no division by B) */
    int64_t w = D < DBLK ? D : DBLK;
    int64_t per_row = B >= nthreads ? 1 : (nthreads + B - 1) / B;
    if ((D + w - 1) / w < per_row) w = ((D + per_row - 1) / per_row + 7) / 8 * 8;
    return w < 1 ? 1 : w;
}

#define DEFINE_SCAN(T_, SUF)                                                                          \
void scan_fwd_##SUF(const T_* a, const T_* b, const T_* h0, T_* h,                                 \
                    int64_t B, int64_t T, int64_t D, int nthreads) {                                 \
    int64_t W = block_width(B, D, nthreads), nd = (D + W - 1) / W;                                   \
    _Pragma("omp parallel for num_threads(nthreads) schedule(static)")                               \
    for (int64_t job = 0; job < B * nd; job++) {                                                     \
        int64_t bi = job / nd, d0 = (job % nd) * W, w = D - d0 < W ? D - d0 : W;                      \
        T_ st[DBLK];                                                                                 \
        for (int64_t k = 0; k < w; k++) st[k] = h0 ? h0[bi * D + d0 + k] : (T_)0;                    \
        const T_* ap = a + bi * T * D + d0; const T_* bp = b + bi * T * D + d0;                      \
        T_* hp = h + bi * T * D + d0;                                                                \
        for (int64_t t = 0; t < T; t++) {                                                            \
            for (int64_t k = 0; k < w; k++) { st[k] = ap[k] * st[k] + bp[k]; hp[k] = st[k]; }        \
            ap += D; bp += D; hp += D;                                                               \
        }                                                                                            \
    }                                                                                                \
}                                                                                                    \
void scan_bwd_##SUF(const T_* a, const T_* h, const T_* h0, const T_* gh,                          \
                    T_* da, T_* db, T_* dh0, int64_t B, int64_t T, int64_t D, int nthreads) {        \
    int64_t W = block_width(B, D, nthreads), nd = (D + W - 1) / W;                                   \
    _Pragma("omp parallel for num_threads(nthreads) schedule(static)")                               \
    for (int64_t job = 0; job < B * nd; job++) {                                                     \
        int64_t bi = job / nd, d0 = (job % nd) * W, w = D - d0 < W ? D - d0 : W;                      \
        T_ g[DBLK], an[DBLK], zero[DBLK];                                                            \
        for (int64_t k = 0; k < w; k++) { g[k] = 0; an[k] = 0; zero[k] = 0; }                        \
        int64_t base = bi * T * D + d0;                                                              \
        for (int64_t t = T - 1; t >= 0; t--) {                                                       \
            int64_t o = base + t * D;                                                                \
            const T_* hp = t > 0 ? h + o - D : (h0 ? h0 + bi * D + d0 : zero);                       \
            /* one branch-free loop per case so that each vectorises */                              \
            if (da && db) {                                                                          \
                /* memory is walked downwards in ascending runs of RBLK: see fused_body.h */          \
                for (int64_t kb = (w - 1) / RBLK * RBLK; kb >= 0; kb -= RBLK) {                      \
                    int64_t ke = kb + RBLK < w ? kb + RBLK : w;                                      \
                    _Pragma("GCC ivdep")                                                             \
                    for (int64_t k = kb; k < ke; k++) {                                              \
                        g[k] = gh[o + k] + an[k] * g[k];                                             \
                        db[o + k] = g[k]; da[o + k] = g[k] * hp[k]; an[k] = a[o + k];                \
                    }                                                                                \
                }                                                                                    \
            } else {                                                                                 \
                for (int64_t k = 0; k < w; k++) {                                                    \
                    g[k] = gh[o + k] + an[k] * g[k];                                                 \
                    if (db) db[o + k] = g[k];                                                        \
                    if (da) da[o + k] = g[k] * hp[k];                                                \
                    an[k] = a[o + k];                                                                \
                }                                                                                    \
            }                                                                                        \
        }                                                                                            \
        if (dh0) for (int64_t k = 0; k < w; k++) dh0[bi * D + d0 + k] = an[k] * g[k];               \
    }                                                                                                \
}

DEFINE_SCAN(float, f32)
DEFINE_SCAN(double, f64)
