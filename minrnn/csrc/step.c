/* One generation step of minrnn's SequenceModel (models/block.py) in one call, fp32, for a batch of B rows:
 *   embedding (or input Linear) -> per block: causal depthwise conv window, x += conv;
 *   x += proj(minRNN(norm1(x))); x += fc2(GELU(fc1(norm2(x)))) -> final norm -> head.
 * The minRNN update is the paper's h_t = a_t h_{t-1} + b_t with the same gate math as gates.py:
 *   minGRU:  a = sigmoid(-k_z), b = sigmoid(k_z) c(k_h)
 *   minLSTM: d = softplus(-k_f) - softplus(-k_i), a = sigmoid(-d), b = sigmoid(d) c(k_h)   (normalised)
 *            a = sigmoid(k_f), b = sigmoid(k_i) c(k_h)                                       (unnormalised)
 * with c = g (x + 0.5 for x >= 0, sigmoid(x) below) or the identity.
 * Weights are read in place from the PyTorch parameters (pointer table `P`, nn.Linear layout (out, in)),
 * so nothing is packed and nothing can go stale. States keep the PyTorch layout: conv window (B, k-1, d)
 * and rnn state (1, B, H) per block, read from `sin` and written to `sout` (may alias `sin`).
 * Single-threaded: at batch 1 the whole step is ~0.5 M multiply-adds, less than waking a thread costs. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* cfg[] indices; kept in sync with models/fast_step.py */
enum { C_LAYERS, C_D, C_H, C_HID, C_K, C_LSTM, C_NORMALIZE, C_CAND_G, C_LAYERNORM, C_VOCAB, C_IN, C_OUT,
       C_GELU_TANH, C_N };
/* pointer table: 6 model-level entries, then N_PER_LAYER per block */
enum { P_EMB_W, P_EMB_B, P_NF_W, P_NF_B, P_HEAD_W, P_HEAD_B, P_GLOBAL };
enum { L_CONV_W, L_CONV_B, L_N1_W, L_N1_B, L_CELL_W, L_CELL_B, L_PROJ_W, L_PROJ_B, L_N2_W, L_N2_B,
       L_FC1_W, L_FC1_B, L_FC2_W, L_FC2_B, N_PER_LAYER };

/* Dot product with 16 independent partial sums: the compiler turns the inner loop into vector FMAs. */
static float dot(const float *w, const float *x, int64_t n) {
    float acc[16] = {0};
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int l = 0; l < 16; l++) acc[l] += w[i + l] * x[i + l];
    float s = 0.f;
    for (; i < n; i++) s += w[i] * x[i];
    for (int l = 0; l < 16; l++) s += acc[l];
    return s;
}

/* y (n_out) = W (n_out, n_in) x + bias */
static void linear(const float *W, const float *bias, const float *x, float *y, int64_t n_out, int64_t n_in) {
    for (int64_t o = 0; o < n_out; o++) y[o] = dot(W + o * n_in, x, n_in) + (bias ? bias[o] : 0.f);
}

/* RMSNorm: x / sqrt(mean(x^2) + eps) * w;  LayerNorm: (x - mean) / sqrt(var + eps) * w + b */
static void norm(const float *x, float *y, const float *w, const float *b, float eps, int64_t d, int layernorm) {
    double mean = 0.0, ss = 0.0;
    if (layernorm) {
        for (int64_t i = 0; i < d; i++) mean += x[i];
        mean /= (double)d;
    }
    for (int64_t i = 0; i < d; i++) ss += (x[i] - mean) * (x[i] - mean);
    float r = (float)(1.0 / sqrt(ss / (double)d + (double)eps));
    for (int64_t i = 0; i < d; i++) y[i] = (float)(x[i] - mean) * r * w[i] + (b ? b[i] : 0.f);
}

static inline float sigmoidf_(float x) { return 1.f / (1.f + expf(-x)); }
/* torch.nn.functional.softplus (beta 1, threshold 20) */
static inline float softplusf_(float x) { return x > 20.f ? x : log1pf(expf(x)); }
static inline float cand(float x, int g) { return !g ? x : (x >= 0.f ? x + 0.5f : sigmoidf_(x)); }

