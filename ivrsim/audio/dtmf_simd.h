/* The DTMF receiver's innermost loops (dtmf_kernels.pyx), in C so that the compiler makes an AVX2 + FMA
 * clone next to the baseline one and picks between them when the module loads (GCC's target_clones, on
 * x86-64 Linux): about twice as fast where the CPU has them, and the same code everywhere else. */
#ifndef IVRSIM_DTMF_SIMD_H
#define IVRSIM_DTMF_SIMD_H

#include <math.h>
#include <stddef.h>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define IVRSIM_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define IVRSIM_CLONES
#endif

/* For loops that must give the same numbers as the compiled Python around them on every CPU: no fused
 * multiply-add (GCC would contract a * b + c in the AVX2 + FMA clone, rounding once instead of twice). */
#if defined(__GNUC__) && !defined(__clang__)
#define IVRSIM_EXACT __attribute__((optimize("fp-contract=off")))
#else
#define IVRSIM_EXACT
#endif

/* The DFT terms of `length` samples at eight frequencies: `basis` is length x 16 (cos and -sin of each
 * frequency, interleaved); `out` gets 16 floats (real and imaginary parts). Each sample scales a basis row
 * into eight-wide sums (one AVX register, two SSE ones), even and odd samples into separate sums so that
 * consecutive multiply-adds do not wait for each other. */
#if defined(__GNUC__)
typedef float ivrsim_v8 __attribute__((vector_size(32)));

/* The sums for `a` into `out_a`, and with `two` those for `b` into `out_b` as well, each formed in the same
 * order either way: two stretches' sums do not wait for each other (alone, the four chains of dependent
 * multiply-adds leave half the CPU's adders idle). Inlined, `two` a constant, into each entry below. */
static inline __attribute__((always_inline)) void ivrsim_dft_sums(const float *a, const float *b, ptrdiff_t length,
                                                                  const float *basis, float *out_a, float *out_b,
                                                                  const int two)
{
    ivrsim_v8 a_even_lo = {0}, a_even_hi = {0}, a_odd_lo = {0}, a_odd_hi = {0};
    ivrsim_v8 b_even_lo = {0}, b_even_hi = {0}, b_odd_lo = {0}, b_odd_hi = {0}, row_lo, row_hi;
    ptrdiff_t n = 0;
    for (; n + 2 <= length; n += 2) {
        __builtin_memcpy(&row_lo, basis + 16 * n, sizeof row_lo);
        __builtin_memcpy(&row_hi, basis + 16 * n + 8, sizeof row_hi);
        a_even_lo += a[n] * row_lo;
        a_even_hi += a[n] * row_hi;
        if (two) {
            b_even_lo += b[n] * row_lo;
            b_even_hi += b[n] * row_hi;
        }
        __builtin_memcpy(&row_lo, basis + 16 * n + 16, sizeof row_lo);
        __builtin_memcpy(&row_hi, basis + 16 * n + 24, sizeof row_hi);
        a_odd_lo += a[n + 1] * row_lo;
        a_odd_hi += a[n + 1] * row_hi;
        if (two) {
            b_odd_lo += b[n + 1] * row_lo;
            b_odd_hi += b[n + 1] * row_hi;
        }
    }
    if (n < length) { /* an odd length's last sample: an even one */
        __builtin_memcpy(&row_lo, basis + 16 * n, sizeof row_lo);
        __builtin_memcpy(&row_hi, basis + 16 * n + 8, sizeof row_hi);
        a_even_lo += a[n] * row_lo;
        a_even_hi += a[n] * row_hi;
        if (two) {
            b_even_lo += b[n] * row_lo;
            b_even_hi += b[n] * row_hi;
        }
    }
    a_even_lo += a_odd_lo;
    a_even_hi += a_odd_hi;
    __builtin_memcpy(out_a, &a_even_lo, sizeof a_even_lo);
    __builtin_memcpy(out_a + 8, &a_even_hi, sizeof a_even_hi);
    if (two) {
        b_even_lo += b_odd_lo;
        b_even_hi += b_odd_hi;
        __builtin_memcpy(out_b, &b_even_lo, sizeof b_even_lo);
        __builtin_memcpy(out_b + 8, &b_even_hi, sizeof b_even_hi);
    }
}

IVRSIM_CLONES static void ivrsim_dft_terms(const float *samples, ptrdiff_t length, const float *basis, float *out)
{
    ivrsim_dft_sums(samples, samples, length, basis, out, out, 0);
}

