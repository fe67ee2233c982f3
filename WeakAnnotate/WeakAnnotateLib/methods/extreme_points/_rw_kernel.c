/* Fused random-walker kernel: edge weights and the Jacobi-preconditioned conjugate gradient on a 6-connected
 * stencil, in float32 with double accumulators, parallel with OpenMP.
 *
 * Why C: the numpy solver needs ~24 array passes per CG iteration; here one iteration is three passes
 * (stencil + dot, update + two dots, direction), which is what bounds a memory-bound solve.
 * Called through ctypes (no Python C-API, so no Python or numpy headers are needed to build it); see
 * random_walker.py for the layout. All arrays are C-contiguous float32 on a grid padded by one voxel on
 * every side: the padding layer has zero weights, is never an unknown and is never written, so the stencil
 * needs no bounds checks.
 *
 * Conventions (padded shape nz, ny, nx; v = (k*ny + j)*nx + i):
 *   wz[v] = weight of the edge v -- v + ny*nx (0 where that neighbour is padding), likewise wy (v -- v + nx)
 *   and wx (v -- v + 1);
 *   inv_d[v] = 1 / degree on unknowns, 0 on seeds and padding (it doubles as the unknowns' mask);
 *   x, p are 0 on seeds (x0 is masked by the caller), so A p at an unknown is sum_n w_n (p_v - p_n).
 *
 * Build: setuptools Extension "WeakAnnotateLib._rw_kernel" (-O3 -fopenmp); it exports plain C symbols.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(_WIN32)
#define EXPORT __declspec(dllexport)
#else
#define EXPORT __attribute__((visibility("default")))
#endif

/* Not a Python module: it is loaded with ctypes, never imported. The PyInit symbol only satisfies linkers
 * that insist on exporting it (MSVC); importing the file raises an error instead of loading it. */
EXPORT void *PyInit__rw_kernel(void) { return NULL; }

/* 2: rw_cg_list (CG over a list of unknowns) and geo_sweeps (geodesic distance); 3: rw_list_setup. */
EXPORT int rw_kernel_version(void) { return 3; }

/* Below this many voxels a parallel region costs more than it saves (a PET lesion's box: ~10k voxels). */
#define PAR_MIN 65536

EXPORT int rw_kernel_threads(void) {
#ifdef _OPENMP
    int n = 1;
#pragma omp parallel
    {
#pragma omp single
        n = omp_get_num_threads();
    }
    return n;
#else
    return 1;
#endif
}

/* Edge weights exp(scale_axis * (I_v - I_n)^2) + eps from an unpadded image (mz, my, mx) into padded
 * weight arrays (mz+2, my+2, mx+2) that the caller zeroed. scale_axis = -beta / (10 std spacing_axis^2). */
EXPORT void rw_edge_weights(int64_t mz, int64_t my, int64_t mx, const float *image, float scale_z, float scale_y,
                            float scale_x, float eps, float *wz, float *wy, float *wx) {
    const int64_t py = my + 2, px = mx + 2;
#pragma omp parallel for schedule(static) if (mz * my * mx > PAR_MIN)
    for (int64_t k = 0; k < mz; k++) {
        for (int64_t j = 0; j < my; j++) {
            const float *row = image + (k * my + j) * mx;
            const int64_t v0 = ((k + 1) * py + (j + 1)) * px + 1;
            if (k + 1 < mz) {
                const float *nrow = row + my * mx;
                for (int64_t i = 0; i < mx; i++) {
                    float d = nrow[i] - row[i];
                    wz[v0 + i] = expf(scale_z * d * d) + eps;
                }
            }
            if (j + 1 < my) {
                const float *nrow = row + mx;
                for (int64_t i = 0; i < mx; i++) {
                    float d = nrow[i] - row[i];
                    wy[v0 + i] = expf(scale_y * d * d) + eps;
                }
            }
            for (int64_t i = 0; i + 1 < mx; i++) {
                float d = row[i + 1] - row[i];
                wx[v0 + i] = expf(scale_x * d * d) + eps;
            }
        }
    }
}

