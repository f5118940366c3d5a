/* The DTMF receiver's innermost loops (dtmf_kernels.pyx), in C so that the compiler makes an AVX2 + FMA
 * clone next to the baseline one and picks between them when the module loads (GCC's target_clones, on
 * x86-64 Linux): about twice as fast where the CPU has them, and the same code everywhere else. */
#ifndef IVRSIM_DTMF_SIMD_H
#define IVRSIM_DTMF_SIMD_H

#include <stddef.h>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define IVRSIM_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define IVRSIM_CLONES
#endif

/* The DFT terms of `length` samples at eight frequencies: `basis` is length x 16 (cos and -sin of each
 * frequency, interleaved); `out` gets 16 floats (real and imaginary parts). Each sample scales a basis row
 * into eight-wide sums (one AVX register, two SSE ones), even and odd samples into separate sums so that
 * consecutive multiply-adds do not wait for each other. */
#if defined(__GNUC__)
typedef float ivrsim_v8 __attribute__((vector_size(32)));

IVRSIM_CLONES static void ivrsim_dft_terms(const float *samples, ptrdiff_t length, const float *basis, float *out)
{
    ivrsim_v8 even_lo = {0}, even_hi = {0}, odd_lo = {0}, odd_hi = {0}, row_lo, row_hi;
    ptrdiff_t n = 0;
    for (; n + 2 <= length; n += 2) {
        __builtin_memcpy(&row_lo, basis + 16 * n, sizeof row_lo);
        __builtin_memcpy(&row_hi, basis + 16 * n + 8, sizeof row_hi);
        even_lo += samples[n] * row_lo;
        even_hi += samples[n] * row_hi;
        __builtin_memcpy(&row_lo, basis + 16 * n + 16, sizeof row_lo);
        __builtin_memcpy(&row_hi, basis + 16 * n + 24, sizeof row_hi);
        odd_lo += samples[n + 1] * row_lo;
        odd_hi += samples[n + 1] * row_hi;
    }
    if (n < length) {
        __builtin_memcpy(&row_lo, basis + 16 * n, sizeof row_lo);
        __builtin_memcpy(&row_hi, basis + 16 * n + 8, sizeof row_hi);
        even_lo += samples[n] * row_lo;
        even_hi += samples[n] * row_hi;
    }
    even_lo += odd_lo;
    even_hi += odd_hi;
    __builtin_memcpy(out, &even_lo, sizeof even_lo);
    __builtin_memcpy(out + 8, &even_hi, sizeof even_hi);
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

#endif