/* ivrsim_dft_terms of two stretches at once: the same terms, in about the time of one. */
IVRSIM_CLONES static void ivrsim_dft_terms_pair(const float *a, const float *b, ptrdiff_t length, const float *basis,
                                               float *out_a, float *out_b)
{
    ivrsim_dft_sums(a, b, length, basis, out_a, out_b, 1);
}
#else
static void ivrsim_dft_terms(const float *samples, ptrdiff_t length, const float *basis, float *out)
{
    float acc[16] = {0};
    for (ptrdiff_t n = 0; n < length; n++)
        for (int k = 0; k < 16; k++)
            acc[k] += samples[n] * basis[16 * n + k];
    for (int k = 0; k < 16; k++)
        out[k] = acc[k];
}

static void ivrsim_dft_terms_pair(const float *a, const float *b, ptrdiff_t length, const float *basis, float *out_a,
                                  float *out_b)
{
    ivrsim_dft_terms(a, length, basis, out_a);
    ivrsim_dft_terms(b, length, basis, out_b);
}
#endif

/* The sum of squares of `length` samples, in double, over eight running sums (no chain of dependent adds). */
IVRSIM_CLONES static double ivrsim_energy(const float *samples, ptrdiff_t length)
{
    double acc[8] = {0};
    ptrdiff_t n = 0;
    for (; n + 8 <= length; n += 8)
        for (int k = 0; k < 8; k++)
            acc[k] += (double)samples[n + k] * samples[n + k];
    double total = 0.0;
    for (; n < length; n++)
        total += (double)samples[n] * samples[n];
    for (int k = 0; k < 8; k++)
        total += acc[k];
    return total;
}

/* Power spectrum and its prefix sums: `bins` complex values (`spectrum`, real and imaginary interleaved) give
 * `power[i]` and `prefix[i + 1]` (prefix[0] = 0, in double). Four bins at a time: their running sums are
 * formed apart from the total, which then takes one dependent add per four bins instead of one per bin. */
IVRSIM_CLONES static void ivrsim_power_prefix(const float *spectrum, ptrdiff_t bins, float *power, double *prefix)
{
    double total = 0.0;
    ptrdiff_t i = 0;
    prefix[0] = 0.0;
    for (; i + 4 <= bins; i += 4) {
        float p0 = spectrum[2 * i] * spectrum[2 * i] + spectrum[2 * i + 1] * spectrum[2 * i + 1];
        float p1 = spectrum[2 * i + 2] * spectrum[2 * i + 2] + spectrum[2 * i + 3] * spectrum[2 * i + 3];
        float p2 = spectrum[2 * i + 4] * spectrum[2 * i + 4] + spectrum[2 * i + 5] * spectrum[2 * i + 5];
        float p3 = spectrum[2 * i + 6] * spectrum[2 * i + 6] + spectrum[2 * i + 7] * spectrum[2 * i + 7];
        double s1 = p0, s2 = s1 + p1, s3 = s2 + p2, s4 = s3 + p3;
        power[i] = p0;
        power[i + 1] = p1;
        power[i + 2] = p2;
        power[i + 3] = p3;
        prefix[i + 1] = total + s1;
        prefix[i + 2] = total + s2;
        prefix[i + 3] = total + s3;
        prefix[i + 4] = total + s4;
        total += s4;
    }
    for (; i < bins; i++) {
        power[i] = spectrum[2 * i] * spectrum[2 * i] + spectrum[2 * i + 1] * spectrum[2 * i + 1];
        total += power[i];
        prefix[i + 1] = total;
    }
}

/* `out[n] = samples[n] * window[n]` for `length` samples. */
IVRSIM_CLONES static void ivrsim_windowed(const float *samples, const float *window, ptrdiff_t length, float *out)
{
    for (ptrdiff_t n = 0; n < length; n++)
        out[n] = samples[n] * window[n];
}

/* The harmonic comb's constants (SegmentJudge.purity tells the rule): the band the other harmonics are
 * looked for in, the lowest fundamental, how close both tones must fit (percent: close, wide), the highest
 * row harmonic tried, and the call-progress tones whose lobes are left out. */
typedef struct {
    double comb_lo_hz, comb_hi_hz, min_f0_hz, match_pct, wide_match_pct, call_progress_top_hz;
    const double *call_progress_hz;
    ptrdiff_t call_progress_count, max_row_harmonic;
} ivrsim_comb_limits;