/* inv_d = 1/(degree + gamma) on unknowns (0 elsewhere) and b = sum of weights to foreground seeds on unknowns.
 * label (padded shape, uint8): 0 unknown, 1 foreground seed, 2 background seed; padding must be 2. */
EXPORT void rw_setup(int64_t nz, int64_t ny, int64_t nx, const float *wz, const float *wy, const float *wx,
                     const uint8_t *label, float gamma, float *inv_d, float *b) {
    const int64_t sz = ny * nx, sy = nx;
#pragma omp parallel for schedule(static) if (nz * ny * nx > PAR_MIN)
    for (int64_t k = 1; k < nz - 1; k++) {
        for (int64_t j = 1; j < ny - 1; j++) {
            const int64_t v0 = (k * ny + j) * nx;
            for (int64_t i = 1; i < nx - 1; i++) {
                const int64_t v = v0 + i;
                if (label[v] != 0) {
                    inv_d[v] = 0.0f;
                    b[v] = 0.0f;
                    continue;
                }
                const float w[6] = {wz[v], wz[v - sz], wy[v], wy[v - sy], wx[v], wx[v - 1]};
                const int64_t n[6] = {v + sz, v - sz, v + sy, v - sy, v + 1, v - 1};
                float deg = 0.0f, rhs = 0.0f;
                for (int q = 0; q < 6; q++) {
                    deg += w[q];
                    if (label[n[q]] == 1) rhs += w[q];
                }
                inv_d[v] = deg + gamma > 0.0f ? 1.0f / (deg + gamma) : 0.0f;
                b[v] = rhs;
            }
        }
    }
}

/* out = A p on the interior (garbage-free on unknowns; on seeds it is not used, see rw_cg). Returns p . out. */
static double apply_dot(int64_t nz, int64_t ny, int64_t nx, const float *wz, const float *wy, const float *wx,
                        float gamma, const float *p, float *out) {
    const int64_t sz = ny * nx, sy = nx;
    double dot = 0.0;
#pragma omp parallel for schedule(static) reduction(+ : dot) if (nz * ny * nx > PAR_MIN)
    for (int64_t k = 1; k < nz - 1; k++) {
        for (int64_t j = 1; j < ny - 1; j++) {
            const int64_t v0 = (k * ny + j) * nx;
            float acc = 0.0f;
            /* A contiguous row: vectorised (the simd reduction allows reordering the float sum). */
#pragma omp simd reduction(+ : acc)
            for (int64_t i = 1; i < nx - 1; i++) {
                const int64_t v = v0 + i;
                const float pv = p[v];
                float a = wz[v] * (pv - p[v + sz]) + wz[v - sz] * (pv - p[v - sz]) + wy[v] * (pv - p[v + sy]) +
                          wy[v - sy] * (pv - p[v - sy]) + wx[v] * (pv - p[v + 1]) + wx[v - 1] * (pv - p[v - 1]);
                a += gamma * pv;
                out[v] = a;
                acc += pv * a;
            }
            dot += (double)acc;
        }
    }
    return dot;
}

/* Preconditioned CG for A x = b on the unknowns (inv_d > 0); A = L_uu + gamma I (gamma = 0: the plain random
 * walker; gamma > 0: Grady's prior model, whose data term the caller has added to b). Stops when
 * ||r|| <= tol ||b||.
 * x holds the start (0 on seeds) and receives the solution; r, p, ap are scratch of the padded size.
 * Returns the number of iterations; *res_out = final ||r||, *b_norm_out = ||b||. */