static inline float gelu(float x, int tanh_approx) {
    if (tanh_approx) return 0.5f * x * (1.f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
    return 0.5f * x * (1.f + erff(x * 0.7071067811865476f));
}

/* One block on one batch row. x (d) is updated in place; win_in/win_out (k-1, d), h_in/h_out (H). */
static void block(const int64_t *cfg, const float *const *L, const float *eps, float *x, const float *win_in,
                  float *win_out, const float *h_in, float *h_out, float *u, float *kbuf, float *t) {
    const int64_t d = cfg[C_D], H = cfg[C_H], hid = cfg[C_HID], K = cfg[C_K];
    const int ln = (int)cfg[C_LAYERNORM], g = (int)cfg[C_CAND_G];
    if (K) {  /* causal depthwise conv over (window, x); the new window drops the oldest input */
        const float *cw = L[L_CONV_W], *cb = L[L_CONV_B];
        for (int64_t i = 0; i < d; i++) {
            float s = 0.f;
            for (int64_t j = 0; j < K - 1; j++) s += win_in[j * d + i] * cw[i * K + j];
            u[i] = s + x[i] * cw[i * K + K - 1] + cb[i];
        }
        memmove(win_out, win_in + d, (size_t)((K - 2) * d) * sizeof(float));
        memcpy(win_out + (K - 2) * d, x, (size_t)d * sizeof(float));
        for (int64_t i = 0; i < d; i++) x[i] += u[i];
    }
    norm(x, u, L[L_N1_W], L[L_N1_B], eps[0], d, ln);
    linear(L[L_CELL_W], L[L_CELL_B], u, kbuf, (cfg[C_LSTM] ? 3 : 2) * H, d);  /* gate pre-activations */
    for (int64_t j = 0; j < H; j++) {
        float a, b;
        if (!cfg[C_LSTM]) {
            const float kz = kbuf[j];
            a = sigmoidf_(-kz);
            b = sigmoidf_(kz) * cand(kbuf[H + j], g);
        } else if (cfg[C_NORMALIZE]) {
            const float dd = softplusf_(-kbuf[j]) - softplusf_(-kbuf[H + j]);
            a = sigmoidf_(-dd);
            b = sigmoidf_(dd) * cand(kbuf[2 * H + j], g);
        } else {
            a = sigmoidf_(kbuf[j]);
            b = sigmoidf_(kbuf[H + j]) * cand(kbuf[2 * H + j], g);
        }
        h_out[j] = a * h_in[j] + b;
    }
    linear(L[L_PROJ_W], L[L_PROJ_B], h_out, u, d, H);
    for (int64_t i = 0; i < d; i++) x[i] += u[i];
    if (hid) {
        norm(x, u, L[L_N2_W], L[L_N2_B], eps[1], d, ln);
        linear(L[L_FC1_W], L[L_FC1_B], u, t, hid, d);
        for (int64_t i = 0; i < hid; i++) t[i] = gelu(t[i], (int)cfg[C_GELU_TANH]);
        linear(L[L_FC2_W], L[L_FC2_B], t, u, d, hid);
        for (int64_t i = 0; i < d; i++) x[i] += u[i];
    }
}

/* tok (B) int64 when cfg[C_VOCAB] > 0, else xin (B, C_IN); sin/sout: 2 pointers per block (window or NULL,
 * h); out (B, C_OUT). eps: 2 per block (norm1, norm2), then the final norm's.
 * Returns 0, or 1 + b for the first row b whose token is out of range, or -1 if out of memory. */
int minrnn_model_step_f32(const int64_t *cfg, const float *const *P, const float *eps, const int64_t *tok,
                          const float *xin, const float *const *sin, float *const *sout, float *out, int64_t B) {
    const int64_t nl = cfg[C_LAYERS], d = cfg[C_D], H = cfg[C_H], hid = cfg[C_HID], K = cfg[C_K];
    const int64_t V = cfg[C_VOCAB], nin = cfg[C_IN], nout = cfg[C_OUT];
    for (int64_t b = 0; b < B && V; b++)
        if (tok[b] < 0 || tok[b] >= V) return (int)(1 + b);
    int64_t kmax = 3 * H > hid ? 3 * H : hid;
    float *buf = malloc((size_t)(2 * d + 2 * kmax) * sizeof(float));
    if (!buf) return -1;
    float *x = buf, *u = buf + d, *kbuf = buf + 2 * d, *t = kbuf + kmax;
    for (int64_t b = 0; b < B; b++) {
        if (V) memcpy(x, P[P_EMB_W] + tok[b] * d, (size_t)d * sizeof(float));
        else linear(P[P_EMB_W], P[P_EMB_B], xin + b * nin, x, d, nin);
        for (int64_t l = 0; l < nl; l++) {
            const float *wi = K ? sin[2 * l] + b * (K - 1) * d : NULL;
            float *wo = K ? sout[2 * l] + b * (K - 1) * d : NULL;
            block(cfg, P + P_GLOBAL + l * N_PER_LAYER, eps + 2 * l, x, wi, wo, sin[2 * l + 1] + b * H,
                  sout[2 * l + 1] + b * H, u, kbuf, t);
        }
        norm(x, u, P[P_NF_W], P[P_NF_B], eps[2 * nl], d, (int)cfg[C_LAYERNORM]);
        linear(P[P_HEAD_W], P[P_HEAD_B], u, out + b * nout, nout, d);
    }
    free(buf);
    return 0;
}
