/* One update of NeuronStats in one pass over the activations (see fused.py, which builds and calls this).
 *
 * x: [rows, cols] float32, row stride ld (columns contiguous). The work is cut into blocks of `step` rows
 * (a chunk) by `group` columns, shared between `threads` OpenMP threads (torch's own runtime where the
 * library links the same libgomp). Per block, all in float32 as torch computes them:
 *   pass 1: the chunk's sum, minimum and maximum per column; centre = sum / rows in chunk;
 *   pass 2: sums of x - centre, (x - centre)^2, |x|, sqrt|x| and x > 0;
 *   pass 3: the histogram bin of every value, (x - lo) * scale clamped to [0, bins - 1] and truncated,
 *           counted in the thread's int32 counters of its current column group.
 * Outputs: centre, low, high [chunks, cols]; sums [chunks, 5, cols] (passes 1-2; skipped when centre is
 * NULL); counts [cols * bins] int64, added to (pass 3; skipped when counts is NULL).
 * A NaN makes the block's sum NaN, and then its minimum and maximum NaN, so the caller's finiteness
 * check sees it; a NaN's bin is 0 (never out of range).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void moments(const float *restrict x, int64_t m, int64_t w, int64_t ld, float *restrict centre,
                    float *restrict sums, int64_t sum_stride, float *restrict low, float *restrict high) {
    float acc[w], s0[w], s1[w], s2[w], s3[w], s4[w];
    for (int64_t j = 0; j < w; j++) {
        acc[j] = 0.0f;
        low[j] = high[j] = x[j];
        s0[j] = s1[j] = s2[j] = s3[j] = s4[j] = 0.0f;
    }
    for (int64_t t = 0; t < m; t++) {
        const float *restrict row = x + t * ld;
        for (int64_t j = 0; j < w; j++) {
            float v = row[j];
            acc[j] += v;
            low[j] = v < low[j] ? v : low[j];
            high[j] = v > high[j] ? v : high[j];
        }
    }
    for (int64_t j = 0; j < w; j++) {
        centre[j] = acc[j] / (float)m;
        if (isnan(acc[j])) low[j] = high[j] = NAN;
    }
    for (int64_t t = 0; t < m; t++) {
        const float *restrict row = x + t * ld;
        for (int64_t j = 0; j < w; j++) {
            float v = row[j], d = v - centre[j], a = fabsf(v);
            s0[j] += d;
            s1[j] += d * d;
            s2[j] += a;
            s3[j] += sqrtf(a);
            s4[j] += v > 0.0f ? 1.0f : 0.0f;
        }
    }
    for (int64_t j = 0; j < w; j++) {
        sums[j] = s0[j];
        sums[sum_stride + j] = s1[j];
        sums[2 * sum_stride + j] = s2[j];
        sums[3 * sum_stride + j] = s3[j];
        sums[4 * sum_stride + j] = s4[j];
    }
}

static void histogram(const float *restrict x, int64_t m, int64_t w, int64_t ld, const float *restrict lo,
                      const float *restrict scale, int32_t bins, int32_t *restrict local) {
    int32_t index[w];
    const float top = (float)(bins - 1);
    for (int64_t t = 0; t < m; t++) {
        const float *restrict row = x + t * ld;
        for (int64_t j = 0; j < w; j++) {
            float p = (row[j] - lo[j]) * scale[j];
            p = p > 0.0f ? p : 0.0f;
            p = p < top ? p : top;
            index[j] = (int32_t)p + (int32_t)j * bins;
        }
        for (int64_t j = 0; j < w; j++) local[index[j]]++;
    }
}

static void flush(const int32_t *local, int64_t n, int64_t *counts) {
    for (int64_t k = 0; k < n; k++) {
        if (local[k]) {
#pragma omp atomic
            counts[k] += local[k];
        }
    }
}

/* Returns 0, or 1 where a thread could not allocate its counters (then the outputs are incomplete). */
int pp_update(const float *x, int64_t rows, int64_t cols, int64_t ld, int64_t step, int64_t group, int threads,
              float *centre, float *sums, float *low, float *high, const float *lo, const float *scale,
              int32_t bins, int64_t *counts) {
    int64_t chunks = (rows + step - 1) / step, groups = (cols + group - 1) / group;
    int failed = 0;
#pragma omp parallel num_threads(threads)
    {
        int32_t *local = counts ? calloc((size_t)(group * bins), sizeof(int32_t)) : NULL;
        int64_t current = -1, width = 0;  /* the column group whose counts `local` holds, and its width */
        if (counts && !local) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(static)
        for (int64_t item = 0; item < groups * chunks; item++) {  /* group-major: a thread's items share groups */
            if (counts && !local) continue;  /* every thread must still reach the end of the loop */
            int64_t g = item / chunks, k = item % chunks;
            int64_t c0 = g * group, w = cols - c0 < group ? cols - c0 : group;
            int64_t r0 = k * step, m = rows - r0 < step ? rows - r0 : step;
            const float *block = x + r0 * ld + c0;
            if (centre)
                moments(block, m, w, ld, centre + k * cols + c0, sums + k * 5 * cols + c0, cols,
                        low + k * cols + c0, high + k * cols + c0);
            if (counts) {
                if (g != current) {
                    if (current >= 0) flush(local, width * bins, counts + current * group * bins);
                    memset(local, 0, (size_t)(w * bins) * sizeof(int32_t));
                    current = g;
                    width = w;
                }
                histogram(block, m, w, ld, lo + c0, scale + c0, bins, local);
            }
        }
        if (current >= 0) flush(local, width * bins, counts + current * group * bins);
        free(local);
    }
    return failed;
}