EXPORT int rw_cg(int64_t nz, int64_t ny, int64_t nx, const float *wz, const float *wy, const float *wx,
                 float gamma, const float *inv_d, const float *b, float *x, float *r, float *p, float *ap,
                 double tol, int max_iter, double *res_out, double *b_norm_out) {
    const int64_t n = nz * ny * nx;
    double bb = 0.0;
#pragma omp parallel for schedule(static) reduction(+ : bb) if (n > PAR_MIN)
    for (int64_t v = 0; v < n; v++) bb += (double)b[v] * (double)b[v];
    const double b_norm = sqrt(bb);
    *b_norm_out = b_norm;
    if (b_norm == 0.0) {
#pragma omp parallel for schedule(static) if (n > PAR_MIN)
        for (int64_t v = 0; v < n; v++) x[v] = 0.0f;
        *res_out = 0.0;
        return 0;
    }
    const double threshold = tol * b_norm;

    /* r = b - A x (masked to the unknowns), p = z = M^-1 r. */
    apply_dot(nz, ny, nx, wz, wy, wx, gamma, x, ap);
    double rz = 0.0, rr = 0.0;
#pragma omp parallel for simd schedule(static) reduction(+ : rz, rr) if (n > PAR_MIN)
    for (int64_t v = 0; v < n; v++) {
        const float m = inv_d[v];
        const float rv = m > 0.0f ? b[v] - ap[v] : 0.0f;
        const float zv = rv * m;
        r[v] = rv;
        p[v] = zv;
        rz += (double)rv * zv;
        rr += (double)rv * rv;
    }
    double res = sqrt(rr);
    int it = 0;
    while (res > threshold && it < max_iter) {
        const double pap = apply_dot(nz, ny, nx, wz, wy, wx, gamma, p, ap);
        if (!(pap > 0.0)) break;
        const float alpha = (float)(rz / pap);
        double rz_new = 0.0;
        rr = 0.0;
        /* x += alpha p; r -= alpha A p; (z = r / d folded into the dots). On seeds p = 0 and inv_d = 0, so
         * whatever A p holds there never reaches x, z or the residual (r is masked with inv_d > 0). */
#pragma omp parallel for simd schedule(static) reduction(+ : rz_new, rr) if (n > PAR_MIN)
        for (int64_t v = 0; v < n; v++) {
            const float m = inv_d[v];
            x[v] += alpha * p[v];
            const float rv = m > 0.0f ? r[v] - alpha * ap[v] : 0.0f;
            r[v] = rv;
            rz_new += (double)(rv * rv) * m;
            rr += (double)rv * rv;
        }
        it++;
        res = sqrt(rr);
        if (res <= threshold) break;
        const float beta = (float)(rz_new / rz);
        rz = rz_new;
#pragma omp parallel for simd schedule(static) if (n > PAR_MIN)
        for (int64_t v = 0; v < n; v++) p[v] = r[v] * inv_d[v] + beta * p[v];
    }
    *res_out = res;
    return it;
}

/* ---- CG over a list of unknowns ------------------------------------------------------------------------
 * For band solves (corrective clicks, the fine level of a coarse-to-fine solve) most voxels of the box are
 * fixed: iterating over the dense box would cost the box, this costs the unknowns. Unknown u has up to six
 * neighbours nbr[6u + q] (an index into the list, or -1 when the neighbour is fixed: its weight is then in
 * diag and, times its value, in b) with edge weights w[6u + q]; diag[u] = degree + gamma.
 * A x = diag x - sum_q w x_nbr. Jacobi-preconditioned CG from x (the start), stopped at ||r|| <= tol ||b||.
 * Returns the iterations; *res_out = ||r||, *b_norm_out = ||b||. r, p, ap: scratch of n floats. */
static double list_apply_dot(int64_t n, const int32_t *nbr, const float *w, const float *diag, const float *p,
                             float *out) {
    double dot = 0.0;
#pragma omp parallel for schedule(static) reduction(+ : dot) if (n > PAR_MIN / 4)
    for (int64_t u = 0; u < n; u++) {
        const int32_t *nb = nbr + 6 * u;
        const float *wu = w + 6 * u;
        float a = diag[u] * p[u];
        for (int q = 0; q < 6; q++) {
            const int32_t m = nb[q];
            if (m >= 0) a -= wu[q] * p[m];
        }
        out[u] = a;
        dot += (double)p[u] * a;
    }
    return dot;
}

