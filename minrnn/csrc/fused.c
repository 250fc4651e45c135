/* Fused minGRU / minLSTM layers on the CPU: gate math + linear scan in one pass over memory.
 *
 * Input: the gate pre-activations k (B, T, n_gates * H) of one layer (one matmul of x), h0 (B, H) or NULL.
 *   minGRU  (cell 0): k = [kz, kh],      a = sigmoid(-kz) = 1 - z,  b = z c(kh)
 *   minLSTM (cell 1): k = [kf, ki, kh],  a = f/(f+i), b = i/(f+i) c(kh)   (norm = 1; the paper's equations)
 *                                        a = f,       b = i c(kh)          (norm = 0)
 *   c = the paper's g(x) = x + 1/2 (x >= 0), sigmoid(x) (x < 0)  (cand_g = 1)  or the identity (cand_g = 0).
 * Forward: h_t = a_t h_{t-1} + b_t, writing only h (B, T, H): no (B, T, H) gate temporaries.
 * Backward: the reverse scan of the adjoint, g_t = dL/dh_t + a_{t+1} g_{t+1}, with dL/da_t = g_t h_{t-1} and
 * dL/db_t = g_t turned into dL/dk on the fly; the gate values are recomputed from k, not stored.
 *
 * The normalised minLSTM gates are computed without overflow for any k: with u = -kf, v = -ki and
 * m = max(u, v, 0), f/(f+i) = (1 + e^v)/(2 + e^u + e^v) = (p + r)/(2p + q + r) with p = e^-m, q = e^(u-m),
 * r = e^(v-m), every exponent <= 0 and the denominator >= 1.
 *
 * The exponentials are our own (Cephes-style range reduction + polynomial/rational approximation, about 1 ulp)
 * because the C library's exp does not vectorise without -ffast-math; inputs are always <= 0 here.
 * Parallel over (batch, block of hidden units) with OpenMP, sequential over time, contiguous inner loops.
 *
 * The gate bias may be passed separately (added to k inside the kernel, its gradient summed per batch row in
 * backward), so that the layer's matmul writes x W^T straight into k without first copying a broadcast bias.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef __linux__
#include <sys/mman.h>
#endif
/* Without OpenMP (e.g. Apple clang) the pragmas are ignored and everything runs on one thread, still correct. */
#ifdef _OPENMP
#include <omp.h>
#else
static inline int omp_get_thread_num(void) { return 0; }
#endif

/* 64-byte aligned buffers: posix_memalign where it exists, _aligned_malloc on Windows (MinGW has no
 * aligned_alloc); free them with aligned_free. */
#ifdef _WIN32
#include <malloc.h>
static void* aligned_buf(size_t n) { return _aligned_malloc(n, 64); }
static void aligned_free(void* p) { _aligned_free(p); }
#else
static void* aligned_buf(size_t n) { void* p = 0; return posix_memalign(&p, 64, n ? n : 64) == 0 ? p : 0; }
static void aligned_free(void* p) { free(p); }
#endif

/* Ask the kernel to back [p, p + nbytes) with transparent huge pages (where THP is in `madvise` mode). Used on
 * the large fresh buffers this library allocates (k, h, dL/dk): glibc serves blocks >= 32 MiB by a fresh mmap
 * and each first touch of a 4 KiB page faults; with 2 MiB pages there are 512x fewer faults. Only whole 2 MiB
 * pages inside the range are advised, so memory outside the buffer is never affected. Returns 0 on success. */
int minrnn_advise_huge(void* p, int64_t nbytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    const uintptr_t huge = (uintptr_t)1 << 21;
    uintptr_t a = ((uintptr_t)p + huge - 1) & ~(huge - 1), e = ((uintptr_t)p + (uintptr_t)nbytes) & ~(huge - 1);
    return e > a ? madvise((void*)a, e - a, MADV_HUGEPAGE) : 0;
#else
    (void)p; (void)nbytes;
    return -1;
#endif
}

/* Each job is one batch row and a block of up to HBLK hidden units, walked through time. With the whole row in
 * one block, k, h and dL/dk are read and written strictly sequentially (the prefetcher's best case); rows are
 * split into smaller blocks only when there are fewer rows than threads. */
#define HBLK 2048
#define RBLK 16  /* backward: units per ascending run (see fused_body.h) */

/* Streaming (non-temporal) stores need a fence before other threads may read what they wrote. */
#ifdef __AVX__
#include <immintrin.h>
static inline void stream_fence(void) { _mm_sfence(); }
#else
static inline void stream_fence(void) {}
#endif

/* How many time steps ahead a job prefetches: about PF_BYTES ahead in its stream of k (at least one step).
 * Software prefetch, because the hardware prefetcher loses the stream at every 4 KiB page: measured on a 2-vCPU
 * AMD EPYC VM, B = 64, T = 512, H = 128, 1 thread: minLSTM forward 26.4 -> 15.2 ms, minGRU 14.0 -> 10.7 ms. */
