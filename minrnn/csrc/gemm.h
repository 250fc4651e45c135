/* Small dense products for the fused layer route (fused.c, `lin` jobs): the layer's matmuls run inside each
 * (batch row) job on a chunk of time steps that stays in cache, next to the gate math and the scan.
 *
 *   gemm_SUF(M, N, K, A, sai, sak, B, C, ldc, acc):
 *       C[i * ldc + j] = (acc ? C[i * ldc + j] : 0) + sum_k A[i * sai + k * sak] * B(k, j)
 *   for i < M, j < N, k < K: A is read through any two strides (so A or its transpose), C is row-major, and B is
 *   packed by pack_SUF into panels of GEMM_NR columns, each K x GEMM_NR contiguous (zero-padded past N): one panel
 *   is walked by unit steps instead of one cache line (and often one page) per k, measured 12-15% faster.
 *
 * float with AVX2 + FMA: a 6 x 16 register tile (12 accumulators, BLIS-style) walked over the panels of B, each
 * panel reused by every 6-row strip of A; columns past N are masked at the store.
 * Elsewhere (double, or a CPU without AVX2/FMA): plain loops, the slow twin the fast one is tested against. */
#define GEMM_NR 16

/* Number of elements of a packed K x N matrix. */
static inline int64_t packed_size(int64_t K, int64_t N) { return (N + GEMM_NR - 1) / GEMM_NR * GEMM_NR * K; }

/* Pack B(k, j) = S[k * sk + j * sj] (k < K, j < N) into panels (see above). */
#define PACK(NAME, REAL)                                                                                    \
static void NAME(int64_t K, int64_t N, const REAL* S, int64_t sk, int64_t sj, REAL* Bp) {                    \
    for (int64_t j0 = 0; j0 < N; j0 += GEMM_NR, Bp += K * GEMM_NR) {                                        \
        if (sj == 1 && j0 + GEMM_NR <= N) {   /* whole rows of the panel are contiguous in S */              \
            for (int64_t k = 0; k < K; k++) memcpy(Bp + k * GEMM_NR, S + k * sk + j0, GEMM_NR * sizeof(REAL)); \
            continue;                                                                                       \
        }                                                                                                   \
        for (int64_t k = 0; k < K; k++)                                                                     \
            for (int64_t c = 0; c < GEMM_NR; c++)                                                           \
                Bp[k * GEMM_NR + c] = j0 + c < N ? S[k * sk + (j0 + c) * sj] : (REAL)0;                     \
    }                                                                                                       \
}
PACK(pack_f32, float)
PACK(pack_f64, double)
#undef PACK

#define GEMM_REF(NAME, REAL)                                                                                \
static void NAME(int64_t M, int64_t N, int64_t K, const REAL* A, int64_t sai, int64_t sak, const REAL* Bp,     \
                 REAL* C, int64_t ldc, int acc) {                                                              \
    for (int64_t i = 0; i < M; i++)                                                                            \
        for (int64_t j = 0; j < N; j++) {                                                                      \
            const REAL* b = Bp + j / GEMM_NR * K * GEMM_NR + j % GEMM_NR;                                      \
            REAL s = acc ? C[i * ldc + j] : (REAL)0;                                                           \
            for (int64_t k = 0; k < K; k++) s += A[i * sai + k * sak] * b[k * GEMM_NR];                        \
            C[i * ldc + j] = s;                                                                                \
        }                                                                                                      \
}
GEMM_REF(gemm_f64, double)

#if defined(__AVX2__) && defined(__FMA__)
#define GEMM_SIMD 1
#define MR 6
#define NR GEMM_NR

/* One MR x NR tile of C (mr <= MR rows, nr <= NR columns) from one packed panel Bp of B; always inlined with a
 * constant `full` (nr == NR). The 12 accumulators are named variables, not an array, so that they stay in
 * registers. */
#define TILE_ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5)
static inline __attribute__((always_inline)) void gemm_tile_f32(
        int full, int64_t K, const float* A, int64_t sai, int64_t sak, const float* Bp, float* C, int64_t ldc,
        int acc, int mr, int nr) {
    /* rows past mr repeat row 0 (valid memory); they are never stored */
#define DECL(i) const int64_t o##i = (i < mr ? i : 0) * sai; __m256 c##i##0 = _mm256_setzero_ps(), c##i##1 = c##i##0;
    TILE_ROWS(DECL)
#undef DECL
    __m256i m0 = _mm256_setzero_si256(), m1 = m0;
    if (!full) {
        const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(nr), lane);
        m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(nr - 8), lane);
    }
    for (int64_t k = 0; k < K; k++) {
        const float* ap = A + k * sak;
        __m256 b0 = _mm256_load_ps(Bp + k * NR), b1 = _mm256_load_ps(Bp + k * NR + 8);
#define FMA_ROW(i) { __m256 a = _mm256_broadcast_ss(ap + o##i);                                              \
                     c##i##0 = _mm256_fmadd_ps(a, b0, c##i##0); c##i##1 = _mm256_fmadd_ps(a, b1, c##i##1); }
        TILE_ROWS(FMA_ROW)
#undef FMA_ROW
    }
#define STORE_ROW(i) if (i < mr) {                                                                          \
        float* cp = C + i * ldc;                                                                            \
        if (full) {                                                                                         \
            if (acc) { c##i##0 = _mm256_add_ps(c##i##0, _mm256_loadu_ps(cp));                               \
                       c##i##1 = _mm256_add_ps(c##i##1, _mm256_loadu_ps(cp + 8)); }                         \
            _mm256_storeu_ps(cp, c##i##0); _mm256_storeu_ps(cp + 8, c##i##1);                               \
        } else {                                                                                            \
            if (acc) { c##i##0 = _mm256_add_ps(c##i##0, _mm256_maskload_ps(cp, m0));                        \
                       c##i##1 = _mm256_add_ps(c##i##1, _mm256_maskload_ps(cp + 8, m1)); }                  \
            _mm256_maskstore_ps(cp, m0, c##i##0); _mm256_maskstore_ps(cp + 8, m1, c##i##1);                 \
        } }
    TILE_ROWS(STORE_ROW)
#undef STORE_ROW
}
#undef TILE_ROWS

static void gemm_f32(int64_t M, int64_t N, int64_t K, const float* A, int64_t sai, int64_t sak, const float* Bp,
                     float* C, int64_t ldc, int acc) {
    for (int64_t j = 0; j < N; j += NR, Bp += K * NR) {
        int nr = N - j < NR ? (int)(N - j) : NR;
        for (int64_t i = 0; i < M; i += MR) {
            int mr = M - i < MR ? (int)(M - i) : MR;
            if (nr == NR) gemm_tile_f32(1, K, A + i * sai, sai, sak, Bp, C + i * ldc + j, ldc, acc, mr, nr);
            else gemm_tile_f32(0, K, A + i * sai, sai, sak, Bp, C + i * ldc + j, ldc, acc, mr, nr);
        }
    }
}
#undef MR
#undef NR
#else
#define GEMM_SIMD 0
GEMM_REF(gemm_f32, float)
#endif
#undef GEMM_REF

/* Whether the float products above are the SIMD ones (the layer uses the fused route only then). */
int minrnn_gemm_simd(void) { return GEMM_SIMD; }