EXPORT int rw_cg_list(int64_t n, const int32_t *nbr, const float *w, const float *diag, const float *b, float *x,
                      float *r, float *p, float *ap, double tol, int max_iter, double *res_out, double *b_norm_out) {
    double bb = 0.0;
#pragma omp parallel for schedule(static) reduction(+ : bb) if (n > PAR_MIN / 4)
    for (int64_t u = 0; u < n; u++) bb += (double)b[u] * (double)b[u];
    const double b_norm = sqrt(bb);
    *b_norm_out = b_norm;
    if (b_norm == 0.0) {
        for (int64_t u = 0; u < n; u++) x[u] = 0.0f;
        *res_out = 0.0;
        return 0;
    }
    const double threshold = tol * b_norm;
    list_apply_dot(n, nbr, w, diag, x, ap);
    double rz = 0.0, rr = 0.0;
#pragma omp parallel for schedule(static) reduction(+ : rz, rr) if (n > PAR_MIN / 4)
    for (int64_t u = 0; u < n; u++) {
        const float rv = b[u] - ap[u];
        const float zv = rv / diag[u];
        r[u] = rv;
        p[u] = zv;
        rz += (double)rv * zv;
        rr += (double)rv * rv;
    }
    double res = sqrt(rr);
    int it = 0;
    while (res > threshold && it < max_iter) {
        const double pap = list_apply_dot(n, nbr, w, diag, p, ap);
        if (!(pap > 0.0)) break;
        const float alpha = (float)(rz / pap);
        double rz_new = 0.0;
        rr = 0.0;
#pragma omp parallel for schedule(static) reduction(+ : rz_new, rr) if (n > PAR_MIN / 4)
        for (int64_t u = 0; u < n; u++) {
            x[u] += alpha * p[u];
            const float rv = r[u] - alpha * ap[u];
            r[u] = rv;
            rz_new += (double)(rv * rv) / diag[u];
            rr += (double)rv * rv;
        }
        it++;
        res = sqrt(rr);
        if (res <= threshold) break;
        const float beta = (float)(rz_new / rz);
        rz = rz_new;
#pragma omp parallel for schedule(static) if (n > PAR_MIN / 4)
        for (int64_t u = 0; u < n; u++) p[u] = r[u] / diag[u] + beta * p[u];
    }
    *res_out = res;
    return it;
}

/* The list system of rw_cg_list from the image (unpadded, nz*ny*nx), the list index of every voxel (-1: fixed),
 * the flat position of each of the n unknowns and the fixed values: neighbour lists, weights
 * exp(scale_axis * dI^2) + eps, diag = degree + gamma and b = sum of weights times fixed neighbours' values
 * (+ gamma * prior, when prior is not NULL: n values, one per unknown). Neighbour order: +k, -k, +j, -j, +i, -i. */
EXPORT void rw_list_setup(int64_t nz, int64_t ny, int64_t nx, const float *image, const int32_t *index,
                          const int64_t *flat, int64_t n, const float *fixed, float scale_z, float scale_y,
                          float scale_x, float eps, float gamma, const float *prior, int32_t *nbr, float *w,
                          float *diag, float *b) {
    const int64_t sz = ny * nx, sy = nx;
    (void)flat;
    (void)n;
    /* Raster order over the grid (no divisions); the list is in raster order, as numpy's flatnonzero. */
#pragma omp parallel for schedule(static) if (nz * sz > PAR_MIN)
    for (int64_t k = 0; k < nz; k++) {
        for (int64_t j = 0; j < ny; j++) {
            for (int64_t i = 0; i < nx; i++) {
                const int64_t v = k * sz + j * sy + i;
                const int32_t u = index[v];
                if (u < 0) continue;
                const int ok[6] = {k + 1 < nz, k > 0, j + 1 < ny, j > 0, i + 1 < nx, i > 0};
                const int64_t off[6] = {sz, -sz, sy, -sy, 1, -1};
                const float sc[6] = {scale_z, scale_z, scale_y, scale_y, scale_x, scale_x};
                const float iv = image[v];
                float deg = gamma, rhs = prior != NULL ? gamma * prior[u] : 0.0f;
                for (int q = 0; q < 6; q++) {
                    nbr[6 * (int64_t)u + q] = -1;
                    w[6 * (int64_t)u + q] = 0.0f;
                    if (!ok[q]) continue;
                    const int64_t m = v + off[q];
                    const float d = image[m] - iv;
                    const float wq = expf(sc[q] * d * d) + eps;
                    deg += wq;
                    const int32_t im = index[m];
                    if (im >= 0) {
                        nbr[6 * (int64_t)u + q] = im;
                        w[6 * (int64_t)u + q] = wq;
                    } else {
                        rhs += wq * fixed[m];
                    }
                }
                diag[u] = deg;
                b[u] = rhs;
            }
        }
    }
}