#define PF_BYTES 8192
static inline int64_t prefetch_steps(int64_t step_bytes) {
    int64_t s = PF_BYTES / step_bytes;
    return s < 1 ? 1 : s;
}

static int64_t block_width(int64_t B, int64_t H, int nthreads) {
    if (B <= 0 || H <= 0 || nthreads < 1) return 1;  /* empty input: no job runs (and no division by B) */
    int64_t w = H < HBLK ? H : HBLK;
    int64_t per_row = B >= nthreads ? 1 : (nthreads + B - 1) / B;  /* blocks wanted per row */
    if ((H + w - 1) / w < per_row) {
        w = (H + per_row - 1) / per_row;
        w = (w + 7) / 8 * 8;  /* keep whole vectors */
    }
    return w < 1 ? 1 : w;
}

/* Fused multiply-add where the CPU has one (fewer instructions, one rounding); plain a * b + c elsewhere so that
 * a machine without FMA never calls the slow library fma(). */
#ifdef __FMA__
#define MADDF(a, b, c) __builtin_fmaf((a), (b), (c))
#define MADD(a, b, c) __builtin_fma((a), (b), (c))
#else
#define MADDF(a, b, c) ((a) * (b) + (c))
#define MADD(a, b, c) ((a) * (b) + (c))
#endif

/* exp(x) for x <= 0 (NaN propagates; x < -87 gives 0 instead of a subnormal). */
static inline float exp_nonpos_f32(float x) {
    float xc = x < -87.0f ? -87.0f : x;
    float n = __builtin_floorf(xc * 1.44269504088896341f + 0.5f);
    float r = MADDF(n, -0.693359375f, xc);
    r = MADDF(n, 2.12194440e-4f, r);
    float p = 1.9875691500e-4f;
    p = MADDF(p, r, 1.3981999507e-3f);
    p = MADDF(p, r, 8.3334519073e-3f);
    p = MADDF(p, r, 4.1665795894e-2f);
    p = MADDF(p, r, 1.6666665459e-1f);
    p = MADDF(p, r, 5.0000001201e-1f);
    p = MADDF(p, r * r, r) + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return x < -87.0f ? 0.0f : p * scale;
}

/* exp(x) for x <= 0 in double (Cephes exp: Pade approximation on [-ln2/2, ln2/2]). */
static inline double exp_nonpos_f64(double x) {
    double xc = x < -708.0 ? -708.0 : x;
    double n = __builtin_floor(xc * 1.4426950408889634073599 + 0.5);
    double r = MADD(n, -6.93145751953125E-1, xc);
    r = MADD(n, -1.42860682030941723212E-6, r);
    double rr = r * r;
    double px = r * MADD(MADD(1.26177193074810590878E-4, rr, 3.02994407707441961300E-2), rr,
                         9.99999999999999999910E-1);
    double qx = MADD(MADD(MADD(3.00198505138664455042E-6, rr, 2.52448340349684104192E-3), rr,
                          2.27265548208155028766E-1), rr, 2.00000000000000000009E0);
    double e = MADD(2.0, px / (qx - px), 1.0);
    /* 2^n without a double -> int64 conversion (none in AVX2): adding 1.5 * 2^52 puts n in the low mantissa
     * bits; shifting by 52 drops everything but n + 1023 into the exponent field. */
    double shifted = n + 6755399441055744.0;
    uint64_t bits;
    memcpy(&bits, &shifted, sizeof bits);
    bits = (bits + 1023) << 52;
    double scale;
    memcpy(&scale, &bits, sizeof scale);
    return x < -708.0 ? 0.0 : e * scale;
}

#include "gemm.h"

/* Time steps per chunk of the layer route (lin_t in fused_body.h): about LIN_CHUNK_BYTES of gate rows, a multiple
 * of the 6-row register tile, at least one tile; or lin_chunk_rows when set (> 0; tests use it to cross many chunk
 * boundaries on short sequences). Chunks of 32-192 KiB ran within noise of each other (B = 64, T = 512, H = 128). */
#define LIN_CHUNK_BYTES 65536
static int64_t lin_chunk_rows = 0;
void minrnn_set_lin_chunk(int64_t rows) { lin_chunk_rows = rows > 0 ? rows : 0; }
static int64_t lin_chunk(int64_t G, size_t elem) {
    if (lin_chunk_rows > 0) return lin_chunk_rows;
    int64_t tc = (int64_t)(LIN_CHUNK_BYTES / ((size_t)G * elem)) / 6 * 6;
    return tc < 6 ? 6 : tc;
}

#define REAL float
#define SUF f32
#define EXP_NONPOS exp_nonpos_f32
#include "fused_body.h"
#undef REAL
#undef SUF
#undef EXP_NONPOS

#define REAL double
#define SUF f64
#define EXP_NONPOS exp_nonpos_f64
#include "fused_body.h"
#undef REAL
#undef SUF
#undef EXP_NONPOS