/* The power of the bins whose centres lie in [low_hz, high_hz], from prefix sums (prefix[i]: the power of
 * bins 0 .. i - 1, of `bins`), and how many bins that is: two lookups, not a pass over the band. The edges
 * come in bins: low_bins = low_hz / bin_hz, high_bins = high_hz / bin_hz. */
static inline double ivrsim_band_power(const double *prefix, ptrdiff_t bins, double low_bins, double high_bins,
                                       ptrdiff_t *count)
{
    double a = ceil(low_bins), b = floor(high_bins) + 1.0;
    a = 0.0 > a ? 0.0 : a;
    a = (double)bins < a ? (double)bins : a;
    b = 0.0 > b ? 0.0 : b;
    b = (double)bins < b ? (double)bins : b;
    ptrdiff_t first = (ptrdiff_t)a, last = (ptrdiff_t)b;
    if (last < first)
        last = first;
    *count = last - first;
    return prefix[last] - prefix[first];
}

/* The harmonic comb of one spectrum (prefix sums of `bins` bins `bin_hz` apart; resolution `res_hz`, tone
 * lobe `lobe_hz`) for the pair row_hz, col_hz: `out` = the power and the contrast of the comb of the closely
 * fitting fundamental whose other harmonics stand out most (ties: the higher), then the same over the
 * widely fitting ones. The operations, in their order, are those of the Cython it replaced (rounding
 * to nearest, no fused multiply-add): the same numbers from either clone. */
IVRSIM_CLONES IVRSIM_EXACT static void ivrsim_comb(const double *prefix, ptrdiff_t bins, double bin_hz, double res_hz,
                                                   double lobe_hz, double row_hz, double col_hz,
                                                   const ivrsim_comb_limits *limits, double *out)
{
    double best_contrast = 0.0, best_power = 0.0, wide_contrast = 0.0, wide_power = 0.0;
    int found = 0, wide_found = 0;
    ptrdiff_t numbers = (ptrdiff_t)floor(limits->comb_hi_hz / limits->min_f0_hz);
    for (ptrdiff_t p = 1; p <= limits->max_row_harmonic; p++) {
        double q = rint(col_hz * (double)p / row_hz);
        if (q <= (double)p)
            continue;
        double f0 = 0.5 * (row_hz / (double)p + col_hz / q);
        double miss = fabs(row_hz / ((double)p * f0) - 1.0) * 100.0;
        if (!(f0 >= limits->min_f0_hz && miss <= limits->wide_match_pct))
            continue;
        double on_power = 0.0, off_power = 0.0;
        ptrdiff_t on_bins = 0, off_bins = 0, here;
        /* Only the multiples whose own or halfway frequency can lie in the comb band. */
        ptrdiff_t from = (ptrdiff_t)floor(limits->comb_lo_hz / f0 - 0.5) - 1;
        ptrdiff_t to = (ptrdiff_t)floor(limits->comb_hi_hz / f0) + 1;
        from = from < 1 ? 1 : from;
        to = to > numbers ? numbers : to;
        for (ptrdiff_t number = from; number <= to; number++) {
            double on_hz = (double)number * f0, off_hz = ((double)number + 0.5) * f0;
            int usable_on = limits->comb_lo_hz <= on_hz && on_hz <= limits->comb_hi_hz && number != p && (double)number != q;
            int usable_off = limits->comb_lo_hz <= off_hz && off_hz <= limits->comb_hi_hz;
            if (on_hz - lobe_hz < limits->call_progress_top_hz || off_hz - lobe_hz < limits->call_progress_top_hz) {
                for (ptrdiff_t i = 0; i < limits->call_progress_count; i++) {
                    if (fabs(on_hz - limits->call_progress_hz[i]) < lobe_hz)
                        usable_on = 0;
                    if (fabs(off_hz - limits->call_progress_hz[i]) < lobe_hz)
                        usable_off = 0;
                }
            }
            /* The four band edges in bins, divided at once (one packed division where the CPU has it). */
#if defined(__GNUC__)
            typedef double ivrsim_v4d __attribute__((vector_size(32)));
            ivrsim_v4d edges = {on_hz - 0.5 * res_hz, on_hz + 0.5 * res_hz, off_hz - 0.5 * res_hz, off_hz + 0.5 * res_hz};
            edges = edges / bin_hz;
#else
            double edges[4] = {on_hz - 0.5 * res_hz, on_hz + 0.5 * res_hz, off_hz - 0.5 * res_hz, off_hz + 0.5 * res_hz};
            for (int e = 0; e < 4; e++)
                edges[e] = edges[e] / bin_hz;
#endif
            if (usable_on) {
                on_power += ivrsim_band_power(prefix, bins, edges[0], edges[1], &here);
                on_bins += here;
            }
            if (usable_off) {
                off_power += ivrsim_band_power(prefix, bins, edges[2], edges[3], &here);
                off_bins += here;
            }
        }
        double off_mean = off_power / (double)(off_bins > 1 ? off_bins : 1);
        double contrast = (on_power / (double)(on_bins > 1 ? on_bins : 1)) / (1e-30 > off_mean ? 1e-30 : off_mean);
        if (miss > limits->match_pct) {
            if (!wide_found || contrast >= wide_contrast) {
                wide_contrast = contrast;
                wide_power = on_power;
                wide_found = 1;
            }
            continue;
        }
        if (!found || contrast >= best_contrast) {
            best_contrast = contrast;
            best_power = on_power;
            found = 1;
        }
    }
    out[0] = best_power;
    out[1] = best_contrast;
    out[2] = wide_power;
    out[3] = wide_contrast;
}