/* ---- geodesic distance by axis sweeps --------------------------------------------------------------------
 * d (unpadded, nz*ny*nx) holds 0 at the sources and +inf elsewhere; in place it becomes the length of the
 * shortest 6-connected path, each step costing |I_u - I_v| * inv_g + alpha * h_axis. One iteration = a
 * forward and a backward sweep along k, then j, then i; the numpy fallback (geodesic.py) runs the same
 * updates in the same order, so both give the same distances. */
EXPORT void geo_sweeps(int64_t nz, int64_t ny, int64_t nx, const float *image, float inv_g, float hz, float hy,
                       float hx, float alpha, float *d, int iterations) {
    const int64_t sz = ny * nx, sy = nx;
    const float cz = alpha * hz, cy = alpha * hy, cx = alpha * hx;
    for (int it = 0; it < iterations; it++) {
        /* k: rows of the (j, i) plane are independent */
        for (int64_t k = 1; k < nz; k++) {
#pragma omp parallel for schedule(static) if (sz > PAR_MIN / 4)
            for (int64_t v = k * sz; v < (k + 1) * sz; v++) {
                const float c = d[v - sz] + fabsf(image[v] - image[v - sz]) * inv_g + cz;
                if (c < d[v]) d[v] = c;
            }
        }
        for (int64_t k = nz - 2; k >= 0; k--) {
#pragma omp parallel for schedule(static) if (sz > PAR_MIN / 4)
            for (int64_t v = k * sz; v < (k + 1) * sz; v++) {
                const float c = d[v + sz] + fabsf(image[v] - image[v + sz]) * inv_g + cz;
                if (c < d[v]) d[v] = c;
            }
        }
        /* j: within each slice, forward then backward; slices are independent */
#pragma omp parallel for schedule(static) if (nz * sz > PAR_MIN)
        for (int64_t k = 0; k < nz; k++) {
            for (int64_t j = 1; j < ny; j++)
                for (int64_t i = 0; i < nx; i++) {
                    const int64_t v = k * sz + j * sy + i;
                    const float c = d[v - sy] + fabsf(image[v] - image[v - sy]) * inv_g + cy;
                    if (c < d[v]) d[v] = c;
                }
            for (int64_t j = ny - 2; j >= 0; j--)
                for (int64_t i = 0; i < nx; i++) {
                    const int64_t v = k * sz + j * sy + i;
                    const float c = d[v + sy] + fabsf(image[v] - image[v + sy]) * inv_g + cy;
                    if (c < d[v]) d[v] = c;
                }
        }
        /* i: within each row */
#pragma omp parallel for schedule(static) if (nz * sz > PAR_MIN)
        for (int64_t row = 0; row < nz * ny; row++) {
            const int64_t v0 = row * nx;
            for (int64_t i = 1; i < nx; i++) {
                const float c = d[v0 + i - 1] + fabsf(image[v0 + i] - image[v0 + i - 1]) * inv_g + cx;
                if (c < d[v0 + i]) d[v0 + i] = c;
            }
            for (int64_t i = nx - 2; i >= 0; i--) {
                const float c = d[v0 + i + 1] + fabsf(image[v0 + i] - image[v0 + i + 1]) * inv_g + cx;
                if (c < d[v0 + i]) d[v0 + i] = c;
            }
        }
    }
}