/* Stage 3's thresholds, scaled to raw window energies (dtmf_kernels.WindowThresholds). */
typedef struct {
    double min_tone_energy, normal_twist, reverse_twist, relative_peak, share_scale, min_window_energy;
} ivrsim_window_limits;

/* Stage 3 for one window: its digit (row * 4 + column) or -1. `earlier` and `later` are the DFT terms of its
 * two half-blocks at the eight frequencies (real and imaginary interleaved), `rotation` each frequency's turn
 * over a half-block, `energy` the window's. The window's term at each frequency is earlier + later *
 * rotation, in double, rounded as the C99 complex product of the Cython it replaced (no fused multiply-add). */
IVRSIM_CLONES IVRSIM_EXACT static signed char ivrsim_classify(const float *earlier, const float *later, double energy,
                                                             const float *rotation, const ivrsim_window_limits *limits)
{
    double power[8], top[2], second[2];
    int best[2];
    if (energy < limits->min_window_energy)
        return -1;
    for (int k = 0; k < 8; k++) {
        double a = later[2 * k], b = later[2 * k + 1], c = rotation[2 * k], d = rotation[2 * k + 1];
        double re = (double)earlier[2 * k] + (a * c - b * d), im = (double)earlier[2 * k + 1] + (a * d + b * c);
        power[k] = re * re + im * im;
    }
    /* Each group's strongest (the first, where two are equal) and the strongest of the others, as maxima of
     * pairs rather than a chain of branches on the signal (a mispredicted branch costs more than the
     * arithmetic): the picks of "if v > top: second = top, top = v; elif v > second: second = v" over
     * powers, which are never negative. */
    for (int g = 0; g < 2; g++) {
        const double *v = power + 4 * g;
        double t01 = v[1] > v[0] ? v[1] : v[0], t23 = v[3] > v[2] ? v[3] : v[2];
        double t = t23 > t01 ? t23 : t01;
        int b = v[0] == t ? 0 : v[1] == t ? 1 : v[2] == t ? 2 : 3;
        double o0 = b == 0 ? -1.0 : v[0], o1 = b == 1 ? -1.0 : v[1], o2 = b == 2 ? -1.0 : v[2], o3 = b == 3 ? -1.0 : v[3];
        double s01 = o1 > o0 ? o1 : o0, s23 = o3 > o2 ? o3 : o2;
        top[g] = t;
        second[g] = s23 > s01 ? s23 : s01;
        best[g] = b;
    }
    int digit = (top[0] >= limits->min_tone_energy) & (top[1] >= limits->min_tone_energy)
                & (top[0] <= top[1] * limits->normal_twist) & (top[1] <= top[0] * limits->reverse_twist)
                & (second[0] * limits->relative_peak <= top[0]) & (second[1] * limits->relative_peak <= top[1])
                & (top[0] + top[1] >= limits->share_scale * energy);
    if (digit)
        return (signed char)(best[0] * 4 + best[1]);
    return -1;
}

#endif
